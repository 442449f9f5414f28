/*
 * relayvisord's core: the live configuration and the services it runs (one row
 * of the service table, service.h, per kind; an instance of a kind is a struct
 * sv_instance with its listening sockets, if the kind has any, and its
 * processes). The files behind it, one job each:
 *   super.c    start-up (directories, pid file, user), housekeeping, sd_notify,
 *              shutdown, the observers
 *   spawn.c    services and processes: sockets, fork/exec, the state machine's
 *              actions, exits
 *   childio.c  what comes from the children: notify socket (READY, STATS),
 *              output pipes into logs/<name>.log, log rotation
 *   reload.c   reload: validate, diff per service, hand over
 * The control server (control.h) drives it through the functions below and
 * learns of changes through the observer it registers (sv_observe): nothing
 * here calls up into it.
 *
 * Process naming: an instance with procs: 1 has one process named like the
 * instance; with procs: N its processes are "NAME:00" .. "NAME:NN" (supervisord's
 * group:process names) and a bare "NAME" in a command means all of them.
 */
#ifndef RELAYVISOR_SUPER_H
#define RELAYVISOR_SUPER_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "common/childproto.h"
#include "common/config.h"
#include "supervisor/fsm.h"
#include "supervisor/service.h"

struct sv;
struct sv_instance;

struct sv_proc {
	struct sv_instance *inst;
	unsigned index;
	char name[96];
	struct fsm fsm;
	pid_t pid;
	time_t start_time;		/* last spawn */
	time_t stop_time;		/* last exit, 0 = never ran */
	int last_status;		/* wait status of the last exit */
	ev_child child_w;
	ev_timer startsecs_t, stopwait_t, backoff_t;
	int notify_fd;			/* supervisor end of the notify socketpair */
	int peer_fd;			/* a delivery agent: the qmgr's end of its
					   socketpair (deliverproto.h), kept so a
					   restarted qmgr gets it again; -1 none */
	ev_io notify_io;
	int out_fd;			/* read end of the child's stdout/stderr */
	ev_io out_io;
	char outbuf[4096];
	size_t outlen;
	bool stats_pending;
	struct childproto_stats stats;	/* its kind's counters, last STATS */
};

struct sv_instance {
	struct sv_instance *next;
	struct sv *sv;
	char *name;
	const struct svc_kind *kind;	/* its row in the service table */
	struct svc_params sp;		/* pointers into sv->cfg; listen NULL and
					   configured false once retired */
	bool configured;
	int *fds;			/* listening sockets, listen: order */
	struct sockaddr_storage *addrs;
	size_t n_fds;
	struct sv_proc *procs;
	unsigned n_procs;
	int log_fd;			/* logs/<name>.log */
	char bind_error[256];		/* why its sockets could not be bound, "" */
	struct childproto_stats totals;	/* counters of its exited processes (their
					   last STATS, sent at a clean exit), so
					   `stats` survives restarts and reloads */
	uint64_t log_size;		/* its size, for rotation at log_max_bytes */
	time_t log_checked;		/* last check that it still exists */
	bool retired;			/* replaced or removed: stop, never respawn */
	bool await_successor;		/* stop only once the successor is ready */
};

/* where reply lines go (the control connection) */
struct sv_out {
	void (*line)(void *arg, const char *text);
	void *arg;
};

/* start-up: load config, prepare directories, take relayvisord.pid (one
   supervisor per configuration), bind sockets. NULL with *error_r
   (diagnostics already printed to stderr). Called in the process that will run
   the loop: daemon mode forks first. */
struct sv *sv_new(const char *confdir, bool foreground, const char **error_r);
/* after daemonising: create the loop watchers, start autostart instances */
void sv_run(struct sv *sv);

/* who wants to know (the control server): called from the loop, never from
   inside a state transition */
struct sv_observer {
	void (*started)(void *arg);		/* the loop is about to run */
	void (*stopping)(void *arg);		/* shutdown: stop taking requests */
	void (*changed)(void *arg);		/* once per loop pass */
	/* one line of a child's output (tail -f) */
	void (*log_line)(void *arg, const char *instance, const char *line);
	void *arg;
};
void sv_observe(struct sv *sv, const struct sv_observer *obs);
void sv_free(struct sv *sv);
/* the control server closed the listening socket */
void sv_control_closed(struct sv *sv);

struct ev_loop *sv_loop(struct sv *sv);
const struct config *sv_config(const struct sv *sv);
const char *sv_control_path(const struct sv *sv);
/* the configuration directory (-c) */
const char *sv_confdir(const struct sv *sv);
int sv_control_fd(const struct sv *sv);
struct sv_instance *sv_instances(struct sv *sv);
struct sv_instance *sv_instance_find(struct sv *sv, const char *name);
/* a process by its name ("lan", "lan:01"); NULL when unknown */
struct sv_proc *sv_proc_find(struct sv *sv, const char *name);

/* feed one event to a process's state machine and carry out the action;
   returns the action (ACT_REFUSE when the request made no sense) */
enum proc_action sv_proc_event(struct sv_proc *p, enum proc_event ev);
/* send a signal to a running child; -1 when it has none */
int sv_proc_signal(struct sv_proc *p, int sig);
/* the child said READY and is neither stopping nor gone: it takes descriptors
   and requests on its notify socket. Not "RUNNING": that waits for startsecs
   too, and what is handed only at READY (the ready hook) must also reach a
   child that is READY but still STARTING. */
bool sv_proc_serving(const struct sv_proc *p);
/* a queue request (verb and optional argument) to the running qmgr; 0 and
   *id_r, or -1 with *error_r ("no queue manager running") */
int sv_queue_request(struct sv *sv, const char *verb, const char *arg, uint32_t *id_r,
    const char **error_r);
/* the qmgr's answer to request id, once it came: true, code and text */
bool sv_queue_answer(struct sv *sv, uint32_t id, int *code_r, char *text, size_t len);
/* ask every live child of inst (NULL: all) for STATS; returns how many were asked */
int sv_stats_request(struct sv *sv, struct sv_instance *inst);
bool sv_stats_pending(struct sv *sv);

/* reload: re-read the directory and, unless dry_run, apply the difference.
   Lines (diagnostics, "NAME: added process group", ...) go to out. Returns 0, or
   -1 with *error_r when the configuration is invalid or sockets can't be bound. */
int sv_reload(struct sv *sv, bool dry_run, const struct sv_out *out,
    const char **error_r);
/* stop everything and exit the loop once the last child is gone */
void sv_shutdown(struct sv *sv);
bool sv_shutting_down(const struct sv *sv);
/* path of logs/<instance>.log (static buffer), for messages */
const char *sv_log_path(struct sv *sv, const char *instance);
/* open logs/<instance>.log through the logs directory's descriptor, never
   following a link; -1 with errno (EPERM: not a plain file with one link) */
int sv_log_openat(struct sv *sv, const char *instance, int flags);
/* reopen every log (SIGUSR2, relayvisorctl reopen), re-creating the directory */
void sv_reopen_logs(struct sv *sv);

/* an instance serves its listening sockets only while a process of it can
   serve or is coming: inst_listen (re)binds those that are closed (-1 with
   *error_r, also kept in in->bind_error); the supervisor closes them when every
   process has failed (BACKOFF, FATAL), so clients are refused at once and try
   the next MX instead of waiting in a backlog nobody reads */
int sv_inst_listen(struct sv_instance *in, const char **error_r);

#endif
