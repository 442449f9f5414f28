/*
 * relayvisor-qmgr: the queue manager, the only writer of delivery state
 * (common/spool.h). One per host, run by relayvisord when the configuration has
 * a delivery: section (Postfix qmgr, OpenSMTPD queue + scheduler):
 *
 *  - intake: a listener's commit wakes it (the spool's commit notification); it
 *    takes the new messages in (one QUEUED record per recipient);
 *  - a pass: the due recipients (spool_queue_due) are routed (deliver/route.h:
 *    local domains -> delivery.local, routes, relayhost, else MX), grouped by
 *    message and next hop (at most 50 recipients per job), and, when the
 *    scheduler allows a connection to that destination (deliver/sched.h:
 *    per-destination window, dead marking, total cap), claimed (INFLIGHT, owner =
 *    our pid) and handed to the delivery agent with the fewest jobs as a job
 *    (common/deliverproto.h) with the body in a sealed memfd;
 *  - results: SENT and BOUNCED are final, DEFERRED gets the next try (retry
 *    doubling with jitter, never past the give-up time; past it the recipient
 *    bounces as expired); a message whose recipients are all final gets its
 *    bounce (RFC 3464, deliver/dsn.h) queued as a new message from <>, and is
 *    removed.
 *
 * Restarts: at start-up every INFLIGHT record is ours from an earlier life (one
 * qmgr per spool) and goes back to QUEUED (spool_queue_reclaim); the supervisor
 * hands us every agent's socket again ("PEER name" on the notify socket with the
 * descriptor). An agent that dies closes its socket: what it had in flight is
 * deferred and retried. Duplicates are bounded by what was in flight.
 *
 * Logs are Postfix's, so pflogsumm reads them (--syslog-name=relayvisor):
 *   relayvisor/qmgr: QID: from=<s>, size=N, nrcpt=N (queue active)
 *   relayvisor/smtp (lmtp, local): QID: to=<r>, relay=host[ip]:port, delay=D,
 *       delays=a/b/c/d, dsn=X.Y.Z, status=sent|deferred|bounced (text)
 *   relayvisor/bounce: QID: sender non-delivery notification: NEWQID
 *   relayvisor/qmgr: QID: removed
 */
#include <errno.h>
#include <stdarg.h>
#include <strings.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "common/child.h"
#include "common/childproto.h"
#include "common/config.h"
#include "common/confine.h"
#include "common/deliverproto.h"
#include "common/dsnparam.h"
#include "common/log.h"
#include "common/spool.h"
#include "common/xmalloc.h"
#include "deliver/dsn.h"
#include "deliver/route.h"
#include "deliver/sched.h"
#include "deliver/smtpc.h"

/* the envelope's NOTIFY bits go to the agent and to dsn_decide() as they are */
_Static_assert(DSNPARAM_NOTIFY_NEVER == SMTPC_NOTIFY_NEVER &&
    DSNPARAM_NOTIFY_SUCCESS == SMTPC_NOTIFY_SUCCESS &&
    DSNPARAM_NOTIFY_FAILURE == SMTPC_NOTIFY_FAILURE &&
    DSNPARAM_NOTIFY_DELAY == SMTPC_NOTIFY_DELAY, "NOTIFY bits");
_Static_assert((int)DSNPARAM_RET_FULL == (int)DELIVERPROTO_RET_FULL &&
    (int)DSNPARAM_RET_HDRS == (int)DELIVERPROTO_RET_HDRS, "RET values");

#define AGENTS_MAX 64
#define PASS_DUE_MAX 2000

struct agent {
	char name[96];
	int fd;
	ev_io w;
	unsigned jobs;
};

struct job_rcpt {
	uint32_t idx;
	char *addr;
	unsigned notify;	/* DSNPARAM_NOTIFY_* of the envelope */
	bool reported;
};

struct job {
	struct job *next;
	uint32_t id;
	struct agent *ag;
	char qid[SPOOL_QID_MAX];
	char nexthop[DELIVERPROTO_NEXTHOP_MAX + 1];
	enum nexthop_kind kind;
	struct sched_dest *dest;
	int64_t arrival;
	double t_queued;	/* when the job was handed over (ev_now) */
	bool deferred;		/* a recipient was deferred: check the delay warning
				   once every result is in (job_end) */
	bool report;		/* a recipient bounced, or was delivered with a success
				   report asked, and the message is not done: the
				   report goes out at job_end */
	size_t n;
	struct job_rcpt r[DELIVERPROTO_RCPTS_MAX];
};

static struct {
	struct ev_loop *loop;
	struct config *cfg;
	struct spool *sp;
	struct route_table *routes;
	struct sched *sched;
	struct sched_params sp_params;
	struct agent agents[AGENTS_MAX];
	size_t n_agents;
	struct job *jobs;
	uint32_t next_id;
	int notify_fd, wake_fd;
	ev_io notify_w, wake_w;
	ev_timer timer;
	ev_idle pass_w;
	struct childproto_stats stats;
	bool stopping;
} q;

static void pass_schedule(void);

static void
stats_send(void)
{
	char buf[CHILD_MSG_MAX];
	const char *err;
	if (spool_queue_flush(q.sp, &err) == -1)
		log_warnx("%s", err);
	childproto_stats_format(buf, sizeof(buf), &childproto_qmgr_stats, &q.stats);
	child_notify(q.notify_fd, buf);
}

/* ---- logging in Postfix's format ---- */

static const char *
kind_tag(enum nexthop_kind k)
{
	switch (k) {
	case NH_SMTP:
		return "relayvisor/smtp";
	case NH_LMTP_INET:
	case NH_LMTP_UNIX:
		return "relayvisor/lmtp";
	case NH_MAILDIR:
		return "relayvisor/local";
	}
	return "relayvisor/qmgr";
}

static void
log_as(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
log_as(const char *tag, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_set_tag(tag);
	log_info("%s", buf);
	log_set_tag("relayvisor/qmgr");
}

/* Postfix prints delays with two significant digits at most */
static void
fmt_delay(char *buf, size_t len, double d)
{
	if (d < 0)
		d = 0;
	if (d < 0.01)
		snprintf(buf, len, "%s", d == 0 ? "0" : "0.01");
	else if (d < 10)
		snprintf(buf, len, "%.2g", d);
	else
		snprintf(buf, len, "%.0f", d);
}

static void
log_status(const struct job *j, const char *addr, const char *relay, double conn_s,
    double xmit_s, const char *dsn, const char *status, const char *text)
{
	double now = ev_now(q.loop);
	char delay[32], a[32], b[32], c[32], d[32];
	double total = now - (double)j->arrival;
	fmt_delay(delay, sizeof(delay), total);
	fmt_delay(a, sizeof(a), j->t_queued - (double)j->arrival);
	fmt_delay(b, sizeof(b), 0);
	fmt_delay(c, sizeof(c), conn_s);
	fmt_delay(d, sizeof(d), xmit_s);
	log_as(kind_tag(j->kind), "%s: to=<%s>, relay=%s, delay=%s, delays=%s/%s/%s/%s, "
	    "dsn=%s, status=%s (%s)", j->qid, addr, relay, delay, a, b, c, d, dsn, status,
	    text);
}

/* ---- DSNs (RFC 3464 reports, RFC 3461 NOTIFY/RET/ENVID/ORCPT) ---- */

struct recs {
	struct spool_rcpt *v;
	size_t n;
};

static int
collect_rec(const struct spool_rcpt *r, void *arg)
{
	struct recs *s = arg;
	s->v = xreallocarray(s->v, s->n + 1, sizeof(*s->v));
	s->v[s->n++] = *r;
	return 0;
}

struct dsn_sent {
	char orig[SPOOL_QID_MAX];
	const char *what;
};

static void
dsn_committed(void *arg, int result, const char *qid)
{
	const struct dsn_sent *d = arg;
	if (result == 0)
		log_as("relayvisor/bounce", "%s: sender %s notification: %s", d->orig,
		    d->what, qid);
	else
		log_warnx("%s: queueing the %s notification failed: %s", d->orig, d->what,
		    strerror(result));
}

static unsigned
rcpt_notify(const struct spool_message *m, unsigned idx)
{
	return m->e.notify != NULL && idx < m->e.n_rcpts ? m->e.notify[idx] : 0;
}

/* the status a report gives: the "X.Y.Z" our record starts with, when it is of
   the right class */
static void
rec_status(const struct spool_rcpt *r, char cls, char *buf, size_t len,
    const char **text_r)
{
	size_t k = strspn(r->reply, "0123456789.");
	snprintf(buf, len, "%.*s", (int)(k < 15 ? k : 15), r->reply);
	if (buf[0] != cls || k < 5)
		snprintf(buf, len, "%c.0.0", cls);
	*text_r = r->reply[k] == ' ' ? r->reply + k + 1 : r->reply;
}

/*
 * Queue one report about the n records v (all of one action) of message m,
 * from <> to its sender (a failure of a message from <>: to postmaster of the
 * first local domain, or dropped). The caller chose the records NOTIFY allows.
 * false when it could not be queued (the caller tries again later).
 */
static bool
dsn_send(struct spool_message *m, const struct spool_rcpt *v, size_t n,
    enum dsn_action action)
{
	const char *to = m->e.sender;
	/* who gets it (the records were picked by their own NOTIFY already) */
	enum dsn_target t = dsn_decide(m->e.sender, DSNPARAM_NOTIFY_SUCCESS |
	    DSNPARAM_NOTIFY_FAILURE | DSNPARAM_NOTIFY_DELAY, action);
	char pm[300];
	if (t == DSN_NONE || n == 0)
		return true;
	if (t == DSN_DOUBLE_BOUNCE) {
		const struct strlist *ld = &q.cfg->server.local_domains;
		snprintf(pm, sizeof(pm), "postmaster@%s", ld->n > 0 ? ld->v[0] : "");
		/* a bounce that cannot be delivered to postmaster is dropped */
		bool to_pm = m->e.n_rcpts == 1 && strcasecmp(m->e.rcpts[0], pm) == 0;
		if (ld->n == 0 || to_pm) {
			log_warnx("%s: undeliverable bounce from <>: discarded", m->e.qid);
			return true;
		}
		to = pm;
	}
	struct dsn_rcpt *dr = xcalloc(n, sizeof(*dr));
	char (*status)[16] = xcalloc(n, sizeof(*status));
	/* Remote-MTA and Diagnostic-Code, split out of each record's reason */
	char (*fields)[SPOOL_REPLY_MAX + 2] = xcalloc(n, sizeof(*fields));
	char cls = action == DSN_FAILED ? '5' : action == DSN_DELAYED ? '4' : '2';
	for (size_t i = 0; i < n; i++) {
		const struct spool_rcpt *r = &v[i];
		bool known = r->idx < m->e.n_rcpts;
		dr[i].addr = known ? m->e.rcpts[r->idx] : "unknown";
		dr[i].orcpt = known && m->e.orcpt != NULL ? m->e.orcpt[r->idx] : NULL;
		dr[i].action = action;
		if (action == DSN_DELIVERED && (r->flags & SPOOL_RCPT_F_RELAYED))
			dr[i].action = DSN_RELAYED;
		/* a failure's record may say 4.x.x (expired): the report says 5 */
		rec_status(r, cls, status[i], sizeof(status[i]), &dr[i].text);
		if (action == DSN_FAILED && r->reply[0] == '4' && status[i][0] == '5') {
			snprintf(status[i], sizeof(status[i]), "5%s", r->reply + 1);
			status[i][strspn(status[i], "0123456789.")] = '\0';
		}
		dr[i].status = status[i];
		dsn_rcpt_reason(&dr[i], dr[i].text, fields[i], sizeof(fields[i]));
		dr[i].last_attempt = (time_t)r->last_try;
	}
	time_t now = time(NULL);
	struct dsn_report rep = {
		.reporting_mta = q.cfg->server.hostname,
		.qid = m->e.qid,
		.envid = m->e.envid,
		.sender = to,
		.arrival = (time_t)m->e.arrival,
		.now = now,
		.retry_until = (time_t)m->e.arrival + (time_t)q.cfg->delivery.max_lifetime,
		.ret = m->e.dsn_ret == DSNPARAM_RET_HDRS ? DSN_RET_HDRS :
		    m->e.dsn_ret == DSNPARAM_RET_FULL ? DSN_RET_FULL : DSN_RET_DEFAULT,
		.rcpts = dr,
		.n_rcpts = n,
	};
	size_t len;
	bool eightbit;
	/* RFC 3461 4.3: RET is about failures; delay and success reports carry
	   the original's header only */
	char *msg = dsn_compose(&rep, m->body, m->body_len, action == DSN_FAILED, &len,
	    &eightbit);
	free(dr);
	free(status);
	free(fields);
	if (msg == NULL)
		return false;
	struct spool_msg *nm = spool_msg_begin(q.sp);
	const char *err;
	bool ok = nm != NULL && spool_msg_set_sender(nm, "") == 0 &&
	    spool_msg_add_rcpt(nm, to) == 0 &&
	    spool_msg_set_attr(nm, "proto", "DSN") == 0 &&
	    spool_msg_write(nm, msg, len, &err) == 0;
	free(msg);
	if (!ok) {
		if (nm != NULL)
			spool_msg_abort(nm);
		return false;
	}
	static struct dsn_sent sent;
	snprintf(sent.orig, sizeof(sent.orig), "%s", m->e.qid);
	sent.what = action == DSN_FAILED ? "non-delivery" : action == DSN_DELAYED ?
	    "delay" : "delivery status";
	spool_msg_submit(nm, dsn_committed, &sent);
	return spool_commit(q.sp) == 1;
}

/* the records of rs whose report NOTIFY asks for: failures (bounced), or
   successes (sent with a report owed) */
static size_t
dsn_pick(const struct spool_message *m, const struct recs *rs, enum dsn_action action,
    struct spool_rcpt *out)
{
	size_t n = 0;
	for (size_t i = 0; i < rs->n; i++) {
		const struct spool_rcpt *r = &rs->v[i];
		bool want;
		if (action == DSN_FAILED)
			want = r->state == SPOOL_RCPT_BOUNCED &&
			    !(r->flags & SPOOL_RCPT_F_BOUNCE_SENT);
		else if (action == DSN_DELAYED)
			want = !spool_rcpt_final(r->state);
		else
			want = r->state == SPOOL_RCPT_SENT && (r->flags &
			    (SPOOL_RCPT_F_DELIVERED | SPOOL_RCPT_F_RELAYED));
		if (want && dsn_decide(m->e.sender, rcpt_notify(m, r->idx), action) !=
		    DSN_NONE)
			out[n++] = *r;
	}
	return n;
}

/* ---- finishing a message: reports, removal ---- */

static void
message_finish(const char *qid)
{
	struct recs rs = { NULL, 0 };
	const char *err;
	if (spool_rcpt_foreach(q.sp, qid, collect_rec, &rs, &err) == -1) {
		log_warnx("%s: %s", qid, err);
		return;
	}
	struct spool_rcpt *pick = xcalloc(rs.n + 1, sizeof(*pick));
	struct spool_message m;
	bool loaded = false, ok = true;
	for (int k = 0; k < 2 && ok; k++) {
		enum dsn_action action = k == 0 ? DSN_FAILED : DSN_DELIVERED;
		bool any = false;
		for (size_t i = 0; i < rs.n && !any; i++)
			any = action == DSN_FAILED ? (rs.v[i].state == SPOOL_RCPT_BOUNCED &&
			    !(rs.v[i].flags & SPOOL_RCPT_F_BOUNCE_SENT)) :
			    (rs.v[i].flags & (SPOOL_RCPT_F_DELIVERED | SPOOL_RCPT_F_RELAYED));
		if (!any)
			continue;
		if (!loaded && spool_message_load(q.sp, qid, true, &m, &err) == -1) {
			log_warnx("%s: %s", qid, err);
			ok = false;
			break;
		}
		loaded = true;
		size_t n = dsn_pick(&m, &rs, action, pick);
		if (n > 0 && !dsn_send(&m, pick, n, action)) {
			log_warnx("%s: %s not queued; the message stays", qid,
			    action == DSN_FAILED ? "bounce" : "success report");
			ok = false;
		}
	}
	if (loaded)
		spool_message_free(&m);
	free(pick);
	free(rs.v);
	if (!ok)
		return;
	if (spool_queue_delete(q.sp, qid, &err) == -1) {
		log_warnx("%s: %s", qid, err);
		return;
	}
	q.stats.v[QMGR_STAT_REMOVED]++;
	log_info("%s: removed", qid);
}

/* a record whose report (bounce, or success asked with NOTIFY=SUCCESS) is owed */
static bool
report_owed(const struct spool_rcpt *r, enum dsn_action action)
{
	if (action == DSN_FAILED)
		return r->state == SPOOL_RCPT_BOUNCED && !(r->flags & SPOOL_RCPT_F_BOUNCE_SENT);
	return r->state == SPOOL_RCPT_SENT &&
	    (r->flags & (SPOOL_RCPT_F_DELIVERED | SPOOL_RCPT_F_RELAYED));
}

/*
 * Reports go out when a delivery attempt ends, not only when the whole message
 * is done (Postfix's qmgr flushes its bounce and trace logs after every pass):
 * the sender learns of a bad address, or of the delivery it asked to hear of,
 * at once while another recipient of the same message waits for its retry,
 * perhaps for days. A bounced record reported gets a durable flag, a success
 * report owed loses its flag, so the reports at the end do not name them again
 * (a crash in between reports them twice, never not at all). A message with
 * nothing pending is left to message_finish.
 */
static void
reports_pending(const char *qid)
{
	struct recs rs = { NULL, 0 };
	const char *err;
	if (spool_rcpt_foreach(q.sp, qid, collect_rec, &rs, &err) == -1) {
		log_warnx("%s: %s", qid, err);
		return;
	}
	bool pending = false, owed[2] = { false, false };
	for (size_t i = 0; i < rs.n; i++) {
		pending |= !spool_rcpt_final(rs.v[i].state);
		owed[0] |= report_owed(&rs.v[i], DSN_FAILED);
		owed[1] |= report_owed(&rs.v[i], DSN_DELIVERED);
	}
	struct spool_message m;
	if (!pending || !(owed[0] || owed[1]) ||
	    spool_message_load(q.sp, qid, true, &m, &err) == -1) {
		if (pending && (owed[0] || owed[1]))
			log_warnx("%s: %s", qid, err);
		free(rs.v);
		return;
	}
	struct spool_rcpt *pick = xcalloc(rs.n + 1, sizeof(*pick));
	for (int k = 0; k < 2; k++) {
		enum dsn_action action = k == 0 ? DSN_FAILED : DSN_DELIVERED;
		if (!owed[k])
			continue;
		size_t n = dsn_pick(&m, &rs, action, pick);
		if (n > 0 && !dsn_send(&m, pick, n, action)) {
			/* the flags stay: the report at the end names them */
			log_warnx("%s: %s not queued; it goes with the message's last one", qid,
			    k == 0 ? "bounce" : "success report");
			continue;
		}
		for (size_t i = 0; i < rs.n; i++) {
			struct spool_rcpt r;
			if (!report_owed(&rs.v[i], action) ||
			    spool_rcpt_get(q.sp, qid, rs.v[i].idx, &r, &err) == -1)
				continue;
			if (k == 0)
				r.flags |= SPOOL_RCPT_F_BOUNCE_SENT;
			else
				r.flags &= ~(SPOOL_RCPT_F_DELIVERED | SPOOL_RCPT_F_RELAYED);
			if (spool_rcpt_update(q.sp, &r, NULL, &err) == -1)
				log_warnx("%s: %s", qid, err);
		}
	}
	spool_message_free(&m);
	free(pick);
	if (spool_queue_flush(q.sp, &err) == -1)
		log_warnx("%s", err);
	free(rs.v);
}

/*
 * The delay warning (delivery.delay_warning after arrival): one RFC 3464
 * "delayed" report for the recipients not final yet whose NOTIFY allows it
 * (no NOTIFY: yes), never to <>, once per message: the warned flag goes on
 * every record of the message, durably, so a restarted qmgr does not warn
 * again. Checked whenever a recipient of the message is deferred.
 */
static void
warn_check(const char *qid, uint32_t idx, int64_t arrival)
{
	int64_t now = (int64_t)ev_now(q.loop);
	if (!sched_warn_due(&q.sp_params, (time_t)arrival, (time_t)now, false))
		return;
	struct recs rs = { NULL, 0 };
	struct spool_rcpt one;
	const char *err;
	/* every record of a warned message has the flag: one read is enough */
	if (spool_rcpt_get(q.sp, qid, idx, &one, &err) == 0 &&
	    (one.flags & SPOOL_RCPT_F_WARNED))
		return;
	if (spool_rcpt_foreach(q.sp, qid, collect_rec, &rs, &err) == -1) {
		log_warnx("%s: %s", qid, err);
		return;
	}
	bool warned = false, pending = false;
	for (size_t i = 0; i < rs.n; i++) {
		warned |= (rs.v[i].flags & SPOOL_RCPT_F_WARNED) != 0;
		pending |= !spool_rcpt_final(rs.v[i].state);
	}
	if (warned || !pending) {
		free(rs.v);
		return;
	}
	struct spool_message m;
	if (spool_message_load(q.sp, qid, true, &m, &err) == -1) {
		log_warnx("%s: %s", qid, err);
		free(rs.v);
		return;
	}
	struct spool_rcpt *pick = xcalloc(rs.n + 1, sizeof(*pick));
	size_t n = dsn_pick(&m, &rs, DSN_DELAYED, pick);
	bool ok = n == 0 || dsn_send(&m, pick, n, DSN_DELAYED);
	spool_message_free(&m);
	free(pick);
	if (!ok) {
		log_warnx("%s: delay warning not queued; tried again later", qid);
		free(rs.v);
		return;
	}
	/* the report is committed: now the flag, at once (a crash in between
	   warns twice, never not at all) */
	for (size_t i = 0; i < rs.n; i++) {
		struct spool_rcpt r;
		if (spool_rcpt_get(q.sp, qid, rs.v[i].idx, &r, &err) == -1)
			continue;
		r.flags |= SPOOL_RCPT_F_WARNED;
		if (spool_rcpt_update(q.sp, &r, NULL, &err) == -1)
			log_warnx("%s: %s", qid, err);
	}
	if (spool_queue_flush(q.sp, &err) == -1)
		log_warnx("%s", err);
	if (n == 0)
		log_info("%s: delay warning due, but no recipient asked for one", qid);
	free(rs.v);
}

/* ---- recording results ---- */

/* record one recipient's result; status text "X.Y.Z reply" is kept */
static void
record(const char *qid, uint32_t idx, enum deliverproto_status st, const char *dsn,
    const char *text, int64_t arrival, uint32_t flags, bool *complete_r)
{
	struct spool_rcpt r;
	const char *err;
	*complete_r = false;
	if (spool_rcpt_get(q.sp, qid, idx, &r, &err) == -1) {
		/* `relayvisorctl delete` while it was in flight: nothing to record,
		   and no cause for a warning */
		struct spool_message m;
		const char *err2;
		if (spool_message_load(q.sp, qid, false, &m, &err2) == -1) {
			log_info("%s: result for recipient %u of a message deleted while in "
			    "flight: not recorded", qid, idx);
			return;
		}
		spool_message_free(&m);
		log_warnx("%s: recipient %u: %s", qid, idx, err);
		return;
	}
	int64_t now = (int64_t)ev_now(q.loop);
	r.owner = 0;
	r.last_try = now;
	r.flags |= flags;
	snprintf(r.reply, sizeof(r.reply), "%s %s", dsn, text);
	for (char *c = r.reply; *c != '\0'; c++)
		if (*c == '\r' || *c == '\n')
			*c = ' ';
	switch (st) {
	case DELIVERPROTO_SENT:
		r.state = SPOOL_RCPT_SENT;
		break;
	case DELIVERPROTO_BOUNCED:
		r.state = SPOOL_RCPT_BOUNCED;
		break;
	case DELIVERPROTO_DEFERRED:
		r.attempts++;
		r.state = SPOOL_RCPT_DEFERRED;
		r.next_try = (int64_t)sched_next_try(&q.sp_params, (time_t)arrival,
		    (time_t)now, r.attempts, drand48());
		if (r.next_try <= now)
			r.next_try = now + 1;
		break;
	}
	if (spool_rcpt_update(q.sp, &r, complete_r, &err) == -1)
		log_warnx("%s: recipient %u: %s", qid, idx, err);
}

/* a deferral that is past the message's lifetime becomes a bounce */
static enum deliverproto_status
expire(const struct job *j, enum deliverproto_status st, const char **dsn,
    char *text, size_t len)
{
	if (st != DELIVERPROTO_DEFERRED ||
	    !sched_expired(&q.sp_params, (time_t)j->arrival, (time_t)ev_now(q.loop)))
		return st;
	static const char pre[] = "message expired: ";
	size_t tl = strlen(text);
	if (tl + sizeof(pre) > len)
		tl = len - sizeof(pre);
	memmove(text + sizeof(pre) - 1, text, tl);
	memcpy(text, pre, sizeof(pre) - 1);
	text[sizeof(pre) - 1 + tl] = '\0';
	*dsn = "4.4.7";
	return DELIVERPROTO_BOUNCED;
}

/*
 * A success report owed for a recipient that asked for one (NOTIFY=SUCCESS):
 * "delivered" by the Maildir and LMTP transports (final delivery), "relayed"
 * to an SMTP next hop that does not speak DSN; none when the next hop speaks
 * DSN, which got the request passed on (RFC 3461 5.2.2).
 */
static uint32_t
success_flags(const struct job *j, size_t i, bool dsn_passed)
{
	unsigned n = j->r[i].notify;
	if (!(n & DSNPARAM_NOTIFY_SUCCESS) || (n & DSNPARAM_NOTIFY_NEVER))
		return 0;
	if (j->kind != NH_SMTP)
		return SPOOL_RCPT_F_DELIVERED;
	return dsn_passed ? 0 : SPOOL_RCPT_F_RELAYED;
}

static void
job_result(struct job *j, size_t i, enum deliverproto_status st, const char *dsn,
    const char *relay, const char *text_in, double conn_s, double xmit_s,
    bool dsn_passed)
{
	char text[DELIVERPROTO_TEXT_MAX + 32];
	snprintf(text, sizeof(text), "%s", text_in);
	st = expire(j, st, &dsn, text, sizeof(text));
	j->r[i].reported = true;
	bool complete;
	record(j->qid, j->r[i].idx, st, dsn, text, j->arrival,
	    st == DELIVERPROTO_SENT ? success_flags(j, i, dsn_passed) : 0, &complete);
	q.stats.v[QMGR_STAT_INFLIGHT]--;
	q.stats.v[st == DELIVERPROTO_SENT ? QMGR_STAT_SENT :
	    st == DELIVERPROTO_DEFERRED ? QMGR_STAT_DEFERRED : QMGR_STAT_BOUNCED]++;
	log_status(j, j->r[i].addr, relay, conn_s, xmit_s, dsn,
	    deliverproto_status_name(st), text);
	if (st == DELIVERPROTO_DEFERRED && j->dest != NULL)
		sched_dest_set_reason(j->dest, dsn, text);
	if (complete) {
		message_finish(j->qid);
		j->report = false;	/* the last reports named every recipient */
	} else if (st == DELIVERPROTO_DEFERRED)
		j->deferred = true;
	else if (st == DELIVERPROTO_BOUNCED || success_flags(j, i, dsn_passed) != 0)
		j->report = true;
}

static void
job_free(struct job *j)
{
	for (struct job **pp = &q.jobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	for (size_t i = 0; i < j->n; i++)
		free(j->r[i].addr);
	if (j->ag != NULL)
		j->ag->jobs--;
	free(j);
}

/* the job ends: what was not reported is deferred with why */
static void
job_end(struct job *j, bool handshake_ok, const char *why)
{
	for (size_t i = 0; i < j->n; i++)
		if (!j->r[i].reported)
			job_result(j, i, DELIVERPROTO_DEFERRED, "4.3.0", "none", why, 0, 0,
			    false);
	if (j->report)
		reports_pending(j->qid);
	/* after every result of the job: a recipient it delivered is not in the
	   warning */
	if (j->deferred && j->n > 0)
		warn_check(j->qid, j->r[0].idx, j->arrival);
	if (j->dest != NULL) {
		sched_conn_done(q.sched, j->dest, handshake_ok, (time_t)ev_now(q.loop),
		    drand48());
		j->dest = NULL;
	}
	job_free(j);
	pass_schedule();
}

static struct job *
job_find(uint32_t id)
{
	for (struct job *j = q.jobs; j != NULL; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

/* ---- agents ---- */

static void
agent_close(struct agent *a, const char *why)
{
	ev_io_stop(q.loop, &a->w);
	close(a->fd);
	a->fd = -1;
	log_info("delivery agent %s: %s", a->name, why);
	for (struct job *j = q.jobs, *next; j != NULL; j = next) {
		next = j->next;
		if (j->ag == a) {
			j->ag = NULL;
			/* not the destination's fault: no dead marking */
			job_end(j, true, "delivery agent exited with the message in flight");
		}
	}
	a->jobs = 0;
}

static void
agent_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct agent *a = w->data;
	static unsigned char buf[DELIVERPROTO_MSG_MAX];
	for (int rounds = 0; rounds < 64 && a->fd != -1; rounds++) {
		int fd;
		ssize_t n = deliverproto_recv(a->fd, buf, sizeof(buf), &fd);
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			agent_close(a, n == 0 ? "gone" : strerror(errno));
			return;
		}
		if (fd != -1) {
			close(fd);
			agent_close(a, "sent a descriptor: refused");
			return;
		}
		const char *err;
		enum deliverproto_type t = deliverproto_type(buf, (size_t)n);
		if (t == DELIVERPROTO_RESULT) {
			struct deliverproto_result r;
			if (deliverproto_result_decode(buf, (size_t)n, &r, &err) == -1) {
				agent_close(a, err);
				return;
			}
			struct job *j = job_find(r.id);
			if (j == NULL || j->ag != a)
				continue;	/* a job of an earlier life of ours */
			size_t i;
			for (i = 0; i < j->n && (j->r[i].idx != r.idx || j->r[i].reported); i++)
				;
			if (i == j->n)
				continue;
			job_result(j, i, r.status, r.dsn, r.relay, r.text, r.conn_ms / 1000.0,
			    r.xmit_ms / 1000.0, r.dsn_passed);
		} else if (t == DELIVERPROTO_DONE) {
			struct deliverproto_done d;
			if (deliverproto_done_decode(buf, (size_t)n, &d, &err) == -1) {
				agent_close(a, err);
				return;
			}
			struct job *j = job_find(d.id);
			if (j != NULL && j->ag == a)
				job_end(j, d.handshake_ok, "delivery agent reported no result");
		} else {
			agent_close(a, "sent a message that is not a result: refused");
			return;
		}
	}
}

static void
agent_add(const char *name, int fd)
{
	struct agent *a = NULL;
	for (size_t i = 0; i < q.n_agents; i++)
		if (strcmp(q.agents[i].name, name) == 0)
			a = &q.agents[i];
	if (a == NULL) {
		for (size_t i = 0; i < q.n_agents && a == NULL; i++)
			if (q.agents[i].fd == -1)
				a = &q.agents[i];
		if (a == NULL && q.n_agents < AGENTS_MAX)
			a = &q.agents[q.n_agents++];
		if (a == NULL) {
			log_warnx("too many delivery agents: %s refused", name);
			close(fd);
			return;
		}
	} else if (a->fd != -1) {
		agent_close(a, "replaced");
	}
	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%.95s", name);
	a->fd = fd;
	if (fcntl(fd, F_SETFL, O_NONBLOCK) == -1)
		log_warn("fcntl %s", name);
	ev_io_init(&a->w, agent_cb, fd, EV_READ);
	a->w.data = a;
	ev_io_start(q.loop, &a->w);
	log_info("delivery agent %s connected", name);
	pass_schedule();
}

static struct agent *
agent_pick(void)
{
	struct agent *best = NULL;
	unsigned cap = q.cfg->delivery.total_concurrency;
	for (size_t i = 0; i < q.n_agents; i++) {
		struct agent *a = &q.agents[i];
		if (a->fd == -1 || a->jobs >= cap)
			continue;
		if (best == NULL || a->jobs < best->jobs)
			best = a;
	}
	return best;
}

/* ---- the pass: due recipients to jobs ---- */

struct due {
	struct spool_rcpt *v;
	size_t n;
};

static int
collect_due(const struct spool_rcpt *r, void *arg)
{
	struct due *d = arg;
	d->v = xreallocarray(d->v, d->n + 1, sizeof(*d->v));
	d->v[d->n++] = *r;
	return 0;
}

/* the next hop of an address; -1 with a bounce reason */
static int
route_of(const char *addr, struct nexthop *nh, char *key, size_t keylen,
    const char **error_r)
{
	const char *at = strrchr(addr, '@');
	struct route_result rr;
	if (at == NULL || at[1] == '\0') {
		*error_r = "recipient address has no domain";
		return -1;
	}
	if (route_decide(q.routes, at + 1, &rr, error_r) == -1)
		return -1;
	if (rr.via == ROUTE_DIRECT && rr.nh.kind == NH_SMTP)
		rr.nh.port = (uint16_t)q.cfg->delivery.smtp_port;
	*nh = rr.nh;
	route_nexthop_name(nh, key, keylen);
	return 0;
}

/* true when the message is not done yet (its bounce then waits for
   reports_pending at the end of the pass over it) */
static bool
bounce_now(struct spool_message *m, uint32_t idx, const char *dsn, const char *why)
{
	struct job j = { 0 };
	snprintf(j.qid, sizeof(j.qid), "%s", m->e.qid);
	j.arrival = m->e.arrival;
	j.t_queued = ev_now(q.loop);
	j.kind = NH_SMTP;
	bool complete;
	q.stats.v[QMGR_STAT_BOUNCED]++;
	record(m->e.qid, idx, DELIVERPROTO_BOUNCED, dsn, why, m->e.arrival, 0, &complete);
	log_status(&j, idx < m->e.n_rcpts ? m->e.rcpts[idx] : "?", "none", 0, 0, dsn,
	    "bounced", why);
	if (complete)
		message_finish(m->e.qid);
	return !complete;
}

/*
 * A destination marked dead: its recipients wait without an attempt, and each
 * is logged deferred with why the destination died, as Postfix logs it
 * ("delivery temporarily suspended: connect to ...: Connection refused"), so
 * the log and pflogsumm show the mail and where it waits.
 */
static void
defer_dead(struct spool_message *m, uint32_t idx, int64_t until,
    const struct sched_dest *dest, enum nexthop_kind kind, const char *key)
{
	struct spool_rcpt r;
	const char *err;
	if (spool_rcpt_get(q.sp, m->e.qid, idx, &r, &err) == -1)
		return;
	r.state = SPOOL_RCPT_DEFERRED;
	r.next_try = until > r.next_try ? until : r.next_try + 1;
	const char *dsn;
	const char *why = sched_dest_reason(dest, &dsn);
	if (dsn[0] != '4')
		dsn = "4.4.1";
	char text[SPOOL_REPLY_MAX - 24];
	if (why[0] != '\0')
		snprintf(text, sizeof(text), "delivery temporarily suspended: %s", why);
	else
		snprintf(text, sizeof(text), "delivery temporarily suspended: destination "
		    "%.400s is dead", key);
	snprintf(r.reply, sizeof(r.reply), "%s %s", dsn, text);
	if (spool_rcpt_update(q.sp, &r, NULL, &err) == -1)
		log_warnx("%s: %s", m->e.qid, err);
	struct job j = { 0 };
	snprintf(j.qid, sizeof(j.qid), "%s", m->e.qid);
	j.arrival = m->e.arrival;
	j.t_queued = ev_now(q.loop);
	j.kind = kind;
	q.stats.v[QMGR_STAT_DEFERRED]++;
	log_status(&j, idx < m->e.n_rcpts ? m->e.rcpts[idx] : "?", "none", 0, 0, dsn,
	    "deferred", text);
	warn_check(m->e.qid, idx, m->e.arrival);
}

/* the body descriptor, written straight from the spool's map (no copy first) */
struct body_fd {
	int fd;
	const char *err;
};

static int
body_fd_make(void *arg, const void *body, size_t len)
{
	struct body_fd *bf = arg;
	bf->fd = deliverproto_body_memfd(body, len, &bf->err);
	return bf->fd == -1 ? -1 : 0;
}

/* hand one job over; false when nothing could be sent (records reverted) */
static bool
job_start(struct spool_message *m, const struct nexthop *nh, const char *key,
    struct sched_dest *dest, const uint32_t *idx, size_t n)
{
	struct agent *a = agent_pick();
	if (a == NULL)
		return false;
	static struct deliverproto_job dj;
	memset(&dj, 0, sizeof(dj));
	struct job *j = xcalloc(1, sizeof(*j));
	j->id = ++q.next_id;
	j->ag = a;
	snprintf(j->qid, sizeof(j->qid), "%s", m->e.qid);
	snprintf(j->nexthop, sizeof(j->nexthop), "%s", key);
	j->kind = nh->kind;
	j->arrival = m->e.arrival;
	j->t_queued = ev_now(q.loop);
	dj.id = j->id;
	snprintf(dj.nexthop, sizeof(dj.nexthop), "%s", key);
	snprintf(dj.qid, sizeof(dj.qid), "%s", m->e.qid);
	snprintf(dj.sender, sizeof(dj.sender), "%s", m->e.sender);
	dj.size = m->body_len;
	/* RFC 3461: passed on to a next hop that speaks DSN (deliver/smtpc.c) */
	dj.ret = (enum deliverproto_ret)m->e.dsn_ret;
	snprintf(dj.envid, sizeof(dj.envid), "%s", m->e.envid != NULL ? m->e.envid : "");
	const char *err;
	for (size_t i = 0; i < n; i++) {
		struct spool_rcpt r;
		if (spool_rcpt_get(q.sp, m->e.qid, idx[i], &r, &err) == -1)
			continue;
		r.state = SPOOL_RCPT_INFLIGHT;
		r.owner = (uint32_t)getpid();
		if (spool_rcpt_update(q.sp, &r, NULL, &err) == -1) {
			log_warnx("%s: %s", m->e.qid, err);
			continue;
		}
		j->r[j->n].idx = idx[i];
		j->r[j->n].addr = xstrdup(m->e.rcpts[idx[i]]);
		j->r[j->n].notify = rcpt_notify(m, idx[i]);
		dj.rcpts[dj.n_rcpts].idx = idx[i];
		dj.rcpts[dj.n_rcpts].notify = j->r[j->n].notify;
		snprintf(dj.rcpts[dj.n_rcpts].orcpt, sizeof(dj.rcpts[0].orcpt), "%s",
		    m->e.orcpt != NULL && m->e.orcpt[idx[i]] != NULL ?
		    m->e.orcpt[idx[i]] : "");
		snprintf(dj.rcpts[dj.n_rcpts].addr, sizeof(dj.rcpts[0].addr), "%s",
		    m->e.rcpts[idx[i]]);
		dj.n_rcpts++;
		j->n++;
	}
	if (j->n == 0) {
		free(j);
		return true;
	}
	static unsigned char buf[DELIVERPROTO_MSG_MAX];
	int len = deliverproto_job_encode(&dj, buf, sizeof(buf), &err);
	struct body_fd bf = { -1, NULL };
	if (len > 0 && spool_body_with(q.sp, m->e.qid, body_fd_make, &bf, &err) == -1)
		err = bf.err != NULL ? bf.err : err;
	int mfd = bf.fd;
	j->next = q.jobs;
	q.jobs = j;
	a->jobs++;
	q.stats.v[QMGR_STAT_INFLIGHT] += j->n;
	if (mfd == -1 || deliverproto_send(a->fd, buf, (size_t)len, mfd) == -1) {
		if (mfd != -1)
			close(mfd);
		log_warnx("%s: handing the job to %s failed: %s", m->e.qid, a->name,
		    mfd == -1 ? err : strerror(errno));
		j->dest = NULL;
		for (size_t i = 0; i < j->n; i++) {
			/* back to the queue at once, no attempt counted */
			struct spool_rcpt r;
			if (spool_rcpt_get(q.sp, j->qid, j->r[i].idx, &r, &err) == 0) {
				r.state = SPOOL_RCPT_QUEUED;
				r.owner = 0;
				r.next_try = (int64_t)ev_now(q.loop) + 1;
				spool_rcpt_update(q.sp, &r, NULL, &err);
			}
			j->r[i].reported = true;
			q.stats.v[QMGR_STAT_INFLIGHT]--;
		}
		job_free(j);
		return false;
	}
	close(mfd);
	j->dest = dest;
	sched_conn_start(q.sched, dest);
	return true;
}

static void
pass_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
	if (q.stopping)
		return;
	const char *err;
	int64_t now = (int64_t)ev_now(loop);
	int taken = spool_queue_intake(q.sp, now, 0, &err);
	if (taken == -1)
		log_warnx("intake: %s", err);
	else
		q.stats.v[QMGR_STAT_QUEUED] += (uint64_t)taken;

	struct due due = { NULL, 0 };
	if (spool_queue_due(q.sp, now, PASS_DUE_MAX, collect_due, &due, &err) == -1)
		log_warnx("due: %s", err);
	bool *used = xcalloc(due.n + 1, sizeof(bool));
	for (size_t i = 0; i < due.n; i++) {
		if (used[i] || agent_pick() == NULL)
			continue;
		struct spool_message m;
		if (spool_message_load(q.sp, due.v[i].qid, false, &m, &err) == -1) {
			log_warnx("%s: %s", due.v[i].qid, err);
			used[i] = true;
			continue;
		}
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu (queue active)", m.e.qid,
		    m.e.sender, (unsigned long long)m.body_len, m.e.n_rcpts);
		bool bounced = false;
		/* every due recipient of this message, grouped by next hop */
		for (size_t k = i; k < due.n; k++) {
			if (used[k] || strcmp(due.v[k].qid, m.e.qid) != 0)
				continue;
			if (due.v[k].idx >= m.e.n_rcpts) {
				used[k] = true;
				continue;
			}
			struct nexthop nh;
			char key[DELIVERPROTO_NEXTHOP_MAX + 1];
			const char *why;
			if (route_of(m.e.rcpts[due.v[k].idx], &nh, key, sizeof(key), &why) == -1) {
				used[k] = true;
				bounced = bounce_now(&m, due.v[k].idx, "5.1.2", why);
				continue;
			}
			struct sched_dest *dest = sched_dest(q.sched, key);
			time_t until;
			if (sched_dest_dead(dest, (time_t)now, &until)) {
				for (size_t l = k; l < due.n; l++) {
					struct nexthop nh2;
					char key2[DELIVERPROTO_NEXTHOP_MAX + 1];
					if (used[l] || strcmp(due.v[l].qid, m.e.qid) != 0 ||
					    due.v[l].idx >= m.e.n_rcpts ||
					    route_of(m.e.rcpts[due.v[l].idx], &nh2, key2,
					    sizeof(key2), &why) == -1 || strcmp(key2, key) != 0)
						continue;
					used[l] = true;
					defer_dead(&m, due.v[l].idx, (int64_t)until, dest, nh2.kind,
					    key);
				}
				continue;
			}
			if (!sched_may_connect(q.sched, dest, (time_t)now)) {
				used[k] = true;	/* waits for a connection to end */
				continue;
			}
			uint32_t idx[DELIVERPROTO_RCPTS_MAX];
			size_t n = 0;
			for (size_t l = k; l < due.n && n < DELIVERPROTO_RCPTS_MAX; l++) {
				struct nexthop nh2;
				char key2[DELIVERPROTO_NEXTHOP_MAX + 1];
				if (used[l] || strcmp(due.v[l].qid, m.e.qid) != 0 ||
				    due.v[l].idx >= m.e.n_rcpts ||
				    route_of(m.e.rcpts[due.v[l].idx], &nh2, key2, sizeof(key2),
				    &why) == -1 || strcmp(key2, key) != 0)
					continue;
				used[l] = true;
				idx[n++] = due.v[l].idx;
			}
			if (!job_start(&m, &nh, key, dest, idx, n))
				break;
		}
		if (bounced)
			reports_pending(m.e.qid);
		spool_message_free(&m);
	}
	free(used);
	free(due.v);

	/* the timer: the next recipient that comes due (waiting ones that are due
	   already wait for an agent or a connection to end: those events run a pass) */
	int64_t when;
	ev_timer_stop(loop, &q.timer);
	if (spool_queue_next_try(q.sp, &when, &err) == 0 && when >= 0) {
		double d = (double)(when - now);
		if (d < 1)
			d = 1;
		if (d > 60)
			d = 60;
		ev_timer_set(&q.timer, d, 0);
		ev_timer_start(loop, &q.timer);
	}
}

static void
pass_schedule(void)
{
	if (!q.stopping)
		ev_idle_start(q.loop, &q.pass_w);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	pass_schedule();
}

static void
wake_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	/* drain first, then take in: a commit landing meanwhile wakes us again */
	if (spool_wake_drain(q.wake_fd) == -1) {
		ev_io_stop(loop, w);
		log_info("every listener closed the commit notification");
	}
	pass_schedule();
}

/* ---- queue control (relayvisorctl flush, hold, release, delete, requeue) ---- */

struct qids {
	char **v;
	size_t n;
};

static int
collect_qid(const struct spool_entry *e, void *arg)
{
	struct qids *ids = arg;
	ids->v = xreallocarray(ids->v, ids->n + 1, sizeof(*ids->v));
	ids->v[ids->n++] = xstrdup(e->qid);
	return 0;
}

static bool
domain_match(const char *addr, const char *domain)
{
	const char *at = strrchr(addr, '@');
	return at != NULL && strcasecmp(at + 1, domain) == 0;
}

static void
queue_reply(uint32_t id, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
queue_reply(uint32_t id, int code, const char *fmt, ...)
{
	char text[400], msg[CHILD_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s %u %d %s", CHILD_MSG_QUEUE, id, code, text);
	child_notify(q.notify_fd, msg);
}

static void
queue_op(uint32_t id, const char *verb, const char *arg)
{
	const char *err;
	int64_t now = (int64_t)ev_now(q.loop);
	/* what was committed but not taken in yet is part of the queue too */
	int taken = spool_queue_intake(q.sp, now, 0, &err);
	if (taken > 0)
		q.stats.v[QMGR_STAT_QUEUED] += (uint64_t)taken;
	bool all = arg == NULL || strcmp(arg, "all") == 0;
	const char *domain = arg != NULL && arg[0] == '@' ? arg + 1 : NULL;
	bool flush = strcmp(verb, "flush") == 0, hold = strcmp(verb, "hold") == 0,
	    release = strcmp(verb, "release") == 0, del = strcmp(verb, "delete") == 0,
	    requeue = strcmp(verb, "requeue") == 0;
	if (!flush && !hold && !release && !del && !requeue) {
		queue_reply(id, 2, "unknown queue operation %s", verb);
		return;
	}
	if ((all || domain != NULL) && !(flush || (del && all && arg != NULL))) {
		queue_reply(id, 2, "%s needs a queue id", verb);
		return;
	}
	struct qids ids = { NULL, 0 };
	if (all || domain != NULL) {
		if (spool_foreach(q.sp, collect_qid, &ids, &err) == -1) {
			queue_reply(id, 1, "%s", err);
			return;
		}
	} else {
		struct spool_message m;
		if (spool_message_load(q.sp, arg, false, &m, &err) == -1) {
			queue_reply(id, 1, "%s", err);
			return;
		}
		spool_message_free(&m);
		collect_qid(&(struct spool_entry){ .qid = arg }, &ids);
	}
	/* "the relayhost is back, flush the queue": destinations marked dead are
	   tried again now, not after their backoff */
	if (flush)
		sched_revive(q.sched);
	size_t n_msgs = 0, n_rcpts = 0, n_busy = 0;
	for (size_t i = 0; i < ids.n; i++) {
		const char *qid = ids.v[i];
		if (del) {
			if (spool_queue_delete(q.sp, qid, &err) == 0) {
				log_info("%s: removed", qid);
				q.stats.v[QMGR_STAT_REMOVED]++;
				n_msgs++;
			}
			continue;
		}
		struct spool_message m;
		if (spool_message_load(q.sp, qid, false, &m, &err) == -1)
			continue;
		struct recs rs = { NULL, 0 };
		spool_rcpt_foreach(q.sp, qid, collect_rec, &rs, &err);
		bool touched = false;
		for (size_t k = 0; k < rs.n; k++) {
			struct spool_rcpt *r = &rs.v[k];
			if (domain != NULL && (r->idx >= m.e.n_rcpts ||
			    !domain_match(m.e.rcpts[r->idx], domain)))
				continue;
			bool waiting = r->state == SPOOL_RCPT_QUEUED ||
			    r->state == SPOOL_RCPT_DEFERRED;
			if (r->state == SPOOL_RCPT_INFLIGHT) {
				n_busy++;
				continue;
			}
			if (flush && waiting) {
				r->next_try = now;
			} else if (hold && waiting) {
				r->state = SPOOL_RCPT_HOLD;
				snprintf(r->reply, sizeof(r->reply), "on hold");
			} else if (release && r->state == SPOOL_RCPT_HOLD) {
				r->state = SPOOL_RCPT_QUEUED;
				r->next_try = now;
				r->reply[0] = '\0';
			} else if (requeue && (waiting || r->state == SPOOL_RCPT_HOLD)) {
				r->state = SPOOL_RCPT_QUEUED;
				r->attempts = 0;
				r->next_try = now;
			} else {
				continue;
			}
			if (spool_rcpt_update(q.sp, r, NULL, &err) == 0) {
				n_rcpts++;
				touched = true;
			}
		}
		if (touched) {
			n_msgs++;
			if (hold)
				log_info("%s: placed on hold", qid);
			else if (release)
				log_info("%s: released from hold", qid);
			else if (requeue)
				log_info("%s: requeued", qid);
		}
		free(rs.v);
		spool_message_free(&m);
	}
	for (size_t i = 0; i < ids.n; i++)
		free(ids.v[i]);
	free(ids.v);
	if (del)
		queue_reply(id, 0, "%s: %zu message%s deleted", verb, n_msgs,
		    n_msgs == 1 ? "" : "s");
	else
		queue_reply(id, 0, "%s: %zu recipient%s of %zu message%s%s%s", verb, n_rcpts,
		    n_rcpts == 1 ? "" : "s", n_msgs, n_msgs == 1 ? "" : "s",
		    n_busy > 0 ? " (in flight, left as they are: " : "",
		    n_busy > 0 ? "retry when they are back)" : "");
	pass_schedule();
}

static void
notify_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	char buf[CHILD_MSG_MAX + 1];
	int fd;
	ssize_t n = deliverproto_recv(q.notify_fd, buf, CHILD_MSG_MAX, &fd);
	if (n == -1 && errno == EAGAIN)
		return;
	if (n == -1 && (errno == EMSGSIZE || errno == EPROTO)) {
		/* one bad packet (too long, or descriptors it should not carry) is
		   dropped: the next one, a new agent perhaps, must still be heard */
		log_warnx("notify: a message refused: %s", strerror(errno));
		return;
	}
	if (n <= 0) {
		log_warnx("notify: %s: the supervisor is gone",
		    n == 0 ? "closed" : strerror(errno));
		ev_io_stop(loop, w);
		return;
	}
	buf[n] = '\0';
	size_t pl = strlen(CHILD_MSG_PEER);
	if (strncmp(buf, CHILD_MSG_PEER " ", pl + 1) == 0 && fd != -1) {
		agent_add(buf + pl + 1, fd);
		return;
	}
	if (fd != -1)
		close(fd);
	size_t ql = strlen(CHILD_MSG_QUEUE);
	if (strncmp(buf, CHILD_MSG_QUEUE " ", ql + 1) == 0) {
		unsigned long id;
		char verb[16], arg[320];
		int k = sscanf(buf + ql + 1, "%lu %15s %319s", &id, verb, arg);
		/* a verb sees and writes committed state before it answers */
		spool_queue_batch(q.sp, false);
		if (k >= 2)
			queue_op((uint32_t)id, verb, k == 3 ? arg : NULL);
		spool_queue_batch(q.sp, true);
		return;
	}
	if (strcmp(buf, CHILD_MSG_STATS) == 0)
		stats_send();
	else
		log_warnx("notify: unknown message \"%.40s\"", buf);
}

/* before the loop waits: one commit for every claim and result of this pass
   (spool_queue_batch; a listener's group commit does the same for messages) */
static void
flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	const char *err;
	if (spool_queue_flush(q.sp, &err) == -1)
		log_warnx("%s", err);
}

static void
stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	/* what is in flight is reclaimed by the next start (bounded duplicates) */
	q.stopping = true;
	ev_break(loop, EVBREAK_ALL);
}

static bool
alive_never(uint32_t pid, void *arg)
{
	(void)pid;
	(void)arg;
	return false;	/* one qmgr per spool: every claim is from an earlier life */
}

/* the snapshot relayvisord validated; a qmgr runs only for a delivery: section */
static struct config *
load_config(void)
{
	struct config *cfg = child_load_config(config_default_dir());
	if (!cfg->delivery.configured) {
		log_warnx("the configuration has no delivery: section");
		exit(CHILD_EXIT_CONFIG);
	}
	return cfg;
}

static struct route_table *
routes_build(const struct config *cfg)
{
	struct route_table *t = route_table_new();
	const struct delivery *d = &cfg->delivery;
	const char *err;
	for (size_t i = 0; i < cfg->server.local_domains.n; i++)
		if (route_add_local_domain(t, cfg->server.local_domains.v[i], &err) == -1)
			fatalx("local domain %s: %s", cfg->server.local_domains.v[i], err);
	if (route_set_local(t, d->local, &err) == -1)
		fatalx("delivery.local: %s", err);
	if (d->relayhost != NULL && route_set_relayhost(t, d->relayhost, &err) == -1)
		fatalx("delivery.relayhost: %s", err);
	for (size_t i = 0; i < d->n_routes; i++)
		if (route_add(t, d->routes[i].pattern, d->routes[i].nexthop, &err) == -1)
			fatalx("delivery.routes %s: %s", d->routes[i].pattern, err);
	return t;
}

int
main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	log_init("relayvisor/qmgr", true);
	if (signal(SIGHUP, SIG_IGN) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		log_warn("signal");
	q.notify_fd = child_env_fd(CHILD_ENV_NOTIFY_FD);
	q.wake_fd = child_env_fd(SPOOL_ENV_WAKE_FD);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	pid_t ppid = getppid();
	char run_user[64];
	child_env_str(CONFINE_ENV_USER, run_user, sizeof(run_user));

	q.cfg = load_config();
	q.routes = routes_build(q.cfg);
	sched_params_default(&q.sp_params);
	const struct delivery *d = &q.cfg->delivery;
	q.sp_params.retry_min = (time_t)d->retry_min;
	q.sp_params.retry_max = (time_t)d->retry_max;
	q.sp_params.delay_warning = (time_t)d->delay_warning;
	q.sp_params.max_lifetime = (time_t)d->max_lifetime;
	q.sp_params.dest_init = d->dest_concurrency;
	q.sp_params.dest_max = d->dest_concurrency_max;
	q.sp_params.total_max = d->total_concurrency;
	q.sched = sched_new(&q.sp_params);
	srand48((long)getpid() ^ (long)time(NULL));
	q.next_id = (uint32_t)lrand48();

	const char *err;
	/* delivery state, not acknowledged mail: see spool_relax_meta_sync() */
	if (spool_open(q.cfg->server.spool, 0, &q.sp, &err) == -1 ||
	    spool_relax_meta_sync(q.sp, &err) == -1)
		fatalx("spool %s: %s", q.cfg->server.spool, err);
	int n = spool_queue_reclaim(q.sp, (int64_t)time(NULL), alive_never, NULL, &err);
	if (n == -1)
		fatalx("reclaim: %s", err);
	if (n > 0)
		log_info("%d recipients in flight at the last stop queued again", n);

	char jail[4096];
	snprintf(jail, sizeof(jail), "%s/%s", q.cfg->server.spool, CONFINE_EMPTY_SUBDIR);
	bool root = geteuid() == 0 && run_user[0] != '\0';
	struct confine conf = { .user = root ? run_user : NULL,
	    .chroot = root ? jail : NULL, .what = "queue manager" };
	struct confine_result cres;
	if (confine_apply(&conf, &cres, &err) == -1) {
		log_warnx("confinement: %s", err);
		exit(1);
	}
	if (q.notify_fd >= 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
			log_warn("prctl PR_SET_PDEATHSIG");
		if (getppid() != ppid)
			fatalx("supervisor exited during start-up");
	}

	q.loop = EV_DEFAULT;
	log_buffer_loop(q.loop);	/* a pass's lines in one write */
	ev_idle_init(&q.pass_w, pass_cb);
	ev_prepare flush_w;
	ev_prepare_init(&flush_w, flush_cb);
	ev_prepare_start(q.loop, &flush_w);
	spool_queue_batch(q.sp, true);
	ev_timer_init(&q.timer, timer_cb, 1, 0);
	static const int stops[] = { CHILD_STOP_SIGNALS };
	ev_signal stop_w[sizeof(stops) / sizeof(stops[0])];
	for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
		ev_signal_init(&stop_w[i], stop_cb, stops[i]);
		ev_signal_start(q.loop, &stop_w[i]);
	}
	if (q.wake_fd >= 0) {
		ev_io_init(&q.wake_w, wake_cb, q.wake_fd, EV_READ);
		ev_io_start(q.loop, &q.wake_w);
	} else {
		log_warnx("no commit notification: new mail is found once a minute");
		ev_timer_set(&q.timer, 60, 0);
	}
	if (q.notify_fd >= 0) {
		ev_io_init(&q.notify_w, notify_cb, q.notify_fd, EV_READ);
		ev_io_start(q.loop, &q.notify_w);
	}
	log_info("ready: spool %s, %u delivery agent%s expected", q.cfg->server.spool,
	    d->procs, d->procs == 1 ? "" : "s");
	child_notify(q.notify_fd, CHILD_MSG_READY);
	pass_schedule();
	ev_run(q.loop, 0);

	stats_send();
	for (size_t i = 0; i < q.n_agents; i++)
		if (q.agents[i].fd != -1) {
			ev_io_stop(q.loop, &q.agents[i].w);
			close(q.agents[i].fd);
		}
	while (q.jobs != NULL) {
		q.jobs->ag = NULL;
		job_free(q.jobs);
	}
	spool_queue_batch(q.sp, false);
	log_info("stopped");
	spool_close(q.sp);
	sched_free(q.sched);
	route_table_free(q.routes);
	config_free(q.cfg);
	if (confine_leak_check_blind(&cres))
		_exit(0);
	return 0;
}
