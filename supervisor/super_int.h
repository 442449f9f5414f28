/*
 * Private to relayvisord's core (super.c, spawn.c, childio.c, reload.c): the
 * supervisor's state and the functions these files call in each other. The
 * control server and the audit see only super.h.
 */
#ifndef RELAYVISOR_SUPER_INT_H
#define RELAYVISOR_SUPER_INT_H

#include <limits.h>

#include "supervisor/super.h"

struct sv {
	struct ev_loop *loop;
	char *confdir;
	bool foreground;
	struct config *cfg;
	struct sv_instance *instances;	/* live, config order */
	struct sv_instance *retired;	/* stopping, freed once their children are gone */
	char bindir[PATH_MAX];		/* where relayvisord is: the kinds' programs */
	bool switch_user;		/* root: children setuid to run_user */
	char *run_user;
	uid_t run_uid;
	gid_t run_gid;
	int control_fd;
	char *control_path;
	struct {			/* the qmgr's answers to queue requests */
		uint32_t id;
		int code;
		char text[CHILD_MSG_MAX];
	} qanswers[8];
	uint32_t qnext;			/* the next request id */
	int wake_fds[2];		/* the spool's commit notification (spool.h):
					   [0] the qmgr's, [1] every listener's */
	char *pidfile;
	int pid_fd;			/* the pid file, flock()ed for our lifetime */
	char *logs_path;		/* the directory logs_fd was opened as */
	int logs_fd;			/* server.logs, root's: log files only via openat */
	ev_signal sigterm_w, sigint_w, sighup_w, sigusr2_w;
	ev_prepare house_w;
	bool shutting_down;
	bool sd_notified;
	char sd_status[512];		/* the last STATUS= sent */
	pid_t pid;
	struct sv_observer obs;		/* the control server's, or all NULL */
};

/* spawn.c */
struct sv_instance *inst_new(struct sv *sv, const struct svc_kind *kind,
    const struct svc_params *sp, const struct sv_instance *old, bool lenient,
    const char **error_r);
void inst_free(struct sv_instance *in);
void inst_set_params(struct sv_instance *in, const struct svc_params *sp);
void inst_stop_all(struct sv_instance *in);
bool inst_running_any(const struct sv_instance *in);
/* the path of a kind's executable */
void sv_program_path(const struct sv *sv, const struct svc_kind *kind, char *buf,
    size_t size);

/* reload.c: "ERROR: CANT_REREAD: ..." is the client's wording; the log has
   its own prefix */
const char *strip_error(const char *e);

/* tlshand.c: listeners' certificates as sealed memfds (spawn, reload) */
void sv_tls_hand(struct sv_proc *p);
int sv_tls_check(const struct config *cfg, const char **error_r);
void sv_tls_reload(struct sv *sv);

/* authhand.c: the password file and the listener <-> auth process pairs */
int sv_auth_passwd_memfd(const char *path, const char **error_r);
void sv_auth_hand(struct sv_proc *p);		/* after any spawn */
void sv_auth_ready(struct sv *sv, struct sv_proc *a);	/* the auth row's .ready */
void sv_auth_reload(struct sv *sv);

/* childio.c */
void proc_notify_cb(struct ev_loop *loop, ev_io *w, int revents);
void proc_out_cb(struct ev_loop *loop, ev_io *w, int revents);
/* one message from the child's notify socket: 1 handled, 0 none waiting,
   -1 the socket is closed */
int proc_notify_read(struct sv_proc *p);
void stats_bank(struct sv_proc *p);
void inst_log_open(struct sv_instance *in);
int sv_logs_setup(struct sv *sv, const char *path, const char **error_r);

#endif
