/*
 * The control protocol framing (common/ctlproto.c) both ends use, and
 * relayvisorctl's prompt word splitting (ctl/ctl.c).
 */
#include <check.h>
#include <string.h>

#include "common/ctlproto.h"
#include "ctl/ctl.h"
#include "tests/unit/testmain.h"

static const struct {
	const char *line;
	int argc;		/* -1: refused */
	const char *first, *last;
} requests[] = {
	{ "status\n", 1, "status", "status" },
	{ "status internet lan\n", 3, "status", "lan" },
	{ "check lan --client 127.0.0.1 --from <a@b> --to <c@d>", 8, "check", "<c@d>" },
	{ "stop all\r\n", 2, "stop", "all" },
	{ "\n", -1, NULL, NULL },
	{ "", -1, NULL, NULL },
	{ "status  lan\n", -1, NULL, NULL },	/* double space: empty word */
	{ " status\n", -1, NULL, NULL },
	{ "status \n", -1, NULL, NULL },
	{ "sta\ttus\n", -1, NULL, NULL },
};

START_TEST(test_request_parse)
{
	struct ctl_request req;
	const char *error = NULL;
	int r = ctlproto_request_parse(requests[_i].line, strlen(requests[_i].line),
	    &req, &error);
	if (requests[_i].argc == -1) {
		ck_assert_int_eq(r, -1);
		ck_assert_ptr_nonnull(error);
		return;
	}
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(req.argc, requests[_i].argc);
	ck_assert_str_eq(req.argv[0], requests[_i].first);
	ck_assert_str_eq(req.argv[req.argc - 1], requests[_i].last);
}
END_TEST

START_TEST(test_request_limits)
{
	static char line[CTLPROTO_LINE_MAX + 10];
	struct ctl_request req;
	const char *error;
	memset(line, 'a', sizeof(line));
	ck_assert_int_eq(ctlproto_request_parse(line, CTLPROTO_LINE_MAX, &req, &error), -1);
	ck_assert_int_eq(ctlproto_request_parse(line, CTLPROTO_LINE_MAX - 1, &req,
	    &error), 0);
	/* too many words */
	char many[CTLPROTO_ARGS_MAX * 2 + 4];
	size_t n = 0;
	for (int i = 0; i <= CTLPROTO_ARGS_MAX; i++) {
		if (i)
			many[n++] = ' ';
		many[n++] = 'x';
	}
	ck_assert_int_eq(ctlproto_request_parse(many, n, &req, &error), -1);
}
END_TEST

START_TEST(test_request_roundtrip)
{
	char *argv[] = { "check", "lan", "--client", "::1", "--to", "<a@b>" };
	char buf[CTLPROTO_LINE_MAX + 1];
	const char *error;
	int len = ctlproto_request_format(6, argv, buf, sizeof(buf), &error);
	ck_assert_int_gt(len, 0);
	ck_assert_str_eq(buf, "check lan --client ::1 --to <a@b>\n");
	struct ctl_request req;
	ck_assert_int_eq(ctlproto_request_parse(buf, (size_t)len, &req, &error), 0);
	ck_assert_int_eq(req.argc, 6);
	ck_assert_str_eq(req.argv[3], "::1");
	char *bad[] = { "tail", "a b" };
	ck_assert_int_eq(ctlproto_request_format(2, bad, buf, sizeof(buf), &error), -1);
	char *empty[] = { "tail", "" };
	ck_assert_int_eq(ctlproto_request_format(2, empty, buf, sizeof(buf), &error), -1);
}
END_TEST

static const struct {
	const char *line;
	enum ctl_line_kind kind;
	int exitcode;
	const char *text;
} replies[] = {
	{ "lan: started", CTL_LINE_DATA, 0, "lan: started" },
	{ "..hidden", CTL_LINE_DATA, 0, ".hidden" },
	{ ".OK 0", CTL_LINE_OK, 0, "" },
	{ ".OK 3", CTL_LINE_OK, 3, "" },
	{ ".ERR 1 ERROR: CANT_REREAD: 1 error", CTL_LINE_ERR, 1, "ERROR: CANT_REREAD: 1 error" },
	{ ".ERR 4 no such process", CTL_LINE_ERR, 4, "no such process" },
	{ ".OK", CTL_LINE_BAD, 0, NULL },
	{ ".OK x", CTL_LINE_BAD, 0, NULL },
	{ ".ERR 300 big", CTL_LINE_BAD, 0, NULL },
	{ ".FOO 1", CTL_LINE_BAD, 0, NULL },
	{ "", CTL_LINE_DATA, 0, "" },
};

START_TEST(test_reply_parse)
{
	struct ctl_reply_line r;
	ctlproto_reply_parse(replies[_i].line, &r);
	ck_assert_int_eq(r.kind, replies[_i].kind);
	if (r.kind == CTL_LINE_BAD)
		return;
	ck_assert_int_eq(r.exitcode, replies[_i].exitcode);
	ck_assert_str_eq(r.text, replies[_i].text);
}
END_TEST

/* what the server formats, the client reads back unchanged */
START_TEST(test_data_stuffing)
{
	static const char *texts[] = { "plain", ".OK 0", "..x", ".", "" };
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		char buf[64];
		size_t n = ctlproto_data_format(texts[i], buf, sizeof(buf));
		ck_assert_uint_gt(n, 0);
		ck_assert_int_eq(buf[n - 1], '\n');
		buf[n - 1] = '\0';
		struct ctl_reply_line r;
		ctlproto_reply_parse(buf, &r);
		ck_assert_int_eq(r.kind, CTL_LINE_DATA);
		ck_assert_str_eq(r.text, texts[i]);
	}
	char buf[64];
	ctlproto_status_format(3, NULL, buf, sizeof(buf));
	ck_assert_str_eq(buf, ".OK 3\n");
	ctlproto_status_format(1, "bad", buf, sizeof(buf));
	ck_assert_str_eq(buf, ".ERR 1 bad\n");
	char small[8];
	size_t n = ctlproto_status_format(1, "a long message", small, sizeof(small));
	ck_assert_uint_eq(n, 7);
	ck_assert_int_eq(small[6], '\n');
}
END_TEST

START_TEST(test_split)
{
	char line[] = "  status\tinternet   lan \n";
	char *argv[8];
	ck_assert_int_eq(ctl_split(line, argv, 8), 3);
	ck_assert_str_eq(argv[0], "status");
	ck_assert_str_eq(argv[2], "lan");
	char blank[] = "   \n";
	ck_assert_int_eq(ctl_split(blank, argv, 8), 0);
	char four[] = "a b c d";
	ck_assert_int_eq(ctl_split(four, argv, 2), 2);
}
END_TEST

START_TEST(test_connect_missing)
{
	const char *error = NULL;
	ck_assert_int_eq(ctlproto_connect("/nonexistent/relayvisor.sock", &error), -1);
	ck_assert_str_eq(error, "no such file");
}
END_TEST

static Suite *
ctl_proto_suite(void)
{
	Suite *s = suite_create("ctl_proto");
	TCase *tc = tcase_create("proto");
	tcase_add_loop_test(tc, test_request_parse, 0,
	    (int)(sizeof(requests) / sizeof(requests[0])));
	tcase_add_test(tc, test_request_limits);
	tcase_add_test(tc, test_request_roundtrip);
	tcase_add_loop_test(tc, test_reply_parse, 0,
	    (int)(sizeof(replies) / sizeof(replies[0])));
	tcase_add_test(tc, test_data_stuffing);
	tcase_add_test(tc, test_split);
	tcase_add_test(tc, test_connect_missing);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(ctl_proto_suite)
