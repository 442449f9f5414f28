/*
 * common/dovecot_auth against transcripts of Dovecot's auth-client protocol: the
 * handshake, AUTH lines as Postfix sends them, answers out of order, FAIL with
 * temp, CONT, unknown ids, escaping, lines split at every position, limits, a
 * lost connection.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "common/dovecot_auth.h"
#include "tests/unit/testmain.h"

/* what Dovecot 2.3 sends when a client connects (auth_mechanisms = plain login) */
#define HANDSHAKE "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n" \
	"SPID\t4242\nCUID\t7\nCOOKIE\t0123456789abcdef0123456789abcdef\nDONE\n"

static void
feed(struct dovecot_auth *da, const char *s)
{
	const char *error = NULL;
	ck_assert_msg(dovecot_auth_feed(da, s, strlen(s), &error) == 0, "%s", error);
}

/* everything written so far, consumed */
static const char *
written(struct dovecot_auth *da)
{
	static char buf[8192];
	const char *data;
	size_t n = dovecot_auth_output(da, &data);
	ck_assert_uint_lt(n, sizeof(buf));
	memcpy(buf, data, n);
	buf[n] = '\0';
	dovecot_auth_consume(da, n);
	return buf;
}

static unsigned
ask(struct dovecot_auth *da, const char *user, const char *pw, bool secured)
{
	const char *error = NULL;
	struct dovecot_auth_params p = { .user = user, .password = pw,
	    .local_ip = "127.0.0.1", .remote_ip = "192.0.2.7", .secured = secured };
	unsigned id = dovecot_auth_request(da, &p, &error);
	ck_assert_msg(id > 0, "%s", error);
	return id;
}

START_TEST(test_transcript)
{
	struct dovecot_auth *da = dovecot_auth_new(999);
	ck_assert_str_eq(written(da), "VERSION\t1\t2\nCPID\t999\n");
	ck_assert(!dovecot_auth_ready(da));
	/* asked before the handshake: held back */
	unsigned a = ask(da, "alice", "s3cret", true);
	ck_assert_str_eq(written(da), "");
	feed(da, HANDSHAKE);
	ck_assert(dovecot_auth_ready(da));
	ck_assert_str_eq(written(da), "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\t"
	    "rip=192.0.2.7\tsecured\tresp=AGFsaWNlAHMzY3JldA==\n");
	unsigned b = ask(da, "bob", "wrong", false);
	unsigned c = ask(da, "carol", "pw", false);
	ck_assert_str_eq(written(da),
	    "AUTH\t2\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7\t"
	    "resp=AGJvYgB3cm9uZw==\n"
	    "AUTH\t3\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7\t"
	    "resp=AGNhcm9sAHB3\n");
	ck_assert_uint_eq(dovecot_auth_outstanding(da), 3);

	struct dovecot_auth_reply r;
	ck_assert(!dovecot_auth_next_reply(da, &r));
	/* out of order, with a notice and an answer to an id we never asked */
	feed(da, "FAIL\t3\tuser=carol\ttemp\treason=Internal\001tfailure\n"
	    "NOTICE\tsomething\nOK\t99\tuser=mallory\n"
	    "FAIL\t2\tuser=bob\n"
	    "OK\t1\tuser=Alice\n");
	ck_assert(dovecot_auth_next_reply(da, &r));
	ck_assert_uint_eq(r.id, c);
	ck_assert_int_eq(r.result, DOVECOT_AUTH_TEMPFAIL);
	ck_assert_str_eq(r.user, "carol");
	ck_assert_str_eq(r.reason, "Internal?failure");
	ck_assert(dovecot_auth_next_reply(da, &r));
	ck_assert_uint_eq(r.id, b);
	ck_assert_int_eq(r.result, DOVECOT_AUTH_FAIL);
	ck_assert(dovecot_auth_next_reply(da, &r));
	ck_assert_uint_eq(r.id, a);
	ck_assert_int_eq(r.result, DOVECOT_AUTH_OK);
	ck_assert_str_eq(r.user, "Alice");	/* Dovecot's name for the user */
	ck_assert(!dovecot_auth_next_reply(da, &r));
	ck_assert_uint_eq(dovecot_auth_outstanding(da), 0);

	/* CONT: PLAIN never needs another round */
	unsigned d = ask(da, "dave", "pw", false);
	written(da);
	feed(da, "CONT\t4\t\n");
	ck_assert(dovecot_auth_next_reply(da, &r));
	ck_assert_uint_eq(r.id, d);
	ck_assert_int_eq(r.result, DOVECOT_AUTH_TEMPFAIL);
	ck_assert_str_eq(r.user, "dave");

	/* cancelled: a late answer is ignored */
	unsigned e = ask(da, "erin", "pw", false);
	written(da);
	dovecot_auth_cancel(da, e);
	feed(da, "OK\t5\tuser=erin\n");
	ck_assert(!dovecot_auth_next_reply(da, &r));
	dovecot_auth_free(da);
}
END_TEST

/* the same answers split at every octet position */
START_TEST(test_split_everywhere)
{
	const char *server = HANDSHAKE "OK\t1\tuser=alice\nFAIL\t2\treason=bad\n";
	size_t len = strlen(server);
	for (size_t cut = 0; cut <= len; cut++) {
		struct dovecot_auth *da = dovecot_auth_new(1);
		ask(da, "alice", "pw", false);
		ask(da, "bob", "pw", false);
		const char *error;
		ck_assert_int_eq(dovecot_auth_feed(da, server, cut, &error), 0);
		ck_assert_int_eq(dovecot_auth_feed(da, server + cut, len - cut, &error), 0);
		struct dovecot_auth_reply r;
		ck_assert(dovecot_auth_next_reply(da, &r));
		ck_assert_int_eq(r.result, DOVECOT_AUTH_OK);
		ck_assert(dovecot_auth_next_reply(da, &r));
		ck_assert_int_eq(r.result, DOVECOT_AUTH_FAIL);
		ck_assert_str_eq(r.reason, "bad");
		dovecot_auth_free(da);
	}
}
END_TEST

static const struct {
	const char *server;
	const char *error;
} violations[] = {
	{ "VERSION\t2\t0\n", "Dovecot auth protocol: unsupported major version" },
	{ "MECH\tPLAIN\n", "Dovecot auth protocol: no VERSION line first" },
	{ "VERSION\t1\t2\nMECH\tLOGIN\nDONE\n",
	    "Dovecot auth: no PLAIN mechanism offered (auth_mechanisms = plain login)" },
	{ HANDSHAKE "OK\n", "Dovecot auth protocol: reply without a valid id" },
	{ HANDSHAKE "OK\tx1\n", "Dovecot auth protocol: reply without a valid id" },
	{ HANDSHAKE "OK\t-1\n", "Dovecot auth protocol: reply without a valid id" },
	{ HANDSHAKE "OK\t1x\n", "Dovecot auth protocol: reply without a valid id" },
	{ HANDSHAKE "OK\t99999999999999999999\n", "Dovecot auth protocol: reply without a valid id" },
};

START_TEST(test_violations)
{
	struct dovecot_auth *da = dovecot_auth_new(1);
	ask(da, "alice", "pw", false);
	const char *error = NULL;
	ck_assert_int_eq(dovecot_auth_feed(da, violations[_i].server,
	    strlen(violations[_i].server), &error), -1);
	ck_assert_str_eq(error, violations[_i].error);
	ck_assert(!dovecot_auth_ready(da));
	/* the outstanding request is answered: tempfail */
	struct dovecot_auth_reply r;
	ck_assert(dovecot_auth_next_reply(da, &r));
	ck_assert_int_eq(r.result, DOVECOT_AUTH_TEMPFAIL);
	ck_assert_uint_eq(dovecot_auth_outstanding(da), 0);
	/* until reconnected, nothing more is taken */
	struct dovecot_auth_params p = { .user = "a", .password = "b" };
	ck_assert_uint_eq(dovecot_auth_request(da, &p, &error), 0);
	dovecot_auth_disconnected(da);
	written(da);
	feed(da, HANDSHAKE);
	ck_assert(dovecot_auth_ready(da));
	dovecot_auth_free(da);
}
END_TEST

START_TEST(test_limits)
{
	struct dovecot_auth *da = dovecot_auth_new(1);
	feed(da, HANDSHAKE);
	written(da);
	const char *error;
	/* a line at the limit is fine, one octet more is not */
	static char big[DOVECOT_AUTH_LINE_MAX + 2];
	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(dovecot_auth_feed(da, big, DOVECOT_AUTH_LINE_MAX, &error), 0);
	ck_assert_int_eq(dovecot_auth_feed(da, "\n", 1, &error), 0);
	ck_assert_int_eq(dovecot_auth_feed(da, big, DOVECOT_AUTH_LINE_MAX + 1, &error), -1);
	ck_assert_str_eq(error, "Dovecot auth protocol: line too long");
	dovecot_auth_free(da);

	da = dovecot_auth_new(1);
	feed(da, HANDSHAKE);
	for (int i = 0; i < DOVECOT_AUTH_REQUESTS_MAX; i++)
		ask(da, "u", "p", false);
	struct dovecot_auth_params p = { .user = "u", .password = "p" };
	ck_assert_uint_eq(dovecot_auth_request(da, &p, &error), 0);
	ck_assert_str_eq(error, "too many Dovecot auth requests outstanding");
	/* a lost connection answers every one of them */
	dovecot_auth_disconnected(da);
	struct dovecot_auth_reply r;
	int n = 0;
	while (dovecot_auth_next_reply(da, &r)) {
		ck_assert_int_eq(r.result, DOVECOT_AUTH_TEMPFAIL);
		ck_assert_str_eq(r.reason, "Dovecot auth connection lost");
		n++;
	}
	ck_assert_int_eq(n, DOVECOT_AUTH_REQUESTS_MAX);
	ck_assert_str_eq(written(da), "VERSION\t1\t2\nCPID\t1\n");
	/* bad parameters never reach the wire */
	struct dovecot_auth_params bad[] = {
		{ .user = "", .password = "p" },
		{ .user = "u", .password = "" },
		{ .user = "u", .password = "p", .remote_ip = "1.2.3.4\tuser=root" },
		{ .user = "u", .password = "p", .local_ip = "::1\n" },
		{ .user = "u", .password = "p", .service = "smtp\tx" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_uint_eq(dovecot_auth_request(da, &bad[i], &error), 0);
	/* a user name with a tab cannot inject a field: it is inside base64 */
	feed(da, HANDSHAKE);
	ask(da, "a\tb", "p\nq", false);
	const char *w = written(da);
	ck_assert_str_eq(w, "AUTH\t1025\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\t"
	    "rip=192.0.2.7\tresp=AGEJYgBwCnE=\n");
	dovecot_auth_free(da);
}
END_TEST

static Suite *
dovecot_auth_suite(void)
{
	Suite *s = suite_create("dovecot_auth");
	TCase *tc = tcase_create("dovecot_auth");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_transcript);
	tcase_add_test(tc, test_split_everywhere);
	tcase_add_loop_test(tc, test_violations, 0, sizeof(violations) / sizeof(violations[0]));
	tcase_add_test(tc, test_limits);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(dovecot_auth_suite)
