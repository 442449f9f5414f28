/*
 * instances/authc: the failure table (counts per address, expiry, growing and
 * capped delay, bounded size) and the client of the auth process on a real
 * SOCK_SEQPACKET pair and libev loop (answers by id in any order, TEMPFAIL
 * when the peer is gone, when there is no connection, and on timeout).
 */
#include <check.h>
#include <ev.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/authproto.h"
#include "instances/authc.h"
#include "testmain.h"

static const struct {
	unsigned failures;
	double delay;
} delays[] = {
	{ 0, 0 }, { 1, 0.5 }, { 2, 1 }, { 3, 2 }, { 4, 4 }, { 6, 16 }, { 7, 30 }, { 40, 30 },
};

START_TEST(test_delay_grows_and_is_capped)
{
	struct authfail *t = authfail_new();
	time_t now = 1000000;
	for (unsigned i = 0; i < delays[_i].failures; i++)
		authfail_record(t, "192.0.2.1", now);
	ck_assert_uint_eq(authfail_count(t, "192.0.2.1", now), delays[_i].failures);
	ck_assert_double_eq(authfail_delay(t, "192.0.2.1", now), delays[_i].delay);
	/* another address is not affected */
	ck_assert_double_eq(authfail_delay(t, "192.0.2.2", now), 0);
	authfail_free(t);
}
END_TEST

START_TEST(test_expiry_and_clear)
{
	struct authfail *t = authfail_new();
	time_t now = 1000000;
	authfail_record(t, "2001:db8::1", now);
	authfail_record(t, "2001:db8::1", now + 10);
	ck_assert_uint_eq(authfail_count(t, "2001:db8::1", now + 10 + AUTHFAIL_EXPIRE), 2);
	ck_assert_uint_eq(authfail_count(t, "2001:db8::1", now + 11 + AUTHFAIL_EXPIRE), 0);
	ck_assert_uint_eq(authfail_record(t, "2001:db8::1", now + 11 + AUTHFAIL_EXPIRE), 1);
	authfail_clear(t, "2001:db8::1");
	ck_assert_uint_eq(authfail_count(t, "2001:db8::1", now + 12 + AUTHFAIL_EXPIRE), 0);
	authfail_free(t);
}
END_TEST

/* far more addresses than slots: the table stays bounded and the newest
   failure of a guesser is still counted */
START_TEST(test_bounded)
{
	struct authfail *t = authfail_new();
	char ip[64];
	for (unsigned i = 0; i < AUTHFAIL_SLOTS * 4; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		authfail_record(t, ip, 1000 + i);
	}
	ck_assert_uint_eq(authfail_record(t, "198.51.100.7", 999999), 1);
	ck_assert_uint_eq(authfail_record(t, "198.51.100.7", 999999), 2);
	authfail_free(t);
}
END_TEST

/* ---- the client ---- */

struct got {
	int n;
	uint32_t ids[8];
	enum authproto_result res[8];
	char user[8][SASL_USER_MAX + 1];
	char addr[8][AUTHPROTO_ADDR_MAX + 1];
};

static void
done(void *arg, const struct authproto_answer *a)
{
	struct got *g = arg;
	g->ids[g->n] = a->id;
	g->res[g->n] = a->result;
	snprintf(g->user[g->n], sizeof(g->user[0]), "%s", a->user);
	const char *p = authproto_answer_next_addr(a, NULL);
	snprintf(g->addr[g->n], sizeof(g->addr[0]), "%s", p != NULL ? p : "");
	g->n++;
}

static uint32_t
ask(struct authc *c, const char *user, struct got *g)
{
	struct authproto_request r;
	memset(&r, 0, sizeof(r));
	r.mech = SASL_MECH_PLAIN;
	snprintf(r.client, sizeof(r.client), "192.0.2.1");
	snprintf(r.user, sizeof(r.user), "%s", user);
	snprintf(r.password, sizeof(r.password), "pw");
	uint32_t id = authc_request(c, &r, done, g);
	ck_assert_str_eq(r.password, "");	/* wiped once sent */
	return id;
}

static void
run_until(struct ev_loop *loop, struct got *g, int n)
{
	for (int i = 0; i < 200 && g->n < n; i++)
		ev_run(loop, EVRUN_ONCE);
	ck_assert_int_eq(g->n, n);
}

START_TEST(test_answers_by_id_in_any_order)
{
	struct ev_loop *loop = ev_loop_new(0);
	struct authc *c = authc_new(loop, 30);
	struct got g = { 0 };
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	authc_set_fd(c, sv[0]);
	uint32_t a = ask(c, "alice", &g), b = ask(c, "bob", &g);
	ck_assert_uint_ne(a, b);
	/* the server reads both, answers bob first */
	struct authproto_request r[2];
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *err;
	for (int i = 0; i < 2; i++) {
		ssize_t n = recv(sv[1], buf, sizeof(buf), 0);
		ck_assert_int_eq(authproto_request_decode(buf, (size_t)n, &r[i], &err), 0);
		ck_assert_str_eq(r[i].password, "pw");
	}
	for (int i = 1; i >= 0; i--) {
		struct authproto_answer an;
		memset(&an, 0, sizeof(an));
		an.id = r[i].id;
		an.result = strcmp(r[i].user, "bob") == 0 ? AUTHPROTO_FAIL : AUTHPROTO_OK;
		snprintf(an.user, sizeof(an.user), "%s", r[i].user);
		if (an.result == AUTHPROTO_OK)
			ck_assert_int_eq(authproto_answer_add_addr(&an, "@example.test"), 0);
		int n = authproto_answer_encode(&an, buf, sizeof(buf), &err);
		ck_assert_int_eq(send(sv[1], buf, (size_t)n, 0), n);
	}
	/* an answer to an id nobody asked is ignored */
	run_until(loop, &g, 2);
	ck_assert_uint_eq(g.ids[0], b);
	ck_assert_int_eq(g.res[0], AUTHPROTO_FAIL);
	ck_assert_uint_eq(g.ids[1], a);
	ck_assert_int_eq(g.res[1], AUTHPROTO_OK);
	ck_assert_str_eq(g.user[1], "alice");
	ck_assert_str_eq(g.addr[1], "@example.test");
	/* the peer goes away: what is outstanding is TEMPFAIL, at once */
	ask(c, "carol", &g);
	close(sv[1]);
	run_until(loop, &g, 3);
	ck_assert_int_eq(g.res[2], AUTHPROTO_TEMPFAIL);
	ck_assert(!authc_connected(c));
	/* no connection: TEMPFAIL from the loop, not inside the call */
	ask(c, "dave", &g);
	ck_assert_int_eq(g.n, 3);
	run_until(loop, &g, 4);
	ck_assert_int_eq(g.res[3], AUTHPROTO_TEMPFAIL);
	authc_free(c);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_timeout_and_cancel)
{
	struct ev_loop *loop = ev_loop_new(0);
	struct authc *c = authc_new(loop, 0.05);
	struct got g = { 0 };
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	authc_set_fd(c, sv[0]);
	uint32_t gone = ask(c, "alice", &g);
	authc_cancel(c, gone);		/* its session ended: never called back */
	ask(c, "bob", &g);
	run_until(loop, &g, 1);
	ck_assert_int_eq(g.res[0], AUTHPROTO_TEMPFAIL);
	ck_assert_uint_ne(g.ids[0], gone);
	authc_free(c);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

static Suite *
authc_suite(void)
{
	Suite *s = suite_create("smtpd_authc");
	TCase *tc = tcase_create("authc");
	tcase_add_loop_test(tc, test_delay_grows_and_is_capped, 0,
	    sizeof(delays) / sizeof(delays[0]));
	tcase_add_test(tc, test_expiry_and_clear);
	tcase_add_test(tc, test_bounded);
	tcase_add_test(tc, test_answers_by_id_in_any_order);
	tcase_add_test(tc, test_timeout_and_cancel);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(authc_suite)
