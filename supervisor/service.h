/*
 * The service table: every kind of process relayvisord runs is one row here
 * (Postfix master.cf, Dovecot service {}). A row says which executable, whether
 * the service has listening sockets, how many processes by default, which
 * counters its STATS record carries, how it is confined, its restart policy, and
 * which services of its kind a configuration asks for. The rest of the supervisor
 * (spawn.c, childio.c, reload.c, the control verbs) works on struct svc_params
 * and the row, whatever the kind: adding a kind of process is adding a row (and
 * its configuration section), not a code path.
 *
 * The rows, today's first; the commented ones are what the next issues add, as a
 * guide (they need a config section each: queue:, delivery:, auth:):
 *
 *   kind     program             sockets  procs        stats         confine      restart
 *   smtpd    relayvisor-smtpd    listen:  procs: (1)   smtpd fields  user+chroot  instances.*
 *   qmgr     relayvisor-qmgr     none     1 per host   qmgr fields   user+chroot  queue: or row defaults
 *   deliver  relayvisor-deliver  none     delivery.procs  deliver f. user, no chroot (network client,
 *                                                                     resolv.conf) delivery:
 *   auth     relayvisor-auth     none     1 per host   auth fields   user+chroot  server.auth: (row defaults)
 *
 *   - qmgr: .per_instance = false, .count returns 1 when delivery is configured,
 *     .params fills name "qmgr" and the restart policy; .fds adds the spool's
 *     commit-notification descriptor (common/spool.h) as RELAYVISOR_COMMIT_FD;
 *     the spool is writable through the environment the child opens before
 *     confine_apply(), like a listener's.
 *   - deliver: .params gives procs from delivery.procs; no sockets; its confine
 *     entry keeps no chroot (.chroot = false) because it resolves and connects.
 *   - auth (built): no .fds; supervisor/authhand.c makes one socketpair per
 *     listener process each time the auth process is READY (its .ready) or a
 *     listener is spawned while it runs, and hands both ends over the notify
 *     sockets, so a restart of either side gets fresh ones; the password file
 *     goes to the auth process as a sealed memfd at spawn and on reload.
 */
#ifndef RELAYVISOR_SERVICE_H
#define RELAYVISOR_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/childproto.h"
#include "common/config.h"
#include "supervisor/fsm.h"

struct sv;
struct sv_proc;
struct svc_fd;

/* one service a configuration asks for, as the supervisor runs it */
struct svc_params {
	const char *name;			/* "lan"; points into the config */
	const struct listen_addr *listen;	/* sockets, NULL for a kind without */
	size_t n_listen;
	unsigned procs;				/* processes ("NAME:00" .. when > 1) */
	bool autostart;
	struct fsm_params fp;			/* restart policy */
	double startsecs, stopwaitsecs;
	int stopsignal;
};

struct svc_kind {
	const char *kind;			/* "smtpd": in logs and `avail` */
	const char *program;			/* executable, next to relayvisord */
	const char *path_env;			/* environment override of program */
	bool sockets;				/* binds listen: and hands it over */
	bool instance_arg;			/* argv: --instance NAME */
	const struct childproto_fieldset *stats;
	const char *stats_title;		/* first column of `stats` */
	struct {
		bool user;			/* switches to server.user */
		bool chroot;			/* into spool/empty */
	} confine;
	/* the services of this kind cfg asks for: how many, and the i-th */
	size_t (*count)(const struct config *cfg);
	void (*params)(const struct config *cfg, size_t i, struct svc_params *out);
	/* a service of this kind named name is defined the same way in a and b
	   (reload leaves it running); false when either lacks it */
	bool (*equal)(const struct config *a, const struct config *b, const char *name);
	/* the extra descriptors process p gets (NULL: none); returns how many of
	   out[max] it filled, or -1 (logged) when one could not be made: the
	   spawn fails and the state machine backs off */
	int (*fds)(struct sv *sv, struct sv_proc *p, struct svc_fd *out, size_t max);
	/* process p said READY, and p exited (NULL: nothing to do) */
	void (*ready)(struct sv *sv, struct sv_proc *p);
	void (*exited)(struct sv *sv, struct sv_proc *p);
};

/*
 * Extra descriptors a process gets at spawn (the .fds hook): each goes to the
 * child at the next free number above the configuration and notify descriptors,
 * its number in the environment as env=N. fd stays the supervisor's unless
 * close_after (a socketpair end made for this one child): then the supervisor
 * closes its copy once the child has it.
 */
#define SVC_FDS_MAX 8
struct svc_fd {
	const char *env;
	int fd;
	bool close_after;
};

/* every kind, listener first; NULL-terminated */
extern const struct svc_kind *const svc_kinds[];

/* the params of the service called name in cfg and its kind; false when
   cfg has none */
bool svc_lookup(const struct config *cfg, const char *name,
    const struct svc_kind **kind_r, struct svc_params *out);

#endif
