/*
 * The rows of the service table (service.h). A new kind of process is a new
 * row: its static struct svc_kind, its count/params/equal over its config
 * section, and its place in svc_kinds[].
 */
#include "supervisor/service.h"

#include <string.h>

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

/* ---- the table ---- */

const struct svc_kind *const svc_kinds[] = {
	&svc_smtpd,
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
