/*
 * The SMTP session (models: OpenSMTPD smtp_session.c, Postfix smtpd.c).
 *
 * Flow of input: the connection (common/io.h, which owns the socket) reads
 * into its bounded input buffer, session_process() takes complete command
 * lines or message text out of it in order, every reply is appended to its
 * output buffer, and the output is flushed once the batch is processed.
 * Processing pauses (the input stays buffered) while a message waits for its
 * group commit, and while the output holds more than SESSION_OUT_HIGH octets;
 * reading pauses while the input buffer is full. So a client that pipelines a
 * whole transaction in one write gets every reply once, in order, and a client
 * that does not read its replies cannot make the process grow. The session
 * never calls read() or write(): TLS goes under it inside io.c (io_start_tls),
 * so the session only decides when: after its "220 2.0.0 Ready to start TLS"
 * (STARTTLS, RFC 3207) or before its greeting (tls_mode: implicit, RFC 8314).
 *
 * Logs follow Postfix's smtpd word for word (DESIGN.md section 9), so
 * fail2ban's postfix filter and pflogsumm read them unchanged.
 */
#include "instances/session.h"

#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/authproto.h"
#include "common/dsnparam.h"
#include "common/io.h"
#include "common/log.h"
#include "common/spool.h"
#include "common/tls.h"
#include "instances/authc.h"
#include "instances/reader.h"
#include "instances/smtpd.h"
#include "common/address.h"
#include "common/net.h"
#include "common/sasl.h"
#include "profiles/policy.h"

#define SESSION_IN_CAP SMTPD_INBUF
#define SESSION_OUT_HIGH 16384
/* a session stops processing at SESSION_OUT_HIGH; this is the hard stop */
#define SESSION_OUT_MAX (4 * SESSION_OUT_HIGH)
#define SESSION_HELO_MAX 255
/* NOOP, RSET, VRFY and HELP a session may send before each one counts as an
   error (Postfix smtpd_junk_command_limit ${stress?1}{100}) */
#define SESSION_JUNK_LIMIT 100
#define SESSION_JUNK_LIMIT_STRESS 1
/* failed AUTHs in one session before it is closed with 421 4.7.0 */
#define SESSION_AUTH_FAILURES_MAX 3

enum session_state {
	S_NEW,			/* accepted, not greeted */
	S_CONNECTED,		/* greeted, no HELO/EHLO yet */
	S_HELO,			/* HELO/EHLO done; a transaction may be open */
	S_TLS,			/* TLS handshake under way (IO_TLSREADY ends it) */
	S_AUTH,			/* AUTH exchange: client lines go to the SASL
				   state machine, not the command table */
	S_AUTHWAIT,		/* credentials with the auth process (or held
				   back by the failure delay): input waits */
	S_DATA,			/* reading message text */
	S_COMMIT,		/* message submitted, waiting for the group commit */
	S_QUIT,			/* last reply queued: close once it is written */
	S_CLOSED,		/* over (fd -1 sessions stay in this state) */
};

static const char *const state_names[] = {
	"NEW", "CONNECTED", "HELO", "TLS", "AUTH", "AUTHWAIT", "DATA", "COMMIT", "QUIT",
	"CLOSED",
};

/* Postfix's order of the "disconnect from" counters */
enum cmd_id {
	CMD_HELO, CMD_EHLO, CMD_STARTTLS, CMD_AUTH, CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_RSET, CMD_NOOP,
	CMD_VRFY, CMD_EXPN, CMD_HELP, CMD_QUIT, CMD_UNKNOWN, CMD_COUNT
};

/* the recipients of a transaction, to store each one once: an open-addressing
   hash set of canonical addresses (rcpt_key) */
struct rcpt_set {
	char **v;
	size_t n, cap;
};

/* the open mail transaction, MAIL to end of data */
struct tx {
	struct mailaddr sender;
	struct spool_msg *msg;		/* created at the first accepted RCPT */
	char qid[SPOOL_QID_MAX + 1];
	char first_rcpt[ADDR_PATH_MAX + 8];
	unsigned rcpt_ok;
	unsigned overshoot;		/* RCPTs refused over max_recipients */
	struct rcpt_set rcpts;		/* accepted recipients, canonical */
	struct reader_data rd;
	bool too_big;
	bool write_failed;
	int write_errno;		/* of the first failed spool write */
	struct dsnparam_mail dsn;	/* MAIL's RET and ENVID (RFC 3461) */
	uint64_t size;			/* spooled octets, for the log */
};

struct session {
	struct smtpd *sd;
	struct session *next, *prev;		/* sd->sessions */
	struct smtpd_deferred resume;		/* the commit answered: go on */
	struct io *io;
	bool live;			/* on a socket (not an fd -1 session) */
	ev_timer timer;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char ip[64];			/* "192.0.2.7", "2001:db8::1" */
	char client[80];		/* "unknown[192.0.2.7]" */

	enum session_state state;
	char helo[SESSION_HELO_MAX + 1];
	bool esmtp;
	bool tls;			/* the session runs over TLS */
	bool implicit_tls;		/* TLS from the first octet: greet after it */
	char tls_info[128];		/* "TLSv1.3 with cipher ... (256/256 bits)" */
	struct tx *tx;
	const char *last_cmd;		/* for "lost connection after X" */
	int cur_cmd;			/* command being answered, -1 when none */
	unsigned cmd_ok[CMD_COUNT], cmd_total[CMD_COUNT];
	unsigned errors;
	unsigned junk;			/* NOOP, RSET, VRFY, HELP so far */
	bool stressed;			/* was open while the listener was under
					   stress: short deadlines to the end */
	ev_tstamp req_start;		/* the current request (command line, or
					   the message text since 354) began */
	uint64_t data_octets;		/* octets read since 354 */
	bool discard;			/* dropping the rest of an overlong line */
	bool eof;			/* the client closed its side */
	bool dead;			/* to be closed at the end of this callback */
	int commit_result;

	/* SMTP AUTH (RFC 4954) */
	struct sasl sasl;		/* the exchange under way */
	uint32_t auth_id;		/* its request to the auth process, 0 none */
	ev_timer auth_delay;		/* failures of this client: wait first */
	unsigned auth_failures;		/* in this session */
	char auth_user[SASL_USER_MAX + 1];	/* "" until authenticated */
	const char *auth_mech;		/* "PLAIN", "LOGIN" once authenticated */
	struct authproto_answer *auth_addrs;	/* the user's MAIL FROM patterns */

	/* scratch of the current command's check half for its proceed half */
	struct mailaddr arg_addr;
	struct dsnparam_mail arg_dsn_mail;
	struct dsnparam_rcpt arg_dsn_rcpt;

	char line[READER_CMD_PARAM_MAX + 1];
};

struct cmd {
	const char *name;
	const char *logname;		/* in the "disconnect from" line */
	/* syntax and order; sends the error reply and returns -1 */
	int (*check)(struct session *, const char *args);
	/* does the work and sends the reply */
	void (*proceed)(struct session *, const char *args);
};

static void session_settle(struct session *s);
static void session_process(struct session *s);
static void session_tls_ready(struct session *s);
static void session_greet(struct session *s);
static void session_auth_forget(struct session *s);
static void session_auth_line(struct session *s, enum reader_status st, const char *line);
static spool_done_fn session_commit_done;
/* the command table, defined with the commands below */
static const struct cmd commands[CMD_COUNT];

static const char *
session_proto(const struct session *s)
{
	return s->esmtp ? "ESMTP" : "SMTP";
}

static size_t
out_pending(const struct session *s)
{
	return s->io != NULL ? io_out_pending(s->io) : 0;
}

/*
 * Stress (Postfix's ${stress?...}): while at least 4/5 of max_connections
 * are in use, a command line and a message's text get timeouts.stress
 * instead of their usual timeout, and junk commands count as errors sooner.
 * So clients that merely hold connections open are dropped within seconds
 * once they crowd the listener, and their slots go to clients with mail. A
 * session open during stress keeps the short deadlines to its end (as a
 * Postfix smtpd started under stress keeps them): otherwise the first holder
 * dropped would end the stress and give the others their long timeout back.
 */
static bool
session_stress(const struct smtpd *sd)
{
	return (uint64_t)sd->n_sessions * 5 >= (uint64_t)sd->inst->max_connections * 4;
}

/*
 * When the current request must be complete (Postfix smtpd_per_request_deadline):
 * a command line within the command timeout of the previous one; the message
 * text within the data timeout of the 354, extended by one second for every
 * min_data_rate octets received, so a client dripping a byte at a time cannot
 * keep a session open while one that sends at a decent rate always finishes.
 */
static ev_tstamp
session_deadline(const struct session *s)
{
	const struct instance *inst = s->sd->inst;
	double base = s->state == S_DATA ? inst->timeout_data : inst->timeout_command;

	if (s->stressed && inst->timeout_stress < base)
		base = inst->timeout_stress;
	if (s->state == S_DATA)
		base += (double)s->data_octets / (double)inst->min_data_rate;
	return s->req_start + base;
}

/* (re)start the timer for the current deadline */
static void
session_arm_timer(struct session *s)
{
	if (!s->live || s->state == S_CLOSED)
		return;
	ev_tstamp left = session_deadline(s) - ev_now(s->sd->loop);
	ev_timer_stop(s->sd->loop, &s->timer);
	ev_timer_set(&s->timer, left > 0 ? left : 0, 0);
	ev_timer_start(s->sd->loop, &s->timer);
}

/* a new request starts now: a command line came, or a state began */
static void
session_new_request(struct session *s)
{
	if (!s->live)
		return;
	s->req_start = ev_now(s->sd->loop);
	session_arm_timer(s);
}

static void
session_enter_state(struct session *s, enum session_state st)
{
	if (s->state == st)
		return;
	log_debug("%s: state %s -> %s", s->client, state_names[s->state],
	    state_names[st]);
	s->state = st;
	if (st != S_CLOSED)
		session_new_request(s);
}

static void
out_append(struct session *s, const char *buf, size_t len)
{
	if (io_write(s->io, buf, len) == -1) {
		log_warn("%s: output buffer", s->client);
		s->dead = true;
	}
}

/*
 * Queue one reply (a multi-line reply has its inner CRLFs). A 4xx/5xx counts
 * as an error of the session (Postfix smtpd_hard_error_limit) unless it is
 * uncounted; a 2xx/3xx marks the command being answered as successful for the
 * disconnect line.
 */
static void
session_vreply(struct session *s, bool counted, const char *fmt, va_list ap)
{
	char buf[1024];

	int n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 3)
		n = (int)sizeof(buf) - 3;
	log_debug("%s: > %.*s", s->client, (int)strcspn(buf, "\r"), buf);
	buf[n++] = '\r';
	buf[n++] = '\n';
	out_append(s, buf, (size_t)n);
	if (buf[0] == '4' || buf[0] == '5') {
		if (counted)
			s->errors++;
	} else if (s->cur_cmd >= 0) {
		s->cmd_ok[s->cur_cmd]++;
	}
	s->cur_cmd = -1;
}

static void __attribute__((format(printf, 2, 3)))
session_reply(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_vreply(s, true, fmt, ap);
	va_end(ap);
}

/* a 4xx the client is expected to act on without being at fault (recipients
   over max_recipients: it sends them again in another transaction) */
static void __attribute__((format(printf, 2, 3)))
session_reply_uncounted(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	session_vreply(s, false, fmt, ap);
	va_end(ap);
}

/* "NOQUEUE: reject: RCPT from unknown[IP]: 554 5.7.1 ...; from=<> to=<> proto=ESMTP helo=<h>" */
static void
session_log_reject(struct session *s, const char *stage, const char *reply,
    const char *to)
{
	const char *qid = s->tx != NULL && s->tx->msg != NULL ? s->tx->qid : "NOQUEUE";
	char from[ADDR_PATH_MAX + 16] = "", rcpt[ADDR_PATH_MAX + 16] = "";

	if (s->tx != NULL)
		snprintf(from, sizeof(from), " from=<%s>", s->tx->sender.text);
	else if (strcmp(stage, "MAIL") == 0)
		snprintf(from, sizeof(from), " from=<%s>", s->arg_addr.text);
	if (to != NULL)
		snprintf(rcpt, sizeof(rcpt), " to=<%s>", to);
	if (s->helo[0] != '\0')
		log_info("%s: reject: %s from %s: %s;%s%s proto=%s helo=<%s>", qid, stage,
		    s->client, reply, from, rcpt, session_proto(s), s->helo);
	else
		log_info("%s: reject: %s from %s: %s;%s%s proto=%s", qid, stage,
		    s->client, reply, from, rcpt, session_proto(s));
}

/* a reply that is also logged as a Postfix "reject:" line */
static void __attribute__((format(printf, 4, 5)))
session_reject(struct session *s, const char *stage, const char *to,
    const char *fmt, ...)
{
	char buf[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	session_reply(s, "%s", buf);
	session_log_reject(s, stage, buf, to);
}

/*
 * The key two recipients are the same mailbox by: the canonical address
 * (quotes and escapes resolved, domain lowercased without its trailing dot)
 * with the local part folded too. RFC 5321 2.4 lets a local part be case
 * sensitive but discourages using that; Postfix's local delivery folds it.
 */
static void
rcpt_key(const struct mailaddr *a, char *key, size_t len)
{
	size_t i;

	for (i = 0; a->text[i] != '\0' && i + 1 < len; i++)
		key[i] = (char)tolower((unsigned char)a->text[i]);
	key[i] = '\0';
}

static size_t
rcpt_hash(const char *key)
{
	size_t h = 14695981039346656037u;	/* FNV-1a */

	for (; *key != '\0'; key++)
		h = (h ^ (unsigned char)*key) * 1099511628211u;
	return h;
}

static bool
rcpt_set_has(const struct rcpt_set *set, const char *key)
{
	if (set->cap == 0)
		return false;
	for (size_t j = rcpt_hash(key) & (set->cap - 1); set->v[j] != NULL;
	    j = (j + 1) & (set->cap - 1))
		if (strcmp(set->v[j], key) == 0)
			return true;
	return false;
}

/* key is not in the set yet; -1: out of memory */
static int
rcpt_set_add(struct rcpt_set *set, const char *key)
{
	if (2 * (set->n + 1) > set->cap) {
		size_t cap = set->cap == 0 ? 16 : set->cap * 2;
		char **v = calloc(cap, sizeof(*v));
		if (v == NULL)
			return -1;
		for (size_t i = 0; i < set->cap; i++) {
			if (set->v[i] == NULL)
				continue;
			size_t j = rcpt_hash(set->v[i]) & (cap - 1);
			while (v[j] != NULL)
				j = (j + 1) & (cap - 1);
			v[j] = set->v[i];
		}
		free(set->v);
		set->v = v;
		set->cap = cap;
	}
	size_t j = rcpt_hash(key) & (set->cap - 1);
	while (set->v[j] != NULL)
		j = (j + 1) & (set->cap - 1);
	if ((set->v[j] = strdup(key)) == NULL)
		return -1;
	set->n++;
	return 0;
}

static void
rcpt_set_free(struct rcpt_set *set)
{
	for (size_t i = 0; i < set->cap; i++)
		free(set->v[i]);
	free(set->v);
	memset(set, 0, sizeof(*set));
}

static void
tx_free(struct session *s)
{
	struct tx *tx = s->tx;

	if (tx == NULL)
		return;
	if (tx->msg != NULL)
		spool_msg_abort(tx->msg);
	rcpt_set_free(&tx->rcpts);
	free(tx);
	s->tx = NULL;
}

/* ---- I/O ---------------------------------------------------------------- */

/* the connection failed (reset, broken pipe, or worse: that one is logged) */
static void
session_lost(struct session *s, int err)
{
	if (err != EPIPE && err != ECONNRESET)
		log_warnx("connection with %s: %s", s->client, strerror(err));
	if (s->state != S_QUIT)
		log_info("lost connection after %s from %s", s->last_cmd, s->client);
	s->dead = true;
}

static void
session_flush(struct session *s)
{
	if (!s->live || s->dead)
		return;
	if (io_flush(s->io) == -1)
		session_lost(s, errno);
}

static void
session_update_io(struct session *s)
{
	if (!s->live)
		return;
	io_set_read(s->io, !s->eof && s->state != S_QUIT && s->state != S_CLOSED &&
	    out_pending(s) < SESSION_OUT_HIGH);
}

/* the "disconnect from" line: "ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4" */
static void
session_log_disconnect(struct session *s)
{
	char buf[512];
	size_t off = 0;
	unsigned ok = 0, total = 0;

	buf[0] = '\0';
	for (int i = 0; i < CMD_COUNT; i++) {
		if (s->cmd_total[i] == 0)
			continue;
		ok += s->cmd_ok[i];
		total += s->cmd_total[i];
		if (s->cmd_ok[i] == s->cmd_total[i])
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %s=%u",
			    commands[i].logname, s->cmd_ok[i]);
		else
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %s=%u/%u",
			    commands[i].logname, s->cmd_ok[i], s->cmd_total[i]);
	}
	/* Postfix writes "commands=0/0" for a session without commands */
	if (ok == total && total > 0)
		log_info("disconnect from %s%s commands=%u", s->client, buf, ok);
	else
		log_info("disconnect from %s%s commands=%u/%u", s->client, buf, ok, total);
}

/* end of the session: log, release everything but the struct itself */
static void
session_close(struct session *s)
{
	struct smtpd *sd = s->sd;

	if (s->state == S_CLOSED)
		return;
	if (s->state == S_COMMIT && sd->spool != NULL)
		spool_cancel_callback(sd->spool, s);
	smtpd_defer_cancel(sd, &s->resume);
	tx_free(s);
	session_auth_forget(s);
	session_log_disconnect(s);
	if (s->live) {
		ev_timer_stop(sd->loop, &s->timer);
		/* io_free drains unread input first: close() would otherwise send a
		   RST that can destroy our last reply (421, 521) */
		io_free(s->io);
		s->io = NULL;
	} else if (s->io != NULL) {
		io_discard_input(s->io);	/* the output stays for the test */
	}
	smtpd_client_add(sd, s->ip, -1);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sd->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	sd->n_sessions--;
	s->state = S_CLOSED;
	smtpd_session_gone(sd);
}

/*
 * The end of every entry point (read, write, timer, resume): write what is
 * queued, close when the session is over, else adjust the watchers. The
 * session may be freed here, so callers must not touch it afterwards.
 */
static void
session_settle(struct session *s)
{
	bool real = s->live;

	if (s->state == S_CLOSED)
		return;
	session_flush(s);
	/* output drained: go on with commands held back by the output mark */
	while (!s->dead && s->live && out_pending(s) < SESSION_OUT_HIGH &&
	    io_datalen(s->io) > 0) {
		size_t before = io_datalen(s->io);
		session_process(s);
		if (io_datalen(s->io) == before)
			break;		/* nothing complete left: wait for input */
		session_flush(s);
	}
	if (!s->dead && s->eof && s->state != S_COMMIT && s->state != S_QUIT) {
		/* everything the client sent before closing has been answered */
		log_info("lost connection after %s from %s", s->last_cmd, s->client);
		s->dead = true;
	}
	if (!s->dead && s->state == S_QUIT && out_pending(s) == 0)
		s->dead = true;
	if (s->dead || (s->state == S_QUIT && !s->live)) {
		session_close(s);
		if (real)
			free(s);
		return;
	}
	session_update_io(s);
}

/* what the connection reports (common/io.h) */
static void
session_io_cb(struct io *io, enum io_event ev, void *arg)
{
	struct session *s = arg;

	(void)io;
	switch (ev) {
	case IO_DATAIN:
		session_process(s);
		break;
	case IO_EOF:
		s->eof = true;
		session_process(s);
		break;
	case IO_LOWAT:
		/* output drained below the mark: settle goes on with held input */
		break;
	case IO_ERROR:
		if (io_errno(io) == EPROTO && s->state == S_TLS) {
			/* Postfix: "SSL_accept error from unknown[IP]: -1" */
			log_info("SSL_accept error from %s: %s", s->client,
			    io_tls_error(io));
			log_info("lost connection after %s from %s", s->last_cmd,
			    s->client);
			s->dead = true;
		} else if (io_errno(io) == EPROTO) {
			log_warnx("TLS library problem with %s: %s", s->client,
			    io_tls_error(io));
			session_lost(s, EPROTO);
		} else {
			session_lost(s, io_errno(io));
		}
		break;
	case IO_TLSREADY:
		session_tls_ready(s);
		break;
	case IO_CONNECTED:
	case IO_TIMEOUT:
		/* not used: an accepted connection, and deadlines of our own */
		break;
	}
	session_settle(s);
}

static void
session_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;

	(void)revents;
	/* octets came, or the stress ended, since the timer was set */
	if (s->state != S_QUIT && session_deadline(s) > ev_now(loop) + 0.001) {
		session_arm_timer(s);
		return;
	}
	session_timeout(s);
}

void
session_timeout(struct session *s)
{
	if (s->state == S_CLOSED)
		return;
	if (s->state == S_COMMIT || s->state == S_AUTHWAIT) {
		/* waiting on our own commit, or on the auth process (which has
		   a timeout of its own), is not the client's fault */
		return;
	}
	if (s->state == S_QUIT) {
		/* the client does not read its last reply */
		s->dead = true;
		session_settle(s);
		return;
	}
	log_info("timeout after %s from %s", s->last_cmd, s->client);
	if (s->state == S_TLS) {
		/* mid-handshake: a reply could go neither in clear nor in TLS */
		s->dead = true;
		session_settle(s);
		return;
	}
	s->cur_cmd = -1;
	session_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->sd->hostname);
	session_enter_state(s, S_QUIT);
	session_settle(s);
}

/* ---- commands ----------------------------------------------------------- */

static void
session_bare_newline(struct session *s, enum reader_status st)
{
	const char *what = st == READER_BARE_LF ? "<LF>" : "<CR>";

	s->cur_cmd = -1;
	log_info("bare %s received after %s from %s", what, s->last_cmd, s->client);
	session_reply(s, "521 5.5.2 %s Error: bare %s received", s->sd->hostname, what);
	session_enter_state(s, S_QUIT);
}

/* copy a HELO argument for logs and the Received: header: printable ASCII only */
static void
session_set_helo(struct session *s, const char *arg)
{
	size_t i;

	for (i = 0; arg[i] != '\0' && arg[i] != ' ' && i < SESSION_HELO_MAX; i++) {
		unsigned char c = (unsigned char)arg[i];
		s->helo[i] = c > 32 && c < 127 && c != '<' && c != '>' ? (char)c : '?';
	}
	s->helo[i] = '\0';
}

static int
check_helo(struct session *s, const char *args)
{
	if (args[0] == '\0') {
		session_reply(s, "501 5.5.4 Syntax: %s hostname",
		    s->cur_cmd == CMD_EHLO ? "EHLO" : "HELO");
		return -1;
	}
	return 0;
}

/* STARTTLS is offered only with a certificate, in clear, on a STARTTLS
   instance (RFC 3207: never again once TLS is on) */
static bool
session_offers_starttls(const struct session *s)
{
	return s->sd->tls != NULL && s->live && !s->tls &&
	    s->sd->inst->tls_mode == TLS_MODE_STARTTLS;
}

/* AUTH over TLS, or in clear to a loopback client when the instance says
   auth_plaintext_loopback (RFC 4954 section 4: no plaintext passwords on an
   unprotected network) */
static bool
session_auth_plaintext_ok(const struct session *s)
{
	return s->tls || (s->sd->inst->auth_plaintext_loopback &&
	    net_sockaddr_is_loopback((const struct sockaddr *)&s->ss));
}

static bool
session_offers_auth(const struct session *s)
{
	return s->sd->authc != NULL && session_auth_plaintext_ok(s);
}

static void
proceed_helo(struct session *s, const char *args)
{
	tx_free(s);
	session_set_helo(s, args);
	s->esmtp = false;
	session_enter_state(s, S_HELO);
	session_reply(s, "250 %s", s->sd->hostname);
}

static void
proceed_ehlo(struct session *s, const char *args)
{
	tx_free(s);
	session_set_helo(s, args);
	s->esmtp = true;
	session_enter_state(s, S_HELO);
	session_reply(s, "250-%s\r\n250-PIPELINING\r\n250-SIZE %" PRIu64
	    "\r\n250-8BITMIME\r\n%s%s250-DSN\r\n250 ENHANCEDSTATUSCODES", s->sd->hostname,
	    s->sd->inst->max_message_size,
	    session_offers_starttls(s) ? "250-STARTTLS\r\n" : "",
	    session_offers_auth(s) ? "250-AUTH " SASL_EHLO_MECHS "\r\n" : "");
}

static int
check_starttls(struct session *s, const char *args)
{
	if (!session_offers_starttls(s)) {
		session_reply(s, s->tls ? "554 5.5.1 Error: TLS already active" :
		    "502 5.5.1 Error: command not implemented");
		return -1;
	}
	if (args[0] != '\0') {
		session_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return -1;
	}
	if (s->tx != NULL) {
		session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return -1;
	}
	return 0;
}

/*
 * "220 2.0.0 Ready to start TLS" goes in clear, then the handshake. Whatever
 * the client pipelined after the command came in clear too and must not be
 * taken as if it came through TLS (CVE-2011-0411): it is dropped here, and
 * the IO layer feeds everything read from now on to the TLS engine.
 */
static void
proceed_starttls(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, "220 2.0.0 Ready to start TLS");
	size_t dropped = io_discard_input(s->io);
	if (dropped > 0)
		log_info("%s: %zu octets pipelined after STARTTLS discarded", s->client,
		    dropped);
	if (io_start_tls(s->io, s->sd->tls) == -1) {
		log_warnx("%s: cannot start TLS: %s", s->client, io_tls_error(s->io));
		s->dead = true;
		return;
	}
	session_enter_state(s, S_TLS);
}

/*
 * The handshake completed. RFC 3207 section 4.2: the client must discard what
 * it knew of the server and the server what it knew of the client, so the
 * session is back to before EHLO: no HELO name, no transaction. With implicit
 * TLS this is where the session starts.
 */
static void
session_tls_ready(struct session *s)
{
	s->tls = true;
	io_tls_describe(s->io, s->tls_info, sizeof(s->tls_info));
	/* Postfix's words, which log analysers know */
	log_info("Anonymous TLS connection established from %s: %s", s->client,
	    s->tls_info);
	tx_free(s);
	session_auth_forget(s);
	s->helo[0] = '\0';
	s->esmtp = false;
	if (s->implicit_tls) {
		session_greet(s);
		return;
	}
	session_enter_state(s, S_CONNECTED);
}

static const char *
skip_spaces(const char *p)
{
	while (*p == ' ')
		p++;
	return p;
}

/*
 * RFC 3461 parameters of MAIL (RET, ENVID) and RCPT (NOTIFY, ORCPT): the raw
 * parameter (n octets, untruncated, so a value over its limit is refused as
 * such); 1 taken, 0 not a DSN parameter, -1 refused (the reply is sent).
 */
static int
mail_param_dsn(struct session *s, const char *param, size_t n)
{
	const char *reply;
	int r = dsnparam_mail(&s->arg_dsn_mail, param, n, &reply);
	if (r == -1)
		session_reply(s, "%s", reply);
	return r;
}

/* every parameter after RCPT TO's address: only NOTIFY and ORCPT exist */
static int
rcpt_params(struct session *s, const char *p)
{
	memset(&s->arg_dsn_rcpt, 0, sizeof(s->arg_dsn_rcpt));
	while (*(p = skip_spaces(p)) != '\0') {
		size_t n = strcspn(p, " ");
		const char *reply;
		int r = dsnparam_rcpt(&s->arg_dsn_rcpt, p, n, &reply);
		if (r == -1) {
			session_reply(s, "%s", reply);
			return -1;
		}
		if (r == 0) {
			session_reply(s, "555 5.5.4 Unsupported option: %.*s",
			    (int)(n < 127 ? n : 127), p);
			return -1;
		}
		p += n;
	}
	return 0;
}

/*
 * MAIL FROM's AUTH= parameter (RFC 4954 section 5): the identity that
 * submitted the message originally, as xtext (RFC 3461), or <>. Accepted with
 * or without AUTH; we keep no trust in it (a relay of ours would send AUTH=<>
 * for an unauthenticated client), so only its syntax is checked.
 */
static int
check_mail_auth_param(struct session *s, const char *v)
{
	if (strcmp(v, "<>") == 0)
		return 0;
	if (*v == '\0')
		goto bad;
	for (const char *p = v; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '+') {
			if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]) ||
			    islower((unsigned char)p[1]) || islower((unsigned char)p[2]))
				goto bad;
			p += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			goto bad;
		}
	}
	return 0;
bad:
	session_reply(s, "501 5.5.4 Syntax: AUTH=xtext or AUTH=<>");
	return -1;
}

/* sender_login_match (Postfix reject_sender_login_mismatch for an
   authenticated client): MAIL FROM must be one of the user's patterns (the
   password file's third field); the null sender is not checked */
static int
check_sender_login(struct session *s)
{
	const struct profile *p = s->sd->inst->profile;
	if (p == NULL || !p->sender_login_match || s->auth_user[0] == '\0' ||
	    s->arg_addr.null)
		return 0;
	const struct authproto_answer *a = s->auth_addrs;
	for (const char *pat = a != NULL ? authproto_answer_next_addr(a, NULL) : NULL;
	    pat != NULL; pat = authproto_answer_next_addr(a, pat))
		if (address_match_pattern(&s->arg_addr, pat))
			return 0;
	session_reject(s, "MAIL", NULL, "553 5.7.1 <%s>: Sender address rejected: not "
	    "owned by user %s", s->arg_addr.text, s->auth_user);
	return -1;
}

static int
check_mail(struct session *s, const char *args)
{
	const char *err;
	size_t end;

	if (s->state == S_CONNECTED) {
		session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return -1;
	}
	if (s->tx != NULL) {
		session_reply(s, "503 5.5.1 Error: nested MAIL command");
		return -1;
	}
	if (s->sd->inst->require_tls && !s->tls) {
		session_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
		return -1;
	}
	if (strncasecmp(args, "FROM:", 5) != 0) {
		session_reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return -1;
	}
	const char *p = skip_spaces(args + 5);
	if (address_parse_path(p, strlen(p), &s->arg_addr, &end, &err) == -1) {
		log_debug("%s: sender %s: %s", s->client, p, err);
		session_reply(s, "501 5.1.7 Bad sender address syntax");
		return -1;
	}
	/* ESMTP parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 3461 RET ENVID) */
	p += end;
	memset(&s->arg_dsn_mail, 0, sizeof(s->arg_dsn_mail));
	while (*(p = skip_spaces(p)) != '\0') {
		char param[128];
		size_t n = strcspn(p, " ");
		snprintf(param, sizeof(param), "%.*s", (int)(n < 127 ? n : 127), p);
		int dsn = mail_param_dsn(s, p, n);
		p += n;
		if (dsn == -1)
			return -1;
		if (dsn == 1)
			continue;
		if (strncasecmp(param, "SIZE=", 5) == 0) {
			/* RFC 1870: any number of digits is valid syntax; a value
			   over the limit, including one no integer type holds, is
			   552 5.3.4, never a syntax error */
			const char *v = param + 5;
			uint64_t size = 0;
			bool over = false;
			if (*v == '\0' || strspn(v, "0123456789") != strlen(v)) {
				session_reply(s, "501 5.5.4 Bad message size syntax");
				return -1;
			}
			for (; *v != '\0' && !over; v++) {
				unsigned d = (unsigned)(*v - '0');
				if (size > (UINT64_MAX - d) / 10)
					over = true;
				else
					size = size * 10 + d;
			}
			if (over || n > 127 || size > s->sd->inst->max_message_size) {
				session_reject(s, "MAIL", NULL,
				    "552 5.3.4 Message size exceeds fixed limit");
				return -1;
			}
		} else if (strncasecmp(param, "BODY=", 5) == 0) {
			if (strcasecmp(param + 5, "7BIT") != 0 &&
			    strcasecmp(param + 5, "8BITMIME") != 0) {
				session_reply(s, "501 5.5.4 Bad BODY keyword value");
				return -1;
			}
		} else if (strncasecmp(param, "AUTH=", 5) == 0) {
			if (check_mail_auth_param(s, param + 5) == -1)
				return -1;
		} else {
			session_reply(s, "555 5.5.4 Unsupported option: %s", param);
			return -1;
		}
	}
	return check_sender_login(s);
}

static void
proceed_mail(struct session *s, const char *args)
{
	(void)args;
	struct tx *tx = calloc(1, sizeof(*tx));
	if (tx == NULL) {
		log_warn("%s: transaction", s->client);
		session_reply(s, "451 4.3.0 Error: out of memory");
		return;
	}
	tx->sender = s->arg_addr;
	tx->dsn = s->arg_dsn_mail;
	s->tx = tx;
	session_reply(s, "250 2.1.0 Ok");
}

static int
check_rcpt(struct session *s, const char *args)
{
	const char *err;
	size_t end;

	if (s->tx == NULL) {
		session_reply(s, "503 5.5.1 Error: need MAIL command");
		return -1;
	}
	if (strncasecmp(args, "TO:", 3) != 0) {
		session_reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return -1;
	}
	const char *p = skip_spaces(args + 3);
	if (address_parse_path(p, strlen(p), &s->arg_addr, &end, &err) == -1 ||
	    s->arg_addr.null) {
		log_debug("%s: recipient %s: %s", s->client, p,
		    s->arg_addr.null ? "null" : err);
		session_reply(s, "501 5.1.3 Bad recipient address syntax");
		return -1;
	}
	if (rcpt_params(s, p + end) == -1)
		return -1;
	if (s->tx->rcpt_ok >= s->sd->inst->max_recipients) {
		/* RFC 5321 4.5.3.1.10: the client sends the rest in another
		   transaction; only a client that goes on far past the limit
		   (Postfix smtpd_recipient_overshoot_limit) is at fault */
		if (++s->tx->overshoot <= s->sd->inst->recipient_overshoot_limit)
			session_reply_uncounted(s, "452 4.5.3 Error: too many recipients");
		else
			session_reply(s, "452 4.5.3 Error: too many recipients");
		return -1;
	}
	return 0;
}

/* the first accepted recipient opens the queue file, as in Postfix */
static int
tx_open_msg(struct session *s)
{
	struct tx *tx = s->tx;
	struct smtpd *sd = s->sd;

	if (sd->spool == NULL || (tx->msg = spool_msg_begin(sd->spool)) == NULL)
		return -1;
	snprintf(tx->qid, sizeof(tx->qid), "%s", spool_msg_qid(tx->msg));
	if (spool_msg_set_sender(tx->msg, tx->sender.text) == -1 ||
	    spool_msg_set_attr(tx->msg, "client", s->ip) == -1 ||
	    spool_msg_set_attr(tx->msg, "helo", s->helo) == -1 ||
	    spool_msg_set_attr(tx->msg, "instance", sd->inst->name) == -1 ||
	    spool_msg_set_attr(tx->msg, "proto", session_proto(s)) == -1 ||
	    spool_msg_set_dsn(tx->msg, (int)tx->dsn.ret,
	    tx->dsn.has_envid ? tx->dsn.envid : NULL) == -1) {
		spool_msg_abort(tx->msg);
		tx->msg = NULL;
		return -1;
	}
	if (s->auth_user[0] != '\0')
		log_info("%s: client=%s, sasl_method=%s, sasl_username=%s", tx->qid,
		    s->client, s->auth_mech, s->auth_user);
	else
		log_info("%s: client=%s", tx->qid, s->client);
	return 0;
}

static void
proceed_rcpt(struct session *s, const char *args)
{
	struct tx *tx = s->tx;
	struct mailaddr rcpt = s->arg_addr;
	struct policy_result res;
	struct policy_ctx ctx = {
		.cfg = s->sd->cfg,
		.inst = s->sd->inst,
		.client = (const struct sockaddr *)&s->ss,
		.sender = &tx->sender,
		.authenticated = s->auth_user[0] != '\0',
	};

	(void)args;
	memset(&res, 0, sizeof(res));
	if (policy_check_rcpt(&ctx, &rcpt, &res) == -1)
		res.answer = POLICY_ERROR;
	if (res.answer != POLICY_OK) {
		if (res.code < 400 || res.code > 599 || res.enhanced[0] == '\0') {
			/* an error never turns into a permit, nor into a bogus reply */
			res.code = 451;
			snprintf(res.enhanced, sizeof(res.enhanced), "4.3.5");
			snprintf(res.text, sizeof(res.text),
			    "<%s>: Server configuration error", rcpt.text);
		}
		if (res.relay_denied)
			s->sd->stats.relay_refused++;
		session_reject(s, "RCPT", rcpt.text, "%d %s %s", res.code, res.enhanced,
		    res.text);
		return;
	}
	if (tx->msg == NULL && tx_open_msg(s) == -1) {
		session_reply(s, "451 4.3.0 Error: queue file write error");
		return;
	}
	char key[sizeof(rcpt.text)];
	rcpt_key(&rcpt, key, sizeof(key));
	if (rcpt_set_has(&tx->rcpts, key)) {
		/* the same mailbox again: accepted, stored once (Postfix's cleanup
		   drops duplicate recipients the same way) */
		session_reply(s, "250 2.1.5 Ok");
		return;
	}
	if (spool_msg_add_rcpt(tx->msg, rcpt.text) == -1 ||
	    spool_msg_set_rcpt_dsn(tx->msg, s->arg_dsn_rcpt.notify,
	    s->arg_dsn_rcpt.has_orcpt ? s->arg_dsn_rcpt.orcpt : NULL) == -1) {
		session_reply(s, "451 4.3.0 Error: queue file write error");
		return;
	}
	/* out of memory here costs at worst a duplicate, never a recipient */
	if (rcpt_set_add(&tx->rcpts, key) == -1)
		log_warn("%s: recipient list", s->client);
	if (tx->rcpt_ok++ == 0)
		snprintf(tx->first_rcpt, sizeof(tx->first_rcpt), "%s", rcpt.text);
	session_reply(s, "250 2.1.5 Ok");
}

static int
check_data(struct session *s, const char *args)
{
	if (s->tx == NULL) {
		session_reply(s, "503 5.5.1 Error: need RCPT command");
		return -1;
	}
	if (s->tx->rcpt_ok == 0) {
		if (s->cmd_total[CMD_RCPT] > 0)
			session_reply(s, "554 5.5.1 Error: no valid recipients");
		else
			session_reply(s, "503 5.5.1 Error: need RCPT command");
		return -1;
	}
	if (args[0] != '\0') {
		session_reply(s, "501 5.5.4 Syntax: DATA");
		return -1;
	}
	return 0;
}

/* "Received: from HELO (unknown [IP]) by HOST (relayvisor) with ESMTP id QID
   for <rcpt>; DATE", folded as Postfix folds it */
static int
tx_write_received(struct session *s, const char **error_r)
{
	struct tx *tx = s->tx;
	char date[64], addr[80], for_rcpt[ADDR_PATH_MAX + 24] = "", buf[1024];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
	if (strchr(s->ip, ':') != NULL)
		snprintf(addr, sizeof(addr), "IPv6:%s", s->ip);
	else
		snprintf(addr, sizeof(addr), "%s", s->ip);
	if (tx->rcpt_ok == 1)
		snprintf(for_rcpt, sizeof(for_rcpt), "\r\n\tfor <%s>", tx->first_rcpt);
	/* RFC 3848: ESMTPS when the message came over TLS; Postfix's "(using ...)" */
	char using[192] = "";
	if (s->tls)
		snprintf(using, sizeof(using), "\r\n\t(using %s)\r\n\t(No client "
		    "certificate requested)", s->tls_info);
	int n = snprintf(buf, sizeof(buf),
	    "Received: from %s (unknown [%s])%s\r\n\tby %s (relayvisor) with %s%s id "
	    "%s%s; %s\r\n", s->helo, addr, using, s->sd->hostname, session_proto(s),
	    s->tls ? "S" : "", tx->qid, for_rcpt, date);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		*error_r = "Received: header too long";
		return -1;
	}
	return spool_msg_write(tx->msg, buf, (size_t)n, error_r);
}

/* a spool write failed (errno says why): the message is refused at its end */
static void
tx_write_failed(struct tx *tx, const char *err)
{
	tx->write_errno = errno;
	log_warnx("%s: spool write: %s", tx->qid, err);
	tx->write_failed = true;
}

static void
proceed_data(struct session *s, const char *args)
{
	const char *err;

	(void)args;
	reader_data_init(&s->tx->rd);
	s->data_octets = 0;
	if (tx_write_received(s, &err) == -1)
		tx_write_failed(s->tx, err);
	/* DATA counts as successful only once the message is queued */
	s->cur_cmd = -1;
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	session_enter_state(s, S_DATA);
}

static void
proceed_rset(struct session *s, const char *args)
{
	(void)args;
	tx_free(s);
	session_reply(s, "250 2.0.0 Ok");
}

static int
check_noargs(struct session *s, const char *args)
{
	if (args[0] != '\0' && s->cur_cmd == CMD_RSET) {
		session_reply(s, "501 5.5.4 Syntax: RSET");
		return -1;
	}
	return 0;
}

static void
proceed_noop(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, "250 2.0.0 Ok");
}

static int
check_vrfy(struct session *s, const char *args)
{
	if (args[0] == '\0') {
		session_reply(s, "501 5.5.4 Syntax: VRFY address");
		return -1;
	}
	return 0;
}

static void
proceed_vrfy(struct session *s, const char *args)
{
	(void)args;
	/* RFC 5321 3.5.3: 252 when we will not say; no address harvesting */
	session_reply(s, "252 2.5.2 Cannot VRFY user; try RCPT to attempt delivery");
}

static int
check_expn(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, "502 5.5.1 Error: EXPN not supported");
	return -1;
}

static void
proceed_help(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP"
	    " QUIT VRFY HELP");
}

static void
proceed_quit(struct session *s, const char *args)
{
	(void)args;
	session_reply(s, "221 2.0.0 Bye");
	session_enter_state(s, S_QUIT);
}

/* ---- AUTH (RFC 4954) ----------------------------------------------------- */

/*
 * AUTH PLAIN and LOGIN: common/sasl.h runs the exchange (334 challenges,
 * base64, "*" cancels), the auth process checks the credentials
 * (instances/authc.h) while the session waits in S_AUTHWAIT without blocking
 * the loop. Failures are logged in Postfix's words, which fail2ban's
 * postfix[mode=auth] filter reads:
 *   warning: unknown[192.0.2.1]: SASL PLAIN authentication failed: authentication failure
 * SESSION_AUTH_FAILURES_MAX failures end the session (421 4.7.0); failures of
 * an address across sessions delay its next AUTH (authfail_delay).
 */

static int
check_auth(struct session *s, const char *args)
{
	if (s->sd->authc == NULL) {
		session_reply(s, "503 5.5.1 Error: authentication not enabled");
		return -1;
	}
	if (s->state == S_CONNECTED) {
		session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return -1;
	}
	if (s->auth_user[0] != '\0') {
		session_reply(s, "503 5.5.1 Error: already authenticated");
		return -1;
	}
	if (s->tx != NULL) {
		session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
		return -1;
	}
	if (!session_auth_plaintext_ok(s)) {
		session_reply(s, "538 5.7.11 Encryption required for requested "
		    "authentication mechanism");
		return -1;
	}
	if (args[0] == '\0') {
		session_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
		return -1;
	}
	return 0;
}

/* one more failed AUTH: the third of the session closes it */
static void
session_auth_failed(struct session *s)
{
	if (++s->auth_failures < SESSION_AUTH_FAILURES_MAX)
		return;
	log_info("too many failed AUTH from %s", s->client);
	s->cur_cmd = -1;
	session_reply(s, "421 4.7.0 %s Error: too many failed authentications, closing "
	    "connection", s->sd->hostname);
	session_enter_state(s, S_QUIT);
}

/* the auth process answered (or the request failed or timed out) */
static void
session_auth_done(void *arg, const struct authproto_answer *a)
{
	struct session *s = arg;
	struct smtpd *sd = s->sd;
	const char *mech = sasl_mech_name(sasl_mech(&s->sasl));

	s->auth_id = 0;
	if (s->state != S_AUTHWAIT)
		return;
	session_enter_state(s, S_HELO);
	s->cur_cmd = CMD_AUTH;
	if (a->result == AUTHPROTO_OK &&
	    (s->auth_addrs = malloc(sizeof(*s->auth_addrs))) != NULL) {
		*s->auth_addrs = *a;
		snprintf(s->auth_user, sizeof(s->auth_user), "%s",
		    a->user[0] != '\0' ? a->user : sasl_user(&s->sasl));
		s->auth_mech = mech;
		authfail_clear(sd->authfail, s->ip);
		session_reply(s, "235 2.7.0 Authentication successful");
	} else if (a->result == AUTHPROTO_FAIL) {
		log_warnx("%s: SASL %s authentication failed: %s", s->client, mech,
		    a->reason[0] != '\0' ? a->reason : "authentication failure");
		authfail_record(sd->authfail, s->ip, time(NULL));
		session_reply(s, "535 5.7.8 Authentication credentials invalid");
		session_auth_failed(s);
	} else {
		/* not the client's fault: not counted, and worded so that fail2ban's
		   filter does not take it for a guess */
		log_warnx("%s: SASL %s authentication not checked: %s", s->client, mech,
		    a->result == AUTHPROTO_OK ? "out of memory" : a->reason);
		session_reply_uncounted(s, "454 4.7.0 Temporary authentication failure");
	}
	sasl_reset(&s->sasl);
	session_process(s);
	session_settle(s);
}

/* the credentials to the auth process */
static void
session_auth_send(struct session *s)
{
	struct authproto_request r;
	memset(&r, 0, sizeof(r));
	r.mech = sasl_mech(&s->sasl);
	r.secured = s->tls;
	snprintf(r.client, sizeof(r.client), "%s", s->ip);
	snprintf(r.user, sizeof(r.user), "%s", sasl_user(&s->sasl));
	snprintf(r.password, sizeof(r.password), "%s", sasl_password(&s->sasl));
	s->auth_id = authc_request(s->sd->authc, &r, session_auth_done, s);
	/* the password has left the session (authc wiped its copy); the user
	   name stays until the answer, for the log */
	OPENSSL_cleanse(s->sasl.password, sizeof(s->sasl.password));
}

static void
session_auth_delay_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct session *s = w->data;
	(void)loop;
	(void)revents;
	if (s->state == S_AUTHWAIT && s->auth_id == 0)
		session_auth_send(s);
}

/* the exchange went one step: ask, challenge again, or end it */
static void
session_auth_step(struct session *s, enum sasl_status st)
{
	switch (st) {
	case SASL_CONTINUE:
		s->cur_cmd = -1;	/* a 334 is no success yet */
		session_reply(s, "%s", sasl_reply(&s->sasl));
		session_enter_state(s, S_AUTH);
		return;
	case SASL_ERROR:
		session_reply(s, "%s", sasl_reply(&s->sasl));
		sasl_reset(&s->sasl);
		session_enter_state(s, S_HELO);
		session_auth_failed(s);
		return;
	case SASL_CHECK: {
		session_enter_state(s, S_AUTHWAIT);
		double delay = authfail_delay(s->sd->authfail, s->ip, time(NULL));
		if (delay > 0 && s->live) {
			log_info("%s: AUTH delayed %gs after %u failures", s->client, delay,
			    authfail_count(s->sd->authfail, s->ip, time(NULL)));
			ev_timer_set(&s->auth_delay, delay, 0);
			ev_timer_start(s->sd->loop, &s->auth_delay);
			return;
		}
		session_auth_send(s);
		return;
	}
	}
}

static void
proceed_auth(struct session *s, const char *args)
{
	sasl_reset(&s->sasl);
	session_auth_step(s, sasl_start(&s->sasl, args, strlen(args)));
}

/* a client line during the exchange (never a command) */
static void
session_auth_line(struct session *s, enum reader_status st, const char *line)
{
	if (st == READER_TOOLONG) {
		session_reply(s, "500 5.5.6 Authentication Exchange line is too long");
		sasl_reset(&s->sasl);
		session_enter_state(s, S_HELO);
		session_auth_failed(s);
		return;
	}
	if (st == READER_NUL) {
		session_reply(s, "501 5.5.2 Cannot decode response");
		sasl_reset(&s->sasl);
		session_enter_state(s, S_HELO);
		session_auth_failed(s);
		return;
	}
	session_auth_step(s, sasl_feed(&s->sasl, line, strlen(line)));
}

/* no authentication any more (session end, TLS restart); no request pending */
static void
session_auth_forget(struct session *s)
{
	if (s->auth_id != 0 && s->sd->authc != NULL)
		authc_cancel(s->sd->authc, s->auth_id);
	s->auth_id = 0;
	if (s->live)
		ev_timer_stop(s->sd->loop, &s->auth_delay);
	sasl_reset(&s->sasl);
	s->auth_user[0] = '\0';
	s->auth_mech = NULL;
	free(s->auth_addrs);
	s->auth_addrs = NULL;
	if (s->state == S_AUTH || s->state == S_AUTHWAIT)
		session_enter_state(s, S_HELO);
}

static const struct cmd commands[CMD_COUNT] = {
	[CMD_HELO] = { "HELO", "helo", check_helo, proceed_helo },
	[CMD_EHLO] = { "EHLO", "ehlo", check_helo, proceed_ehlo },
	[CMD_STARTTLS] = { "STARTTLS", "starttls", check_starttls, proceed_starttls },
	[CMD_AUTH] = { "AUTH", "auth", check_auth, proceed_auth },
	[CMD_MAIL] = { "MAIL", "mail", check_mail, proceed_mail },
	[CMD_RCPT] = { "RCPT", "rcpt", check_rcpt, proceed_rcpt },
	[CMD_DATA] = { "DATA", "data", check_data, proceed_data },
	[CMD_RSET] = { "RSET", "rset", check_noargs, proceed_rset },
	[CMD_NOOP] = { "NOOP", "noop", check_noargs, proceed_noop },
	[CMD_VRFY] = { "VRFY", "vrfy", check_vrfy, proceed_vrfy },
	[CMD_EXPN] = { "EXPN", "expn", check_expn, NULL },
	[CMD_HELP] = { "HELP", "help", check_noargs, proceed_help },
	[CMD_QUIT] = { "QUIT", "quit", check_noargs, proceed_quit },
	[CMD_UNKNOWN] = { "UNKNOWN", "unknown", NULL, NULL },
};

static void
session_command(struct session *s, const char *line)
{
	struct smtpd *sd = s->sd;
	char verb[16];
	size_t vlen = strcspn(line, " ");
	int id;

	log_debug("%s: < %s", s->client, line);
	if (s->errors >= sd->inst->max_errors) {
		log_info("too many errors after %s from %s", s->last_cmd, s->client);
		s->cur_cmd = -1;
		session_reply(s, "421 4.7.0 %s Error: too many errors", sd->hostname);
		session_enter_state(s, S_QUIT);
		return;
	}
	snprintf(verb, sizeof(verb), "%.*s", (int)(vlen < 15 ? vlen : 15), line);
	for (id = 0; id < CMD_UNKNOWN; id++)
		if (strcasecmp(verb, commands[id].name) == 0)
			break;
	if (sd->stopping && s->tx == NULL && id != CMD_QUIT) {
		s->cur_cmd = -1;
		session_reply(s, "421 4.3.2 Service shutting down");
		session_enter_state(s, S_QUIT);
		return;
	}
	const struct cmd *c = &commands[id];
	const char *args = skip_spaces(line + vlen);
	s->cmd_total[id]++;
	s->cur_cmd = id;
	s->last_cmd = c->name;
	if (id == CMD_UNKNOWN) {
		session_reply(s, "500 5.5.2 Error: command not recognized");
		return;
	}
	if ((id == CMD_NOOP || id == CMD_RSET || id == CMD_VRFY || id == CMD_HELP) &&
	    ++s->junk > (s->stressed ? SESSION_JUNK_LIMIT_STRESS :
	    SESSION_JUNK_LIMIT))
		s->errors++;	/* answered as usual; max_errors ends it */
	if (c->check != NULL && c->check(s, args) == -1)
		return;
	if (c->proceed != NULL)
		c->proceed(s, args);
	s->cur_cmd = -1;
}

/* ---- message text ------------------------------------------------------- */

static void
session_data_end(struct session *s)
{
	struct tx *tx = s->tx;

	s->last_cmd = "END-OF-MESSAGE";
	s->cur_cmd = -1;
	if (tx->rd.hops > READER_MAX_HOPS) {
		session_reject(s, "END-OF-MESSAGE", NULL, "554 5.4.6 Too many hops");
	} else if (tx->too_big) {
		session_reject(s, "END-OF-MESSAGE", NULL,
		    "552 5.3.4 Message size exceeds fixed limit");
	} else if (tx->write_failed && spool_errno_is_full(tx->write_errno)) {
		session_reply(s, "452 4.3.1 Insufficient system storage");
	} else if (tx->write_failed) {
		session_reply(s, "451 4.3.0 Error: queue file write error");
	} else {
		tx->size = spool_msg_size(tx->msg);
		struct spool_msg *m = tx->msg;
		tx->msg = NULL;		/* the spool owns it now */
		session_enter_state(s, S_COMMIT);
		spool_msg_submit(m, session_commit_done, s);
		return;
	}
	tx_free(s);
	session_enter_state(s, S_HELO);
}

static void
session_data_input(struct session *s)
{
	struct tx *tx = s->tx;
	struct smtpd *sd = s->sd;
	size_t olen, consumed;
	const char *err;

	size_t avail, room = 0;
	const char *p = io_data(s->io, &avail);
	/*
	 * The text is decoded straight into the message's buffer (no copy from a
	 * scratch buffer): the decoder writes at most one octet more than it
	 * reads (a CRLF whose CR came in the previous read), so it is given one
	 * octet less input than there is room. Octets of a message that turns
	 * out too big are decoded there but never counted (spool_msg_wrote).
	 */
	char *out = NULL;
	if (!tx->too_big && !tx->write_failed) {
		out = spool_msg_reserve(tx->msg, avail + 1, &room, &err);
		if (out == NULL)
			tx_write_failed(tx, err);
		else if (room < 2)
			out = NULL;	/* the buffer's last octet: the copying way */
		else
			avail = room - 1 < avail ? room - 1 : avail;
	}
	enum reader_status st = reader_data_decode(&tx->rd, p, avail,
	    out != NULL ? out : sd->scratch, &olen, &consumed);
	io_drop(s->io, consumed);
	s->data_octets += consumed;
	if (s->live)
		session_arm_timer(s);	/* the deadline moved by consumed / rate */
	sd->stats.bytes += olen;
	if (tx->rd.size > sd->inst->max_message_size)
		tx->too_big = true;	/* read on to the end, then refuse */
	if (olen > 0 && !tx->too_big && !tx->write_failed) {
		if (out != NULL)
			spool_msg_wrote(tx->msg, olen);
		else if (spool_msg_write(tx->msg, sd->scratch, olen, &err) == -1)
			tx_write_failed(tx, err);
	}
	switch (st) {
	case READER_MORE:
		break;
	case READER_LINE:
		session_data_end(s);
		break;
	default:
		session_bare_newline(s, st);
		break;
	}
}

static void
session_process(struct session *s)
{
	while (!s->dead && s->io != NULL && io_datalen(s->io) > 0) {
		if (s->state != S_CONNECTED && s->state != S_HELO && s->state != S_DATA &&
		    s->state != S_AUTH)
			break;
		if (out_pending(s) >= SESSION_OUT_HIGH)
			break;
		size_t avail;
		const char *p = io_data(s->io, &avail);
		if (s->state == S_DATA) {
			session_data_input(s);
			continue;
		}
		if (s->discard) {
			io_drop(s->io, reader_discard_line(p, avail, &s->discard));
			continue;
		}
		size_t linelen, consumed;
		enum reader_status st = reader_cmd_line(p, avail, &linelen, &consumed,
		    &s->discard);
		if (st == READER_MORE)
			break;
		/* the line leaves the input buffer (which may be freed) first */
		if (st == READER_LINE) {
			memcpy(s->line, p, linelen);
			s->line[linelen] = '\0';
		}
		io_drop(s->io, consumed);
		session_new_request(s);		/* a whole line came */
		if (s->state == S_AUTH && (st == READER_LINE || st == READER_TOOLONG ||
		    st == READER_NUL)) {
			session_auth_line(s, st, s->line);
			continue;
		}
		if (st == READER_TOOLONG) {
			s->cur_cmd = -1;
			session_reply(s, "500 5.5.0 Error: line too long");
			continue;
		}
		if (st == READER_NUL) {
			/* no parser sees it: a C string would end at the NUL and hide
			   whatever follows it (parameters, a second command) */
			s->cur_cmd = -1;
			log_info("NUL character in command after %s from %s", s->last_cmd,
			    s->client);
			session_reply(s, "500 5.5.2 Error: NUL character in command line");
			continue;
		}
		if (st != READER_LINE) {
			session_bare_newline(s, st);
			continue;
		}
		session_command(s, s->line);
	}
}

/* ---- group commit ------------------------------------------------------- */

static void session_resume(void *arg);

/* called inside the spool's commit: only note the result; the session goes on
   once the commit has returned (smtpd runs its deferred work) */
static void
session_commit_done(void *arg, int result, const char *qid)
{
	struct session *s = arg;

	(void)qid;
	s->commit_result = result;
	smtpd_defer(s->sd, &s->resume, session_resume, s);
}

static void
session_resume(void *arg)
{
	struct session *s = arg;
	struct tx *tx = s->tx;

	if (s->state != S_COMMIT || tx == NULL)
		return;
	if (s->commit_result == 0) {
		s->cmd_ok[CMD_DATA]++;
		s->sd->stats.accepted++;
		session_reply(s, "250 2.0.0 Ok: queued as %s", tx->qid);
		log_info("%s: from=<%s>, size=%" PRIu64 ", nrcpt=%u (queue active)",
		    tx->qid, tx->sender.text, tx->size, tx->rcpt_ok);
	} else if (s->commit_result == ENOSPC) {
		log_warnx("%s: spool commit: %s", tx->qid, strerror(s->commit_result));
		session_reply(s, "452 4.3.1 Insufficient system storage");
	} else {
		log_warnx("%s: spool commit: %s", tx->qid, strerror(s->commit_result));
		session_reply(s, "451 4.3.0 Error: queue file write error");
	}
	tx_free(s);
	session_enter_state(s, S_HELO);
	session_process(s);
	session_settle(s);
}

/* ---- life cycle --------------------------------------------------------- */

/* the client as Postfix names it without reverse DNS: "unknown[192.0.2.7]" */
void
session_client_name(const struct sockaddr *sa, char *ip, size_t iplen, char *client,
    size_t clientlen)
{
	if (net_sockaddr_ntop(sa, ip, iplen) == NULL)
		snprintf(ip, iplen, "unknown");
	snprintf(client, clientlen, "unknown[%s]", ip);
}

struct session *
session_new(struct smtpd *sd, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		log_warn("session");
		return NULL;
	}
	s->sd = sd;
	s->live = fd >= 0;
	if ((s->io = io_new(s->live ? sd->loop : NULL, fd, session_io_cb, s)) == NULL) {
		log_warn("session");
		free(s);
		return NULL;
	}
	io_set_limits(s->io, SESSION_IN_CAP, SESSION_OUT_MAX);
	/* told when the output is under the mark again (or flushed, for QUIT) */
	io_set_lowat(s->io, SESSION_OUT_HIGH - 1);
	if (salen > sizeof(s->ss))
		salen = sizeof(s->ss);
	memcpy(&s->ss, sa, salen);
	s->sslen = salen;
	session_client_name(sa, s->ip, sizeof(s->ip), s->client, sizeof(s->client));
	s->state = S_NEW;
	s->last_cmd = "CONNECT";
	s->cur_cmd = -1;
	if (s->live) {
		ev_init(&s->timer, session_timer_cb);
		s->timer.data = s;
		ev_init(&s->auth_delay, session_auth_delay_cb);
		s->auth_delay.data = s;
	}
	sasl_init(&s->sasl);
	s->next = sd->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	sd->sessions = s;
	bool was_stressed = session_stress(sd);
	sd->n_sessions++;
	smtpd_client_add(sd, s->ip, 1);
	if (was_stressed) {
		s->stressed = true;
	} else if (session_stress(sd)) {
		log_info("stress: %u of %u connections in use, timeouts down to %gs",
		    sd->n_sessions, sd->inst->max_connections, sd->inst->timeout_stress);
		/* every session open now gets the short deadlines at once */
		for (struct session *o = sd->sessions; o != NULL; o = o->next) {
			if (o->stressed)
				continue;
			o->stressed = true;
			if (o->live && o->state != S_NEW && o->state != S_CLOSED)
				session_arm_timer(o);
		}
	}
	return s;
}

void
session_start(struct session *s)
{
	struct smtpd *sd = s->sd;

	log_info("connect from %s", s->client);
	if (s->live && sd->tls != NULL && sd->inst->tls_mode == TLS_MODE_IMPLICIT) {
		/* RFC 8314: TLS first; the greeting comes through it */
		s->implicit_tls = true;
		if (io_start_tls(s->io, sd->tls) == -1) {
			log_warnx("%s: cannot start TLS: %s", s->client,
			    io_tls_error(s->io));
			s->dead = true;
		} else {
			session_enter_state(s, S_TLS);
		}
		session_settle(s);
		return;
	}
	session_greet(s);
	session_settle(s);
}

/* the greeting, or the refusal of a client the access list keeps out */
static void
session_greet(struct session *s)
{
	struct smtpd *sd = s->sd;

	if (!policy_client_allowed(sd->cfg, sd->inst, (const struct sockaddr *)&s->ss)) {
		/* Postfix smtpd_client_restrictions = reject at connect */
		sd->stats.refused++;
		session_reject(s, "CONNECT", NULL,
		    "554 5.7.1 <%s>: Client host rejected: Access denied", s->client);
		session_enter_state(s, S_QUIT);
	} else {
		session_reply(s, "220 %s ESMTP relayvisor", sd->hostname);
		session_enter_state(s, S_CONNECTED);
	}
}

void
session_feed(struct session *s, const void *buf, size_t len)
{
	if (s->state == S_CLOSED)
		return;
	const char *p = buf;
	while (len > 0 && s->state != S_CLOSED) {
		size_t n = io_feed(s->io, p, len);
		p += n;
		len -= n;
		session_process(s);
		session_settle(s);
		if (n == 0)
			break;		/* blocked (commit wait): the rest is dropped */
	}
}

void
session_feed_eof(struct session *s)
{
	if (s->state == S_CLOSED)
		return;
	s->eof = true;
	io_feed_eof(s->io);
	session_process(s);
	session_settle(s);
}

const char *
session_output(const struct session *s, size_t *len)
{
	if (s->io == NULL) {
		*len = 0;
		return "";
	}
	return io_out_data(s->io, len);
}

void
session_output_clear(struct session *s)
{
	if (s->io != NULL)
		io_out_drop(s->io, io_out_pending(s->io));
}

bool
session_closed(const struct session *s)
{
	return s->state == S_CLOSED;
}

void
session_free(struct session *s)
{
	if (s == NULL)
		return;
	if (s->state != S_CLOSED)
		session_close(s);
	io_free(s->io);
	free(s);
}
