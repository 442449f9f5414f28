/*
 * relayvisor-auth: checks SMTP AUTH credentials for every listener process
 * (OpenSMTPD's lka, Dovecot's auth). One per host, run by relayvisord when
 * server.auth names a backend (the `auth` row of supervisor/service.c).
 *
 * Why a process of its own: a yescrypt check costs tens of milliseconds and
 * must never stall a listener's event loop, and a process that talks to the
 * network must never hold password hashes (common/authproto.h).
 *
 * Wiring (supervisor/authhand.c): on the notify socket come "PEER <listener>"
 * with one end of a SOCK_SEQPACKET pair per listener process, and, with the
 * passwd_file backend, "PASSWD" with the file's bytes as a sealed memfd (at
 * start, where a broken file is a configuration error: exit 78, and at every
 * reload, where a broken file is logged FILE:LINE and the previous users stay).
 * Requests (authproto.h) are answered in any order, with the user's address
 * patterns (third field of the password file) for sender_login_match.
 *
 * Backends:
 *   passwd_file  crypt(3) on worker threads (auth/hashpool.h), never on the
 *                event loop; confined: chroot into spool/empty, server.user,
 *                no new privileges. It never opens a file.
 *   dovecot      Dovecot's auth-client protocol (common/dovecot_auth.h) on
 *                one non-blocking connection, requests multiplexed, answers
 *                matched by id; reconnected with a timer (1s doubling to 30s)
 *                whenever Dovecot goes away, requests meanwhile answered
 *                TEMPFAIL. Confined to server.user and no new privileges but
 *                NOT chrooted: it must reach Dovecot's socket by its path again
 *                after a Dovecot restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "common/authproto.h"
#include "common/child.h"
#include "common/childproto.h"
#include "common/config.h"
#include "common/confine.h"
#include "common/dovecot_auth.h"
#include "common/log.h"
#include "common/passwd.h"
#include "common/xmalloc.h"
#include "auth/hashpool.h"

#define RECONNECT_MIN 1.0
#define RECONNECT_MAX 30.0

/* one listener process's connection */
struct peer {
	struct peer *next;
	uint64_t serial;		/* answers of the hash workers find it by this */
	char name[96];
	int fd;
	ev_io w;
};

/* a request waiting for Dovecot */
struct pending {
	struct pending *next;
	unsigned did;			/* Dovecot's id */
	struct peer *peer;
	uint32_t id;			/* the listener's id */
};

static struct {
	struct ev_loop *loop;
	struct config *cfg;
	int notify_fd;
	ev_io notify_w;
	struct peer *peers;
	uint64_t next_serial;
	struct passwd_ref *ref;		/* passwd_file backend: the table */
	struct hashpool *pool;		/* its checks */
	/* dovecot backend */
	struct dovecot_auth *da;
	int dfd;
	ev_io dr, dw;
	ev_timer reconnect;
	double backoff;
	struct pending *pending;
	struct childproto_stats st;
} A = { .notify_fd = -1, .dfd = -1 };

/* ---- answers ---- */

static void
answer_send(struct peer *p, const struct authproto_answer *a)
{
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *err;
	int n = authproto_answer_encode(a, buf, sizeof(buf), &err);
	if (n == -1) {
		log_warnx("%s: answer %u: %s", p->name, a->id, err);
		return;
	}
	if (send(p->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
		log_warn("%s: send answer", p->name);
	A.st.v[a->result == AUTHPROTO_OK ? AUTH_STAT_OK : a->result == AUTHPROTO_FAIL ?
	    AUTH_STAT_FAILED : AUTH_STAT_TEMPFAIL]++;
}

static void
answer_simple(struct peer *p, uint32_t id, enum authproto_result r, const char *user,
    const char *reason)
{
	struct authproto_answer a;
	memset(&a, 0, sizeof(a));
	a.id = id;
	a.result = r;
	snprintf(a.user, sizeof(a.user), "%s", user);
	snprintf(a.reason, sizeof(a.reason), "%s", reason);
	answer_send(p, &a);
}

/* ---- passwd_file ---- */

static void
passwd_check(struct peer *p, struct authproto_request *r)
{
	if (A.ref == NULL || A.pool == NULL) {
		answer_simple(p, r->id, AUTHPROTO_TEMPFAIL, r->user, "no password file");
		return;
	}
	if (hashpool_submit(A.pool, p->serial, A.ref, r) == -1)
		answer_simple(p, r->id, AUTHPROTO_TEMPFAIL, r->user, "too many checks waiting");
}

/* a worker finished a check: to its listener, if it is still there */
static void
passwd_done(struct hashjob *j)
{
	for (struct peer *p = A.peers; p != NULL; p = p->next)
		if (p->serial == j->peer) {
			answer_send(p, &j->ans);
			return;
		}
}

/* a new table from the supervisor; a broken one keeps the old */
static int
passwd_take(int fd, bool startup)
{
	struct passwd_errors errs = { NULL, 0 };
	const char *name = A.cfg->server.auth_passwd_file;
	if (fd == -1) {
		log_warnx("PASSWD message without a descriptor");
		return -1;
	}
	struct passwd_db *db = passwd_db_load_fd(fd, name, &errs);
	close(fd);
	if (db == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			log_warnx("%s", errs.v[i]);
		passwd_errors_free(&errs);
		if (!startup)
			log_warnx("password file not reloaded: the previous %zu users stay",
			    A.ref != NULL ? passwd_db_count(A.ref->db) : (size_t)0);
		return -1;
	}
	passwd_errors_free(&errs);
	bool had = A.ref != NULL;
	if (!had)
		/* passwd_db_check makes its hash for unknown users on first use:
		   here, before any worker thread exists */
		(void)passwd_db_check(db, "", "", NULL);
	passwd_ref_drop(A.ref);
	A.ref = passwd_ref_new(db);
	A.st.v[AUTH_STAT_USERS] = passwd_db_count(db);
	log_info("password file %s %s: %zu users", name, had ? "reloaded" : "loaded",
	    passwd_db_count(db));
	return 0;
}

/* ---- dovecot ---- */

static void dovecot_connect(void);

static void
dovecot_update_write(void)
{
	const char *data;
	if (A.dfd == -1)
		return;
	if (dovecot_auth_output(A.da, &data) > 0)
		ev_io_start(A.loop, &A.dw);
	else
		ev_io_stop(A.loop, &A.dw);
}

/* deliver every finished Dovecot request to its listener */
static void
dovecot_replies(void)
{
	struct dovecot_auth_reply r;
	while (dovecot_auth_next_reply(A.da, &r)) {
		struct pending **pp = &A.pending, *pd;
		while ((pd = *pp) != NULL && pd->did != r.id)
			pp = &pd->next;
		if (pd == NULL)
			continue;
		*pp = pd->next;
		if (pd->peer != NULL) {
			enum authproto_result res = r.result == DOVECOT_AUTH_OK ? AUTHPROTO_OK :
			    r.result == DOVECOT_AUTH_FAIL ? AUTHPROTO_FAIL : AUTHPROTO_TEMPFAIL;
			answer_simple(pd->peer, pd->id, res, r.user,
			    res == AUTHPROTO_OK ? "" : r.reason[0] != '\0' ? r.reason :
			    res == AUTHPROTO_FAIL ? "authentication failure" :
			    "temporary failure");
		}
		free(pd);
	}
}

static void
dovecot_lost(const char *why)
{
	if (A.dfd != -1) {
		log_warnx("dovecot %s: %s; reconnecting in %gs", A.cfg->server.auth_dovecot,
		    why, A.backoff);
		ev_io_stop(A.loop, &A.dr);
		ev_io_stop(A.loop, &A.dw);
		close(A.dfd);
		A.dfd = -1;
	}
	dovecot_auth_disconnected(A.da);
	dovecot_replies();
	ev_timer_set(&A.reconnect, A.backoff, 0);
	ev_timer_start(A.loop, &A.reconnect);
	A.backoff = A.backoff * 2 > RECONNECT_MAX ? RECONNECT_MAX : A.backoff * 2;
}

static void
dovecot_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	char buf[8192];
	const char *err;
	ssize_t n = read(A.dfd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		dovecot_lost(n == 0 ? "connection closed" : strerror(errno));
		return;
	}
	if (dovecot_auth_feed(A.da, buf, (size_t)n, &err) == -1) {
		dovecot_lost(err);
		return;
	}
	if (dovecot_auth_ready(A.da))
		A.backoff = RECONNECT_MIN;
	dovecot_replies();
	dovecot_update_write();
}

static void
dovecot_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	const char *data;
	size_t len = dovecot_auth_output(A.da, &data);
	if (len == 0) {
		dovecot_update_write();
		return;
	}
	ssize_t n = send(A.dfd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == -1) {
		dovecot_lost(strerror(errno));
		return;
	}
	dovecot_auth_consume(A.da, (size_t)n);
	dovecot_update_write();
}

static void
dovecot_connect(void)
{
	const char *path = A.cfg->server.auth_dovecot;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("socket");
		dovecot_lost("no socket");
		return;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 &&
	    errno != EINPROGRESS && errno != EAGAIN) {
		char why[300];
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		close(fd);
		log_warnx("dovecot %s: %s; retrying in %gs", path, why, A.backoff);
		dovecot_lost(why);
		return;
	}
	A.dfd = fd;
	ev_io_set(&A.dr, fd, EV_READ);
	ev_io_set(&A.dw, fd, EV_WRITE);
	ev_io_start(A.loop, &A.dr);
	dovecot_update_write();
	log_info("connected to dovecot %s", path);
}

static void
reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	dovecot_connect();
}

static void
dovecot_check(struct peer *p, const struct authproto_request *r)
{
	const char *err;
	if (A.dfd == -1) {
		answer_simple(p, r->id, AUTHPROTO_TEMPFAIL, r->user, "dovecot unreachable");
		return;
	}
	struct dovecot_auth_params dp = {
		.user = r->user, .password = r->password, .service = "smtp",
		.local_ip = r->local[0] != '\0' ? r->local : NULL,
		.remote_ip = r->client[0] != '\0' ? r->client : NULL,
		.secured = r->secured,
	};
	unsigned did = dovecot_auth_request(A.da, &dp, &err);
	if (did == 0) {
		answer_simple(p, r->id, AUTHPROTO_TEMPFAIL, r->user, err);
		return;
	}
	struct pending *pd = xcalloc(1, sizeof(*pd));
	pd->did = did;
	pd->peer = p;
	pd->id = r->id;
	pd->next = A.pending;
	A.pending = pd;
	dovecot_update_write();
}

/* ---- listeners ---- */

static void
peer_free(struct peer *p)
{
	for (struct pending *pd = A.pending; pd != NULL; pd = pd->next)
		if (pd->peer == p) {
			pd->peer = NULL;	/* the answer is dropped */
			if (A.da != NULL)
				dovecot_auth_cancel(A.da, pd->did);
		}
	struct pending **pp = &A.pending;
	while (*pp != NULL) {
		if ((*pp)->peer == NULL) {
			struct pending *d = *pp;
			*pp = d->next;
			free(d);
		} else {
			pp = &(*pp)->next;
		}
	}
	for (struct peer **q = &A.peers; *q != NULL; q = &(*q)->next)
		if (*q == p) {
			*q = p->next;
			break;
		}
	ev_io_stop(A.loop, &p->w);
	close(p->fd);
	free(p);
	A.st.v[AUTH_STAT_PEERS]--;
}

static void
peer_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct peer *p = w->data;
	unsigned char buf[AUTHPROTO_MSG_MAX + 1];
	struct authproto_request r;
	const char *err;
	ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (n == -1)
			log_warn("%s: recv", p->name);
		log_info("%s: disconnected", p->name);
		peer_free(p);
		return;
	}
	if ((size_t)n > AUTHPROTO_MSG_MAX ||
	    authproto_request_decode(buf, (size_t)n, &r, &err) == -1) {
		log_warnx("%s: %s: closing its connection", p->name,
		    (size_t)n > AUTHPROTO_MSG_MAX ? "oversized request" : err);
		OPENSSL_cleanse(buf, sizeof(buf));
		peer_free(p);
		return;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	A.st.v[AUTH_STAT_REQUESTS]++;
	if (A.cfg->server.auth_dovecot != NULL)
		dovecot_check(p, &r);
	else
		passwd_check(p, &r);
	authproto_request_wipe(&r);
}

static void
peer_add(const char *name, int fd)
{
	struct peer *p = xcalloc(1, sizeof(*p));
	p->serial = ++A.next_serial;
	snprintf(p->name, sizeof(p->name), "%.95s", name);
	p->fd = fd;
	ev_io_init(&p->w, peer_cb, fd, EV_READ);
	p->w.data = p;
	ev_io_start(A.loop, &p->w);
	p->next = A.peers;
	A.peers = p;
	A.st.v[AUTH_STAT_PEERS]++;
	log_debug("%s: connected", name);
}

/* ---- the supervisor ---- */

static void
stats_send(void)
{
	char buf[CHILD_MSG_MAX];
	childproto_stats_format(buf, sizeof(buf), &childproto_auth_stats, &A.st);
	child_notify(A.notify_fd, buf);
}

static void
notify_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	char buf[CHILD_MSG_MAX + 1];
	int fd;
	ssize_t n = childproto_recv(A.notify_fd, buf, sizeof(buf), &fd, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ev_io_stop(loop, w);	/* PR_SET_PDEATHSIG ends us */
		return;
	}
	size_t pl = strlen(CHILD_MSG_PEER);
	if (strncmp(buf, CHILD_MSG_PEER " ", pl + 1) == 0 && fd != -1) {
		peer_add(buf + pl + 1, fd);
		return;
	}
	if (strcmp(buf, CHILD_MSG_PASSWD) == 0) {
		if (A.cfg->server.auth_passwd_file != NULL)
			(void)passwd_take(fd, false);
		else if (fd != -1)
			close(fd);
		return;
	}
	if (fd != -1)
		close(fd);
	if (strncmp(buf, CHILD_MSG_PASSWD_ERROR, strlen(CHILD_MSG_PASSWD_ERROR)) == 0)
		log_warnx("password file not reloaded (the previous users stay): %s",
		    buf + strlen(CHILD_MSG_PASSWD_ERROR));
	else if (strcmp(buf, CHILD_MSG_STATS) == 0)
		stats_send();
	else
		log_warnx("notify: unknown message \"%.40s\"", buf);
}

/* supervised with passwd_file: the first message is the file (sent right
   after the fork); a file that cannot be used is a configuration error */
static void
passwd_startup(void)
{
	if (A.notify_fd < 0) {
		struct passwd_errors errs = { NULL, 0 };
		struct passwd_db *db = passwd_db_load(A.cfg->server.auth_passwd_file, &errs);
		for (size_t i = 0; i < errs.n; i++)
			log_warnx("%s", errs.v[i]);
		passwd_errors_free(&errs);
		if (db == NULL)
			exit(CHILD_EXIT_CONFIG);
		(void)passwd_db_check(db, "", "", NULL);	/* see passwd_take */
		A.ref = passwd_ref_new(db);
		A.st.v[AUTH_STAT_USERS] = passwd_db_count(db);
		return;
	}
	int fd = child_await_fd(A.notify_fd, CHILD_MSG_PASSWD, CHILD_MSG_PASSWD_ERROR,
	    "password file");
	if (passwd_take(fd, true) == -1)
		exit(CHILD_EXIT_CONFIG);
}

static void
stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

int
main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	log_init("relayvisor/auth", true);
	if (signal(SIGHUP, SIG_IGN) == SIG_ERR || signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		log_warn("signal");
	A.notify_fd = child_env_fd(CHILD_ENV_NOTIFY_FD);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	pid_t ppid = getppid();
	char run_user[64];
	child_env_str(CONFINE_ENV_USER, run_user, sizeof(run_user));

	A.cfg = child_load_config(config_default_dir());
	if (!CONFIG_AUTH_ON(A.cfg)) {
		log_warnx("the configuration has no server.auth backend");
		exit(CHILD_EXIT_CONFIG);
	}
	A.loop = EV_DEFAULT;
	bool dovecot = A.cfg->server.auth_dovecot != NULL;
	if (!dovecot)
		passwd_startup();

	const char *err;
	char jail[4096];
	snprintf(jail, sizeof(jail), "%s/%s", A.cfg->server.spool, CONFINE_EMPTY_SUBDIR);
	bool root = geteuid() == 0 && run_user[0] != '\0';
	struct confine conf = { .user = root ? run_user : NULL,
	    .chroot = root && !dovecot ? jail : NULL, .what = "auth process" };
	struct confine_result cres;
	if (confine_apply(&conf, &cres, &err) == -1) {
		log_warnx("confinement: %s", err);
		exit(1);
	}
	if (cres.switched)
		log_info("confined: chroot %s, user %s (uid %lu, gid %lu)",
		    cres.chrooted ? jail : "none (dovecot backend)", run_user,
		    (unsigned long)cres.uid, (unsigned long)cres.gid);
	if (A.notify_fd >= 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
			log_warn("prctl PR_SET_PDEATHSIG");
		if (getppid() != ppid)
			fatalx("supervisor exited during start-up");
	}

	static const int stops[] = { CHILD_STOP_SIGNALS };
	ev_signal stop_w[sizeof(stops) / sizeof(stops[0])];
	for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
		ev_signal_init(&stop_w[i], stop_cb, stops[i]);
		ev_signal_start(A.loop, &stop_w[i]);
	}
	if (!dovecot) {
		/* threads only now: confinement switches ids process-wide */
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		A.pool = hashpool_new(A.loop, ncpu < 1 ? 1 : (unsigned)ncpu, passwd_done, &err);
		if (A.pool == NULL)
			fatalx("hash workers: %s", err);
	}
	if (dovecot) {
		A.da = dovecot_auth_new((unsigned long)getpid());
		A.backoff = RECONNECT_MIN;
		ev_init(&A.dr, dovecot_read_cb);
		ev_init(&A.dw, dovecot_write_cb);
		ev_init(&A.reconnect, reconnect_cb);
		dovecot_connect();
	}
	if (A.notify_fd >= 0) {
		ev_io_init(&A.notify_w, notify_cb, A.notify_fd, EV_READ);
		ev_io_start(A.loop, &A.notify_w);
	}
	log_info("ready: backend %s %s", dovecot ? "dovecot" : "passwd_file",
	    dovecot ? A.cfg->server.auth_dovecot : A.cfg->server.auth_passwd_file);
	child_notify(A.notify_fd, CHILD_MSG_READY);
	ev_run(A.loop, 0);

	stats_send();
	hashpool_free(A.pool);
	while (A.peers != NULL)
		peer_free(A.peers);
	while (A.pending != NULL) {
		struct pending *pd = A.pending;
		A.pending = pd->next;
		free(pd);
	}
	if (A.dfd != -1)
		close(A.dfd);
	dovecot_auth_free(A.da);
	passwd_ref_drop(A.ref);
	log_info("stopped");
	config_free(A.cfg);
	if (confine_leak_check_blind(&cres))
		_exit(0);
	return 0;
}
