/*
 * The supervision state machine (supervisor/fsm.c), table-driven: every
 * (state, event) pair with its expected next state and action, then the backoff
 * delays and whole sequences (failed starts to FATAL, reset after a clean run).
 */
#include <check.h>

#include "supervisor/fsm.h"
#include "tests/unit/testmain.h"

#define S_ PROC_STOPPED
#define ST PROC_STARTING
#define R_ PROC_RUNNING
#define B_ PROC_BACKOFF
#define SP PROC_STOPPING
#define E_ PROC_EXITED
#define F_ PROC_FATAL

struct row {
	enum proc_state from;
	bool ready, startsecs_done;	/* STARTING's flags before the event */
	unsigned failures;		/* failed starts so far */
	enum autorestart autorestart;
	enum proc_event ev;
	enum proc_state to;
	enum proc_action act;
};

#define AU AUTORESTART_UNEXPECTED
#define AT AUTORESTART_TRUE
#define AF AUTORESTART_FALSE

/* startretries 3 in every row */
static const struct row rows[] = {
	/* STOPPED */
	{ S_, 0, 0, 0, AU, EV_START, ST, ACT_SPAWN },
	{ S_, 0, 0, 0, AU, EV_STOP, S_, ACT_REFUSE },
	{ S_, 0, 0, 0, AU, EV_READY, S_, ACT_NONE },
	{ S_, 0, 0, 0, AU, EV_STARTSECS, S_, ACT_NONE },
	{ S_, 0, 0, 0, AU, EV_EXIT_EXPECTED, S_, ACT_NONE },
	{ S_, 0, 0, 0, AU, EV_EXIT_UNEXPECTED, S_, ACT_NONE },
	{ S_, 0, 0, 0, AU, EV_EXIT_CONFIG, S_, ACT_NONE },
	{ S_, 0, 0, 0, AU, EV_BACKOFF_ELAPSED, S_, ACT_NONE },
	{ S_, 0, 0, 0, AU, EV_STOPWAIT_ELAPSED, S_, ACT_NONE },
	{ S_, 0, 0, 0, AU, EV_SPAWN_FAILED, S_, ACT_NONE },
	{ S_, 0, 0, 0, AU, EV_BIND_FAILED, S_, ACT_NONE },
	/* STARTING */
	{ ST, 0, 0, 0, AU, EV_START, ST, ACT_REFUSE },
	{ ST, 0, 0, 0, AU, EV_STOP, SP, ACT_STOP },
	{ ST, 0, 0, 0, AU, EV_READY, ST, ACT_NONE },
	{ ST, 0, 1, 0, AU, EV_READY, R_, ACT_NONE },
	{ ST, 0, 0, 0, AU, EV_STARTSECS, ST, ACT_NONE },
	{ ST, 1, 0, 0, AU, EV_STARTSECS, R_, ACT_NONE },
	{ ST, 1, 0, 0, AU, EV_EXIT_EXPECTED, B_, ACT_BACKOFF },
	{ ST, 0, 0, 0, AU, EV_EXIT_UNEXPECTED, B_, ACT_BACKOFF },
	{ ST, 0, 0, 3, AU, EV_EXIT_UNEXPECTED, F_, ACT_NONE },
	{ ST, 0, 0, 0, AU, EV_EXIT_CONFIG, F_, ACT_NONE },
	{ ST, 0, 0, 0, AU, EV_BACKOFF_ELAPSED, ST, ACT_NONE },
	{ ST, 0, 0, 0, AU, EV_STOPWAIT_ELAPSED, ST, ACT_NONE },
	{ ST, 0, 0, 0, AU, EV_SPAWN_FAILED, B_, ACT_BACKOFF },
	{ ST, 0, 0, 0, AU, EV_BIND_FAILED, F_, ACT_NONE },
	{ ST, 1, 1, 2, AU, EV_BIND_FAILED, F_, ACT_NONE },
	{ ST, 0, 0, 3, AU, EV_SPAWN_FAILED, F_, ACT_NONE },
	/* RUNNING */
	{ R_, 1, 1, 0, AU, EV_START, R_, ACT_REFUSE },
	{ R_, 1, 1, 0, AU, EV_STOP, SP, ACT_STOP },
	{ R_, 1, 1, 0, AU, EV_READY, R_, ACT_NONE },
	{ R_, 1, 1, 0, AU, EV_STARTSECS, R_, ACT_NONE },
	{ R_, 1, 1, 0, AU, EV_EXIT_EXPECTED, E_, ACT_NONE },
	{ R_, 1, 1, 0, AT, EV_EXIT_EXPECTED, ST, ACT_SPAWN },
	{ R_, 1, 1, 0, AF, EV_EXIT_EXPECTED, E_, ACT_NONE },
	{ R_, 1, 1, 0, AU, EV_EXIT_UNEXPECTED, ST, ACT_SPAWN },
	{ R_, 1, 1, 0, AT, EV_EXIT_UNEXPECTED, ST, ACT_SPAWN },
	{ R_, 1, 1, 0, AF, EV_EXIT_UNEXPECTED, E_, ACT_NONE },
	{ R_, 1, 1, 0, AT, EV_EXIT_CONFIG, F_, ACT_NONE },
	{ R_, 1, 1, 0, AU, EV_BACKOFF_ELAPSED, R_, ACT_NONE },
	{ R_, 1, 1, 0, AU, EV_STOPWAIT_ELAPSED, R_, ACT_NONE },
	{ R_, 1, 1, 0, AU, EV_SPAWN_FAILED, R_, ACT_NONE },
	{ R_, 1, 1, 0, AU, EV_BIND_FAILED, R_, ACT_NONE },
	/* BACKOFF */
	{ B_, 0, 0, 1, AU, EV_START, ST, ACT_SPAWN },
	{ B_, 0, 0, 1, AU, EV_STOP, S_, ACT_CANCEL },
	{ B_, 0, 0, 1, AU, EV_READY, B_, ACT_NONE },
	{ B_, 0, 0, 1, AU, EV_STARTSECS, B_, ACT_NONE },
	{ B_, 0, 0, 1, AU, EV_EXIT_EXPECTED, B_, ACT_NONE },
	{ B_, 0, 0, 1, AU, EV_EXIT_UNEXPECTED, B_, ACT_NONE },
	{ B_, 0, 0, 1, AU, EV_EXIT_CONFIG, B_, ACT_NONE },
	{ B_, 0, 0, 1, AU, EV_BACKOFF_ELAPSED, ST, ACT_SPAWN },
	{ B_, 0, 0, 1, AU, EV_STOPWAIT_ELAPSED, B_, ACT_NONE },
	{ B_, 0, 0, 1, AU, EV_SPAWN_FAILED, B_, ACT_NONE },
	{ B_, 0, 0, 1, AU, EV_BIND_FAILED, B_, ACT_NONE },
	/* STOPPING */
	{ SP, 0, 0, 0, AU, EV_START, SP, ACT_REFUSE },
	{ SP, 0, 0, 0, AU, EV_STOP, SP, ACT_NONE },
	{ SP, 0, 0, 0, AU, EV_READY, SP, ACT_NONE },
	{ SP, 0, 0, 0, AU, EV_STARTSECS, SP, ACT_NONE },
	{ SP, 0, 0, 0, AT, EV_EXIT_EXPECTED, S_, ACT_NONE },
	{ SP, 0, 0, 0, AT, EV_EXIT_UNEXPECTED, S_, ACT_NONE },
	{ SP, 0, 0, 0, AU, EV_EXIT_CONFIG, S_, ACT_NONE },
	{ SP, 0, 0, 0, AU, EV_BACKOFF_ELAPSED, SP, ACT_NONE },
	{ SP, 0, 0, 0, AU, EV_STOPWAIT_ELAPSED, SP, ACT_KILL },
	{ SP, 0, 0, 0, AU, EV_SPAWN_FAILED, SP, ACT_NONE },
	{ SP, 0, 0, 0, AU, EV_BIND_FAILED, SP, ACT_NONE },
	/* EXITED */
	{ E_, 0, 0, 0, AU, EV_START, ST, ACT_SPAWN },
	{ E_, 0, 0, 0, AU, EV_STOP, E_, ACT_REFUSE },
	{ E_, 0, 0, 0, AU, EV_READY, E_, ACT_NONE },
	{ E_, 0, 0, 0, AU, EV_STARTSECS, E_, ACT_NONE },
	{ E_, 0, 0, 0, AU, EV_EXIT_EXPECTED, E_, ACT_NONE },
	{ E_, 0, 0, 0, AU, EV_EXIT_UNEXPECTED, E_, ACT_NONE },
	{ E_, 0, 0, 0, AU, EV_EXIT_CONFIG, E_, ACT_NONE },
	{ E_, 0, 0, 0, AU, EV_BACKOFF_ELAPSED, E_, ACT_NONE },
	{ E_, 0, 0, 0, AU, EV_STOPWAIT_ELAPSED, E_, ACT_NONE },
	{ E_, 0, 0, 0, AU, EV_SPAWN_FAILED, E_, ACT_NONE },
	{ E_, 0, 0, 0, AU, EV_BIND_FAILED, E_, ACT_NONE },
	/* FATAL */
	{ F_, 0, 0, 4, AU, EV_START, ST, ACT_SPAWN },
	{ F_, 0, 0, 4, AU, EV_STOP, F_, ACT_REFUSE },
	{ F_, 0, 0, 4, AU, EV_READY, F_, ACT_NONE },
	{ F_, 0, 0, 4, AU, EV_STARTSECS, F_, ACT_NONE },
	{ F_, 0, 0, 4, AU, EV_EXIT_EXPECTED, F_, ACT_NONE },
	{ F_, 0, 0, 4, AU, EV_EXIT_UNEXPECTED, F_, ACT_NONE },
	{ F_, 0, 0, 4, AU, EV_EXIT_CONFIG, F_, ACT_NONE },
	{ F_, 0, 0, 4, AU, EV_BACKOFF_ELAPSED, F_, ACT_NONE },
	{ F_, 0, 0, 4, AU, EV_STOPWAIT_ELAPSED, F_, ACT_NONE },
	{ F_, 0, 0, 4, AU, EV_SPAWN_FAILED, F_, ACT_NONE },
	{ F_, 0, 0, 4, AU, EV_BIND_FAILED, F_, ACT_NONE },
};

static struct fsm_params
params(enum autorestart ar)
{
	struct fsm_params p = {
		.autorestart = ar, .startretries = 3,
		.backoff_initial = 1, .backoff_max = 60,
	};
	return p;
}

START_TEST(test_table)
{
	const struct row *r = &rows[_i];
	struct fsm f;
	fsm_init(&f);
	f.state = r->from;
	f.ready = r->ready;
	f.startsecs_done = r->startsecs_done;
	f.failures = r->failures;
	struct fsm_params p = params(r->autorestart);
	enum proc_action a = fsm_step(&f, r->ev, &p);
	ck_assert_msg(f.state == r->to && a == r->act,
	    "row %d: %s + %s -> %s/%s, expected %s/%s", _i, fsm_state_name(r->from),
	    fsm_event_name(r->ev), fsm_state_name(f.state), fsm_action_name(a),
	    fsm_state_name(r->to), fsm_action_name(r->act));
}
END_TEST

/* every (state, event) pair has a row: the table is the whole behaviour */
START_TEST(test_table_complete)
{
	for (int s = 0; s < PROC_NSTATES; s++) {
		for (int e = 0; e < PROC_NEVENTS; e++) {
			bool found = false;
			for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
				found = found || (rows[i].from == (enum proc_state)s &&
				    rows[i].ev == (enum proc_event)e);
			ck_assert_msg(found, "no row for %s + %s",
			    fsm_state_name((enum proc_state)s),
			    fsm_event_name((enum proc_event)e));
		}
	}
}
END_TEST

static const struct {
	double initial, max;
	unsigned failures;
	double delay;
} delays[] = {
	{ 1, 60, 1, 1 }, { 1, 60, 2, 2 }, { 1, 60, 3, 4 }, { 1, 60, 4, 8 },
	{ 1, 60, 6, 32 }, { 1, 60, 7, 60 }, { 1, 60, 50, 60 },
	{ 0.1, 0.3, 1, 0.1 }, { 0.1, 0.3, 2, 0.2 }, { 0.1, 0.3, 3, 0.3 },
	{ 5, 2, 1, 2 },
};

START_TEST(test_backoff_delay)
{
	struct fsm_params p = params(AU);
	p.backoff_initial = delays[_i].initial;
	p.backoff_max = delays[_i].max;
	double d = fsm_backoff_delay(&p, delays[_i].failures);
	ck_assert_double_eq_tol(d, delays[_i].delay, 1e-9);
}
END_TEST

/* a child that always dies at start: BACKOFF startretries times, then FATAL */
START_TEST(test_failed_starts_to_fatal)
{
	struct fsm f;
	fsm_init(&f);
	struct fsm_params p = params(AU);
	ck_assert_int_eq(fsm_step(&f, EV_START, &p), ACT_SPAWN);
	double prev = 0;
	for (unsigned i = 1; i <= 3; i++) {
		ck_assert_int_eq(fsm_step(&f, EV_EXIT_UNEXPECTED, &p), ACT_BACKOFF);
		ck_assert_int_eq(f.state, PROC_BACKOFF);
		double d = fsm_backoff_delay(&p, f.failures);
		ck_assert(d > prev);
		prev = d;
		ck_assert_int_eq(fsm_step(&f, EV_BACKOFF_ELAPSED, &p), ACT_SPAWN);
	}
	ck_assert_int_eq(fsm_step(&f, EV_EXIT_UNEXPECTED, &p), ACT_NONE);
	ck_assert_int_eq(f.state, PROC_FATAL);
	/* by hand: a fresh series */
	ck_assert_int_eq(fsm_step(&f, EV_START, &p), ACT_SPAWN);
	ck_assert_uint_eq(f.failures, 0);
}
END_TEST

/* reaching RUNNING resets the count: a later crash backs off from the start */
START_TEST(test_clean_run_resets)
{
	struct fsm f;
	fsm_init(&f);
	struct fsm_params p = params(AU);
	fsm_step(&f, EV_START, &p);
	fsm_step(&f, EV_EXIT_UNEXPECTED, &p);
	fsm_step(&f, EV_BACKOFF_ELAPSED, &p);
	fsm_step(&f, EV_EXIT_UNEXPECTED, &p);
	ck_assert_uint_eq(f.failures, 2);
	fsm_step(&f, EV_BACKOFF_ELAPSED, &p);
	fsm_step(&f, EV_READY, &p);
	ck_assert_int_eq(f.state, PROC_STARTING);
	fsm_step(&f, EV_STARTSECS, &p);
	ck_assert_int_eq(f.state, PROC_RUNNING);
	ck_assert_uint_eq(f.failures, 0);
	/* killed while running: respawned at once, not backed off */
	ck_assert_int_eq(fsm_step(&f, EV_EXIT_UNEXPECTED, &p), ACT_SPAWN);
	ck_assert(!f.ready && !f.startsecs_done);
	ck_assert_int_eq(fsm_step(&f, EV_EXIT_UNEXPECTED, &p), ACT_BACKOFF);
	ck_assert_uint_eq(f.failures, 1);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(fsm_state_name(PROC_BACKOFF), "BACKOFF");
	ck_assert_str_eq(fsm_state_name(PROC_FATAL), "FATAL");
	ck_assert_str_eq(fsm_event_name(EV_EXIT_CONFIG), "EXIT_CONFIG");
	ck_assert(fsm_has_child(PROC_STOPPING));
	ck_assert(!fsm_has_child(PROC_BACKOFF));
}
END_TEST

static Suite *
super_fsm_suite(void)
{
	Suite *s = suite_create("super_fsm");
	TCase *tc = tcase_create("fsm");
	tcase_add_loop_test(tc, test_table, 0, (int)(sizeof(rows) / sizeof(rows[0])));
	tcase_add_test(tc, test_table_complete);
	tcase_add_loop_test(tc, test_backoff_delay, 0,
	    (int)(sizeof(delays) / sizeof(delays[0])));
	tcase_add_test(tc, test_failed_starts_to_fatal);
	tcase_add_test(tc, test_clean_run_resets);
	tcase_add_test(tc, test_names);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(super_fsm_suite)
