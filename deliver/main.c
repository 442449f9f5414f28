/*
 * relayvisor-deliver: a delivery agent (Postfix smtp(8)/lmtp(8)/local(8) in one
 * process, OpenSMTPD's mta). It holds no spool access: jobs come from the queue
 * manager over RELAYVISOR_DELIVER_FD (common/deliverproto.h), each with the
 * message as a sealed memfd, and every recipient's result goes back. The memfd
 * is mapped read-only, never copied; a body that needs no dot-stuffing goes
 * from it to the server with sendfile(2) (conn_body).
 *
 * One libev loop runs many outbound sessions at once: per job it resolves the
 * next hop (deliver/dns.h: MX, or A/AAAA for a bracketed host; LMTP on a unix
 * socket needs none), connects to the addresses in order (a connection failure
 * or a session that fails before the server answered moves on to the next
 * address), and drives the SMTP/LMTP client engine (deliver/smtpc.h) on the I/O
 * layer (common/io.h). A session that ends its transaction well stays open for
 * the next job to the same next hop: up to 100 messages or 300 s, idle for at
 * most 5 s (Postfix's connection cache).
 *
 * Outbound TLS is Postfix's smtp_tls_security_level, looked up per next hop (the
 * relayhost with relayhost_tls, routes with their tls:, everything else
 * delivery.tls): may = STARTTLS when offered, a failed handshake retried once
 * in clear at the same address (Postfix does the same); encrypt = TLS or defer
 * (4.7.4 when not offered, 4.7.5 when the handshake fails); verify = the chain to
 * delivery.tls_ca_file and the host name (the MX or next-hop name, the address
 * for a literal) or defer 4.7.5 "Server certificate not verified". Each
 * handshake logs Postfix's "Trusted TLS connection established to ..." line;
 * sessions are kept per server, name and level and resumed ("... reused to").
 * The relayhost's AUTH password is read before the agent drops privileges and
 * goes only over TLS (deliver/smtpc.c).
 *
 * Maildir delivery (deliver/maildir.h) is blocking file I/O with fsync; it runs
 * on a worker thread, so it never stalls the network sessions: the loop hands
 * the job over and is woken (ev_async) when it is done.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ifaddrs.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "common/child.h"
#include "common/childproto.h"
#include "common/config.h"
#include "common/confine.h"
#include "common/deliverproto.h"
#include "common/io.h"
#include "common/log.h"
#include "common/tls.h"
#include "common/xmalloc.h"
#include "deliver/dns.h"
#include "deliver/maildir.h"
#include "deliver/route.h"
#include "deliver/secret.h"
#include "deliver/smtpc.h"

#define REUSE_MESSAGES 100
#define REUSE_SECONDS 300
#define IDLE_SECONDS 5
#define CONNECT_SECONDS 30
/* TLS sessions kept for resumption, by server and level (Postfix's
   smtp_tls_session_cache_timeout is 3600 s too) */
#define TLS_CACHE_MAX 64
#define TLS_CACHE_SECONDS 3600

struct conn;

struct job {
	struct job *next;		/* pending list, worker queue, done list */
	struct job *all_prev, *all_next;	/* every live job (freed at exit) */
	struct deliverproto_job j;
	struct nexthop nh;
	const char *body;		/* the sealed memfd, mapped read-only */
	size_t body_len;
	int body_fd;			/* kept for io_write_file, -1: none */
	bool wire_ready;		/* smtpc_body_scan(): may go as it is */
	struct deliverproto_result res[DELIVERPROTO_RCPTS_MAX];
	bool have[DELIVERPROTO_RCPTS_MAX];
	bool handshake_ok, loop;
	int tls;			/* enum delivery_tls of the next hop */
	bool auth;			/* AUTH to this next hop (the relayhost) */
	bool plain_next;		/* TLS failed at may: the same address in clear */
	/* SMTP/LMTP */
	struct dns_query *dq;
	struct dns_addr *addrs;		/* in order */
	char (*names)[256];		/* host of each address */
	size_t n_addrs, next_addr;
	struct conn *conn;
	double t_start, t_conn;
	struct smtpc_rcpt rc[DELIVERPROTO_RCPTS_MAX];
	struct smtpc_msg msg;
};

struct conn {
	struct conn *next;		/* idle list */
	struct conn *all_prev, *all_next;	/* every live session */
	struct io *io;
	struct smtpc *c;
	struct job *job;		/* the job it serves, NULL when idle */
	char nexthop[DELIVERPROTO_NEXTHOP_MAX + 1];
	char peer[DELIVERPROTO_RELAY_MAX + 1];
	char host[256];			/* TLS: SNI and the name verify checks */
	int tls;			/* enum delivery_tls for this session */
	bool tls_pending;		/* the handshake is under way */
	bool tls_ok;			/* TLS accepted: its session may be resumed */
	ev_timer t;			/* smtpc's timeout, connect, idle */
	double created;
	bool connected;
	bool idle;
	bool started;			/* the job's transaction was started */
};

static struct {
	struct ev_loop *loop;
	struct config *cfg;
	struct dns *dns;
	struct route_self *self;	/* our name and addresses: MX loop check */
	int fd, notify_fd;
	ev_io w, notify_w;
	/* what the qmgr's socket could not take yet (it is full while the qmgr is
	   stopped or slow): sent in order when it is writable, never dropped */
	struct outmsg {
		struct outmsg *next;
		size_t len;
		unsigned char data[];
	} *out_head, *out_tail;
	ev_io out_w;
	struct conn *idle;
	struct conn *conns;
	struct job *jobs;
	struct childproto_stats stats;
	/* the Maildir worker */
	pthread_t worker;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *work, *done;
	bool quit;
	ev_async done_w;
	bool stopping;
	/* outbound TLS and relayhost AUTH */
	struct tls_policy {
		char name[DELIVERPROTO_NEXTHOP_MAX + 1];	/* canonical next hop */
		int tls;
		bool auth;
	} *pol;
	size_t n_pol;
	struct tls_ctx *tls_any;	/* may, encrypt: any certificate */
	struct tls_ctx *tls_verify;	/* verify; NULL: see tls_verify_err */
	char tls_verify_err[300];
	char auth_pass[SECRET_MAX + 1];
	bool auth_ok;
	char auth_err[600];
	struct tls_cached {
		char key[DELIVERPROTO_RELAY_MAX + 300];
		struct tls_session *s;
		double t;
	} tls_cache[TLS_CACHE_MAX];
} a;

static void conn_pump(struct conn *c);
static void job_try_next(struct job *jb);

static void
stats_send(void)
{
	char buf[CHILD_MSG_MAX];
	childproto_stats_format(buf, sizeof(buf), &childproto_deliver_stats, &a.stats);
	child_notify(a.notify_fd, buf);
}

/* ---- to the qmgr ---- */

/* send what waits, in order; false when the socket is full again */
static bool
out_drain(void)
{
	while (a.out_head != NULL) {
		struct outmsg *m = a.out_head;
		if (deliverproto_send(a.fd, m->data, m->len, -1) == -1) {
			if (errno == EAGAIN || errno == ENOBUFS)
				return false;
			/* the qmgr's end is gone for good: it defers what we had */
			log_warnx("the queue manager's socket: %s: a result dropped",
			    strerror(errno));
		}
		a.out_head = m->next;
		free(m);
	}
	a.out_tail = NULL;
	return true;
}

static void
out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	if (out_drain())
		ev_io_stop(loop, w);
}

/*
 * One message to the qmgr. A result must not be lost to a full socket: the
 * qmgr would wait for it (its recipients in flight) until we die. What the
 * socket cannot take is queued, bounded by the jobs we hold (each sends its
 * results and one end), and goes out when the socket is writable.
 */
static void
qmgr_send(const void *buf, size_t len)
{
	if (a.out_head == NULL) {
		if (deliverproto_send(a.fd, buf, len, -1) == 0)
			return;
		if (errno != EAGAIN && errno != ENOBUFS) {
			log_warn("the queue manager's socket");
			return;
		}
	}
	struct outmsg *m = xcalloc(1, sizeof(*m) + len);
	m->next = NULL;
	m->len = len;
	memcpy(m->data, buf, len);
	if (a.out_tail != NULL)
		a.out_tail->next = m;
	else
		a.out_head = m;
	a.out_tail = m;
	if (!ev_is_active(&a.out_w))
		ev_io_start(a.loop, &a.out_w);
}

/* at exit: what is still queued gets a last chance, for up to 2 s in all (a
   result lost here only means a duplicate: the qmgr defers it) */
static void
out_flush_at_exit(void)
{
	double end = ev_time() + 2;
	while (a.out_head != NULL && !out_drain() && ev_time() < end) {
		struct pollfd pfd = { a.fd, POLLOUT, 0 };
		(void)poll(&pfd, 1, 100);
	}
	for (struct outmsg *m = a.out_head, *next; m != NULL; m = next) {
		next = m->next;
		free(m);
	}
	a.out_head = a.out_tail = NULL;
}

/* ---- results ---- */

static void
job_set(struct job *jb, size_t i, enum deliverproto_status st, unsigned code,
    const char *dsn, const char *relay, const char *text)
{
	struct deliverproto_result *r = &jb->res[i];
	memset(r, 0, sizeof(*r));
	r->id = jb->j.id;
	r->idx = jb->j.rcpts[i].idx;
	r->status = st;
	r->code = code <= 599 ? code : 0;
	/* the status code's class follows the verdict */
	char cls = st == DELIVERPROTO_SENT ? '2' : st == DELIVERPROTO_DEFERRED ? '4' : '5';
	if (dsn != NULL && dsn[0] == cls && strlen(dsn) <= DELIVERPROTO_DSN_MAX)
		snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
	else
		snprintf(r->dsn, sizeof(r->dsn), "%c.0.0", cls);
	snprintf(r->relay, sizeof(r->relay), "%s", relay != NULL && *relay ? relay : "none");
	snprintf(r->text, sizeof(r->text), "%s", text);
	for (char *p = r->text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	for (char *p = r->relay; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	jb->have[i] = true;
}

static void
job_free(struct job *jb)
{
	if (jb->all_prev != NULL)
		jb->all_prev->all_next = jb->all_next;
	else
		a.jobs = jb->all_next;
	if (jb->all_next != NULL)
		jb->all_next->all_prev = jb->all_prev;
	if (jb->dq != NULL)
		dns_cancel(jb->dq);
	free(jb->addrs);
	free(jb->names);
	if (jb->body_len > 0 && jb->body != NULL)
		munmap((void *)jb->body, jb->body_len);
	if (jb->body_fd != -1)
		close(jb->body_fd);
	free(jb);
}

/* every recipient has its result (missing ones deferred with why): report, end */
static void
job_finish(struct job *jb, const char *why)
{
	double now = ev_now(a.loop);
	unsigned char buf[DELIVERPROTO_MSG_MAX];
	const char *err;
	for (size_t i = 0; i < jb->j.n_rcpts; i++) {
		if (!jb->have[i])
			job_set(jb, i, DELIVERPROTO_DEFERRED, 0, "4.4.1", NULL, why);
		struct deliverproto_result *r = &jb->res[i];
		double c = jb->t_conn > 0 ? jb->t_conn - jb->t_start : now - jb->t_start;
		r->conn_ms = (uint32_t)(c * 1000);
		r->xmit_ms = jb->t_conn > 0 ? (uint32_t)((now - jb->t_conn) * 1000) : 0;
		a.stats.v[r->status == DELIVERPROTO_SENT ? DELIVER_STAT_SENT :
		    r->status == DELIVERPROTO_DEFERRED ? DELIVER_STAT_DEFERRED :
		    DELIVER_STAT_BOUNCED]++;
		int n = deliverproto_result_encode(r, buf, sizeof(buf), &err);
		if (n < 0)
			log_warnx("%s: result not sent: %s", jb->j.qid, err);
		else
			qmgr_send(buf, (size_t)n);
	}
	struct deliverproto_done d = { jb->j.id, jb->handshake_ok, jb->loop };
	int n = deliverproto_done_encode(&d, buf, sizeof(buf), &err);
	if (n < 0)
		log_warnx("%s: done not sent: %s", jb->j.qid, err);
	else
		qmgr_send(buf, (size_t)n);
	a.stats.v[DELIVER_STAT_JOBS]++;
	a.stats.v[DELIVER_STAT_ACTIVE]--;
	job_free(jb);
}

/* ---- Maildir on the worker thread ---- */

static void
maildir_job(struct job *jb)
{
	const char *host = a.cfg->server.hostname;
	for (size_t i = 0; i < jb->j.n_rcpts; i++) {
		const char *addr = jb->j.rcpts[i].addr;
		const char *at = strrchr(addr, '@');
		char local[DELIVERPROTO_ADDR_MAX + 1];
		snprintf(local, sizeof(local), "%.*s", at != NULL ? (int)(at - addr) :
		    (int)strlen(addr), addr);
		const char *domain = at != NULL ? at + 1 : "";
		bool temp = false;
		const char *err;
		char name[512], text[DELIVERPROTO_TEXT_MAX + 1];
		struct maildir_msg *m = maildir_open(jb->nh.path, local, domain, jb->j.sender,
		    addr, host, &temp, &err);
		if (m == NULL || maildir_write(m, jb->body, jb->body_len, &err) == -1 ||
		    maildir_commit(m, name, sizeof(name), &temp, &err) == -1) {
			snprintf(text, sizeof(text), "maildir delivery failed: %s", err);
			job_set(jb, i, temp ? DELIVERPROTO_DEFERRED : DELIVERPROTO_BOUNCED, 0,
			    temp ? "4.2.0" : "5.1.1", "local", text);
			continue;
		}
		snprintf(text, sizeof(text), "delivered to maildir %s", name);
		job_set(jb, i, DELIVERPROTO_SENT, 0, "2.0.0", "local", text);
	}
	jb->handshake_ok = true;
}

static void *
worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&a.mu);
	for (;;) {
		while (a.work == NULL && !a.quit)
			pthread_cond_wait(&a.cv, &a.mu);
		if (a.quit)
			break;
		struct job *jb = a.work;
		a.work = jb->next;
		pthread_mutex_unlock(&a.mu);
		maildir_job(jb);
		pthread_mutex_lock(&a.mu);
		jb->next = a.done;
		a.done = jb;
		ev_async_send(a.loop, &a.done_w);
	}
	pthread_mutex_unlock(&a.mu);
	return NULL;
}

static void
done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	pthread_mutex_lock(&a.mu);
	struct job *list = a.done;
	a.done = NULL;
	pthread_mutex_unlock(&a.mu);
	while (list != NULL) {
		struct job *jb = list;
		list = jb->next;
		job_finish(jb, "");
	}
}

/* ---- SMTP and LMTP sessions ---- */

/* "LEVEL HOST PEER": a session is offered only to the server, name and level
   that gave it */
static void
tls_cache_key(const struct conn *c, char *buf, size_t len)
{
	snprintf(buf, len, "%d %s %s", c->tls, c->host, c->peer);
}

static struct tls_session *
tls_cache_get(const struct conn *c)
{
	char key[sizeof(a.tls_cache[0].key)];
	tls_cache_key(c, key, sizeof(key));
	for (size_t i = 0; i < TLS_CACHE_MAX; i++)
		if (a.tls_cache[i].s != NULL && strcmp(a.tls_cache[i].key, key) == 0 &&
		    ev_now(a.loop) - a.tls_cache[i].t < TLS_CACHE_SECONDS)
			return a.tls_cache[i].s;
	return NULL;
}

/* the session of a connection that ends well replaces the server's entry, or
   the oldest one */
static void
tls_cache_put(const struct conn *c)
{
	struct tls_session *s = io_tls_session(c->io);
	char key[sizeof(a.tls_cache[0].key)];
	size_t slot = 0;
	if (s == NULL)
		return;
	tls_cache_key(c, key, sizeof(key));
	for (size_t i = 0; i < TLS_CACHE_MAX; i++) {
		if (a.tls_cache[i].s != NULL && strcmp(a.tls_cache[i].key, key) == 0) {
			slot = i;
			break;
		}
		if (a.tls_cache[i].t < a.tls_cache[slot].t || a.tls_cache[i].s == NULL)
			slot = i;
	}
	struct tls_cached *e = &a.tls_cache[slot];
	tls_session_free(e->s);
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->s = s;
	e->t = ev_now(a.loop);
}

static void
conn_free(struct conn *c)
{
	if (c->all_prev != NULL)
		c->all_prev->all_next = c->all_next;
	else
		a.conns = c->all_next;
	if (c->all_next != NULL)
		c->all_next->all_prev = c->all_prev;
	for (struct conn **pp = &a.idle; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	ev_timer_stop(a.loop, &c->t);
	if (c->io != NULL && c->tls_ok)
		tls_cache_put(c);
	if (c->io != NULL)
		io_free(c->io);
	if (c->c != NULL)
		smtpc_free(c->c);
	free(c);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct conn *c = w->data;
	if (!c->connected) {
		struct job *jb = c->job;
		c->job = NULL;
		conn_free(c);
		if (jb != NULL) {
			jb->conn = NULL;
			job_try_next(jb);
		}
		return;
	}
	if (c->idle) {
		/* idle too long: goodbye */
		c->idle = false;
		for (struct conn **pp = &a.idle; *pp != NULL; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		smtpc_quit(c->c);
		conn_pump(c);
		return;
	}
	smtpc_timeout_fired(c->c);
	conn_pump(c);
}

/* start the job's transaction on an idle, usable session */
static void
conn_send(struct conn *c, struct job *jb)
{
	const char *err;
	c->job = jb;
	c->started = true;
	jb->conn = c;
	/* the whole message goes into the output buffer at 354: room for this
	   one (a reused session was sized for an earlier, maybe smaller one) */
	io_set_limits(c->io, IO_IN_MAX_DEFAULT, jb->body_len * 2 + 65536);
	if (jb->t_conn == 0)
		jb->t_conn = ev_now(a.loop);
	if (smtpc_send(c->c, &jb->msg, &err) == -1) {
		c->job = NULL;
		jb->conn = NULL;
		for (size_t i = 0; i < jb->j.n_rcpts; i++)
			job_set(jb, i, DELIVERPROTO_BOUNCED, 0, "5.5.4", c->peer, err);
		job_finish(jb, err);
		smtpc_quit(c->c);
	}
}

static bool
conn_reusable(const struct conn *c)
{
	return smtpc_messages(c->c) < REUSE_MESSAGES &&
	    ev_now(a.loop) - c->created < REUSE_SECONDS && !smtpc_closed(c->c);
}

/* TLS lines under Postfix smtp(8)'s name, where admins and tools look for them */
static void __attribute__((format(printf, 2, 3)))
smtp_log(bool warn, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_set_tag("relayvisor/smtp");
	if (warn)
		log_warnx("%s", line);
	else
		log_info("%s", line);
	log_set_tag("relayvisor/deliver");
}

/* the server said 220 to STARTTLS: the handshake on the I/O layer */
static void
conn_starttls(struct conn *c)
{
	struct tls_ctx *ctx = c->tls == DELIVERY_TLS_VERIFY ? a.tls_verify : a.tls_any;
	char text[DELIVERPROTO_TEXT_MAX + 1];
	if (ctx == NULL || io_start_tls_client_resume(c->io, ctx, c->host,
	    tls_cache_get(c)) == -1) {
		snprintf(text, sizeof(text), "Cannot start TLS: %s", ctx == NULL ?
		    "no TLS context" : strerror(errno));
		smtpc_fail(c->c, "4.7.5", text);
		return;
	}
	c->tls_pending = true;
}

/* the handshake completed: Postfix's log line, the certificate judged */
static void
conn_tls_ready(struct conn *c)
{
	char desc[256];
	int trust = io_tls_peer_trust(c->io);
	c->tls_pending = false;
	io_tls_describe(c->io, desc, sizeof(desc));
	smtp_log(false, "%s TLS connection %s to %s: %s",
	    tls_peer_trust_name((enum tls_peer_trust)trust),
	    io_tls_reused(c->io) ? "reused" : "established", c->peer, desc);
	if (c->tls == DELIVERY_TLS_VERIFY && trust != TLS_PEER_VERIFIED) {
		smtpc_fail(c->c, "4.7.5", "Server certificate not verified");
		return;
	}
	c->tls_ok = true;
	smtpc_tls_done(c->c);
}

/* the handshake failed: at may, the same address once more in clear */
static void
conn_tls_failed(struct conn *c)
{
	int e = io_errno(c->io);
	const char *why = e == EPROTO ? io_tls_error(c->io) : e != 0 ? strerror(e) :
	    "connection closed during the handshake";
	struct job *jb = c->job;
	c->tls_pending = false;
	smtp_log(true, "SSL_connect error to %s: %s", c->peer, why);
	if (c->tls == DELIVERY_TLS_MAY && jb != NULL && !jb->auth && jb->next_addr > 0) {
		smtp_log(false, "%s: TLS handshake with %s failed; trying again in clear",
		    jb->j.qid, c->peer);
		jb->next_addr--;
		jb->plain_next = true;
		smtpc_fail(c->c, "4.7.5", "Cannot start TLS: handshake failure");
		return;
	}
	smtpc_fail(c->c, "4.7.5", c->tls == DELIVERY_TLS_VERIFY &&
	    strstr(why, "certificate verif") != NULL ? "Server certificate not verified" :
	    "Cannot start TLS: handshake failure");
}

/*
 * The body after 354. A stored body that needs no dot-stuffing or line repair
 * (most mail) goes from the job's sealed memfd to the socket with sendfile(2),
 * never copied through this process; over TLS, or when something of smtpc's
 * output is still to be queued before it, smtpc_body() copies and stuffs it.
 */
static void
conn_body(struct conn *c, struct job *jb)
{
	if (jb->wire_ready && jb->body_fd != -1 && c->io != NULL &&
	    smtpc_output_pending(c->c) == 0 &&
	    io_write_file(c->io, jb->body_fd, 0, jb->body_len) == 0) {
		smtpc_body_verbatim(c->c);
		return;
	}
	smtpc_body(c->c, jb->body, jb->body_len);
}

static void
conn_event(struct conn *c, const struct smtpc_event *ev)
{
	struct job *jb = c->job;
	char text[DELIVERPROTO_TEXT_MAX + 1];
	switch (ev->type) {
	case SMTPC_EV_READY:
		if (jb != NULL && !c->started) {
			conn_send(c, jb);
			break;
		}
		if (jb != NULL)
			break;
		if (!conn_reusable(c) || a.stopping) {
			smtpc_quit(c->c);
			break;
		}
		/* idle, for the next job to the same next hop */
		c->idle = true;
		c->next = a.idle;
		a.idle = c;
		break;
	case SMTPC_EV_BODY:
		if (jb != NULL) {
			conn_body(c, jb);
			smtpc_body_end(c->c);
		}
		break;
	case SMTPC_EV_RCPT:
		if (jb == NULL || ev->rcpt >= jb->j.n_rcpts)
			break;
		smtpc_describe(c->c, ev, text, sizeof(text));
		job_set(jb, ev->rcpt, ev->status == SMTPC_SENT ? DELIVERPROTO_SENT :
		    ev->status == SMTPC_DEFER ? DELIVERPROTO_DEFERRED : DELIVERPROTO_BOUNCED,
		    (unsigned)ev->code, ev->dsn, c->peer, text);
		jb->res[ev->rcpt].conn_failed = ev->conn_failed;
		/* RFC 3461 5.2.2: a DSN-capable next hop reports success itself */
		jb->res[ev->rcpt].dsn_passed = (smtpc_extensions(c->c) & SMTPC_EXT_DSN) &&
		    jb->j.rcpts[ev->rcpt].notify != 0;
		break;
	case SMTPC_EV_DONE:
		if (jb != NULL) {
			jb->handshake_ok = true;
			c->job = NULL;
			c->started = false;
			jb->conn = NULL;
			job_finish(jb, "");
		}
		break;
	case SMTPC_EV_STARTTLS:
		conn_starttls(c);
		break;
	case SMTPC_EV_CLOSED:
		if (jb != NULL) {
			c->job = NULL;
			jb->conn = NULL;
			smtpc_describe(c->c, ev, text, sizeof(text));
			jb->handshake_ok = jb->handshake_ok || ev->handshake_ok;
			if (ev->loop) {
				jb->loop = true;
				for (size_t i = 0; i < jb->j.n_rcpts; i++)
					if (!jb->have[i] || jb->res[i].conn_failed)
						job_set(jb, i, DELIVERPROTO_BOUNCED, 0, "5.4.6",
						    c->peer, "mail for the destination loops "
						    "back to myself");
				job_finish(jb, text);
			} else {
				/* the server never judged anyone: the next address */
				bool judged = false;
				for (size_t i = 0; i < jb->j.n_rcpts; i++)
					if (jb->have[i] && !jb->res[i].conn_failed)
						judged = true;
				if (!judged && jb->next_addr < jb->n_addrs) {
					for (size_t i = 0; i < jb->j.n_rcpts; i++)
						jb->have[i] = false;
					snprintf(jb->res[0].text, sizeof(jb->res[0].text), "%s", text);
					job_try_next(jb);
				} else {
					/* TLS and AUTH failures keep their 4.7.x */
					const char *dsn = strncmp(ev->dsn, "4.7.", 4) == 0 ?
					    ev->dsn : "4.4.2";
					for (size_t i = 0; i < jb->j.n_rcpts; i++)
						if (!jb->have[i])
							job_set(jb, i, DELIVERPROTO_DEFERRED,
							    0, dsn, c->peer, text);
					job_finish(jb, text);
				}
			}
		}
		break;
	}
}

/* move output to the socket, re-arm the timer, act on the engine's events;
   frees c once the session is closed */
static void
conn_pump(struct conn *c)
{
	struct smtpc_event ev;
	for (;;) {
		size_t len;
		const char *out = smtpc_output(c->c, &len);
		if (len > 0 && c->io != NULL) {
			if (io_write(c->io, out, len) == 0)
				smtpc_output_consume(c->c, len);
			else
				smtpc_feed_eof(c->c);	/* cannot queue: give up */
			io_flush(c->io);
		}
		bool any = false;
		while (smtpc_next_event(c->c, &ev)) {
			any = true;
			conn_event(c, &ev);
		}
		if (smtpc_closed(c->c) && !any) {
			conn_free(c);
			return;
		}
		if (!any && smtpc_output_pending(c->c) == 0)
			break;
	}
	ev_timer_stop(a.loop, &c->t);
	unsigned t = c->idle ? IDLE_SECONDS : smtpc_timeout(c->c);
	if (t > 0) {
		ev_timer_set(&c->t, t, 0);
		ev_timer_start(a.loop, &c->t);
	}
}

static void
conn_io_cb(struct io *io, enum io_event evt, void *arg)
{
	struct conn *c = arg;
	switch (evt) {
	case IO_CONNECTED: {
		c->connected = true;
		a.stats.v[DELIVER_STAT_CONNECTIONS]++;
		struct smtpc_params p;
		smtpc_params_default(&p);
		p.proto = c->job->nh.kind == NH_SMTP ? SMTPC_SMTP : SMTPC_LMTP;
		p.helo_name = a.cfg->server.hostname;
		p.peer = c->peer;
		p.starttls = c->tls >= DELIVERY_TLS_MAY;
		p.require_tls = c->tls >= DELIVERY_TLS_ENCRYPT;
		if (c->job->auth && a.auth_ok) {
			p.auth_user = a.cfg->delivery.relayhost_auth_user;
			p.auth_pass = a.auth_pass;
		}
		c->c = smtpc_new(&p);
		c->created = ev_now(a.loop);
		conn_pump(c);
		return;
	}
	case IO_DATAIN: {
		size_t len;
		const char *d = io_data(io, &len);
		smtpc_feed(c->c, d, len);
		io_drop(io, len);
		conn_pump(c);
		return;
	}
	case IO_EOF:
	case IO_ERROR:
		if (c->c == NULL) {
			/* the connection failed: the next address */
			struct job *jb = c->job;
			char why[DELIVERPROTO_TEXT_MAX + 1];
			snprintf(why, sizeof(why), "connect to %s: %s", c->peer,
			    strerror(io_errno(io) != 0 ? io_errno(io) : ECONNRESET));
			c->job = NULL;
			conn_free(c);
			if (jb != NULL) {
				jb->conn = NULL;
				for (size_t i = 0; i < jb->j.n_rcpts; i++)
					job_set(jb, i, DELIVERPROTO_DEFERRED, 0, "4.4.1", NULL,
					    why);
				for (size_t i = 0; i < jb->j.n_rcpts; i++) {
					jb->res[i].conn_failed = true;
					jb->have[i] = false;
				}
				snprintf(jb->res[0].text, sizeof(jb->res[0].text), "%s", why);
				job_try_next(jb);
			}
			return;
		}
		if (c->tls_pending)
			conn_tls_failed(c);
		else
			smtpc_feed_eof(c->c);
		conn_pump(c);
		return;
	case IO_TLSREADY:
		conn_tls_ready(c);
		conn_pump(c);
		return;
	case IO_LOWAT:
	case IO_TIMEOUT:
		return;
	}
}

static void
fmt_peer(char *buf, size_t len, const char *name, const struct sockaddr *sa)
{
	char ip[64] = "?";
	uint16_t port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
	}
	snprintf(buf, len, "%.200s[%s]:%u", name, ip, port);
}

/* connect to the job's next address; out of addresses: report */
static void
job_try_next(struct job *jb)
{
	while (jb->next_addr < jb->n_addrs) {
		size_t i = jb->next_addr++;
		struct dns_addr *ad = &jb->addrs[i];
		int fd = socket(ad->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		    0);
		if (fd == -1)
			continue;
		struct conn *c = xcalloc(1, sizeof(*c));
		c->io = io_new(a.loop, fd, conn_io_cb, c);
		if (c->io == NULL) {
			close(fd);
			free(c);
			continue;
		}
		c->all_next = a.conns;
		if (a.conns != NULL)
			a.conns->all_prev = c;
		a.conns = c;
		io_set_limits(c->io, IO_IN_MAX_DEFAULT, jb->body_len * 2 + 65536);
		c->job = jb;
		jb->conn = c;
		snprintf(c->nexthop, sizeof(c->nexthop), "%s", jb->j.nexthop);
		if (ad->ss.ss_family == AF_UNIX)
			snprintf(c->peer, sizeof(c->peer), "%.200s", jb->names[i]);
		else
			fmt_peer(c->peer, sizeof(c->peer), jb->names[i],
			    (const struct sockaddr *)&ad->ss);
		snprintf(c->host, sizeof(c->host), "%s", jb->names[i]);
		c->tls = jb->nh.kind == NH_SMTP && !jb->plain_next ? jb->tls :
		    DELIVERY_TLS_NONE;
		jb->plain_next = false;
		ev_timer_init(&c->t, timer_cb, CONNECT_SECONDS, 0);
		c->t.data = c;
		ev_timer_start(a.loop, &c->t);
		if (io_connect(c->io, (const struct sockaddr *)&ad->ss, ad->len) == -1) {
			c->job = NULL;
			jb->conn = NULL;
			conn_free(c);
			continue;
		}
		return;
	}
	/* every address failed before a server judged the recipients */
	const char *why = jb->j.n_rcpts > 0 && jb->res[0].text[0] != '\0' ?
	    jb->res[0].text : "no address to connect to";
	char text[DELIVERPROTO_TEXT_MAX + 1];
	snprintf(text, sizeof(text), "%s", why);
	for (size_t i = 0; i < jb->j.n_rcpts; i++)
		if (!jb->have[i])
			job_set(jb, i, DELIVERPROTO_DEFERRED, 0, "4.4.1", NULL, text);
	job_finish(jb, text);
}

static void
job_dns_cb(void *arg, const struct dns_result *r)
{
	struct job *jb = arg;
	jb->dq = NULL;
	if (r->status != DNS_OK) {
		bool bounce = r->status == DNS_NOTFOUND || r->status == DNS_NULLMX;
		const char *dsn = r->status == DNS_NULLMX ? "5.1.10" :
		    r->status == DNS_NOTFOUND ? "5.4.4" : "4.4.3";
		char text[DELIVERPROTO_TEXT_MAX + 1];
		snprintf(text, sizeof(text), "%s", r->status == DNS_NULLMX ?
		    "Domain does not accept mail (nullMX)" : r->error);
		for (size_t i = 0; i < jb->j.n_rcpts; i++)
			job_set(jb, i, bounce ? DELIVERPROTO_BOUNCED : DELIVERPROTO_DEFERRED, 0,
			    dsn, NULL, text);
		job_finish(jb, text);
		return;
	}
	/* RFC 5321 5.1: MX hosts at or below our own preference are dropped; when
	   we are the best MX the mail loops back to us */
	size_t usable = r->n_hosts;
	if (jb->nh.mx) {
		char why[DELIVERPROTO_TEXT_MAX + 1];
		if (route_mx_usable(a.self, r, jb->nh.host, jb->nh.port, &usable, why,
		    sizeof(why)) == -1) {
			jb->loop = true;
			for (size_t i = 0; i < jb->j.n_rcpts; i++)
				job_set(jb, i, DELIVERPROTO_BOUNCED, 0, "5.4.6", NULL, why);
			job_finish(jb, why);
			return;
		}
	}
	size_t n = 0;
	for (size_t h = 0; h < usable; h++)
		n += r->hosts[h].n_addrs;
	jb->addrs = xcalloc(n + 1, sizeof(*jb->addrs));
	jb->names = xcalloc(n + 1, sizeof(*jb->names));
	for (size_t h = 0; h < usable; h++)
		for (size_t k = 0; k < r->hosts[h].n_addrs; k++) {
			struct dns_addr *ad = &jb->addrs[jb->n_addrs];
			*ad = r->hosts[h].addrs[k];
			if (ad->ss.ss_family == AF_INET)
				((struct sockaddr_in *)&ad->ss)->sin_port = htons(jb->nh.port);
			else
				((struct sockaddr_in6 *)&ad->ss)->sin6_port = htons(jb->nh.port);
			snprintf(jb->names[jb->n_addrs], 256, "%s", r->hosts[h].name);
			jb->n_addrs++;
		}
	job_try_next(jb);
}

/* a literal address or a unix socket: the address list without DNS */
static bool
job_literal(struct job *jb)
{
	struct dns_addr ad;
	memset(&ad, 0, sizeof(ad));
	if (jb->nh.kind == NH_LMTP_UNIX) {
		struct sockaddr_un *su = (struct sockaddr_un *)&ad.ss;
		su->sun_family = AF_UNIX;
		snprintf(su->sun_path, sizeof(su->sun_path), "%.107s", jb->nh.path);
		ad.len = sizeof(*su);
	} else if (jb->nh.literal) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ad.ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ad.ss;
		if (inet_pton(AF_INET, jb->nh.host, &s4->sin_addr) == 1) {
			s4->sin_family = AF_INET;
			s4->sin_port = htons(jb->nh.port);
			ad.len = sizeof(*s4);
		} else if (inet_pton(AF_INET6, jb->nh.host, &s6->sin6_addr) == 1) {
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(jb->nh.port);
			ad.len = sizeof(*s6);
		} else {
			return false;
		}
	} else {
		return false;
	}
	jb->addrs = xcalloc(1, sizeof(*jb->addrs));
	jb->names = xcalloc(1, sizeof(*jb->names));
	jb->addrs[0] = ad;
	snprintf(jb->names[0], 256, "%.255s", jb->nh.kind == NH_LMTP_UNIX ? jb->nh.path :
	    jb->nh.host);
	jb->n_addrs = 1;
	return true;
}

/* the job's TLS level and AUTH, by next hop; -1 when the job was finished
   (deferred) because what the policy needs is missing */
static int
tls_policy_check(struct job *jb)
{
	jb->tls = a.cfg->delivery.tls;
	jb->auth = false;
	for (size_t i = 0; i < a.n_pol; i++)
		if (strcmp(a.pol[i].name, jb->j.nexthop) == 0) {
			jb->tls = a.pol[i].tls;
			jb->auth = a.pol[i].auth;
			break;
		}
	const char *why = NULL, *dsn = "4.7.5";
	if (jb->auth && !a.auth_ok) {
		why = a.auth_err;
		dsn = "4.7.0";
	} else if (jb->tls == DELIVERY_TLS_VERIFY && a.tls_verify == NULL) {
		why = a.tls_verify_err;
	} else if (jb->tls >= DELIVERY_TLS_MAY && a.tls_any == NULL) {
		why = "Cannot start TLS: no TLS context";
	}
	if (why == NULL)
		return 0;
	for (size_t i = 0; i < jb->j.n_rcpts; i++)
		job_set(jb, i, DELIVERPROTO_DEFERRED, 0, dsn, NULL, why);
	job_finish(jb, why);
	return -1;
}

static void
job_start(struct job *jb)
{
	jb->t_start = ev_now(a.loop);
	jb->msg.sender = jb->j.sender;
	jb->msg.size = jb->body_len;
	jb->msg.eightbit = jb->j.eightbit;
	if (jb->nh.kind != NH_MAILDIR) {	/* one pass: both are for the wire */
		bool eight;
		jb->wire_ready = smtpc_body_scan(jb->body, jb->body_len, &eight);
		jb->msg.eightbit = jb->msg.eightbit || eight;
	}
	jb->msg.ret = jb->j.ret == DELIVERPROTO_RET_FULL ? SMTPC_RET_FULL :
	    jb->j.ret == DELIVERPROTO_RET_HDRS ? SMTPC_RET_HDRS : SMTPC_RET_NONE;
	jb->msg.envid = jb->j.envid[0] != '\0' ? jb->j.envid : NULL;
	for (size_t i = 0; i < jb->j.n_rcpts; i++) {
		jb->rc[i].addr = jb->j.rcpts[i].addr;
		jb->rc[i].notify = jb->j.rcpts[i].notify;
		jb->rc[i].orcpt = jb->j.rcpts[i].orcpt[0] != '\0' ? jb->j.rcpts[i].orcpt : NULL;
	}
	jb->msg.rcpts = jb->rc;
	jb->msg.n_rcpts = jb->j.n_rcpts;
	if (jb->nh.kind == NH_SMTP && tls_policy_check(jb) == -1)
		return;
	if (jb->nh.kind == NH_MAILDIR) {
		pthread_mutex_lock(&a.mu);
		struct job **pp = &a.work;
		while (*pp != NULL)
			pp = &(*pp)->next;
		jb->next = NULL;
		*pp = jb;
		pthread_cond_signal(&a.cv);
		pthread_mutex_unlock(&a.mu);
		return;
	}
	/* a session to this next hop that waits for work */
	for (struct conn **pp = &a.idle; *pp != NULL; pp = &(*pp)->next) {
		struct conn *c = *pp;
		if (strcmp(c->nexthop, jb->j.nexthop) == 0 && conn_reusable(c)) {
			*pp = c->next;
			c->idle = false;
			jb->handshake_ok = true;
			conn_send(c, jb);
			conn_pump(c);
			return;
		}
	}
	if (job_literal(jb)) {
		job_try_next(jb);
		return;
	}
	jb->dq = jb->nh.mx ? dns_resolve_mx(a.dns, jb->nh.host, job_dns_cb, jb) :
	    dns_resolve_host(a.dns, jb->nh.host, job_dns_cb, jb);
}

static void
qmgr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	static unsigned char buf[DELIVERPROTO_MSG_MAX];
	for (int rounds = 0; rounds < 32; rounds++) {
		int fd;
		ssize_t n = deliverproto_recv(a.fd, buf, sizeof(buf), &fd);
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			log_warnx("the queue manager's socket %s", n == 0 ? "closed" :
			    strerror(errno));
			ev_io_stop(loop, w);
			ev_break(loop, EVBREAK_ALL);
			return;
		}
		struct job *jb = xcalloc(1, sizeof(*jb));
		jb->body_fd = -1;
		jb->all_next = a.jobs;
		if (a.jobs != NULL)
			a.jobs->all_prev = jb;
		a.jobs = jb;
		const char *err;
		if (deliverproto_job_decode(buf, (size_t)n, &jb->j, &err) == -1 || fd == -1 ||
		    deliverproto_body_check(fd, jb->j.size, &err) == -1 ||
		    route_parse_nexthop(jb->j.nexthop, &jb->nh, &err) == -1) {
			log_warnx("refused job from the queue manager: %s",
			    fd == -1 ? "no body descriptor" : err);
			if (fd != -1)
				close(fd);
			job_free(jb);
			exit(1);
		}
		/* sealed (deliverproto_body_check): it can neither change nor
		   shrink under the map, and sendfile can take it as it is */
		jb->body_len = (size_t)jb->j.size;
		jb->body_fd = fd;
		jb->body = "";
		if (jb->body_len > 0) {
			void *map = mmap(NULL, jb->body_len, PROT_READ,
			    MAP_SHARED | MAP_POPULATE, fd, 0);
			if (map == MAP_FAILED)
				fatal("mmap the body of %s", jb->j.qid);
			jb->body = map;
		}
		a.stats.v[DELIVER_STAT_ACTIVE]++;
		job_start(jb);
	}
}

/* every idle session gets QUIT */
static void
idle_close_all(void)
{
	while (a.idle != NULL) {
		struct conn *c = a.idle;
		a.idle = c->next;
		c->idle = false;
		smtpc_quit(c->c);
		conn_pump(c);
	}
}

static void
stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	a.stopping = true;
	idle_close_all();
	/* in-flight recipients are deferred by the qmgr when our socket closes */
	ev_break(loop, EVBREAK_ALL);
}

static void
notify_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	char buf[CHILD_MSG_MAX + 1];
	ssize_t n = recv(a.notify_fd, buf, CHILD_MSG_MAX, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ev_io_stop(loop, w);
		return;
	}
	buf[n] = '\0';
	if (strcmp(buf, CHILD_MSG_STATS) == 0)
		stats_send();
}

static void
policy_add(const char *nexthop, int tls, bool auth)
{
	struct nexthop nh;
	const char *err;
	if (nexthop == NULL || route_parse_nexthop(nexthop, &nh, &err) == -1 ||
	    nh.kind != NH_SMTP)
		return;
	a.pol = xreallocarray(a.pol, a.n_pol + 1, sizeof(*a.pol));
	struct tls_policy *p = &a.pol[a.n_pol++];
	route_nexthop_name(&nh, p->name, sizeof(p->name));
	p->tls = tls == DELIVERY_TLS_DEFAULT ? a.cfg->delivery.tls : tls;
	p->auth = auth;
}

/* TLS contexts, the per-next-hop policy and the relayhost's password: while we
   may still read the CA file and the password file (before confinement) */
static void
tls_setup(void)
{
	const struct delivery *d = &a.cfg->delivery;
	const char *err;
	bool auth = d->relayhost_auth_user != NULL && d->relayhost_auth_password_file != NULL;

	/* the relayhost first: its entry (and its AUTH) wins for its next hop */
	policy_add(d->relayhost, d->relayhost_tls, auth);
	for (size_t i = 0; i < d->n_routes; i++)
		policy_add(d->routes[i].nexthop, d->routes[i].tls, false);

	const char *ca = d->tls_ca_file != NULL ? d->tls_ca_file : DELIVERY_CA_FILE_DEFAULT;
	/* with a CA the log tells Trusted from Untrusted; without one TLS still works */
	if (tls_client_ctx_new(TLS_CLIENT_MAY, ca, &a.tls_any, &err) == -1 &&
	    tls_client_ctx_new(TLS_CLIENT_MAY, NULL, &a.tls_any, &err) == -1) {
		log_warnx("outbound TLS: %s", err);
		a.tls_any = NULL;
	}
	if (tls_client_ctx_new(TLS_CLIENT_VERIFY, ca, &a.tls_verify, &err) == -1) {
		snprintf(a.tls_verify_err, sizeof(a.tls_verify_err), "Server certificate "
		    "not verified: tls_ca_file %.200s: %s", ca, err);
		a.tls_verify = NULL;
		bool used = d->tls == DELIVERY_TLS_VERIFY;
		for (size_t i = 0; i < a.n_pol; i++)
			used |= a.pol[i].tls == DELIVERY_TLS_VERIFY;
		if (used)
			log_warnx("%s", a.tls_verify_err);
	}
	if (auth) {
		if (secret_read_file(d->relayhost_auth_password_file, a.auth_pass,
		    sizeof(a.auth_pass), &err) == -1) {
			snprintf(a.auth_err, sizeof(a.auth_err), "relayhost_auth: %s", err);
			log_warnx("%s; mail to the relayhost waits", a.auth_err);
		} else {
			a.auth_ok = true;
		}
	}
}

int
main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	log_init("relayvisor/deliver", true);
	xmalloc_keep_heap();	/* a body and its output per message */
	if (signal(SIGHUP, SIG_IGN) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		log_warn("signal");
	a.notify_fd = child_env_fd(CHILD_ENV_NOTIFY_FD);
	a.fd = child_env_fd(DELIVERPROTO_ENV_FD);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	if (a.fd < 0) {
		log_warnx("no %s: relayvisor-deliver runs under relayvisord",
		    DELIVERPROTO_ENV_FD);
		exit(CHILD_EXIT_CONFIG);
	}
	pid_t ppid = getppid();
	char run_user[64];
	child_env_str(CONFINE_ENV_USER, run_user, sizeof(run_user));
	a.cfg = child_load_config(config_default_dir());

	/* no chroot: resolv.conf, connections, Maildirs */
	bool root = geteuid() == 0 && run_user[0] != '\0';
	/* the Maildirs' fixed directory, opened while we may still reach it (a
	   tree below /root is not reachable once we run as the confined user) */
	struct nexthop lnh;
	const char *lerr;
	if (a.cfg->delivery.local != NULL &&
	    route_parse_nexthop(a.cfg->delivery.local, &lnh, &lerr) == 0 &&
	    lnh.kind == NH_MAILDIR) {
		struct passwd *pw = root ? getpwnam(run_user) : NULL;
		if (maildir_base_open(lnh.path, pw != NULL ? pw->pw_uid : (uid_t)-1,
		    pw != NULL ? pw->pw_gid : (gid_t)-1, &lerr) == -1)
			log_warnx("maildir %s: %s", lnh.path, lerr);
	}
	tls_setup();
	struct confine conf = { .user = root ? run_user : NULL, .chroot = NULL,
	    .what = "delivery agent" };
	struct confine_result cres;
	const char *err;
	if (confine_apply(&conf, &cres, &err) == -1) {
		log_warnx("confinement: %s", err);
		exit(1);
	}
	if (a.notify_fd >= 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
			log_warn("prctl PR_SET_PDEATHSIG");
		if (getppid() != ppid)
			fatalx("supervisor exited during start-up");
	}

	a.loop = EV_DEFAULT;
	log_buffer_loop(a.loop);	/* a pass's lines in one write */
	struct dns_params dp;
	memset(&dp, 0, sizeof(dp));
	dp.servers = (const char *const *)a.cfg->delivery.dns_servers.v;
	dp.n_servers = a.cfg->delivery.dns_servers.n;
	a.dns = dns_new(a.loop, &dp, &err);
	if (a.dns == NULL)
		fatalx("DNS: %s", err);
	/* "ourselves" is our hostname and every address:port a listener serves
	   (a wildcard listener: every interface address with its port), so an MX
	   that is another server on one of our addresses is not us */
	a.self = route_self_new(a.cfg->server.hostname);
	struct ifaddrs *ifa = NULL;
	if (getifaddrs(&ifa) == -1)
		ifa = NULL;
	for (size_t i = 0; i < a.cfg->n_instances; i++)
		for (size_t k = 0; k < a.cfg->instances[i].n_listen; k++) {
			const struct listen_addr *la = &a.cfg->instances[i].listen[k];
			const struct sockaddr *sa = (const struct sockaddr *)&la->ss;
			bool any = (sa->sa_family == AF_INET &&
			    ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
			    (sa->sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(
			    &((const struct sockaddr_in6 *)sa)->sin6_addr));
			if (!any) {
				route_self_add(a.self, sa, la->port);
				continue;
			}
			for (struct ifaddrs *x = ifa; x != NULL; x = x->ifa_next)
				if (x->ifa_addr != NULL && (x->ifa_addr->sa_family == AF_INET ||
				    x->ifa_addr->sa_family == AF_INET6))
					route_self_add(a.self, x->ifa_addr, la->port);
		}
	if (ifa != NULL)
		freeifaddrs(ifa);
	pthread_mutex_init(&a.mu, NULL);
	pthread_cond_init(&a.cv, NULL);
	ev_async_init(&a.done_w, done_cb);
	ev_async_start(a.loop, &a.done_w);
	if (pthread_create(&a.worker, NULL, worker_main, NULL) != 0)
		fatalx("cannot start the Maildir worker");

	if (fcntl(a.fd, F_SETFL, O_NONBLOCK) == -1)
		fatal("fcntl");
	ev_io_init(&a.w, qmgr_cb, a.fd, EV_READ);
	ev_io_start(a.loop, &a.w);
	ev_io_init(&a.out_w, out_cb, a.fd, EV_WRITE);
	if (a.notify_fd >= 0) {
		ev_io_init(&a.notify_w, notify_cb, a.notify_fd, EV_READ);
		ev_io_start(a.loop, &a.notify_w);
	}
	static const int stops[] = { CHILD_STOP_SIGNALS };
	ev_signal stop_w[sizeof(stops) / sizeof(stops[0])];
	for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
		ev_signal_init(&stop_w[i], stop_cb, stops[i]);
		ev_signal_start(a.loop, &stop_w[i]);
	}
	log_info("ready");
	child_notify(a.notify_fd, CHILD_MSG_READY);
	ev_run(a.loop, 0);

	stats_send();
	out_flush_at_exit();
	pthread_mutex_lock(&a.mu);
	a.quit = true;
	pthread_cond_signal(&a.cv);
	pthread_mutex_unlock(&a.mu);
	pthread_join(a.worker, NULL);
	/* what is still in flight: the qmgr defers it when our socket closes */
	while (a.conns != NULL)
		conn_free(a.conns);
	while (a.jobs != NULL)
		job_free(a.jobs);
	log_info("stopped");
	explicit_bzero(a.auth_pass, sizeof(a.auth_pass));
	for (size_t i = 0; i < TLS_CACHE_MAX; i++)
		tls_session_free(a.tls_cache[i].s);
	free(a.pol);
	tls_ctx_unref(a.tls_any);
	tls_ctx_unref(a.tls_verify);
	dns_free(a.dns);
	route_self_free(a.self);
	close(a.fd);
	config_free(a.cfg);
	return 0;
}
