/*
 * common/authproto: the listener <-> auth process messages. Round trips, the
 * exact wire bytes of one request, every truncation and trailing octet refused,
 * limits, and answers out of order over a real SOCK_SEQPACKET pair.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/authproto.h"
#include "tests/unit/testmain.h"

static struct authproto_request
sample_request(void)
{
	struct authproto_request q = { 0 };
	q.id = 0x01020304;
	q.mech = SASL_MECH_LOGIN;
	q.secured = true;
	strcpy(q.client, "192.0.2.7");
	strcpy(q.local, "::1");
	strcpy(q.user, "alice");
	strcpy(q.password, "s3cret");
	return q;
}

START_TEST(test_request_wire)
{
	struct authproto_request q = sample_request(), back;
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *error;
	int n = authproto_request_encode(&q, buf, sizeof(buf), &error);
	static const unsigned char want[] = {
		'R', 'A', 1, 1, 1, 2, 3, 4,
		2, 1,
		0, 9, '1', '9', '2', '.', '0', '.', '2', '.', '7',
		0, 3, ':', ':', '1',
		0, 5, 'a', 'l', 'i', 'c', 'e',
		0, 6, 's', '3', 'c', 'r', 'e', 't',
	};
	ck_assert_int_eq(n, sizeof(want));
	ck_assert(memcmp(buf, want, sizeof(want)) == 0);
	ck_assert_int_eq(authproto_request_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_uint_eq(back.id, q.id);
	ck_assert_int_eq(back.mech, SASL_MECH_LOGIN);
	ck_assert(back.secured);
	ck_assert_str_eq(back.client, "192.0.2.7");
	ck_assert_str_eq(back.local, "::1");
	ck_assert_str_eq(back.user, "alice");
	ck_assert_str_eq(back.password, "s3cret");
	authproto_request_wipe(&back);
	ck_assert_str_eq(back.password, "");

	/* every truncation, and one octet more, is refused */
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(authproto_request_decode(buf, (size_t)i, &back, &error), -1);
	buf[n] = 0;
	ck_assert_int_eq(authproto_request_decode(buf, (size_t)n + 1, &back, &error), -1);
	ck_assert_str_eq(back.password, "");
	/* an answer is not a request */
	ck_assert_int_eq(authproto_answer_decode(buf, (size_t)n, &(struct authproto_answer){ 0 },
	    &error), -1);
	ck_assert_str_eq(error, "unexpected auth message type");
}
END_TEST

/* single-octet corruptions at given offsets of the sample request */
static const struct {
	int off;
	unsigned char value;
	const char *error;
} corrupt[] = {
	{ 0, 'X', "not an auth protocol message" },
	{ 2, 2, "auth protocol version mismatch" },
	{ 3, 3, "unexpected auth message type" },
	{ 8, 0, "malformed auth request" },	/* mechanism */
	{ 8, 3, "malformed auth request" },
	{ 9, 2, "malformed auth request" },	/* unknown flag */
	{ 11, 10, "malformed auth request" },	/* length past the end */
	{ 30, 0, "malformed auth request" },	/* NUL in the user */
	{ 33, 0xff, "malformed auth request" },	/* password length high octet */
};

START_TEST(test_request_corrupt)
{
	struct authproto_request q = sample_request(), back;
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *error = NULL;
	int n = authproto_request_encode(&q, buf, sizeof(buf), &error);
	buf[corrupt[_i].off] = corrupt[_i].value;
	ck_assert_int_eq(authproto_request_decode(buf, (size_t)n, &back, &error), -1);
	ck_assert_str_eq(error, corrupt[_i].error);
}
END_TEST

START_TEST(test_request_limits)
{
	struct authproto_request q = sample_request(), back;
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *error;
	/* every field at its maximum fits */
	memset(q.user, 'u', SASL_USER_MAX);
	q.user[SASL_USER_MAX] = '\0';
	memset(q.password, 'p', SASL_PASS_MAX);
	q.password[SASL_PASS_MAX] = '\0';
	memset(q.client, '1', AUTHPROTO_IP_MAX);
	q.client[AUTHPROTO_IP_MAX] = '\0';
	int n = authproto_request_encode(&q, buf, sizeof(buf), &error);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(authproto_request_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_uint_eq(strlen(back.password), SASL_PASS_MAX);
	/* a buffer too small */
	ck_assert_int_eq(authproto_request_encode(&q, buf, (size_t)n - 1, &error), -1);
	/* an empty user, or no mechanism */
	q = sample_request();
	q.user[0] = '\0';
	n = authproto_request_encode(&q, buf, sizeof(buf), &error);
	ck_assert_int_eq(authproto_request_decode(buf, (size_t)n, &back, &error), -1);
	q = sample_request();
	q.mech = SASL_MECH_NONE;
	ck_assert_int_eq(authproto_request_encode(&q, buf, sizeof(buf), &error), -1);
	/* an oversized packet is refused before anything is read */
	static unsigned char big[AUTHPROTO_MSG_MAX + 1];
	ck_assert_int_eq(authproto_request_decode(big, sizeof(big), &back, &error), -1);
	ck_assert_str_eq(error, "auth message too long");
}
END_TEST

START_TEST(test_answer_round_trip)
{
	struct authproto_answer a = { 0 }, back;
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *error;
	a.id = 7;
	a.result = AUTHPROTO_OK;
	strcpy(a.user, "alice");
	ck_assert_int_eq(authproto_answer_add_addr(&a, "alice@example.test"), 0);
	ck_assert_int_eq(authproto_answer_add_addr(&a, "@alice.example"), 0);
	ck_assert_int_eq(authproto_answer_add_addr(&a, ""), -1);
	int n = authproto_answer_encode(&a, buf, sizeof(buf), &error);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(authproto_answer_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_uint_eq(back.id, 7);
	ck_assert_int_eq(back.result, AUTHPROTO_OK);
	ck_assert_str_eq(back.user, "alice");
	ck_assert_str_eq(back.reason, "");
	ck_assert_uint_eq(back.naddrs, 2);
	const char *s = authproto_answer_next_addr(&back, NULL);
	ck_assert_str_eq(s, "alice@example.test");
	s = authproto_answer_next_addr(&back, s);
	ck_assert_str_eq(s, "@alice.example");
	ck_assert_ptr_null(authproto_answer_next_addr(&back, s));
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(authproto_answer_decode(buf, (size_t)i, &back, &error), -1);
	/* a result out of range */
	buf[8] = 3;
	ck_assert_int_eq(authproto_answer_decode(buf, (size_t)n, &back, &error), -1);
	buf[8] = AUTHPROTO_TEMPFAIL;
	ck_assert_int_eq(authproto_answer_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_str_eq(authproto_result_name(back.result), "tempfail");

	/* no addresses: the empty list */
	struct authproto_answer f = { .id = 9, .result = AUTHPROTO_FAIL };
	strcpy(f.reason, "authentication failed");
	n = authproto_answer_encode(&f, buf, sizeof(buf), &error);
	ck_assert_int_eq(authproto_answer_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_int_eq(back.result, AUTHPROTO_FAIL);
	ck_assert_str_eq(back.reason, "authentication failed");
	ck_assert_uint_eq(back.naddrs, 0);
	ck_assert_ptr_null(authproto_answer_next_addr(&back, NULL));
}
END_TEST

START_TEST(test_answer_limits)
{
	struct authproto_answer a = { 0 }, back;
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *error;
	char addr[AUTHPROTO_ADDR_MAX + 2];
	/* the most addresses an answer holds, each as long as the bytes allow */
	size_t each = AUTHPROTO_ADDRS_BYTES / AUTHPROTO_ADDRS_MAX - 1;
	memset(addr, 'a', each);
	addr[each] = '\0';
	for (int i = 0; i < AUTHPROTO_ADDRS_MAX; i++)
		ck_assert_int_eq(authproto_answer_add_addr(&a, addr), 0);
	ck_assert_int_eq(authproto_answer_add_addr(&a, "x"), -1);
	memset(a.user, 'u', SASL_USER_MAX);
	memset(a.reason, 'r', AUTHPROTO_REASON_MAX);
	int n = authproto_answer_encode(&a, buf, sizeof(buf), &error);
	ck_assert_int_gt(n, 0);
	ck_assert_int_le(n, AUTHPROTO_MSG_MAX);
	ck_assert_int_eq(authproto_answer_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_uint_eq(back.naddrs, AUTHPROTO_ADDRS_MAX);
	/* a count above the maximum is refused even if the octets follow */
	buf[8 + 2 + 2 + SASL_USER_MAX + 2 + AUTHPROTO_REASON_MAX + 1] = AUTHPROTO_ADDRS_MAX + 1;
	ck_assert_int_eq(authproto_answer_decode(buf, (size_t)n, &back, &error), -1);
	/* one address too long */
	struct authproto_answer b = { 0 };
	memset(addr, 'a', AUTHPROTO_ADDR_MAX + 1);
	addr[AUTHPROTO_ADDR_MAX + 1] = '\0';
	ck_assert_int_eq(authproto_answer_add_addr(&b, addr), -1);
}
END_TEST

/* the transport: a listener with three requests out, answered in reverse order */
START_TEST(test_seqpacket_out_of_order)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *error;
	for (uint32_t id = 1; id <= 3; id++) {
		struct authproto_request q = sample_request();
		q.id = id;
		q.mech = SASL_MECH_PLAIN;
		snprintf(q.user, sizeof(q.user), "user%u", id);
		int n = authproto_request_encode(&q, buf, sizeof(buf), &error);
		ck_assert_int_eq(send(sv[0], buf, (size_t)n, 0), n);
	}
	struct authproto_request got[3];
	for (int i = 0; i < 3; i++) {
		ssize_t n = recv(sv[1], buf, sizeof(buf), 0);
		ck_assert_int_gt(n, 0);
		ck_assert_int_eq(authproto_request_decode(buf, (size_t)n, &got[i], &error), 0);
		ck_assert_uint_eq(got[i].id, (uint32_t)i + 1);
	}
	for (int i = 2; i >= 0; i--) {
		struct authproto_answer a = { .id = got[i].id,
		    .result = i == 1 ? AUTHPROTO_FAIL : AUTHPROTO_OK };
		strcpy(a.user, got[i].user);
		int n = authproto_answer_encode(&a, buf, sizeof(buf), &error);
		ck_assert_int_eq(send(sv[1], buf, (size_t)n, 0), n);
	}
	for (uint32_t want = 3; want >= 1; want--) {
		struct authproto_answer a;
		ssize_t n = recv(sv[0], buf, sizeof(buf), 0);
		ck_assert_int_eq(authproto_answer_decode(buf, (size_t)n, &a, &error), 0);
		ck_assert_uint_eq(a.id, want);
		char user[16];
		snprintf(user, sizeof(user), "user%u", want);
		ck_assert_str_eq(a.user, user);
		ck_assert_int_eq(a.result, want == 2 ? AUTHPROTO_FAIL : AUTHPROTO_OK);
	}
	close(sv[0]);
	close(sv[1]);
}
END_TEST

static Suite *
authproto_suite(void)
{
	Suite *s = suite_create("authproto");
	TCase *tc = tcase_create("authproto");
	tcase_add_test(tc, test_request_wire);
	tcase_add_loop_test(tc, test_request_corrupt, 0, sizeof(corrupt) / sizeof(corrupt[0]));
	tcase_add_test(tc, test_request_limits);
	tcase_add_test(tc, test_answer_round_trip);
	tcase_add_test(tc, test_answer_limits);
	tcase_add_test(tc, test_seqpacket_out_of_order);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(authproto_suite)
