/*
 * Scheduling arithmetic: retry delays with injected randomness, delay warning and
 * expiry, the per-destination concurrency window, dead marking and the total cap.
 */
#include <check.h>
#include <stdio.h>

#include "deliver/sched.h"
#include "tests/unit/testmain.h"

static const struct {
	unsigned failures;
	double rnd;
	time_t want;
} retry_cases[] = {
	{ 0, 0.5, 300 },		/* 0 counts as the first failure */
	{ 1, 0.5, 300 },
	{ 2, 0.5, 600 },
	{ 3, 0.5, 1200 },
	{ 4, 0.5, 2400 },
	{ 5, 0.5, 3600 },		/* capped */
	{ 40, 0.5, 3600 },		/* no overflow on many failures */
	{ 1, 0.0, 255 },		/* -15 % */
	{ 1, 0.999999, 345 },		/* just under +15 % */
	{ 5, 0.0, 3060 },
	{ 5, 0.999999, 4140 },
	{ 2, 7.0, 600 },		/* out-of-range randomness: no jitter */
};

START_TEST(retry_delay)
{
	struct sched_params p;

	sched_params_default(&p);
	ck_assert_int_eq(sched_retry_delay(&p, retry_cases[_i].failures, retry_cases[_i].rnd),
	    retry_cases[_i].want);
}
END_TEST

START_TEST(jitter_spreads)
{
	struct sched_params p;
	time_t lo = 1 << 30, hi = 0;

	sched_params_default(&p);
	for (int i = 0; i < 100; i++) {
		time_t d = sched_retry_delay(&p, 3, i / 100.0);
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	ck_assert_int_eq(lo, 1020);
	ck_assert_int_ge(hi, 1370);
	ck_assert_int_le(hi, 1380);
}
END_TEST

START_TEST(next_try_before_expiry)
{
	struct sched_params p;

	sched_params_default(&p);
	ck_assert_int_eq(sched_next_try(&p, 1000, 2000, 1, 0.5), 2300);
	/* ten minutes before the give-up time, a 1 h delay is cut to the expiry */
	time_t end = 1000 + p.max_lifetime;
	ck_assert_int_eq(sched_next_try(&p, 1000, end - 600, 9, 0.5), end);
	ck_assert_int_eq(sched_next_try(&p, 1000, end + 5, 9, 0.5), end + 5);
}
END_TEST

START_TEST(warning_and_expiry)
{
	struct sched_params p;

	sched_params_default(&p);
	ck_assert(!sched_warn_due(&p, 0, 4 * 3600 - 1, false));
	ck_assert(sched_warn_due(&p, 0, 4 * 3600, false));
	ck_assert(!sched_warn_due(&p, 0, 4 * 3600, true));
	ck_assert(!sched_expired(&p, 0, 5 * 86400 - 1));
	ck_assert(sched_expired(&p, 0, 5 * 86400));
	p.delay_warning = 0;
	ck_assert(!sched_warn_due(&p, 0, 86400, false));
	p.delay_warning = 6 * 86400;	/* after the give-up time: never */
	ck_assert(!sched_warn_due(&p, 0, 7 * 86400, false));
}
END_TEST

START_TEST(window_grows_to_max)
{
	struct sched_params p;

	sched_params_default(&p);
	struct sched *s = sched_new(&p);
	struct sched_dest *d = sched_dest(s, "smtp:example.com");
	ck_assert_ptr_eq(d, sched_dest(s, "smtp:example.com"));
	ck_assert_uint_eq(sched_dest_window(d), 5);
	for (int i = 0; i < 5; i++) {
		ck_assert(sched_may_connect(s, d, 0));
		sched_conn_start(s, d);
	}
	ck_assert(!sched_may_connect(s, d, 0));
	ck_assert_uint_eq(sched_active(s), 5);
	for (int i = 0; i < 30; i++) {
		sched_conn_done(s, d, true, 0, 0.5);
		sched_conn_start(s, d);
	}
	ck_assert_uint_eq(sched_dest_window(d), 20);
	ck_assert_uint_eq(sched_dest_active(d), 5);
	sched_free(s);
}
END_TEST

START_TEST(total_cap)
{
	struct sched_params p;
	char name[32];

	sched_params_default(&p);
	struct sched *s = sched_new(&p);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "smtp:d%d.example", i);
		struct sched_dest *d = sched_dest(s, name);
		for (int j = 0; j < 5; j++) {
			ck_assert(sched_may_connect(s, d, 0));
			sched_conn_start(s, d);
		}
	}
	ck_assert_uint_eq(sched_active(s), 100);
	struct sched_dest *d = sched_dest(s, "smtp:fresh.example");
	ck_assert(!sched_may_connect(s, d, 0));
	sched_conn_done(s, sched_dest(s, "smtp:d3.example"), true, 0, 0.5);
	ck_assert(sched_may_connect(s, d, 0));
	sched_free(s);
}
END_TEST

START_TEST(dead_after_cohort_then_probe)
{
	struct sched_params p;

	sched_params_default(&p);
	struct sched *s = sched_new(&p);
	struct sched_dest *d = sched_dest(s, "smtp:down.example");
	time_t until;
	for (int i = 0; i < 5; i++)
		sched_conn_start(s, d);
	/* the cohort of 5 fails one by one: the window shrinks, dead on the 5th */
	for (int i = 0; i < 4; i++) {
		sched_conn_done(s, d, false, 100, 0.5);
		ck_assert(!sched_dest_dead(d, 100, NULL));
	}
	ck_assert_uint_eq(sched_dest_window(d), 1);
	sched_conn_done(s, d, false, 100, 0.5);
	ck_assert(sched_dest_dead(d, 100, &until));
	ck_assert_int_eq(until, 400);
	ck_assert(!sched_may_connect(s, d, 399));
	/* after the backoff: one probe, no more */
	ck_assert(sched_may_connect(s, d, 400));
	sched_conn_start(s, d);
	ck_assert(!sched_may_connect(s, d, 400));
	/* the probe fails: dead again for twice as long */
	sched_conn_done(s, d, false, 400, 0.5);
	ck_assert(sched_dest_dead(d, 400, &until));
	ck_assert_int_eq(until, 1000);
	/* the next probe succeeds: alive, the window starts over */
	sched_conn_start(s, d);
	sched_conn_done(s, d, true, 1000, 0.5);
	ck_assert(!sched_dest_dead(d, 1000, NULL));
	ck_assert_uint_eq(sched_dest_window(d), 6);
	ck_assert(sched_may_connect(s, d, 1000));
	sched_free(s);
}
END_TEST

/* an administrator's flush revives a dead destination at once, with the
   initial window; the reason it died is kept for the log */
START_TEST(flush_revives_dead)
{
	struct sched_params p;

	sched_params_default(&p);
	struct sched *s = sched_new(&p);
	struct sched_dest *d = sched_dest(s, "smtp:down.example");
	struct sched_dest *up = sched_dest(s, "smtp:up.example");
	const char *dsn;
	ck_assert_str_eq(sched_dest_reason(d, &dsn), "");
	ck_assert_str_eq(dsn, "");
	for (int i = 0; i < 5; i++)
		sched_conn_start(s, d);
	for (int i = 0; i < 5; i++)
		sched_conn_done(s, d, false, 100, 0.5);
	sched_dest_set_reason(d, "4.4.1", "connect to down.example[192.0.2.1]:25: Connection refused");
	ck_assert(sched_dest_dead(d, 100, NULL));
	ck_assert(!sched_may_connect(s, d, 101));
	sched_conn_start(s, up);
	sched_conn_done(s, up, true, 100, 0.5);
	ck_assert_uint_eq(sched_dest_window(up), 6);
	sched_revive(s);
	ck_assert(!sched_dest_dead(d, 101, NULL));
	ck_assert(sched_may_connect(s, d, 101));
	ck_assert_uint_eq(sched_dest_window(d), 5);
	ck_assert_str_eq(sched_dest_reason(d, &dsn),
	    "connect to down.example[192.0.2.1]:25: Connection refused");
	ck_assert_str_eq(dsn, "4.4.1");
	/* a live destination keeps what it earned */
	ck_assert_uint_eq(sched_dest_window(up), 6);
	/* failing again after the flush: a whole new cohort before it is dead */
	for (int i = 0; i < 4; i++) {
		sched_conn_start(s, d);
		sched_conn_done(s, d, false, 102, 0.5);
	}
	ck_assert(!sched_dest_dead(d, 102, NULL));
	sched_free(s);
}
END_TEST

START_TEST(success_resets_failures)
{
	struct sched_params p;

	sched_params_default(&p);
	struct sched *s = sched_new(&p);
	struct sched_dest *d = sched_dest(s, "smtp:flaky.example");
	for (int round = 0; round < 10; round++) {
		sched_conn_start(s, d);
		sched_conn_done(s, d, false, 0, 0.5);
		sched_conn_start(s, d);
		sched_conn_done(s, d, true, 0, 0.5);
	}
	ck_assert(!sched_dest_dead(d, 0, NULL));
	sched_gc(s, 0);
	ck_assert_uint_eq(sched_active(s), 0);
	sched_free(s);
}
END_TEST

static Suite *
deliver_sched_suite(void)
{
	Suite *s = suite_create("deliver_sched");
	TCase *tc = tcase_create("sched");

	tcase_add_loop_test(tc, retry_delay, 0, sizeof(retry_cases) / sizeof(retry_cases[0]));
	tcase_add_test(tc, jitter_spreads);
	tcase_add_test(tc, next_try_before_expiry);
	tcase_add_test(tc, warning_and_expiry);
	tcase_add_test(tc, window_grows_to_max);
	tcase_add_test(tc, total_cap);
	tcase_add_test(tc, dead_after_cohort_then_probe);
	tcase_add_test(tc, flush_revives_dead);
	tcase_add_test(tc, success_resets_failures);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(deliver_sched_suite)
