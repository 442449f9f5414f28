/*
 * Certificates for listeners (issue 13): the supervisor reads an instance's
 * tls: {cert, key} (as root; a listener never opens key files) and hands the
 * bundle to each of its processes as a sealed memfd over the notify socket
 * (common/childproto.h "TLS"), when the process is spawned and again at every
 * reload, so a renewed certificate (certbot's deploy hook runs
 * `relayvisorctl reload`) is used by new sessions while open ones go on.
 */
#include "supervisor/super_int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/childproto.h"
#include "common/log.h"
#include "common/tls.h"

/* the instance of a listener service that has tls:, or NULL */
static const struct instance *
tls_instance(const struct config *cfg, const struct sv_instance *in)
{
	if (strcmp(in->kind->kind, "smtpd") != 0)
		return NULL;
	const struct instance *inst = config_instance(cfg, in->name);
	return inst != NULL && inst->tls_cert != NULL ? inst : NULL;
}

void
sv_tls_hand(struct sv_proc *p)
{
	struct sv_instance *in = p->inst;
	const struct instance *inst = tls_instance(in->sv->cfg, in);
	const char *error;

	if (inst == NULL || p->notify_fd == -1)
		return;
	int fd = tls_pem_files_memfd(inst->tls_cert, inst->tls_key, &error);
	if (fd == -1) {
		char msg[CHILD_MSG_MAX];
		log_warnx("%s: %s", p->name, error);
		snprintf(msg, sizeof(msg), "%s %s", CHILD_MSG_TLS_ERROR, error);
		if (send(p->notify_fd, msg, strlen(msg), MSG_NOSIGNAL) == -1)
			log_warn("%s: notify", p->name);
		return;
	}
	if (childproto_send_fd(p->notify_fd, CHILD_MSG_TLS, fd) == -1)
		log_warn("%s: handing over the certificate", p->name);
	close(fd);
}

int
sv_tls_check(const struct config *cfg, const char **error_r)
{
	static char err[768];

	for (size_t i = 0; i < cfg->n_instances; i++) {
		const struct instance *inst = &cfg->instances[i];
		if (inst->tls_cert == NULL)
			continue;
		int fd = tls_pem_files_memfd(inst->tls_cert, inst->tls_key, error_r);
		if (fd == -1) {
			snprintf(err, sizeof(err), "instance %s: %s", inst->name, *error_r);
			*error_r = err;
			return -1;
		}
		close(fd);
	}
	return 0;
}

void
sv_tls_reload(struct sv *sv)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
		if (tls_instance(sv->cfg, in) == NULL)
			continue;
		for (unsigned i = 0; i < in->n_procs; i++)
			if (in->procs[i].pid > 0 && fsm_has_child(in->procs[i].fsm.state))
				sv_tls_hand(&in->procs[i]);
	}
}
