/*
 * relayvisorctl: sends one request line to relayvisord and prints the reply
 * (common/ctlproto.h); `queue` reads the spool directly (mailq/postcat). The
 * interactive prompt is prompt.c. Kept light: a status call is a connect, a write and a
 * read, so it takes a millisecond or two.
 */
#include "ctl/ctl.h"
#include "ctl/audit.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "common/ctlproto.h"
#include "common/dsnparam.h"
#include "common/spool.h"

volatile sig_atomic_t ctl_interrupted;

static const struct {
	const char *verb, *args, *text;
} helps[] = {
	{ "status", "[NAME...]", "Get the state of every process, or of the named ones.\n"
	    "\tAn instance with procs: N has processes NAME:00 .. NAME:NN; a bare NAME\n"
	    "\tmeans all of them in every command" },
	{ "start", "NAME...|all", "Start processes (waits until they serve)" },
	{ "stop", "NAME...|all", "Stop processes (graceful: open sessions finish)" },
	{ "restart", "NAME...|all", "Stop, then start processes" },
	{ "reread", "", "Re-read the configuration; show what changed" },
	{ "update", "", "Re-read the configuration and apply the changes" },
	{ "reload", "", "Same as update here (also SIGHUP): applies the changes,\n"
	    "\trestarting only what changed" },
	{ "avail", "", "Instances in the configuration: in use, or avail (read,\n"
	    "\tnot yet added by update)" },
	{ "pid", "[NAME|all]", "PID of relayvisord, or of processes" },
	{ "signal", "SIG NAME...|all", "Send a signal to processes (STOP, TSTP, TTIN,\n"
	    "\tTTOU are refused: use stop)" },
	{ "tail", "[-f] NAME", "The end of an instance's log; -f follows it" },
	{ "reopen", "", "Reopen every log file (after logrotate; also SIGUSR2)" },
	{ "check", "INSTANCE --client IP --from ADDR --to ADDR [--auth [USER]]",
	    "What the live profile would answer to RCPT TO, and the rule;\n"
	    "\t--auth asks as a client that passed SMTP AUTH (as USER).\n"
	    "\tExit 0 accepted, 1 refused, 2 bad arguments, 4 no such instance" },
	{ "stats", "[NAME]", "Counters per instance" },
	{ "audit", "[NAME...] [--json] [--source IP] [--internet NAME]...",
	    "Prove that no instance relays for strangers: the relay-trick corpus\n"
	    "\tsimulated on the live profiles and played live to every listener;\n"
	    "\texit 0 ok, 1 an instance relays for strangers (or live answers differ),\n"
	    "\t4 no connection" },
	{ "queue", "[--json | show QID]", "List the spool with each recipient's delivery state (--json: a JSON array), or show one message (no daemon needed)" },
	{ "flush", "[QID|@domain]", "Try deferred mail again now: all, one message, or\n"
	    "\tthe recipients of a domain (postqueue -f/-i/-s; through the qmgr)" },
	{ "hold", "QID", "Put a message on hold: no delivery until release (postsuper -h)" },
	{ "release", "QID", "Release a held message; it is tried now (postsuper -H)" },
	{ "delete", "QID|all", "Remove a message, or every message, without a bounce\n"
	    "\t(postsuper -d)" },
	{ "requeue", "QID", "Route and try every recipient not yet delivered again now,\n"
	    "\tattempts reset (postsuper -r)" },
	{ "passwd", "[--stdin] USER [FILE]", "Set USER's password in a password file,\n"
	    "\tby default server.auth.passwd_file (yescrypt; asks twice on a terminal,\n"
	    "\t--stdin reads one line; no daemon needed, reload makes it live)" },
	{ "shutdown", "", "Stop every process and relayvisord" },
	{ "version", "", "relayvisord's version" },
	{ "help", "[VERB]", "This text" },
	{ "history", "", "Commands typed at the prompt" },
};

void
ctl_help(FILE *out, const char *verb)
{
	size_t n = sizeof(helps) / sizeof(helps[0]);
	for (size_t i = 0; i < n; i++) {
		if (verb != NULL && strcmp(verb, helps[i].verb) != 0)
			continue;
		fprintf(out, "%s%s%s\n\t%s\n", helps[i].verb, helps[i].args[0] ? " " : "",
		    helps[i].args, helps[i].text);
		if (verb != NULL)
			return;
	}
	if (verb != NULL)
		fprintf(out, "*** No help on %s\n", verb);
}

/* one request, reply lines to ctx->out; the status line's exit code */
static int
ctl_remote(struct ctl_ctx *ctx, int argc, char **argv)
{
	int failed;
	int fd = ctl_request_send(ctx, argc, argv, &failed);
	if (fd == -1)
		return failed;
	bool follow = strcmp(argv[0], "tail") == 0 && argc > 1 &&
	    strcmp(argv[1], "-f") == 0;
	static char buf[CTLPROTO_LINE_MAX * 4];
	size_t have = 0;
	int code = -1;
	while (code == -1) {
		/* the flag, not only EINTR: a Ctrl-C that lands while lines stream
		   in (not inside read) must not wait for the stream to pause */
		ssize_t n = ctl_interrupted ? -1 : read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n == -1 && ctl_interrupted) {
			/* Ctrl-C at the prompt: leave `tail -f` (or the wait for a
			   reply; the daemon finishes what it was asked regardless) */
			ctl_interrupted = 0;
			fputc('\n', ctx->out);
			code = follow ? 0 : CTL_EXIT_ERROR;
			break;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (follow)
				code = 0;
			else {
				fprintf(ctx->out, "ERROR: relayvisord closed the "
				    "connection without an answer\n");
				code = CTL_EXIT_ERROR;
			}
			break;
		}
		have += (size_t)n;
		size_t start = 0;
		for (size_t i = 0; i < have && code == -1; i++) {
			if (buf[i] != '\n')
				continue;
			buf[i] = '\0';
			struct ctl_reply_line r;
			ctlproto_reply_parse(buf + start, &r);
			start = i + 1;
			switch (r.kind) {
			case CTL_LINE_DATA:
				fprintf(ctx->out, "%s\n", r.text);
				break;
			default:
				code = ctl_reply_status(ctx, &r, buf + start);
				break;
			}
		}
		if (follow)
			fflush(ctx->out);
		if (start == 0 && have == sizeof(buf) - 1) {
			/* a line longer than the buffer: print it as it comes */
			buf[have] = '\0';
			fprintf(ctx->out, "%s", buf);
			have = 0;
			continue;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
	}
	close(fd);
	return code;
}

struct queue_count {
	FILE *out;
	size_t n;
	struct spool *sp;
	bool json;
};

/* the delivery state of one message's recipients, by index (NULL: none yet,
   the queue manager has not taken the message in) */
struct rcpt_states {
	struct spool_rcpt *v;
	size_t n;
};

static int
rcpt_collect(const struct spool_rcpt *r, void *arg)
{
	struct rcpt_states *s = arg;
	if (r->idx < s->n)
		s->v[r->idx] = *r;
	return 0;
}

static void
fmt_time(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(buf, len, "%a %b %e %H:%M:%S", &tm);
}

static void
json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

/* the records of e's recipients into st (state -1 where none) */
static void
rcpt_states(struct queue_count *q, const struct spool_entry *e, struct rcpt_states *st)
{
	const char *error;
	st->n = e->n_rcpts;
	st->v = calloc(e->n_rcpts + 1, sizeof(*st->v));
	if (st->v == NULL) {
		st->n = 0;
		return;
	}
	for (size_t i = 0; i < st->n; i++)
		st->v[i].state = (enum spool_rcpt_state)-1;
	if (spool_rcpt_foreach(q->sp, e->qid, rcpt_collect, st, &error) == -1)
		for (size_t i = 0; i < st->n; i++)
			st->v[i].state = (enum spool_rcpt_state)-1;
}

static int
queue_json(const struct spool_entry *e, void *arg)
{
	struct queue_count *q = arg;
	struct rcpt_states st;
	rcpt_states(q, e, &st);
	fprintf(q->out, "%s\n  {\"qid\": ", q->n == 0 ? "" : ",");
	json_str(q->out, e->qid);
	fprintf(q->out, ", \"arrival\": %lld, \"size\": %llu, \"sender\": ",
	    (long long)e->arrival, (unsigned long long)e->size);
	json_str(q->out, e->sender != NULL ? e->sender : "");
	/* the DSN parameters the client gave (RFC 3461), null when none */
	fprintf(q->out, ", \"ret\": %s, \"envid\": ", e->dsn_ret == DSNPARAM_RET_FULL ?
	    "\"FULL\"" : e->dsn_ret == DSNPARAM_RET_HDRS ? "\"HDRS\"" : "null");
	if (e->envid != NULL)
		json_str(q->out, e->envid);
	else
		fprintf(q->out, "null");
	fprintf(q->out, ", \"recipients\": [");
	for (size_t i = 0; i < e->n_rcpts; i++) {
		fprintf(q->out, "%s{\"address\": ", i == 0 ? "" : ", ");
		json_str(q->out, e->rcpts[i]);
		const struct spool_rcpt *r = i < st.n ? &st.v[i] : NULL;
		bool have = r != NULL && (int)r->state != -1;
		fprintf(q->out, ", \"state\": ");
		json_str(q->out, have ? spool_rcpt_state_name(r->state) : "new");
		fprintf(q->out, ", \"attempts\": %u, \"next_try\": %lld, \"last_try\": %lld, "
		    "\"last_reply\": ", have ? r->attempts : 0,
		    have && (r->state == SPOOL_RCPT_QUEUED || r->state == SPOOL_RCPT_DEFERRED) ?
		    (long long)r->next_try : 0LL,
		    have ? (long long)r->last_try : 0LL);
		json_str(q->out, have ? r->reply : "");
		unsigned notify = e->notify != NULL ? e->notify[i] : 0;
		fprintf(q->out, ", \"notify\": ");
		if (notify != 0) {
			char text[64];
			dsnparam_notify_format(notify, text, sizeof(text));
			const char *sep = "[";
			for (char *w = strtok(text, ","); w != NULL; w = strtok(NULL, ","),
			    sep = ", ") {
				fprintf(q->out, "%s", sep);
				json_str(q->out, w);
			}
			fputc(']', q->out);
		} else
			fprintf(q->out, "null");
		fprintf(q->out, ", \"orcpt\": ");
		if (e->orcpt != NULL && e->orcpt[i] != NULL)
			json_str(q->out, e->orcpt[i]);
		else
			fprintf(q->out, "null");
		fprintf(q->out, ", \"delay_warned\": %s",
		    have && (r->flags & SPOOL_RCPT_F_WARNED) ? "true" : "false");
		fputc('}', q->out);
	}
	fprintf(q->out, "]}");
	free(st.v);
	q->n++;
	return 0;
}

static int
queue_line(const struct spool_entry *e, void *arg)
{
	struct queue_count *q = arg;
	char when[32];
	time_t t = (time_t)e->arrival;
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
	/* like mailq: the sender on the message's line, each recipient on a line
	   of its own below it, so 100 recipients stay readable */
	int indent = fprintf(q->out, "%-20s %10llu %s  ", e->qid,
	    (unsigned long long)e->size, when);
	fprintf(q->out, "<%s>\n", e->sender != NULL ? e->sender : "");
	/* each recipient's delivery state once the qmgr took the message in
	   (postqueue -p prints the last reason; we add state, attempts, next try) */
	struct rcpt_states st;
	rcpt_states(q, e, &st);
	for (size_t i = 0; i < e->n_rcpts; i++) {
		fprintf(q->out, "%*s<%s>", indent > 0 ? indent : 0, "", e->rcpts[i]);
		const struct spool_rcpt *r = i < st.n ? &st.v[i] : NULL;
		if (r != NULL && (int)r->state != -1) {
			char next[32];
			fmt_time(next, sizeof(next), r->next_try);
			fprintf(q->out, "  %s, %u attempt%s", spool_rcpt_state_name(r->state),
			    r->attempts, r->attempts == 1 ? "" : "s");
			if (r->state == SPOOL_RCPT_QUEUED || r->state == SPOOL_RCPT_DEFERRED)
				fprintf(q->out, ", next try %s", next);
			if (r->reply[0] != '\0')
				fprintf(q->out, " (%s)", r->reply);
		}
		fputc('\n', q->out);
	}
	free(st.v);
	q->n++;
	return 0;
}

/* `queue` and `queue show QID`: straight from the spool, like mailq and postcat */
static int
ctl_queue(struct ctl_ctx *ctx, int argc, char **argv)
{
	const char *error;
	bool show = argc == 3 && strcmp(argv[1], "show") == 0;
	bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
	if (argc != 1 && !show && !json) {
		fprintf(ctx->out, "Error: queue [--json | show QID]\n");
		return CTL_EXIT_USAGE;
	}
	if (ctx->spool == NULL && ctl_load_server(ctx, &error) == -1) {
		fprintf(ctx->out, "Error: %s\n", error);
		return CTL_EXIT_ERROR;
	}
	/* a spool that cannot be read is an error naming it, never an empty
	   queue; only a spool directory without a database yet (no listener ever
	   opened it) holds nothing */
	struct stat st;
	if (stat(ctx->spool, &st) == -1 || !S_ISDIR(st.st_mode)) {
		int e = errno;
		fprintf(ctx->out, "Error: spool %s: %s\n", ctx->spool,
		    strerror(access(ctx->spool, F_OK) == 0 ? ENOTDIR : e));
		return CTL_EXIT_ERROR;
	}
	struct spool *sp;
	if (spool_open_readonly(ctx->spool, &sp, &error) == -1) {
		char db[PATH_MAX];
		snprintf(db, sizeof(db), "%s/data.mdb", ctx->spool);
		if (!show && access(db, F_OK) == -1 && errno == ENOENT) {
			fprintf(ctx->out, json ? "[]\n" : "Mail queue is empty\n");
			return 0;
		}
		fprintf(ctx->out, "Error: %s\n", error);
		return CTL_EXIT_ERROR;
	}
	int code = 0;
	if (show) {
		fflush(ctx->out);
		/* the error names the message: "QID: no such message" */
		if (spool_show(sp, argv[2], ctx->out, &error) == -1) {
			fprintf(ctx->out, "%s\n", error);
			code = CTL_EXIT_ERROR;
		}
	} else if (json) {
		struct queue_count q = { ctx->out, 0, sp, true };
		fputc('[', ctx->out);
		if (spool_foreach(sp, queue_json, &q, &error) == -1) {
			fprintf(ctx->out, "]\n");
			fprintf(stderr, "Error: %s\n", error);
			code = CTL_EXIT_ERROR;
		} else {
			fprintf(ctx->out, "%s]\n", q.n > 0 ? "\n" : "");
		}
	} else {
		struct queue_count q = { ctx->out, 0, sp, false };
		if (spool_foreach(sp, queue_line, &q, &error) == -1) {
			fprintf(ctx->out, "Error: %s\n", error);
			code = CTL_EXIT_ERROR;
		} else if (q.n == 0) {
			fprintf(ctx->out, "Mail queue is empty\n");
		} else {
			fprintf(ctx->out, "-- %zu message%s\n", q.n, q.n == 1 ? "" : "s");
		}
	}
	spool_close(sp);
	return code;
}

int
ctl_command(struct ctl_ctx *ctx, int argc, char **argv)
{
	if (argc == 0)
		return 0;
	if (strcmp(argv[0], "help") == 0) {
		ctl_help(ctx->out, argc > 1 ? argv[1] : NULL);
		return 0;
	}
	if (strcmp(argv[0], "queue") == 0)
		return ctl_queue(ctx, argc, argv);
	if (strcmp(argv[0], "audit") == 0)
		return ctl_audit(ctx, argc, argv);
	if (strcmp(argv[0], "passwd") == 0)
		return ctl_passwd(ctx, argc, argv);
	return ctl_remote(ctx, argc, argv);
}

int
ctl_split(char *line, char **argv, int max)
{
	int argc = 0;
	char *save = NULL;
	for (char *w = strtok_r(line, " \t\r\n", &save); w != NULL && argc < max;
	    w = strtok_r(NULL, " \t\r\n", &save))
		argv[argc++] = w;
	return argc;
}
