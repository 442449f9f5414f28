/*
 * The life of one supervised process as a pure state machine (s6-supervise style):
 * fsm_step() takes a state and an event and answers the next state and the one
 * action the caller must carry out (spawn, signal, arm a timer). Nothing here forks,
 * signals or arms timers, so the whole table is unit-tested without processes.
 *
 * States and their names are supervisord's. RUNNING needs both the child's READY
 * on the notify socket and startsecs elapsed since the spawn: a child that is
 * ready at once is still watched for startsecs, and a child that is slow to be
 * ready is RUNNING as soon as it says so (after startsecs). A child that dies before
 * RUNNING is a failed start: BACKOFF with a delay of backoff_initial doubling up to
 * backoff_max, then FATAL after startretries failed starts in a row. Reaching
 * RUNNING resets the count (a clean run). Exit 78 (EX_CONFIG) is FATAL at once, and
 * so is a listen address that cannot be bound: retrying fast would not make the
 * address appear, and the reason is shown until someone starts the instance again.
 */
#ifndef RELAYVISOR_FSM_H
#define RELAYVISOR_FSM_H

#include <stdbool.h>

#include "common/config.h"

enum proc_state {
	PROC_STOPPED,
	PROC_STARTING,
	PROC_RUNNING,
	PROC_BACKOFF,
	PROC_STOPPING,
	PROC_EXITED,
	PROC_FATAL,
};
#define PROC_NSTATES 7

enum proc_event {
	EV_START,		/* by hand or autostart */
	EV_STOP,		/* by hand, reload or shutdown */
	EV_READY,		/* child wrote READY */
	EV_STARTSECS,		/* startsecs elapsed since the spawn */
	EV_EXIT_EXPECTED,	/* exit code 0 */
	EV_EXIT_UNEXPECTED,	/* other code or a signal */
	EV_EXIT_CONFIG,		/* exit code 78 */
	EV_BACKOFF_ELAPSED,
	EV_STOPWAIT_ELAPSED,
	EV_SPAWN_FAILED,	/* fork/exec setup failed in the supervisor */
	EV_BIND_FAILED,		/* the instance's listen addresses cannot be bound */
};
#define PROC_NEVENTS 11

enum proc_action {
	ACT_NONE,
	ACT_REFUSE,		/* the request makes no sense in this state */
	ACT_SPAWN,		/* fork+exec a child, arm the startsecs timer */
	ACT_STOP,		/* send stopsignal, arm the stopwait timer */
	ACT_KILL,		/* send SIGKILL */
	ACT_BACKOFF,		/* arm the backoff timer (fsm_backoff_delay) */
	ACT_CANCEL,		/* disarm the backoff timer */
};

struct fsm_params {
	enum autorestart autorestart;
	unsigned startretries;
	double backoff_initial, backoff_max;
};

struct fsm {
	enum proc_state state;
	bool ready;		/* READY received from the current child */
	bool startsecs_done;	/* startsecs elapsed for the current child */
	unsigned failures;	/* failed starts in a row */
};

void fsm_init(struct fsm *f);
/* Apply ev; updates f and returns the action to carry out. */
enum proc_action fsm_step(struct fsm *f, enum proc_event ev, const struct fsm_params *p);
/* delay before the next attempt after `failures` failed starts (>= 1) */
double fsm_backoff_delay(const struct fsm_params *p, unsigned failures);
/* a child process exists in this state */
bool fsm_has_child(enum proc_state s);

const char *fsm_state_name(enum proc_state s);
const char *fsm_event_name(enum proc_event ev);
const char *fsm_action_name(enum proc_action a);

#endif
