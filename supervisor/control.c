/*
 * The control server's verbs (control.h): one function per verb, in the
 * commands[] table at the end; the framing (socket, request line, status line)
 * is ctlconn.c's. Output follows supervisorctl: "%-33s%-10s%s" status lines,
 * "NAME: started", "NAME: ERROR (no such process)", exit 3 when a listed
 * process is not running, 4 for an unknown name.
 *
 * `start` answers "NAME: started" as soon as the child said READY (it serves);
 * the status turns RUNNING once startsecs have also elapsed.
 *
 * A new ctl verb: a cmd_<verb> here and its row in commands[] (a long one gets a
 * file of its own, as audit.c), its help line in ctl/ctl.c, and the man page.
 */
#include "supervisor/control.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/ctlproto.h"
#include "common/signame.h"
#include "supervisor/ctlconn.h"
#include "common/log.h"
#include "common/address.h"
#include "common/net.h"
#include "profiles/policy.h"
#include "supervisor/audit.h"
#include "supervisor/super.h"

#define TAIL_BYTES 1600		/* what supervisorctl tail shows */
#define STATS_TIMEOUT 1.0

static void target_line(struct target *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
target_line(struct target *t, const char *fmt, ...)
{
	size_t off = strlen(t->out);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->out + off, sizeof(t->out) - off - 1, fmt, ap);
	va_end(ap);
	off = strlen(t->out);
	t->out[off] = '\n';
	t->out[off + 1] = '\0';
}

static void
sv_out_line(void *arg, const char *text)
{
	conn_text(arg, text);
}

/* ---- naming ---- */

static void
target_add(struct conn *c, const char *name)
{
	for (size_t i = 0; i < c->n_targets; i++)
		if (strcmp(c->targets[i].name, name) == 0)
			return;
	struct target *t = realloc(c->targets, (c->n_targets + 1) * sizeof(*t));
	if (t == NULL) {
		log_warn("realloc");
		return;
	}
	c->targets = t;
	t = &c->targets[c->n_targets++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
}

/* expand NAME… ("all", an instance, "inst:NN") into process targets; unknown
   names are reported at once. Returns false when nothing is left to do. */
static bool
targets_resolve(struct conn *c, int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		bool all = strcmp(argv[i], "all") == 0;
		struct sv_instance *in = all ? NULL : sv_instance_find(c->sv, argv[i]);
		if (all || in != NULL) {
			for (struct sv_instance *x = sv_instances(c->sv); x != NULL;
			    x = x->next) {
				if (!all && x != in)
					continue;
				for (unsigned j = 0; j < x->n_procs; j++)
					target_add(c, x->procs[j].name);
			}
		} else if (sv_proc_find(c->sv, argv[i]) != NULL) {
			target_add(c, argv[i]);
		} else {
			conn_line(c, "%s: ERROR (no such process)", argv[i]);
			conn_exit(c, CTL_EXIT_UNKNOWN);
		}
	}
	return c->n_targets > 0;
}

static void
format_uptime(char *buf, size_t size, time_t secs)
{
	if (secs < 0)
		secs = 0;
	long d = (long)(secs / 86400), h = (long)(secs % 86400 / 3600);
	long m = (long)(secs % 3600 / 60), s = (long)(secs % 60);
	if (d > 0)
		snprintf(buf, size, "%ld day%s, %ld:%02ld:%02ld", d, d == 1 ? "" : "s",
		    h, m, s);
	else
		snprintf(buf, size, "%ld:%02ld:%02ld", h, m, s);
}

static void
status_line(struct conn *c, const struct sv_proc *p)
{
	char desc[300] = "", up[64], when[64];
	time_t now = time(NULL);
	switch (p->fsm.state) {
	case PROC_RUNNING:
		format_uptime(up, sizeof(up), now - p->start_time);
		snprintf(desc, sizeof(desc), "pid %ld, uptime %s", (long)p->pid, up);
		break;
	case PROC_STARTING:
	case PROC_STOPPING:
		snprintf(desc, sizeof(desc), "pid %ld", (long)p->pid);
		break;
	case PROC_STOPPED:
	case PROC_EXITED:
		if (p->stop_time == 0) {
			snprintf(desc, sizeof(desc), "Not started");
		} else {
			struct tm tm;
			localtime_r(&p->stop_time, &tm);
			strftime(when, sizeof(when), "%b %d %I:%M %p", &tm);
			snprintf(desc, sizeof(desc), "%s", when);
		}
		break;
	case PROC_BACKOFF:
	case PROC_FATAL:
		if (p->inst->bind_error[0] != '\0')
			snprintf(desc, sizeof(desc), "%s", p->inst->bind_error);
		else if (WIFEXITED(p->last_status) &&
		    WEXITSTATUS(p->last_status) == 78)
			snprintf(desc, sizeof(desc),
			    "Configuration error (exit status 78)");
		else
			snprintf(desc, sizeof(desc),
			    "Exited too quickly (process log may have details)");
		break;
	}
	conn_line(c, "%-33s%-10s%s", p->name, fsm_state_name(p->fsm.state), desc);
}

/* ---- commands ---- */

static void
cmd_status(struct conn *c, int argc, char **argv)
{
	if (argc == 1) {
		for (struct sv_instance *in = sv_instances(c->sv); in != NULL; in = in->next)
			for (unsigned j = 0; j < in->n_procs; j++)
				target_add(c, in->procs[j].name);
	} else {
		targets_resolve(c, argc - 1, argv + 1);
	}
	for (size_t i = 0; i < c->n_targets; i++) {
		struct sv_proc *p = sv_proc_find(c->sv, c->targets[i].name);
		if (p == NULL)
			continue;
		status_line(c, p);
		if (p->fsm.state != PROC_RUNNING)
			conn_exit(c, CTL_EXIT_NOT_RUNNING);
	}
	conn_finish(c, c->exitcode, NULL);
}

static bool
start_settled(struct conn *c, struct target *t)
{
	struct sv_proc *p = sv_proc_find(c->sv, t->name);
	if (p == NULL) {
		target_line(t, "%s: ERROR (no such process)", t->name);
		conn_exit(c, CTL_EXIT_UNKNOWN);
		return true;
	}
	if (p->fsm.state == PROC_RUNNING ||
	    (p->fsm.state == PROC_STARTING && p->fsm.ready)) {
		target_line(t, "%s: started", t->name);
		return true;
	}
	if (p->fsm.state == PROC_STARTING || p->fsm.state == PROC_STOPPING)
		return false;
	target_line(t, "%s: ERROR (%s)", t->name,
	    p->fsm.state == PROC_FATAL && p->inst->bind_error[0] != '\0' ?
	    p->inst->bind_error :
	    p->fsm.state == PROC_FATAL && WIFEXITED(p->last_status) &&
	    WEXITSTATUS(p->last_status) == 78 ? "configuration error" : "spawn error");
	conn_exit(c, CTL_EXIT_ERROR);
	return true;
}

static bool
stop_settled(struct conn *c, struct target *t)
{
	struct sv_proc *p = sv_proc_find(c->sv, t->name);
	if (p == NULL || !fsm_has_child(p->fsm.state)) {
		target_line(t, "%s: stopped", t->name);
		return true;
	}
	return false;
}

static void
start_one(struct conn *c, struct target *t)
{
	struct sv_proc *p = sv_proc_find(c->sv, t->name);
	t->phase = 1;
	if (p == NULL) {
		target_line(t, "%s: ERROR (no such process)", t->name);
		conn_exit(c, CTL_EXIT_UNKNOWN);
		t->done = true;
		return;
	}
	if (sv_proc_event(p, EV_START) == ACT_REFUSE) {
		bool already = !sv_shutting_down(c->sv) &&
		    (p->fsm.state == PROC_STARTING || p->fsm.state == PROC_RUNNING);
		target_line(t, "%s: ERROR (%s)", t->name, already ? "already started" :
		    sv_shutting_down(c->sv) ? "shutting down" : "stopping");
		/* supervisorctl: "already started" is the wanted outcome, exit 0 */
		if (!already)
			conn_exit(c, CTL_EXIT_ERROR);
		t->done = true;
		return;
	}
	t->done = start_settled(c, t);
}

static void
waiters_check(struct conn *c)
{
	bool all = true;
	for (size_t i = 0; i < c->n_targets; i++) {
		struct target *t = &c->targets[i];
		if (t->done)
			continue;
		if (c->wait == WAIT_START) {
			t->done = start_settled(c, t);
		} else if (c->wait == WAIT_STOP) {
			t->done = stop_settled(c, t);
		} else if (t->phase == 0) {
			if (stop_settled(c, t))
				start_one(c, t);
		} else {
			t->done = start_settled(c, t);
		}
		all = all && t->done;
	}
	if (!all)
		return;
	for (size_t i = 0; i < c->n_targets; i++) {
		char *save = NULL;
		for (char *l = strtok_r(c->targets[i].out, "\n", &save); l != NULL;
		    l = strtok_r(NULL, "\n", &save))
			conn_text(c, l);
	}
	conn_finish(c, c->exitcode, NULL);
}

static void
cmd_start_stop(struct conn *c, int argc, char **argv)
{
	const char *verb = argv[0];
	if (argc < 2) {
		/* supervisorctl's codes: start 2 (invalid arguments), stop and
		   restart 1 (generic) */
		char msg[64];
		snprintf(msg, sizeof(msg), "Error: %s requires a process name", verb);
		conn_finish(c, strcmp(verb, "start") == 0 ? CTL_EXIT_USAGE :
		    CTL_EXIT_ERROR, msg);
		return;
	}
	if (!targets_resolve(c, argc - 1, argv + 1)) {
		conn_finish(c, c->exitcode, NULL);
		return;
	}
	if (strcmp(verb, "start") == 0) {
		c->wait = WAIT_START;
		for (size_t i = 0; i < c->n_targets; i++)
			start_one(c, &c->targets[i]);
	} else if (strcmp(verb, "stop") == 0) {
		c->wait = WAIT_STOP;
		for (size_t i = 0; i < c->n_targets; i++) {
			struct target *t = &c->targets[i];
			struct sv_proc *p = sv_proc_find(c->sv, t->name);
			t->phase = 1;
			if (sv_proc_event(p, EV_STOP) == ACT_REFUSE) {
				/* stopped already: what was asked, exit 0 */
				target_line(t, "%s: ERROR (not running)", t->name);
				t->done = true;
			} else {
				t->done = stop_settled(c, t);
			}
		}
	} else {
		c->wait = WAIT_RESTART;
		for (size_t i = 0; i < c->n_targets; i++) {
			struct target *t = &c->targets[i];
			struct sv_proc *p = sv_proc_find(c->sv, t->name);
			if (sv_proc_event(p, EV_STOP) == ACT_REFUSE) {
				target_line(t, "%s: ERROR (not running)", t->name);
				start_one(c, t);
			} else if (stop_settled(c, t)) {
				start_one(c, t);
			}
		}
	}
	if (c->wait != WAIT_NONE)
		waiters_check(c);
}

/* the header of a kind's table: its title, then its STATS fields upper-cased */
static void
stats_header(struct conn *c, const struct svc_kind *kind)
{
	const struct childproto_fieldset *set = kind->stats;
	char line[CTLPROTO_LINE_MAX];
	size_t off = (size_t)snprintf(line, sizeof(line), "%-20s", kind->stats_title);
	for (size_t i = 0; i < set->n && off < sizeof(line); i++) {
		char up[64];
		size_t j = 0;
		for (; set->fields[i].name[j] != '\0' && j < sizeof(up) - 1; j++)
			up[j] = (char)toupper((unsigned char)set->fields[i].name[j]);
		up[j] = '\0';
		off += (size_t)snprintf(line + off, sizeof(line) - off, " %*s",
		    set->fields[i].width, up);
	}
	conn_text(c, line);
}

/* one table per kind of service (the service table's order; the listeners'
   always, even empty), its columns the kind's STATS fields: exited processes'
   counters, kept by the supervisor, plus the live ones' */
static void
stats_answer(struct conn *c)
{
	for (size_t k = 0; svc_kinds[k] != NULL; k++) {
		const struct svc_kind *kind = svc_kinds[k];
		const struct childproto_fieldset *set = kind->stats;
		bool any = false;
		if (k == 0) {
			stats_header(c, kind);
			any = true;
		}
		for (struct sv_instance *in = sv_instances(c->sv); in != NULL;
		    in = in->next) {
			if (in->kind != kind || (c->stats_only[0] != '\0' &&
			    strcmp(in->name, c->stats_only) != 0))
				continue;
			if (!any)
				stats_header(c, kind);
			any = true;
			struct childproto_stats s = in->totals;
			for (unsigned j = 0; j < in->n_procs; j++) {
				const struct sv_proc *p = &in->procs[j];
				if (p->pid > 0)
					childproto_stats_add(set, &s, &p->stats, false);
			}
			char line[CTLPROTO_LINE_MAX];
			size_t off = (size_t)snprintf(line, sizeof(line), "%-20s", in->name);
			for (size_t i = 0; i < set->n && off < sizeof(line); i++)
				off += (size_t)snprintf(line + off, sizeof(line) - off,
				    " %*llu", set->fields[i].width,
				    (unsigned long long)s.v[i]);
			conn_text(c, line);
		}
	}
	conn_finish(c, 0, NULL);
}

static void
stats_timeout(struct conn *c)
{
	if (c->wait == WAIT_QUEUE) {
		c->wait = WAIT_NONE;
		conn_finish(c, CTL_EXIT_ERROR, "Error: the queue manager did not answer");
		return;
	}
	log_warnx("stats: a child did not answer within %.0fs", STATS_TIMEOUT);
	stats_answer(c);
}

static void
cmd_stats(struct conn *c, int argc, char **argv)
{
	struct sv_instance *only = NULL;
	if (argc > 2) {
		conn_finish(c, CTL_EXIT_USAGE, "Error: stats [NAME]");
		return;
	}
	if (argc == 2) {
		only = sv_instance_find(c->sv, argv[1]);
		if (only == NULL) {
			conn_line(c, "%s: ERROR (no such process)", argv[1]);
			conn_finish(c, CTL_EXIT_UNKNOWN, NULL);
			return;
		}
		snprintf(c->stats_only, sizeof(c->stats_only), "%s", argv[1]);
	}
	if (sv_stats_request(c->sv, only) == 0) {
		stats_answer(c);
		return;
	}
	c->wait = WAIT_STATS;
	ev_timer_set(&c->timer, STATS_TIMEOUT, 0);
	ev_timer_start(sv_loop(c->sv), &c->timer);
}

#define QUEUE_TIMEOUT 30.0

/* flush [QID|@domain], hold QID, release QID, delete QID|all, requeue QID:
   handed to the qmgr, the only writer of delivery state (postqueue/postsuper) */
static void
cmd_queue_op(struct conn *c, int argc, char **argv)
{
	bool flush = strcmp(argv[0], "flush") == 0;
	if ((flush && argc > 2) || (!flush && argc != 2)) {
		char msg[96];
		snprintf(msg, sizeof(msg), "Error: %s %s", argv[0], flush ? "[QID|@domain]" :
		    strcmp(argv[0], "delete") == 0 ? "QID|all" : "QID");
		conn_finish(c, CTL_EXIT_USAGE, msg);
		return;
	}
	const char *arg = argc == 2 ? argv[1] : NULL;
	if (arg != NULL) {
		for (const char *p = arg; *p != '\0'; p++)
			if ((unsigned char)*p <= ' ' || *p == 0x7f || p - arg > 300) {
				conn_finish(c, CTL_EXIT_USAGE, "Error: bad queue id or domain");
				return;
			}
	}
	const char *error;
	uint32_t id;
	if (sv_queue_request(c->sv, argv[0], arg, &id, &error) == -1) {
		char msg[256];
		snprintf(msg, sizeof(msg), "Error: %s", error);
		conn_finish(c, CTL_EXIT_ERROR, msg);
		return;
	}
	c->queue_id = id;
	c->wait = WAIT_QUEUE;
	ev_timer_set(&c->timer, QUEUE_TIMEOUT, 0);
	ev_timer_start(sv_loop(c->sv), &c->timer);
}

static void
queue_answer(struct conn *c)
{
	int code;
	char text[CHILD_MSG_MAX];
	if (!sv_queue_answer(c->sv, c->queue_id, &code, text, sizeof(text)))
		return;
	ev_timer_stop(sv_loop(c->sv), &c->timer);
	c->wait = WAIT_NONE;
	conn_line(c, "%s", text);
	conn_finish(c, code, NULL);
}

static void
cmd_pid(struct conn *c, int argc, char **argv)
{
	if (argc == 1) {
		conn_line(c, "%ld", (long)getpid());
		conn_finish(c, 0, NULL);
		return;
	}
	targets_resolve(c, argc - 1, argv + 1);
	bool many = c->n_targets > 1;
	for (size_t i = 0; i < c->n_targets; i++) {
		struct sv_proc *p = sv_proc_find(c->sv, c->targets[i].name);
		long pid = p != NULL && fsm_has_child(p->fsm.state) ? (long)p->pid : 0;
		if (many)
			conn_line(c, "%-33s%ld", c->targets[i].name, pid);
		else
			conn_line(c, "%ld", pid);
		if (pid == 0)
			conn_exit(c, 7);	/* supervisorctl: LSB "not running" */
	}
	conn_finish(c, c->exitcode, NULL);
}

/* "HUP", "SIGHUP", "1" */
static int
signal_parse(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (*s != '\0' && *end == '\0')
		return n > 0 && n < NSIG ? (int)n : -1;
	return signame_parse(s);
}

static void
cmd_signal(struct conn *c, int argc, char **argv)
{
	if (argc < 3) {
		conn_finish(c, CTL_EXIT_ERROR, "Error: signal requires a signal name and "
		    "a process name");
		return;
	}
	int sig = signal_parse(argv[1]);
	if (sig == -1) {
		conn_finish(c, CTL_EXIT_USAGE, "ERROR: bad signal name");
		return;
	}
	if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) {
		/* a suspended listener holds its port and sessions while its state
		   would still read RUNNING; `stop` is the way to pause an instance */
		char msg[160];
		snprintf(msg, sizeof(msg), "ERROR: signal %s refused: it would suspend "
		    "the listener while it holds its sessions; use stop",
		    sigabbrev_np(sig));
		conn_finish(c, CTL_EXIT_ERROR, msg);
		return;
	}
	targets_resolve(c, argc - 2, argv + 2);
	for (size_t i = 0; i < c->n_targets; i++) {
		struct sv_proc *p = sv_proc_find(c->sv, c->targets[i].name);
		if (p != NULL && sv_proc_signal(p, sig) == 0) {
			conn_line(c, "%s: signalled", p->name);
		} else {
			conn_line(c, "%s: ERROR (not running)", c->targets[i].name);
			conn_exit(c, CTL_EXIT_ERROR);
		}
	}
	conn_finish(c, c->exitcode, NULL);
}

/* last TAIL_BYTES of the instance's log, starting at a line; -1 when the log
   exists but is refused or unreadable (a missing log is just empty) */
static int
tail_send(struct conn *c, const char *inst)
{
	const char *path = sv_log_path(c->sv, inst);
	int fd = sv_log_openat(c->sv, inst, O_RDONLY);
	if (fd == -1) {
		if (errno != ENOENT) {
			log_warn("open %s", path);
			conn_line(c, "%s: ERROR (cannot open %s: %s)", inst, path,
			    errno == ELOOP || errno == EPERM ?
			    "not a plain file, refused" : strerror(errno));
			return -1;
		}
		return 0;
	}
	struct stat st;
	char buf[TAIL_BYTES + 1];
	off_t off = 0;
	if (fstat(fd, &st) == 0 && st.st_size > TAIL_BYTES)
		off = st.st_size - TAIL_BYTES;
	ssize_t n = pread(fd, buf, TAIL_BYTES, off);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = buf;
	if (off > 0) {
		char *nl = strchr(p, '\n');
		p = nl != NULL ? nl + 1 : p + n;
	}
	for (char *nl; *p != '\0'; p = nl) {
		nl = strchr(p, '\n');
		if (nl == NULL)
			nl = p + strlen(p);
		else
			*nl++ = '\0';
		conn_text(c, p);
	}
	return 0;
}

static void
cmd_tail(struct conn *c, int argc, char **argv)
{
	bool follow = argc == 3 && strcmp(argv[1], "-f") == 0;
	if (argc != 2 + (follow ? 1 : 0)) {
		conn_finish(c, CTL_EXIT_USAGE, "Error: tail [-f] NAME");
		return;
	}
	const char *name = argv[argc - 1];
	struct sv_proc *p = sv_proc_find(c->sv, name);
	struct sv_instance *in = p != NULL ? p->inst : sv_instance_find(c->sv, name);
	if (in == NULL) {
		conn_line(c, "%s: ERROR (no such process)", name);
		conn_finish(c, CTL_EXIT_UNKNOWN, NULL);
		return;
	}
	if (tail_send(c, in->name) == -1) {
		conn_finish(c, CTL_EXIT_ERROR, NULL);
		return;
	}
	if (!follow) {
		conn_finish(c, 0, NULL);
		return;
	}
	snprintf(c->tail_inst, sizeof(c->tail_inst), "%s", in->name);
	c->wait = WAIT_TAIL;
	conn_flush(c);
}

/* "a@b" or "<a@b>", as the path "<a@b>" */
static void
path_arg(const char *s, char *buf, size_t size)
{
	if (s[0] == '<')
		snprintf(buf, size, "%s", s);
	else
		snprintf(buf, size, "<%s>", s);
}

/* audit, audit-expect, check --corpus: supervisor/audit.c */
static void
cmd_audit(struct conn *c, int argc, char **argv)
{
	struct sv_out out = { sv_out_line, c };
	const char *error;
	int code = audit_control(c->sv, argc, argv, &out, &error);
	conn_finish(c, code, error);
}

static void
cmd_check(struct conn *c, int argc, char **argv)
{
	const char *usage = "Error: check INSTANCE --client IP --from ADDR --to ADDR "
	    "[--auth [USER]]";
	if (audit_is_corpus_check(argc, argv)) {
		cmd_audit(c, argc, argv);
		return;
	}
	if (argc < 2) {
		conn_finish(c, CTL_EXIT_USAGE, usage);
		return;
	}
	const char *client = NULL, *from = NULL, *to = NULL;
	bool auth = false;
	for (int i = 2; i < argc; i += 2) {
		if (strcmp(argv[i], "--auth") == 0) {
			/* --auth [USER]: the client as if it had passed SMTP AUTH (as
			   USER); the relay decision does not depend on which user */
			auth = true;
			if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
				i--;
			continue;
		}
		if (i + 1 >= argc) {
			conn_finish(c, CTL_EXIT_USAGE, usage);
			return;
		}
		if (strcmp(argv[i], "--client") == 0)
			client = argv[i + 1];
		else if (strcmp(argv[i], "--from") == 0)
			from = argv[i + 1];
		else if (strcmp(argv[i], "--to") == 0)
			to = argv[i + 1];
		else {
			conn_finish(c, CTL_EXIT_USAGE, usage);
			return;
		}
	}
	if (client == NULL || from == NULL || to == NULL) {
		conn_finish(c, CTL_EXIT_USAGE, usage);
		return;
	}
	const struct config *cfg = sv_config(c->sv);
	const struct instance *inst = config_instance(cfg, argv[1]);
	if (inst == NULL) {
		conn_line(c, "%s: ERROR (no such process)", argv[1]);
		conn_finish(c, CTL_EXIT_UNKNOWN, NULL);
		return;
	}
	struct sockaddr_storage ss;
	if (net_sockaddr_parse(client, 0, &ss, NULL) == -1) {
		conn_finish(c, CTL_EXIT_USAGE, "Error: --client wants an IPv4 or IPv6 address");
		return;
	}
	/* the listener's own steps (profiles/policy.h), on "<from>" and "<to>" */
	char mail[ADDR_PATH_MAX + 16], rcpt[ADDR_PATH_MAX + 16];
	path_arg(from, mail, sizeof(mail));
	path_arg(to, rcpt, sizeof(rcpt));
	struct policy_verdict v;
	policy_evaluate(cfg, inst, (struct sockaddr *)&ss, auth, mail, rcpt, &v);
	switch (v.stage) {
	case POLICY_AT_CONNECT: {
		/* word for word what the listener greets such a client with
		   (instances/session.c, session_start) */
		char ip[64];
		if (net_sockaddr_ntop((struct sockaddr *)&ss, ip, sizeof(ip)) == NULL)
			snprintf(ip, sizeof(ip), "%s", client);
		conn_line(c, "554 5.7.1 <unknown[%s]>: Client host rejected: Access denied"
		    " (rule: access)", ip);
		conn_finish(c, CTL_EXIT_ERROR, NULL);
		return;
	}
	case POLICY_AT_MAIL:
	case POLICY_AT_RCPT:
	case POLICY_DECIDED:
		break;
	}
	/* a whole address each: nothing may follow the path */
	const char *error = v.syntax_error;
	if (v.stage == POLICY_AT_MAIL || mail[v.mail_end] != '\0') {
		conn_line(c, "501 5.1.7 Bad sender address syntax: %s (rule: syntax)",
		    v.stage == POLICY_AT_MAIL ? error : "garbage after address");
		conn_finish(c, CTL_EXIT_ERROR, NULL);
		return;
	}
	if (v.stage == POLICY_AT_RCPT || rcpt[v.rcpt_end] != '\0') {
		conn_line(c, "501 5.1.3 Bad recipient address syntax: %s (rule: syntax)",
		    v.stage == POLICY_AT_RCPT ? error : "garbage after address");
		conn_finish(c, CTL_EXIT_ERROR, NULL);
		return;
	}
	const struct policy_result *res = &v.res;
	conn_line(c, "%d %s %s (rule: %s)", res->code, res->enhanced, res->text,
	    res->rule != NULL ? res->rule : "none");
	conn_finish(c, res->answer == POLICY_OK ? 0 : CTL_EXIT_ERROR, NULL);
}

static void
cmd_reload(struct conn *c, int argc, char **argv)
{
	(void)argc;
	bool dry = strcmp(argv[0], "reread") == 0;
	struct sv_out out = { sv_out_line, c };
	const char *error;
	if (sv_reload(c->sv, dry, &out, &error) == -1)
		conn_finish(c, CTL_EXIT_ERROR, error);
	else
		conn_finish(c, 0, NULL);
}

static void
avail_line(struct conn *c, const struct svc_params *ci, bool in_use)
{
	char addrs[1024] = "";
	size_t off = 0;
	for (size_t i = 0; ci->listen != NULL && i < ci->n_listen; i++) {
		int n = snprintf(addrs + off, sizeof(addrs) - off, "%s%s",
		    i ? "," : "", ci->listen[i].text);
		if (n < 0 || (size_t)n >= sizeof(addrs) - off)
			break;
		off += (size_t)n;
	}
	conn_line(c, "%-32s %-10s %-8s %s", ci->name, in_use ? "in use" : "avail",
	    ci->autostart ? "auto" : "manual", addrs);
}

/*
 * supervisorctl's avail: every instance of the configuration as it is on disk
 * now, "in use" when it runs here, "avail" when it was read but not yet added
 * (`update` adds it). Instances removed from the files but still running are
 * listed "in use" until `update` removes them.
 */
static void
cmd_avail(struct conn *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	struct config_diags diags = { 0 };
	struct config *disk = config_load_dir(sv_confdir(c->sv), &diags);
	bool bad = disk == NULL || diags.n_errors > 0;
	config_diags_free(&diags);
	if (!bad) {
		for (size_t k = 0; svc_kinds[k] != NULL; k++) {
			size_t n = svc_kinds[k]->count(disk);
			for (size_t i = 0; i < n; i++) {
				struct svc_params sp;
				svc_kinds[k]->params(disk, i, &sp);
				avail_line(c, &sp, sv_instance_find(c->sv, sp.name) != NULL);
			}
		}
	}
	for (struct sv_instance *in = sv_instances(c->sv); in != NULL; in = in->next) {
		const struct svc_kind *kind;
		struct svc_params sp;
		if ((bad || !svc_lookup(disk, in->name, &kind, &sp)) && in->configured)
			avail_line(c, &in->sp, true);
	}
	if (disk != NULL)
		config_free(disk);
	if (bad) {
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "ERROR: CANT_REREAD: %s is invalid (reread "
		    "shows why); listed what runs", sv_confdir(c->sv));
		conn_finish(c, CTL_EXIT_ERROR, msg);
		return;
	}
	conn_finish(c, 0, NULL);
}

static void
cmd_shutdown(struct conn *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	conn_line(c, "Shut down");
	struct sv *sv = c->sv;
	conn_finish(c, 0, NULL);
	sv_shutdown(sv);
}

static void
cmd_version(struct conn *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	conn_line(c, "%s", RELAYVISOR_VERSION);
	conn_finish(c, 0, NULL);
}

/* reopen every log file, for logrotate's postrotate (also SIGUSR2) */
static void
cmd_reopen(struct conn *c, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		conn_finish(c, CTL_EXIT_USAGE, "Error: reopen takes no argument");
		return;
	}
	sv_reopen_logs(c->sv);
	conn_line(c, "reopened the logs in %s", sv_config(c->sv)->server.logs);
	conn_finish(c, 0, NULL);
}

static const struct {
	const char *verb;
	void (*fn)(struct conn *, int, char **);
} commands[] = {
	{ "status", cmd_status },
	{ "start", cmd_start_stop },
	{ "stop", cmd_start_stop },
	{ "restart", cmd_start_stop },
	{ "reread", cmd_reload },
	{ "update", cmd_reload },
	{ "reload", cmd_reload },
	{ "avail", cmd_avail },
	{ "pid", cmd_pid },
	{ "signal", cmd_signal },
	{ "tail", cmd_tail },
	{ "reopen", cmd_reopen },
	{ "check", cmd_check },
	{ "audit", cmd_audit },
	{ "audit-expect", cmd_audit },
	{ "stats", cmd_stats },
	{ "flush", cmd_queue_op },
	{ "hold", cmd_queue_op },
	{ "release", cmd_queue_op },
	{ "delete", cmd_queue_op },
	{ "requeue", cmd_queue_op },
	{ "shutdown", cmd_shutdown },
	{ "version", cmd_version },
};


static void
control_request(struct conn *c, int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].verb, argv[0]) == 0) {
			commands[i].fn(c, argc, argv);
			return;
		}
	}
	char msg[160];
	snprintf(msg, sizeof(msg), "*** Unknown syntax: %.100s", argv[0]);
	conn_finish(c, CTL_EXIT_USAGE, msg);
}

/* ---- what the supervisor tells us (its observer) ---- */

static void
conn_changed(struct conn *c, void *arg)
{
	(void)arg;
	switch (c->wait) {
	case WAIT_START:
	case WAIT_STOP:
	case WAIT_RESTART:
		waiters_check(c);
		break;
	case WAIT_STATS:
		if (!sv_stats_pending(c->sv))
			stats_answer(c);
		break;
	case WAIT_QUEUE:
		queue_answer(c);
		break;
	case WAIT_NONE:
	case WAIT_TAIL:
		break;
	}
}

struct log_line {
	const char *instance, *line;
};

static void
conn_log_line(struct conn *c, void *arg)
{
	const struct log_line *l = arg;
	if (c->wait == WAIT_TAIL && strcmp(c->tail_inst, l->instance) == 0) {
		conn_text(c, l->line);
		conn_flush(c);
	}
}

static void
obs_started(void *arg)
{
	static const struct ctlconn_handlers h = { control_request, stats_timeout };
	ctlconn_start(arg, &h);
}

static void
obs_stopping(void *arg)
{
	ctlconn_stop(arg);
}

static void
obs_changed(void *arg)
{
	(void)arg;
	ctlconn_each(conn_changed, NULL);
}

static void
obs_log_line(void *arg, const char *instance, const char *line)
{
	(void)arg;
	struct log_line l = { instance, line };
	ctlconn_each(conn_log_line, &l);
}

void
control_attach(struct sv *sv)
{
	struct sv_observer obs = {
		.started = obs_started,
		.stopping = obs_stopping,
		.changed = obs_changed,
		.log_line = obs_log_line,
		.arg = sv,
	};
	sv_observe(sv, &obs);
}
