/*
 * common/sasl: AUTH PLAIN and LOGIN exchanges as transcripts (what the client
 * sends, what the state machine answers), base64 strictness, limits.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/sasl.h"
#include "tests/unit/testmain.h"

/* base64 of the test credentials (printf '\0alice\0s3cret' | base64 ...) */
#define PLAIN_ALICE	"AGFsaWNlAHMzY3JldA=="		/* \0alice\0s3cret */
#define PLAIN_AUTHZ	"YWxpY2UAYWxpY2UAczNjcmV0"	/* alice\0alice\0s3cret */
#define PLAIN_OTHERZ	"Ym9iAGFsaWNlAHMzY3JldA=="	/* bob\0alice\0s3cret */
#define PLAIN_ONE_NUL	"YWxpY2UAczNjcmV0"		/* alice\0s3cret */
#define PLAIN_THREE	"AGFsaWNlAHMzY3JldAB4"		/* \0alice\0s3cret\0x */
#define PLAIN_NOUSER	"AABzM2NyZXQ="			/* \0\0s3cret */
#define PLAIN_NOPASS	"AGFsaWNlAA=="			/* \0alice\0 */
#define PLAIN_CTRL	"AGFsDWljZQBzM2NyZXQ="		/* \0al\rice\0s3cret */
#define PLAIN_COLON_PW	"AGFsaWNlAHA6dwpk"		/* \0alice\0p:w\nd */
#define B64_ALICE	"YWxpY2U="			/* alice */
#define B64_SECRET	"czNjcmV0"			/* s3cret */
#define B64_NUL_PW	"czMAY3JldA=="			/* s3\0cret */

enum { C = SASL_CONTINUE, K = SASL_CHECK, E = SASL_ERROR };

static const struct {
	const char *args;
	const char *lines[3];
	int status[4];		/* after start, then after each line */
	const char *reply;	/* the last reply (CONTINUE/ERROR) */
	const char *user, *password;	/* when it ends in CHECK */
} cases[] = {
	/* PLAIN with an initial response, and after 334 */
	{ "PLAIN " PLAIN_ALICE, { NULL }, { K }, "", "alice", "s3cret" },
	{ "plain " PLAIN_ALICE, { NULL }, { K }, "", "alice", "s3cret" },
	{ "PLAIN", { PLAIN_ALICE }, { C, K }, "", "alice", "s3cret" },
	{ "PLAIN =", { PLAIN_ALICE }, { C, K }, "", "alice", "s3cret" },
	{ "PLAIN " PLAIN_AUTHZ, { NULL }, { K }, "", "alice", "s3cret" },
	{ "PLAIN " PLAIN_COLON_PW, { NULL }, { K }, "", "alice", "p:w\nd" },
	/* PLAIN malformed */
	{ "PLAIN " PLAIN_OTHERZ, { NULL }, { E },
	    "535 5.7.8 Error: authentication failed: authorization identity differs from the user", NULL, NULL },
	{ "PLAIN " PLAIN_ONE_NUL, { NULL }, { E }, "501 5.5.2 Invalid PLAIN response", NULL, NULL },
	{ "PLAIN " PLAIN_THREE, { NULL }, { E }, "501 5.5.2 Invalid PLAIN response", NULL, NULL },
	{ "PLAIN " PLAIN_NOUSER, { NULL }, { E }, "501 5.5.2 Invalid PLAIN response", NULL, NULL },
	{ "PLAIN " PLAIN_NOPASS, { NULL }, { E }, "501 5.5.2 Invalid PLAIN response", NULL, NULL },
	{ "PLAIN " PLAIN_CTRL, { NULL }, { E }, "501 5.5.2 Invalid PLAIN response", NULL, NULL },
	{ "PLAIN", { "" }, { C, E }, "501 5.5.2 Invalid PLAIN response", NULL, NULL },
	{ "PLAIN", { "AGFsaWNlAHMzY3JldA" }, { C, E }, "501 5.5.2 Cannot decode response", NULL, NULL },
	{ "PLAIN", { "AGFsaWNlAHMzY3JldA==\r" }, { C, E }, "501 5.5.2 Cannot decode response", NULL, NULL },
	{ "PLAIN", { "AGFsaWNl AHMzY3JldA==" }, { C, E }, "501 5.5.2 Cannot decode response", NULL, NULL },
	{ "PLAIN", { "AGFsa=Nl" }, { C, E }, "501 5.5.2 Cannot decode response", NULL, NULL },
	{ "PLAIN", { "====" }, { C, E }, "501 5.5.2 Cannot decode response", NULL, NULL },
	{ "PLAIN", { "*" }, { C, E }, "501 5.7.0 Authentication aborted", NULL, NULL },
	{ "PLAIN *", { NULL }, { E }, "501 5.7.0 Authentication aborted", NULL, NULL },
	/* LOGIN */
	{ "LOGIN", { B64_ALICE, B64_SECRET }, { C, C, K }, "334 UGFzc3dvcmQ6", "alice",
	    "s3cret" },
	{ "LOGIN " B64_ALICE, { B64_SECRET }, { C, K }, "334 UGFzc3dvcmQ6", "alice",
	    "s3cret" },
	{ "LOGIN", { B64_ALICE, "*" }, { C, C, E }, "501 5.7.0 Authentication aborted", NULL, NULL },
	{ "LOGIN", { "*" }, { C, E }, "501 5.7.0 Authentication aborted", NULL, NULL },
	{ "LOGIN", { "%%%%" }, { C, E }, "501 5.5.2 Cannot decode response", NULL, NULL },
	{ "LOGIN", { B64_ALICE, B64_NUL_PW }, { C, C, E },
	    "535 5.7.8 Error: authentication failed: bad credentials", NULL, NULL },
	{ "LOGIN", { B64_ALICE, "" }, { C, C, E },
	    "535 5.7.8 Error: authentication failed: bad credentials", NULL, NULL },
	{ "LOGIN", { "" }, { C, E },
	    "535 5.7.8 Error: authentication failed: bad credentials", NULL, NULL },
	{ "LOGIN", { "YQBi" }, { C, E },	/* a\0b */
	    "535 5.7.8 Error: authentication failed: bad credentials", NULL, NULL },
	/* the command line itself */
	{ "", { NULL }, { E }, "501 5.5.4 Syntax: AUTH mechanism", NULL, NULL },
	{ " PLAIN", { NULL }, { E }, "501 5.5.4 Syntax: AUTH mechanism", NULL, NULL },
	{ "PLAIN ", { NULL }, { E }, "501 5.5.4 Syntax: AUTH mechanism", NULL, NULL },
	{ "PLAIN a b", { NULL }, { E }, "501 5.5.4 Syntax: AUTH mechanism", NULL, NULL },
	{ "CRAM-MD5", { NULL }, { E }, "504 5.5.4 Unsupported authentication mechanism", NULL, NULL },
	{ "PLAINX", { NULL }, { E }, "504 5.5.4 Unsupported authentication mechanism", NULL, NULL },
	{ "XOAUTH2 abc", { NULL }, { E }, "504 5.5.4 Unsupported authentication mechanism", NULL, NULL },
};

START_TEST(test_transcript)
{
	struct sasl s;
	sasl_init(&s);
	const char *args = cases[_i].args;
	int st = sasl_start(&s, args, strlen(args));
	ck_assert_int_eq(st, cases[_i].status[0]);
	for (int l = 0; l < 3 && cases[_i].lines[l] != NULL; l++) {
		ck_assert_int_eq(st, SASL_CONTINUE);
		ck_assert_str_eq(sasl_reply(&s), strncasecmp(args, "PLAIN", 5) == 0 ? "334 " :
		    l == 0 && strlen(args) == 5 ? "334 VXNlcm5hbWU6" : "334 UGFzc3dvcmQ6");
		st = sasl_feed(&s, cases[_i].lines[l], strlen(cases[_i].lines[l]));
		ck_assert_int_eq(st, cases[_i].status[l + 1]);
	}
	if (st == SASL_CHECK) {
		ck_assert_str_eq(sasl_user(&s), cases[_i].user);
		ck_assert_str_eq(sasl_password(&s), cases[_i].password);
		ck_assert_str_eq(sasl_mech_name(sasl_mech(&s)),
		    strncasecmp(args, "PLAIN", 5) == 0 ? "PLAIN" : "LOGIN");
	} else {
		ck_assert_int_eq(st, SASL_ERROR);
		ck_assert_str_eq(sasl_reply(&s), cases[_i].reply);
		ck_assert_str_eq(sasl_password(&s), "");
		/* the exchange is over: another line is not taken as a response */
		ck_assert_int_eq(sasl_feed(&s, PLAIN_ALICE, strlen(PLAIN_ALICE)), SASL_ERROR);
		ck_assert_str_eq(sasl_reply(&s), "503 5.5.1 Error: no authentication in progress");
	}
	sasl_reset(&s);
	ck_assert_str_eq(sasl_password(&s), "");
	ck_assert_str_eq(sasl_user(&s), "");
}
END_TEST

static void
b64(const void *in, size_t len, char *out, size_t cap)
{
	ck_assert_uint_gt(sasl_b64_encode(in, len, out, cap), 0);
}

START_TEST(test_limits)
{
	struct sasl s;
	static char msg[4096], line[8192];
	sasl_init(&s);
	/* the longest valid PLAIN: authzid, user and password at their maxima */
	memset(msg, 'u', SASL_USER_MAX);
	msg[SASL_USER_MAX] = '\0';
	memset(msg + SASL_USER_MAX + 1, 'u', SASL_USER_MAX);
	msg[2 * SASL_USER_MAX + 1] = '\0';
	memset(msg + 2 * SASL_USER_MAX + 2, 'p', SASL_PASS_MAX);
	size_t n = 2 * SASL_USER_MAX + 2 + SASL_PASS_MAX;
	b64(msg, n, line, sizeof(line));
	ck_assert_uint_le(strlen(line), SASL_LINE_MAX);
	ck_assert_int_eq(sasl_start(&s, "PLAIN", 5), SASL_CONTINUE);
	ck_assert_int_eq(sasl_feed(&s, line, strlen(line)), SASL_CHECK);
	ck_assert_uint_eq(strlen(sasl_user(&s)), SASL_USER_MAX);
	ck_assert_uint_eq(strlen(sasl_password(&s)), SASL_PASS_MAX);
	/* one more password octet: malformed (limits, not truncation) */
	memset(msg + 2 * SASL_USER_MAX + 2, 'p', SASL_PASS_MAX + 1);
	b64(msg, n + 1, line, sizeof(line));
	ck_assert_int_eq(sasl_start(&s, "PLAIN", 5), SASL_CONTINUE);
	ck_assert_int_eq(sasl_feed(&s, line, strlen(line)), SASL_ERROR);
	/* one more user octet */
	memset(msg, 0, sizeof(msg));
	memset(msg + 1, 'u', SASL_USER_MAX + 1);
	memset(msg + SASL_USER_MAX + 3, 'p', 5);
	b64(msg, SASL_USER_MAX + 8, line, sizeof(line));
	ck_assert_int_eq(sasl_start(&s, "PLAIN", 5), SASL_CONTINUE);
	ck_assert_int_eq(sasl_feed(&s, line, strlen(line)), SASL_ERROR);
	ck_assert_str_eq(sasl_reply(&s), "501 5.5.2 Invalid PLAIN response");
	/* a line over the limit is refused before any decoding, even if valid */
	memset(line, 'A', SASL_LINE_MAX + 4);
	line[SASL_LINE_MAX + 4] = '\0';
	ck_assert_int_eq(sasl_start(&s, "LOGIN", 5), SASL_CONTINUE);
	ck_assert_int_eq(sasl_feed(&s, line, strlen(line)), SASL_ERROR);
	ck_assert_str_eq(sasl_reply(&s), "500 5.5.6 Authentication exchange line is too long");
	ck_assert_int_eq(sasl_start(&s, "PLAIN", 5), SASL_CONTINUE);
	ck_assert_int_eq(sasl_feed(&s, line, strlen(line)), SASL_ERROR);
	ck_assert_str_eq(sasl_reply(&s), "500 5.5.6 Authentication exchange line is too long");
	/* and as an initial response */
	static char cmd[sizeof(line) + 8];
	snprintf(cmd, sizeof(cmd), "PLAIN %s", line);
	ck_assert_int_eq(sasl_start(&s, cmd, strlen(cmd)), SASL_ERROR);
	ck_assert_str_eq(sasl_reply(&s), "500 5.5.6 Authentication exchange line is too long");
	/* LOGIN user at its limit, then over */
	memset(msg, 'u', SASL_USER_MAX + 1);
	b64(msg, SASL_USER_MAX, line, sizeof(line));
	ck_assert_int_eq(sasl_start(&s, "LOGIN", 5), SASL_CONTINUE);
	ck_assert_int_eq(sasl_feed(&s, line, strlen(line)), SASL_CONTINUE);
	b64(msg, SASL_USER_MAX + 1, line, sizeof(line));
	ck_assert_int_eq(sasl_start(&s, "LOGIN", 5), SASL_CONTINUE);
	ck_assert_int_eq(sasl_feed(&s, line, strlen(line)), SASL_ERROR);
	sasl_reset(&s);
}
END_TEST

static const struct {
	const char *in;
	int ok;
	const char *out;
} b64cases[] = {
	{ "", 1, "" },
	{ "YQ==", 1, "a" },
	{ "YWI=", 1, "ab" },
	{ "YWJj", 1, "abc" },
	{ "YWJjZA==", 1, "abcd" },
	{ "YQ=", 0, NULL },
	{ "YQ", 0, NULL },
	{ "Y===", 0, NULL },
	{ "=YQ=", 0, NULL },
	{ "YQ==YQ==", 0, NULL },
	{ "YW\nJj", 0, NULL },
	{ " YWJj", 0, NULL },
	{ "YWJj ", 0, NULL },
	{ "YW-j", 0, NULL },
	{ "YW_j", 0, NULL },
};

START_TEST(test_base64)
{
	unsigned char out[64];
	size_t n = 99;
	int r = sasl_b64_decode(b64cases[_i].in, strlen(b64cases[_i].in), out, sizeof(out), &n);
	if (!b64cases[_i].ok) {
		ck_assert_int_eq(r, -1);
		return;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_uint_eq(n, strlen(b64cases[_i].out));
	ck_assert(memcmp(out, b64cases[_i].out, n) == 0);
	char back[64];
	ck_assert_uint_eq(sasl_b64_encode(out, n, back, sizeof(back)), strlen(b64cases[_i].in));
	ck_assert_str_eq(back, b64cases[_i].in);
	/* the output capacity is a limit too */
	if (n > 0)
		ck_assert_int_eq(sasl_b64_decode(b64cases[_i].in, strlen(b64cases[_i].in),
		    out, 1, &n), -1);
}
END_TEST

static Suite *
sasl_suite(void)
{
	Suite *s = suite_create("sasl");
	TCase *tc = tcase_create("sasl");
	tcase_add_loop_test(tc, test_transcript, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, test_limits);
	tcase_add_loop_test(tc, test_base64, 0, sizeof(b64cases) / sizeof(b64cases[0]));
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(sasl_suite)
