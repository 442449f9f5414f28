/*
 * The rows of the service table (service.h). A new kind of process is a new
 * row: its static struct svc_kind, its count/params/equal over its config
 * section, and its place in svc_kinds[].
 */
#include "supervisor/service.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/deliverproto.h"
#include "common/log.h"
#include "common/spool.h"
#include "supervisor/super_int.h"

/* ---- descriptors shared by several rows ---- */

/* the write end of the commit notification: every listener wakes the qmgr */
static int
wake_writer_fds(struct sv *sv, struct sv_proc *p, struct svc_fd *out, size_t max)
{
	(void)p;
	if (max < 1 || sv->wake_fds[1] == -1)
		return 0;
	out[0] = (struct svc_fd){ SPOOL_ENV_WAKE_FD, sv->wake_fds[1], false };
	return 1;
}

/* ---- smtpd: one service per instances: entry, relayvisor-smtpd ---- */

static size_t
smtpd_count(const struct config *cfg)
{
	return cfg->n_instances;
}

static void
smtpd_params(const struct config *cfg, size_t i, struct svc_params *out)
{
	const struct instance *ci = &cfg->instances[i];
	memset(out, 0, sizeof(*out));
	out->name = ci->name;
	out->listen = ci->listen;
	out->n_listen = ci->n_listen;
	out->procs = ci->procs > 0 ? ci->procs : 1;
	out->autostart = ci->autostart;
	out->fp.autorestart = ci->autorestart;
	out->fp.startretries = ci->startretries;
	out->fp.backoff_initial = ci->backoff_initial;
	out->fp.backoff_max = ci->backoff_max;
	out->startsecs = ci->startsecs;
	out->stopwaitsecs = ci->stopwaitsecs;
	out->stopsignal = ci->stopsignal;
}

static bool
smtpd_equal(const struct config *a, const struct config *b, const char *name)
{
	const struct instance *x = config_instance(a, name);
	const struct instance *y = config_instance(b, name);
	return x != NULL && y != NULL && config_instance_equal(a, x, b, y);
}

static const struct svc_kind svc_smtpd = {
	.kind = "smtpd",
	.program = "relayvisor-smtpd",
	.path_env = "RELAYVISOR_SMTPD",
	.sockets = true,
	.instance_arg = true,
	.stats = &childproto_smtpd_stats,
	.stats_title = "INSTANCE",
	.confine = { .user = true, .chroot = true },
	.count = smtpd_count,
	.params = smtpd_params,
	.equal = smtpd_equal,
	.fds = wake_writer_fds,
};

/* ---- delivery: relayvisor-qmgr and relayvisor-deliver (delivery:) ---- */

static size_t
delivery_count(const struct config *cfg)
{
	return cfg->delivery.configured ? 1 : 0;
}

/* the restart policy of both rows: always restarted, backing off */
static void
delivery_params_common(struct svc_params *out)
{
	memset(out, 0, sizeof(*out));
	out->autostart = true;
	out->fp.autorestart = AUTORESTART_TRUE;
	out->fp.startretries = 5;
	out->fp.backoff_initial = 1;
	out->fp.backoff_max = 60;
	out->startsecs = 1;
	out->stopwaitsecs = 10;
	out->stopsignal = SIGTERM;
}

static void
qmgr_params(const struct config *cfg, size_t i, struct svc_params *out)
{
	(void)cfg;
	(void)i;
	delivery_params_common(out);
	out->name = "qmgr";
	out->procs = 1;
}

static void
deliver_params(const struct config *cfg, size_t i, struct svc_params *out)
{
	(void)i;
	delivery_params_common(out);
	out->name = "deliver";
	out->procs = cfg->delivery.procs > 0 ? cfg->delivery.procs : 1;
}

static bool
str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* the delivery: sections agree (and server: values the delivery processes use) */
static bool
delivery_equal(const struct config *a, const struct config *b, const char *name)
{
	(void)name;
	const struct delivery *x = &a->delivery, *y = &b->delivery;
	if (!x->configured || !y->configured || !str_eq(x->relayhost, y->relayhost) ||
	    !str_eq(x->local, y->local) || x->n_routes != y->n_routes ||
	    x->dns_servers.n != y->dns_servers.n || x->procs != y->procs ||
	    x->smtp_port != y->smtp_port || x->retry_min != y->retry_min ||
	    x->retry_max != y->retry_max || x->delay_warning != y->delay_warning ||
	    x->max_lifetime != y->max_lifetime ||
	    x->dest_concurrency != y->dest_concurrency ||
	    x->dest_concurrency_max != y->dest_concurrency_max ||
	    x->total_concurrency != y->total_concurrency ||
	    x->tls != y->tls || x->relayhost_tls != y->relayhost_tls ||
	    !str_eq(x->tls_ca_file, y->tls_ca_file) ||
	    !str_eq(x->relayhost_auth_user, y->relayhost_auth_user) ||
	    !str_eq(x->relayhost_auth_password_file, y->relayhost_auth_password_file) ||
	    !str_eq(a->server.hostname, b->server.hostname) ||
	    !str_eq(a->server.spool, b->server.spool) ||
	    a->server.local_domains.n != b->server.local_domains.n)
		return false;
	for (size_t i = 0; i < x->n_routes; i++)
		if (!str_eq(x->routes[i].pattern, y->routes[i].pattern) ||
		    !str_eq(x->routes[i].nexthop, y->routes[i].nexthop) ||
		    x->routes[i].tls != y->routes[i].tls)
			return false;
	for (size_t i = 0; i < x->dns_servers.n; i++)
		if (strcmp(x->dns_servers.v[i], y->dns_servers.v[i]) != 0)
			return false;
	for (size_t i = 0; i < a->server.local_domains.n; i++)
		if (strcmp(a->server.local_domains.v[i], b->server.local_domains.v[i]) != 0)
			return false;
	return true;
}

/* the read end of the commit notification */
static int
wake_reader_fds(struct sv *sv, struct sv_proc *p, struct svc_fd *out, size_t max)
{
	(void)p;
	if (max < 1 || sv->wake_fds[0] == -1)
		return 0;
	out[0] = (struct svc_fd){ SPOOL_ENV_WAKE_FD, sv->wake_fds[0], false };
	return 1;
}

static const struct svc_kind svc_qmgr;

/* the qmgr process that said READY, or NULL: an agent spawned after its READY
   (the ready hook handed the others) is handed now, even within startsecs */
static struct sv_proc *
qmgr_proc(struct sv *sv)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		if (in->kind == &svc_qmgr && in->n_procs > 0 && sv_proc_serving(&in->procs[0]))
			return &in->procs[0];
	return NULL;
}

/* hand the qmgr its end of agent a's socketpair */
static void
peer_send(struct sv_proc *q, struct sv_proc *a)
{
	char msg[CHILD_MSG_MAX];
	int n = snprintf(msg, sizeof(msg), "%s %s", CHILD_MSG_PEER, a->name);
	if (deliverproto_send(q->notify_fd, msg, (size_t)n, a->peer_fd) == -1)
		log_warn("%s: handing %s's socket to %s", q->name, a->name, q->name);
}

/*
 * A delivery agent's descriptors: a fresh SOCK_SEQPACKET pair per spawn; the
 * agent gets one end, the supervisor keeps the other (peer_fd) and hands it to
 * the qmgr now if it runs, else when it says READY. A restarted qmgr thus finds
 * every agent again; a restarted agent comes with a new pair, and the qmgr sees
 * the old one end (it defers what that agent had in flight).
 */
static int
deliver_fds(struct sv *sv, struct sv_proc *p, struct svc_fd *out, size_t max)
{
	int pair[2];
	if (max < 1)
		return 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == -1) {
		log_warn("%s: socketpair", p->name);
		return -1;
	}
	if (p->peer_fd != -1)
		close(p->peer_fd);
	p->peer_fd = pair[0];
	out[0] = (struct svc_fd){ DELIVERPROTO_ENV_FD, pair[1], true };
	struct sv_proc *q = qmgr_proc(sv);
	if (q != NULL)
		peer_send(q, p);
	return 1;
}

static void
deliver_exited(struct sv *sv, struct sv_proc *p)
{
	(void)sv;
	if (p->peer_fd != -1) {
		close(p->peer_fd);
		p->peer_fd = -1;
	}
}

static void
qmgr_ready(struct sv *sv, struct sv_proc *q)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		for (unsigned i = 0; in->kind != &svc_qmgr && i < in->n_procs; i++)
			if (in->procs[i].peer_fd != -1)
				peer_send(q, &in->procs[i]);
}

static const struct svc_kind svc_qmgr = {
	.kind = "qmgr",
	.program = "relayvisor-qmgr",
	.path_env = "RELAYVISOR_QMGR",
	.sockets = false,
	.instance_arg = false,
	.stats = &childproto_qmgr_stats,
	.stats_title = "QMGR",
	.confine = { .user = true, .chroot = true },
	.count = delivery_count,
	.params = qmgr_params,
	.equal = delivery_equal,
	.fds = wake_reader_fds,
	.ready = qmgr_ready,
};

static const struct svc_kind svc_deliver = {
	.kind = "deliver",
	.program = "relayvisor-deliver",
	.path_env = "RELAYVISOR_DELIVER",
	.sockets = false,
	.instance_arg = false,
	.stats = &childproto_deliver_stats,
	.stats_title = "AGENT",
	/* no chroot: it resolves (resolv.conf), connects, and writes Maildirs */
	.confine = { .user = true, .chroot = false },
	.count = delivery_count,
	.params = deliver_params,
	.equal = delivery_equal,
	.fds = deliver_fds,
	.exited = deliver_exited,
};

/* ---- auth: relayvisor-auth, one per host when server.auth names a backend ---- */

static size_t
auth_count(const struct config *cfg)
{
	return CONFIG_AUTH_ON(cfg) ? 1 : 0;
}

static void
auth_params(const struct config *cfg, size_t i, struct svc_params *out)
{
	(void)cfg;
	(void)i;
	delivery_params_common(out);
	out->name = "auth";
	out->procs = 1;
}

/* the backend is the same (a changed password file is handed over on reload,
   without a restart; another file or socket restarts the process) */
static bool
auth_equal(const struct config *a, const struct config *b, const char *name)
{
	(void)name;
	return CONFIG_AUTH_ON(a) && CONFIG_AUTH_ON(b) &&
	    str_eq(a->server.auth_passwd_file, b->server.auth_passwd_file) &&
	    str_eq(a->server.auth_dovecot, b->server.auth_dovecot) &&
	    str_eq(a->server.user, b->server.user) &&
	    str_eq(a->server.spool, b->server.spool);
}

static const struct svc_kind svc_auth = {
	.kind = "auth",
	.program = "relayvisor-auth",
	.path_env = "RELAYVISOR_AUTH",
	.sockets = false,
	.instance_arg = false,
	.stats = &childproto_auth_stats,
	.stats_title = "AUTH",
	/* chroot for passwd_file; none for dovecot (auth/main.c: it reconnects
	   to Dovecot's socket by path) */
	.confine = { .user = true, .chroot = true },
	.count = auth_count,
	.params = auth_params,
	.equal = auth_equal,
	.ready = sv_auth_ready,
};

/* ---- the table ---- */

const struct svc_kind *const svc_kinds[] = {
	&svc_smtpd,
	&svc_qmgr,
	&svc_deliver,
	&svc_auth,
	NULL,
};

bool
svc_lookup(const struct config *cfg, const char *name, const struct svc_kind **kind_r,
    struct svc_params *out)
{
	for (size_t k = 0; svc_kinds[k] != NULL; k++) {
		const struct svc_kind *kind = svc_kinds[k];
		size_t n = kind->count(cfg);
		for (size_t i = 0; i < n; i++) {
			kind->params(cfg, i, out);
			if (strcmp(out->name, name) == 0) {
				*kind_r = kind;
				return true;
			}
		}
	}
	return false;
}
