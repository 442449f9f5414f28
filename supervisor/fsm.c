/*
 * The supervision state machine: every (state, event) pair in one switch, nops and
 * refusals included, so the behaviour can be reviewed at a glance (s6-supervise).
 * See fsm.h for the rules.
 */
#include "supervisor/fsm.h"

static const char *const state_names[PROC_NSTATES] = {
	"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL",
};

static const char *const event_names[PROC_NEVENTS] = {
	"START", "STOP", "READY", "STARTSECS_ELAPSED", "EXIT_EXPECTED",
	"EXIT_UNEXPECTED", "EXIT_CONFIG", "BACKOFF_ELAPSED", "STOPWAIT_ELAPSED",
	"SPAWN_FAILED", "BIND_FAILED",
};

static const char *const action_names[] = {
	"none", "refuse", "spawn", "stop", "kill", "backoff", "cancel",
};

void
fsm_init(struct fsm *f)
{
	f->state = PROC_STOPPED;
	f->ready = false;
	f->startsecs_done = false;
	f->failures = 0;
}

double
fsm_backoff_delay(const struct fsm_params *p, unsigned failures)
{
	double d = p->backoff_initial;
	for (unsigned i = 1; i < failures && d < p->backoff_max; i++)
		d *= 2;
	return d > p->backoff_max ? p->backoff_max : d;
}

bool
fsm_has_child(enum proc_state s)
{
	return s == PROC_STARTING || s == PROC_RUNNING || s == PROC_STOPPING;
}

/* a fresh child: forget what the previous one said */
static enum proc_action
spawn(struct fsm *f)
{
	f->state = PROC_STARTING;
	f->ready = false;
	f->startsecs_done = false;
	return ACT_SPAWN;
}

/* the child died (or could not be started) before it was RUNNING */
static enum proc_action
failed_start(struct fsm *f, const struct fsm_params *p)
{
	f->failures++;
	if (f->failures > p->startretries) {
		f->state = PROC_FATAL;
		return ACT_NONE;
	}
	f->state = PROC_BACKOFF;
	return ACT_BACKOFF;
}

static enum proc_action
maybe_running(struct fsm *f)
{
	if (f->ready && f->startsecs_done) {
		f->state = PROC_RUNNING;
		f->failures = 0;	/* a clean run resets the backoff */
	}
	return ACT_NONE;
}

static enum proc_action
exit_while_running(struct fsm *f, bool restart)
{
	if (restart)
		return spawn(f);
	f->state = PROC_EXITED;
	return ACT_NONE;
}

enum proc_action
fsm_step(struct fsm *f, enum proc_event ev, const struct fsm_params *p)
{
	switch (f->state) {
	case PROC_STOPPED:
	case PROC_EXITED:
	case PROC_FATAL:
		switch (ev) {
		case EV_START:		f->failures = 0; return spawn(f);
		case EV_STOP:		return ACT_REFUSE;	/* not running */
		case EV_READY:		return ACT_NONE;	/* stale */
		case EV_STARTSECS:	return ACT_NONE;
		case EV_EXIT_EXPECTED:	return ACT_NONE;	/* no child */
		case EV_EXIT_UNEXPECTED: return ACT_NONE;
		case EV_EXIT_CONFIG:	return ACT_NONE;
		case EV_BACKOFF_ELAPSED: return ACT_NONE;
		case EV_STOPWAIT_ELAPSED: return ACT_NONE;
		case EV_SPAWN_FAILED:	return ACT_NONE;
		case EV_BIND_FAILED:	return ACT_NONE;
		}
		break;
	case PROC_STARTING:
		switch (ev) {
		case EV_START:		return ACT_REFUSE;	/* already started */
		case EV_STOP:		f->state = PROC_STOPPING; return ACT_STOP;
		case EV_READY:		f->ready = true; return maybe_running(f);
		case EV_STARTSECS:	f->startsecs_done = true; return maybe_running(f);
		case EV_EXIT_EXPECTED:	return failed_start(f, p);
		case EV_EXIT_UNEXPECTED: return failed_start(f, p);
		case EV_EXIT_CONFIG:	f->state = PROC_FATAL; return ACT_NONE;
		case EV_BACKOFF_ELAPSED: return ACT_NONE;
		case EV_STOPWAIT_ELAPSED: return ACT_NONE;
		case EV_SPAWN_FAILED:	return failed_start(f, p);
		case EV_BIND_FAILED:	f->state = PROC_FATAL; return ACT_NONE;
		}
		break;
	case PROC_RUNNING:
		switch (ev) {
		case EV_START:		return ACT_REFUSE;	/* already started */
		case EV_STOP:		f->state = PROC_STOPPING; return ACT_STOP;
		case EV_READY:		return ACT_NONE;
		case EV_STARTSECS:	return ACT_NONE;
		case EV_EXIT_EXPECTED:
			return exit_while_running(f, p->autorestart == AUTORESTART_TRUE);
		case EV_EXIT_UNEXPECTED:
			return exit_while_running(f, p->autorestart != AUTORESTART_FALSE);
		case EV_EXIT_CONFIG:	f->state = PROC_FATAL; return ACT_NONE;
		case EV_BACKOFF_ELAPSED: return ACT_NONE;
		case EV_STOPWAIT_ELAPSED: return ACT_NONE;
		case EV_SPAWN_FAILED:	return ACT_NONE;
		case EV_BIND_FAILED:	return ACT_NONE;
		}
		break;
	case PROC_BACKOFF:
		switch (ev) {
		case EV_START:		return spawn(f);	/* by hand: now */
		case EV_STOP:		f->state = PROC_STOPPED; return ACT_CANCEL;
		case EV_READY:		return ACT_NONE;
		case EV_STARTSECS:	return ACT_NONE;
		case EV_EXIT_EXPECTED:	return ACT_NONE;
		case EV_EXIT_UNEXPECTED: return ACT_NONE;
		case EV_EXIT_CONFIG:	return ACT_NONE;
		case EV_BACKOFF_ELAPSED: return spawn(f);
		case EV_STOPWAIT_ELAPSED: return ACT_NONE;
		case EV_SPAWN_FAILED:	return ACT_NONE;
		case EV_BIND_FAILED:	return ACT_NONE;
		}
		break;
	case PROC_STOPPING:
		switch (ev) {
		case EV_START:		return ACT_REFUSE;
		case EV_STOP:		return ACT_NONE;	/* already on its way */
		case EV_READY:		return ACT_NONE;
		case EV_STARTSECS:	return ACT_NONE;
		case EV_EXIT_EXPECTED:	f->state = PROC_STOPPED; return ACT_NONE;
		case EV_EXIT_UNEXPECTED: f->state = PROC_STOPPED; return ACT_NONE;
		case EV_EXIT_CONFIG:	f->state = PROC_STOPPED; return ACT_NONE;
		case EV_BACKOFF_ELAPSED: return ACT_NONE;
		case EV_STOPWAIT_ELAPSED: return ACT_KILL;
		case EV_SPAWN_FAILED:	return ACT_NONE;
		case EV_BIND_FAILED:	return ACT_NONE;
		}
		break;
	}
	return ACT_NONE;
}

const char *
fsm_state_name(enum proc_state s)
{
	return (unsigned)s < PROC_NSTATES ? state_names[s] : "UNKNOWN";
}

const char *
fsm_event_name(enum proc_event ev)
{
	return (unsigned)ev < PROC_NEVENTS ? event_names[ev] : "UNKNOWN";
}

const char *
fsm_action_name(enum proc_action a)
{
	return (unsigned)a < sizeof(action_names) / sizeof(action_names[0]) ?
	    action_names[a] : "unknown";
}
