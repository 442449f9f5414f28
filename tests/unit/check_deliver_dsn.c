/*
 * DSN composition (RFC 3464) and the RFC 3461 decision of who is told: the parts and
 * fields of bounces, delay warnings and success reports, RET and the size limit,
 * ORCPT/ENVID decoding, hostile diagnostics kept on one line, 8-bit originals,
 * boundaries that cannot collide, and never a DSN to <>.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/dsn.h"
#include "deliver/smtpc.h"
#include "tests/unit/testmain.h"

static const struct {
	const char *sender;
	unsigned notify;
	enum dsn_action action;
	enum dsn_target want;
} decide[] = {
	{ "s@x.example", 0, DSN_FAILED, DSN_TO_SENDER },
	{ "s@x.example", 0, DSN_DELAYED, DSN_TO_SENDER },
	{ "s@x.example", 0, DSN_DELIVERED, DSN_NONE },
	{ "s@x.example", SMTPC_NOTIFY_NEVER, DSN_FAILED, DSN_NONE },
	{ "s@x.example", SMTPC_NOTIFY_SUCCESS, DSN_FAILED, DSN_NONE },
	{ "s@x.example", SMTPC_NOTIFY_SUCCESS, DSN_DELIVERED, DSN_TO_SENDER },
	{ "s@x.example", SMTPC_NOTIFY_SUCCESS, DSN_RELAYED, DSN_TO_SENDER },
	{ "s@x.example", SMTPC_NOTIFY_FAILURE, DSN_DELAYED, DSN_NONE },
	{ "s@x.example", SMTPC_NOTIFY_FAILURE | SMTPC_NOTIFY_DELAY, DSN_DELAYED, DSN_TO_SENDER },
	{ "", 0, DSN_FAILED, DSN_DOUBLE_BOUNCE },
	{ "", SMTPC_NOTIFY_NEVER, DSN_FAILED, DSN_NONE },
	{ "", 0, DSN_DELAYED, DSN_NONE },
	{ "", SMTPC_NOTIFY_SUCCESS, DSN_DELIVERED, DSN_NONE },
	{ NULL, 0, DSN_FAILED, DSN_DOUBLE_BOUNCE },
};

START_TEST(who_is_told)
{
	ck_assert_int_eq(dsn_decide(decide[_i].sender, decide[_i].notify, decide[_i].action),
	    decide[_i].want);
}
END_TEST

START_TEST(xtext)
{
	char out[16];

	ck_assert_int_eq(dsn_xtext_decode("a+40b.example", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "a@b.example");
	ck_assert_int_eq(dsn_xtext_decode("+2B+3D", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "+=");
	ck_assert_int_eq(dsn_xtext_decode("a+4", out, sizeof(out)), -1);
	ck_assert_int_eq(dsn_xtext_decode("a=b", out, sizeof(out)), -1);
	ck_assert_int_eq(dsn_xtext_decode("a b", out, sizeof(out)), -1);
	ck_assert_int_eq(dsn_xtext_decode("0123456789abcdefg", out, sizeof(out)), -1);
}
END_TEST

static const char orig[] = "Received: from x\r\nFrom: s@x.example\r\nSubject: hello\r\n\r\n"
    "the body line\r\nsecond line\r\n";

static const struct dsn_rcpt bounced[] = {
	{ "a@remote.example", "rfc822;A+40remote.example", DSN_FAILED, "5.1.1",
	  "mx.remote.example", "550 5.1.1 <a@remote.example>: no such user",
	  "host mx.remote.example[192.0.2.1] said: 550 5.1.1 <a@remote.example>: no such "
	  "user (in reply to RCPT TO command)", 1700000100, NULL },
	{ "b@null.example", NULL, DSN_FAILED, "5.1.10", NULL, NULL,
	  "Domain null.example does not accept mail (nullMX)", 0, NULL },
};

static struct dsn_report
report(const struct dsn_rcpt *r, size_t n)
{
	struct dsn_report rep = {
		.reporting_mta = "mx.example.test", .qid = "QID42", .envid = "env+2Bid",
		.sender = "s@x.example", .arrival = 1700000000, .now = 1700000200,
		.retry_until = 1700432000, .rcpts = r, .n_rcpts = n,
	};
	return rep;
}

/* every line CRLF-terminated, no bare CR or LF, none over 998 octets */
static void
assert_lines(const char *m, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		if (m[i] == '\r')
			ck_assert_msg(i + 1 < len && m[i + 1] == '\n', "bare CR at %zu", i);
		if (m[i] == '\n') {
			ck_assert_msg(i > 0 && m[i - 1] == '\r', "bare LF at %zu", i);
			ck_assert_uint_le(i - start - 1, 998);
			start = i + 1;
		}
	}
	ck_assert_uint_eq(start, len);
}

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

START_TEST(bounce)
{
	struct dsn_report rep = report(bounced, 2);
	size_t len;
	bool eightbit;
	char *m = dsn_compose(&rep, orig, strlen(orig), true, &len, &eightbit);

	ck_assert_uint_eq(strlen(m), len);
	assert_lines(m, len);
	ck_assert(!eightbit);
	static const char head[] = "From: MAILER-DAEMON@mx.example.test (Mail Delivery System)\r\n"
	    "To: <s@x.example>\r\nSubject: Undelivered Mail Returned to Sender\r\n"
	    "Date: Tue, 14 Nov 2023 22:16:40 +0000\r\n";
	ck_assert_msg(strncmp(m, head, strlen(head)) == 0, "%.300s", m);
	ck_assert_ptr_nonnull(strstr(m, "\r\nAuto-Submitted: auto-replied\r\n"));
	ck_assert_ptr_nonnull(strstr(m, "\r\nContent-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=\"QID42.1700000200.0/mx.example.test\"\r\n"));
	/* three parts and the closing delimiter */
	ck_assert_int_eq(count(m, "\r\n--QID42.1700000200.0/mx.example.test\r\n"), 3);
	ck_assert_int_eq(count(m, "\r\n--QID42.1700000200.0/mx.example.test--\r\n"), 1);
	ck_assert_ptr_nonnull(strstr(m, "could not\r\nbe delivered to one or more recipients"));
	ck_assert_ptr_nonnull(strstr(m, "\r\n<a@remote.example>: host mx.remote.example"
	    "[192.0.2.1] said: 550 5.1.1 <a@remote.example>: no such user (in reply to RCPT "
	    "TO command)\r\n"));
	ck_assert_ptr_nonnull(strstr(m, "Content-Type: message/delivery-status\r\n\r\n"
	    "Reporting-MTA: dns; mx.example.test\r\nX-Queue-ID: QID42\r\n"
	    "Original-Envelope-Id: env+id\r\nX-Original-Sender: rfc822; s@x.example\r\n"
	    "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n"
	    "Final-Recipient: rfc822; a@remote.example\r\n"
	    "Original-Recipient: rfc822; A@remote.example\r\n"
	    "Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.remote.example\r\n"
	    "Diagnostic-Code: smtp; 550 5.1.1 <a@remote.example>: no such user\r\n"
	    "Last-Attempt-Date: Tue, 14 Nov 2023 22:15:00 +0000\r\n\r\n"
	    "Final-Recipient: rfc822; b@null.example\r\nAction: failed\r\nStatus: 5.1.10\r\n\r\n"));
	/* small and no RET: the whole original comes back */
	ck_assert_ptr_nonnull(strstr(m, "Content-Type: message/rfc822\r\n\r\n" "Received: from x"
	    "\r\nFrom: s@x.example\r\nSubject: hello\r\n\r\nthe body line\r\nsecond line\r\n"));
	free(m);
}
END_TEST

/* a delivery agent's reason (the log's and the record's) split into Remote-MTA
   and Diagnostic-Code: the server's reply as "smtp", anything else our own type */
static const struct {
	const char *reason;
	const char *mta, *diag, *type;
} reasons[] = {
	{ "host mx.remote.example[192.0.2.1]:25 said: 550 5.1.1 <a@remote.example>: no "
	  "such user (in reply to RCPT TO command)", "mx.remote.example",
	  "550 5.1.1 <a@remote.example>: no such user", NULL },
	{ "host 127.0.0.1[127.0.0.1]:2525 said: 500 5.3.0 Error: command failed (in "
	  "reply to end of DATA command)", "127.0.0.1", "500 5.3.0 Error: command failed",
	  NULL },
	{ "host mx.x.example[[::1]]:25 refused to talk to me: 554 5.7.1 go away",
	  "mx.x.example", "554 5.7.1 go away", NULL },
	{ "host /run/dovecot/lmtp said: 552 5.2.2 <c@example.test> Mailbox is full "
	  "(in reply to end of DATA command)", "/run/dovecot/lmtp",
	  "552 5.2.2 <c@example.test> Mailbox is full", NULL },
	{ "Name service error for name=nowhere.example type=MX: Host not found", NULL,
	  "Name service error for name=nowhere.example type=MX: Host not found",
	  "X-Relayvisor" },
	{ "connect to mx.x.example[192.0.2.9]:25: Connection refused", NULL,
	  "connect to mx.x.example[192.0.2.9]:25: Connection refused", "X-Relayvisor" },
	{ "host is said: to be down", NULL, "host is said: to be down", "X-Relayvisor" },
	{ "", NULL, NULL, NULL },
};

START_TEST(reason_fields)
{
	struct dsn_rcpt d = { .addr = "a@remote.example" };
	char buf[600];

	dsn_rcpt_reason(&d, reasons[_i].reason, buf, sizeof(buf));
	if (reasons[_i].mta == NULL)
		ck_assert_ptr_null(d.remote_mta);
	else
		ck_assert_str_eq(d.remote_mta, reasons[_i].mta);
	if (reasons[_i].diag == NULL)
		ck_assert_ptr_null(d.diagnostic);
	else
		ck_assert_str_eq(d.diagnostic, reasons[_i].diag);
	if (reasons[_i].type == NULL)
		ck_assert_ptr_null(d.diagnostic_type);
	else
		ck_assert_str_eq(d.diagnostic_type, reasons[_i].type);
}
END_TEST

/* the fields as they come out in the report */
START_TEST(reason_in_report)
{
	struct dsn_rcpt r[2] = {
		{ .addr = "a@remote.example", .action = DSN_FAILED, .status = "5.3.0" },
		{ .addr = "b@nx.example", .action = DSN_FAILED, .status = "5.4.4" },
	};
	char b0[600], b1[600];
	dsn_rcpt_reason(&r[0], reasons[1].reason, b0, sizeof(b0));
	dsn_rcpt_reason(&r[1], reasons[4].reason, b1, sizeof(b1));
	struct dsn_report rep = report(r, 2);
	size_t len;
	bool eightbit;
	char *m = dsn_compose(&rep, orig, strlen(orig), true, &len, &eightbit);

	ck_assert_ptr_nonnull(strstr(m, "Final-Recipient: rfc822; a@remote.example\r\n"
	    "Action: failed\r\nStatus: 5.3.0\r\nRemote-MTA: dns; 127.0.0.1\r\n"
	    "Diagnostic-Code: smtp; 500 5.3.0 Error: command failed\r\n"));
	ck_assert_ptr_nonnull(strstr(m, "Final-Recipient: rfc822; b@nx.example\r\n"
	    "Action: failed\r\nStatus: 5.4.4\r\nDiagnostic-Code: X-Relayvisor; Name "
	    "service error for name=nowhere.example type=MX: Host not found\r\n"));
	free(m);
}
END_TEST

static const struct {
	enum dsn_ret ret;
	size_t limit;
	bool complete;
	bool full;
} ret_cases[] = {
	{ DSN_RET_DEFAULT, 0, true, true },
	{ DSN_RET_FULL, 0, true, true },
	{ DSN_RET_HDRS, 0, true, false },
	{ DSN_RET_FULL, 10, true, false },	/* over the size limit */
	{ DSN_RET_FULL, 0, false, false },	/* only a prefix was given */
};

START_TEST(ret_and_limit)
{
	struct dsn_report rep = report(bounced, 1);
	size_t len;
	bool eightbit;

	rep.ret = ret_cases[_i].ret;
	rep.full_limit = ret_cases[_i].limit;
	char *m = dsn_compose(&rep, orig, strlen(orig), ret_cases[_i].complete, &len, &eightbit);
	assert_lines(m, len);
	if (ret_cases[_i].full) {
		ck_assert_ptr_nonnull(strstr(m, "Content-Type: message/rfc822\r\n"));
		ck_assert_ptr_nonnull(strstr(m, "the body line"));
	} else {
		ck_assert_ptr_nonnull(strstr(m, "Content-Type: text/rfc822-headers\r\n\r\n"
		    "Received: from x\r\nFrom: s@x.example\r\nSubject: hello\r\n\r\n"));
		ck_assert_ptr_null(strstr(m, "the body line"));
	}
	free(m);
}
END_TEST

START_TEST(delay_warning)
{
	struct dsn_rcpt r = { "a@slow.example", NULL, DSN_DELAYED, "4.4.1", "mx.slow.example",
	    NULL, "connect to mx.slow.example[192.0.2.9]:25: Connection timed out", 0, NULL };
	struct dsn_report rep = report(&r, 1);
	size_t len;
	bool eightbit;

	rep.now = rep.arrival + 4 * 3600;
	char *m = dsn_compose(&rep, orig, strlen(orig), true, &len, &eightbit);
	assert_lines(m, len);
	ck_assert_ptr_nonnull(strstr(m, "Subject: Delayed Mail (still being retried)\r\n"));
	ck_assert_ptr_nonnull(strstr(m, "THIS IS A WARNING ONLY"));
	ck_assert_ptr_nonnull(strstr(m, "could not be delivered for 4 hour(s)"));
	ck_assert_ptr_nonnull(strstr(m, "will keep trying until "));
	ck_assert_ptr_nonnull(strstr(m, "Action: delayed\r\nStatus: 4.4.1\r\n"));
	ck_assert_ptr_nonnull(strstr(m, "Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n"));
	free(m);
}
END_TEST

START_TEST(success_report)
{
	struct dsn_rcpt r = { "a@remote.example", NULL, DSN_RELAYED, "2.0.0", "mx.remote.example",
	    "250 2.0.0 ok", NULL, 0, NULL };
	struct dsn_report rep = report(&r, 1);
	size_t len;
	bool eightbit;
	char *m = dsn_compose(&rep, NULL, 0, true, &len, &eightbit);

	assert_lines(m, len);
	ck_assert_ptr_nonnull(strstr(m, "Subject: Successful Mail Delivery Report\r\n"));
	ck_assert_ptr_nonnull(strstr(m, "Action: relayed\r\n"));
	ck_assert_int_eq(count(m, "\r\n--QID42.1700000200.0/mx.example.test\r\n"), 2);
	free(m);
}
END_TEST

START_TEST(hostile_values)
{
	struct dsn_rcpt r = { "a@remote.example\r\nBcc: victim@x", "rfc822;a+0D+0AX-Evil:+201",
	    DSN_FAILED, "5.0.0\r\nX", "mx\r\n.example", "550 no\r\nX-Evil: 1\r\n\r\n--x",
	    "text\r\n--boundary", 0, NULL };
	struct dsn_report rep = report(&r, 1);
	size_t len;
	bool eightbit;
	char big[3000];

	memset(big, 'd', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rep.sender = "s@x\r\nBcc: victim@y";
	char *m = dsn_compose(&rep, orig, strlen(orig), true, &len, &eightbit);
	assert_lines(m, len);
	ck_assert_ptr_null(strstr(m, "\r\nBcc:"));
	ck_assert_ptr_null(strstr(m, "\r\nX-Evil"));
	ck_assert_ptr_nonnull(strstr(m, "Diagnostic-Code: smtp; 550 no??X-Evil: 1??" "??" "--x\r\n"));
	ck_assert_ptr_nonnull(strstr(m, "Original-Recipient: rfc822; a??X-Evil: 1\r\n"));
	free(m);
	/* an endless diagnostic is cut, lines stay short */
	r = (struct dsn_rcpt){ "a@b.example", NULL, DSN_FAILED, "5.0.0", NULL, big, big, 0, NULL };
	rep = report(&r, 1);
	m = dsn_compose(&rep, orig, strlen(orig), true, &len, &eightbit);
	assert_lines(m, len);
	free(m);
}
END_TEST

START_TEST(eightbit_original)
{
	static const char o8[] = "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\n";
	struct dsn_report rep = report(bounced, 1);
	size_t len;
	bool eightbit;
	char *m = dsn_compose(&rep, o8, strlen(o8), true, &len, &eightbit);

	ck_assert(eightbit);
	assert_lines(m, len);	/* the LF-only line came back as CRLF */
	ck_assert_ptr_nonnull(strstr(m, "Content-Type: message/rfc822\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\nSubject: caf\xc3\xa9"));
	free(m);
	/* headers only: the 8-bit body does not count */
	static const char o8b[] = "Subject: plain\r\n\r\nna\xc3\xafve\r\n";
	rep.ret = DSN_RET_HDRS;
	m = dsn_compose(&rep, o8b, strlen(o8b), true, &len, &eightbit);
	ck_assert(!eightbit);
	free(m);
}
END_TEST

START_TEST(boundary_never_in_original)
{
	static const char tricky[] = "Subject: x\r\n\r\n--QID42.1700000200.0/mx.example.test--\r\n";
	struct dsn_report rep = report(bounced, 1);
	size_t len;
	bool eightbit;
	char *m = dsn_compose(&rep, tricky, strlen(tricky), true, &len, &eightbit);

	ck_assert_ptr_nonnull(strstr(m, "boundary=\"QID42.1700000200.1/mx.example.test\""));
	ck_assert_int_eq(count(m, "\r\n--QID42.1700000200.1/mx.example.test--\r\n"), 1);
	free(m);
}
END_TEST

static Suite *
deliver_dsn_suite(void)
{
	Suite *s = suite_create("deliver_dsn");
	TCase *tc = tcase_create("dsn");

	tcase_add_loop_test(tc, who_is_told, 0, sizeof(decide) / sizeof(decide[0]));
	tcase_add_test(tc, xtext);
	tcase_add_test(tc, bounce);
	tcase_add_loop_test(tc, reason_fields, 0, sizeof(reasons) / sizeof(reasons[0]));
	tcase_add_test(tc, reason_in_report);
	tcase_add_loop_test(tc, ret_and_limit, 0, sizeof(ret_cases) / sizeof(ret_cases[0]));
	tcase_add_test(tc, delay_warning);
	tcase_add_test(tc, success_report);
	tcase_add_test(tc, hostile_values);
	tcase_add_test(tc, eightbit_original);
	tcase_add_test(tc, boundary_never_in_original);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(deliver_dsn_suite)
