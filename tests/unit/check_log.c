/*
 * common/log.c in the foreground: the line format, and log_buffer_loop (the
 * loop thread's lines of one pass leave in one write before the loop waits,
 * each write at most PIPE_BUF; fatal lines and other threads' lines at once,
 * never before what was logged earlier). stderr is a SOCK_SEQPACKET socket in
 * these tests, so every write(2) arrives as one record of its own.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "tests/unit/testmain.h"

static int peer = -1;

/* stderr becomes one end of a SOCK_SEQPACKET pair; we read the other */
static void
capture(void)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	ck_assert_int_eq(dup2(sv[0], STDERR_FILENO), STDERR_FILENO);
	close(sv[0]);
	peer = sv[1];
	log_init("test/log", true);
}

/* the next record (one write), "" when none is waiting */
static const char *
record(void)
{
	static char buf[65536];
	ssize_t n = recv(peer, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	if (n == -1 && errno == EAGAIN)
		n = 0;
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	return buf;
}

START_TEST(line_format)
{
	char want[64];

	capture();
	log_info("hello %d", 42);
	snprintf(want, sizeof(want), " test/log[%ld]: hello 42\n", (long)getpid());
	const char *r = record();
	ck_assert_msg(strstr(r, want) != NULL, "got \"%s\"", r);
	log_warnx("careful");
	ck_assert_ptr_nonnull(strstr(record(), "]: warning: careful\n"));
	ck_assert_str_eq(record(), "");
}
END_TEST

START_TEST(one_write_per_pass)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

	capture();
	log_buffer_loop(loop);
	log_info("one");
	log_info("two");
	log_warnx("three");
	ck_assert_str_eq(record(), "");		/* held until the pass ends */
	ev_run(loop, EVRUN_NOWAIT);
	const char *r = record();
	const char *a = strstr(r, "]: one\n"), *b = strstr(r, "]: two\n"),
	    *c = strstr(r, "]: warning: three\n");
	ck_assert_msg(a != NULL && b != NULL && c != NULL && a < b && b < c, "got \"%s\"", r);
	ck_assert_str_eq(record(), "");
	ev_run(loop, EVRUN_NOWAIT);		/* an empty pass writes nothing */
	ck_assert_str_eq(record(), "");
	ev_loop_destroy(loop);
}
END_TEST

/* long lines: no write over PIPE_BUF (atomic on a pipe), nothing lost or reordered */
START_TEST(writes_stay_atomic)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	static char big[1900], all[65536];

	capture();
	log_buffer_loop(loop);
	for (int i = 0; i < 6; i++) {
		memset(big, 'a' + i, sizeof(big) - 1);
		log_info("%d %s", i, big);
	}
	ev_run(loop, EVRUN_NOWAIT);
	size_t n = 0, records = 0;
	for (;;) {
		const char *r = record();
		if (*r == '\0')
			break;
		ck_assert_uint_le(strlen(r), PIPE_BUF);
		ck_assert(r[strlen(r) - 1] == '\n');	/* whole lines only */
		memcpy(all + n, r, strlen(r));
		n += strlen(r);
		records++;
	}
	all[n] = '\0';
	ck_assert_uint_ge(records, 3);
	ck_assert_uint_lt(records, 6);			/* gathered, not one per line */
	const char *p = all;
	for (int i = 0; i < 6; i++) {
		char key[32];
		snprintf(key, sizeof(key), "]: %d %c", i, 'a' + i);
		p = strstr(p, key);
		ck_assert_msg(p != NULL, "line %d missing or out of order", i);
	}
	ev_loop_destroy(loop);
}
END_TEST

static void *
thread_logs(void *arg)
{
	(void)arg;
	log_info("from a thread");
	return NULL;
}

/* another thread's line is not held in the loop thread's buffer */
START_TEST(other_threads_at_once)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pthread_t t;

	capture();
	log_buffer_loop(loop);
	log_info("held");
	ck_assert_int_eq(pthread_create(&t, NULL, thread_logs, NULL), 0);
	pthread_join(t, NULL);
	ck_assert_ptr_nonnull(strstr(record(), "]: from a thread\n"));
	ev_run(loop, EVRUN_NOWAIT);
	ck_assert_ptr_nonnull(strstr(record(), "]: held\n"));
	ev_loop_destroy(loop);
}
END_TEST

/* fatal: what the pass logged before goes first, then the fatal line; a forked
   child's lines carry its own pid */
START_TEST(fatal_flushes_first)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);

	capture();
	log_buffer_loop(loop);
	log_info("the parent's");	/* held across the fork: never the child's to write */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		log_info("before");
		fatalx("the end");
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	char want[64];
	snprintf(want, sizeof(want), "[%ld]: before\n", (long)pid);
	const char *r = record();
	ck_assert_msg(strstr(r, want) != NULL, "got \"%s\"", r);
	ck_assert_msg(strstr(r, "the parent's") == NULL, "got \"%s\"", r);
	ck_assert_ptr_nonnull(strstr(record(), "]: fatal: the end\n"));
	ck_assert_str_eq(record(), "");
	ev_run(loop, EVRUN_NOWAIT);
	ck_assert_ptr_nonnull(strstr(record(), "]: the parent's\n"));
	ev_loop_destroy(loop);
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_test(tc, line_format);
	tcase_add_test(tc, one_write_per_pass);
	tcase_add_test(tc, writes_stay_atomic);
	tcase_add_test(tc, other_threads_at_once);
	tcase_add_test(tc, fatal_flushes_first);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(log_suite)
