/*
 * The reader's limits (instances/reader.c): command lines cut at 512 octets,
 * bare CR / bare LF refused, CRLF.CRLF found across any split of the input,
 * dot-unstuffing, hop counting (Received:, Delivered-To:), NUL in commands.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instances/reader.h"
#include "tests/unit/testmain.h"

/* ---- command lines ---- */

static const struct {
	const char *in;
	enum reader_status st;
	size_t linelen, consumed;
	bool discard;
} cmd_cases[] = {
	{ "", READER_MORE, 0, 0, false },
	{ "EHLO x", READER_MORE, 0, 0, false },
	{ "EHLO x\r", READER_MORE, 0, 0, false },
	{ "EHLO x\r\n", READER_LINE, 6, 8, false },
	{ "EHLO x\r\nNOOP\r\n", READER_LINE, 6, 8, false },
	{ "\r\n", READER_LINE, 0, 2, false },
	{ "EHLO x\n", READER_BARE_LF, 0, 7, false },
	{ "\n", READER_BARE_LF, 0, 1, false },
	{ "EHLO\rx\r\n", READER_BARE_CR, 0, 8, false },
	{ "EHLO x\r\r\n", READER_BARE_CR, 0, 9, false },
};

START_TEST(test_cmd_line)
{
	size_t linelen = 99, consumed = 99;
	bool discard = true;
	const char *in = cmd_cases[_i].in;
	enum reader_status st = reader_cmd_line(in, strlen(in), &linelen, &consumed,
	    &discard);
	ck_assert_int_eq(st, cmd_cases[_i].st);
	ck_assert_uint_eq(consumed, cmd_cases[_i].consumed);
	if (st == READER_LINE)
		ck_assert_uint_eq(linelen, cmd_cases[_i].linelen);
	ck_assert_int_eq(discard, cmd_cases[_i].discard);
}
END_TEST

/* a NUL anywhere in a command line makes it a syntax error, not a shorter line
   (everything after the NUL would otherwise be invisible to the parser) */
static const struct {
	const char *in;
	size_t len;
	enum reader_status st;
	size_t linelen, consumed;
} nul_cases[] = {
	{ "MAIL FROM:<a@b.example>\0 SIZE=99\r\n", 34, READER_NUL, 23, 34 },
	{ "\0NOOP\r\n", 7, READER_NUL, 0, 7 },
	{ "NOOP\0\r\n", 7, READER_NUL, 4, 7 },
	{ "NOOP\r\n\0\r\n", 9, READER_LINE, 4, 6 },
	{ "NO\0OP", 6, READER_MORE, 0, 0 },
};

START_TEST(test_cmd_nul)
{
	size_t linelen = 99, consumed = 99;
	bool discard = true;
	enum reader_status st = reader_cmd_line(nul_cases[_i].in, nul_cases[_i].len,
	    &linelen, &consumed, &discard);

	ck_assert_int_eq(st, nul_cases[_i].st);
	ck_assert_uint_eq(consumed, nul_cases[_i].consumed);
	ck_assert_uint_eq(linelen, nul_cases[_i].linelen);
	ck_assert(!discard);
}
END_TEST

/* a line of total octets (CRLF included) followed by "NOOP\r\n" */
static char *
long_line(size_t total, size_t *len)
{
	char *buf = malloc(total + 16);
	memset(buf, 'a', total - 2);
	memcpy(buf, "NOOP ", 5);
	memcpy(buf + total - 2, "\r\nNOOP\r\n", 8);
	*len = total + 6;
	return buf;
}

/* the limit is 512 octets with CRLF (RFC 5321 4.5.3.1.4): 512 passes, 513 not */
static const struct {
	size_t total;
	enum reader_status st;
} limit_cases[] = {
	{ 510, READER_LINE }, { 511, READER_LINE }, { 512, READER_LINE },
	{ 513, READER_TOOLONG }, { 514, READER_TOOLONG }, { 2000, READER_TOOLONG },
};

/* MAIL and RCPT may be longer (RFC 3461 parameters), other commands not */
static const struct {
	const char *verb;
	size_t total;
	enum reader_status st;
} param_cases[] = {
	{ "MAIL ", 1052, READER_LINE }, { "rcpt ", 1052, READER_LINE },
	{ "RCPT ", 1053, READER_TOOLONG }, { "MAIL ", 5000, READER_TOOLONG },
	{ "NOOP ", 600, READER_TOOLONG }, { "MAILX", 600, READER_TOOLONG },
};

START_TEST(test_cmd_param_limit)
{
	size_t total = param_cases[_i].total, linelen, consumed;
	bool discard;
	char *buf = malloc(total);
	memset(buf, 'a', total - 2);
	memcpy(buf, param_cases[_i].verb, 5);
	memcpy(buf + total - 2, "\r\n", 2);
	enum reader_status st = reader_cmd_line(buf, total, &linelen, &consumed, &discard);
	ck_assert_int_eq(st, param_cases[_i].st);
	ck_assert_uint_eq(consumed, total);
	if (st == READER_LINE)
		ck_assert_uint_eq(linelen, total - 2);
	/* a long MAIL line still arriving is not cut early */
	if (param_cases[_i].st == READER_LINE)
		ck_assert_int_eq(reader_cmd_line(buf, total - 1, &linelen, &consumed,
		    &discard), READER_MORE);
	free(buf);
}
END_TEST

START_TEST(test_cmd_limit)
{
	size_t len, linelen, consumed;
	bool discard;
	char *buf = long_line(limit_cases[_i].total, &len);
	enum reader_status st = reader_cmd_line(buf, len, &linelen, &consumed, &discard);
	ck_assert_int_eq(st, limit_cases[_i].st);
	/* either way the line is consumed through its LF, the next one is intact */
	ck_assert_uint_eq(consumed, limit_cases[_i].total);
	ck_assert(!discard);
	st = reader_cmd_line(buf + consumed, len - consumed, &linelen, &consumed,
	    &discard);
	ck_assert_int_eq(st, READER_LINE);
	ck_assert_uint_eq(linelen, 4);
	free(buf);
}
END_TEST

/* an overlong line whose end has not arrived: discard mode until the LF */
START_TEST(test_cmd_discard)
{
	char buf[600];
	size_t linelen, consumed;
	bool discard;

	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(reader_cmd_line(buf, 511, &linelen, &consumed, &discard),
	    READER_MORE);
	ck_assert_int_eq(reader_cmd_line(buf, 512, &linelen, &consumed, &discard),
	    READER_TOOLONG);
	ck_assert_uint_eq(consumed, 512);
	ck_assert(discard);
	ck_assert_uint_eq(reader_discard_line("yyyy", 4, &discard), 4);
	ck_assert(discard);
	ck_assert_uint_eq(reader_discard_line("yy\r\nQUIT\r\n", 10, &discard), 4);
	ck_assert(!discard);
}
END_TEST

/* ---- message text ---- */

static const struct {
	const char *in;			/* message text as sent after 354 */
	enum reader_status st;
	const char *out;		/* decoded (up to the end or the error) */
	size_t rest;			/* octets after the end marker left unconsumed */
	unsigned hops;
} data_cases[] = {
	{ ".\r\n", READER_LINE, "", 0, 0 },
	{ "a\r\n.\r\n", READER_LINE, "a\r\n", 0, 0 },
	{ "a\r\n.\r\nQUIT\r\n", READER_LINE, "a\r\n", 6, 0 },
	{ "a\r\nb\r\n", READER_MORE, "a\r\nb\r\n", 0, 0 },
	/* dot-unstuffing (RFC 5321 4.5.2) */
	{ "..\r\n.\r\n", READER_LINE, ".\r\n", 0, 0 },
	{ "..a\r\n.\r\n", READER_LINE, ".a\r\n", 0, 0 },
	{ "...\r\n.\r\n", READER_LINE, "..\r\n", 0, 0 },
	{ "a.\r\n.b\r\n.\r\n", READER_LINE, "a.\r\nb\r\n", 0, 0 },
	{ ".a\r\n.\r\n", READER_LINE, "a\r\n", 0, 0 },
	/* a dot in the middle of a line is text */
	{ "a\r\n x.\r\n.\r\n", READER_LINE, "a\r\n x.\r\n", 0, 0 },
	/* SMTP smuggling: bare LF / bare CR never end the message, they are refused */
	{ "a\n.\n", READER_BARE_LF, "a", 0, 0 },
	{ "a\r\n.\n", READER_BARE_LF, "a\r\n", 0, 0 },
	{ "a\n.\r\n", READER_BARE_LF, "a", 0, 0 },
	{ "a\r\n.\rMAIL", READER_BARE_CR, "a\r\n", 0, 0 },
	{ "a\r.\r\n", READER_BARE_CR, "a", 0, 0 },
	{ "a\rb\r\n.\r\n", READER_BARE_CR, "a", 0, 0 },
	{ "\n", READER_BARE_LF, "", 0, 0 },
	{ "a\r\n\n.\r\n", READER_BARE_LF, "a\r\n", 0, 0 },
	/* Received: counted in the header section only, any case */
	{ "Received: a\r\nreceived: b\r\nRECEIVED:c\r\n\r\nReceived: d\r\n.\r\n",
	    READER_LINE, "Received: a\r\nreceived: b\r\nRECEIVED:c\r\n\r\nReceived: d\r\n",
	    0, 3 },
	{ "X-Received: a\r\nReceived-SPF: b\r\nReceived:\r\n.\r\n", READER_LINE,
	    "X-Received: a\r\nReceived-SPF: b\r\nReceived:\r\n", 0, 1 },
	/* as Postfix's hopcount: whitespace before the colon, Delivered-To too */
	{ "RECEIVED : a\r\nReceived\t:b\r\nDelivered-To: x\r\ndelivered-TO  :y\r\n"
	    " Received: folded\r\nDelivered-ToX: n\r\nReceived x: n\r\n"
	    "ReceivedReceivedReceived: n\r\n\r\nDelivered-To: body\r\n.\r\n", READER_LINE,
	    "RECEIVED : a\r\nReceived\t:b\r\nDelivered-To: x\r\ndelivered-TO  :y\r\n"
	    " Received: folded\r\nDelivered-ToX: n\r\nReceived x: n\r\n"
	    "ReceivedReceivedReceived: n\r\n\r\nDelivered-To: body\r\n", 0, 4 },
	{ "..Received: a\r\n.\r\n", READER_LINE, ".Received: a\r\n", 0, 0 },
	{ ".Received: a\r\n.\r\n", READER_LINE, "Received: a\r\n", 0, 1 },
};

/* decode in pieces cut at the given positions (0 = whole) */
static enum reader_status
decode_pieces(const char *in, size_t len, size_t piece, char *out, size_t *outlen,
    size_t *used, struct reader_data *d)
{
	size_t off = 0, o = 0;
	enum reader_status st = READER_MORE;
	char tmp[4096];

	reader_data_init(d);
	while (off < len) {
		size_t n = piece == 0 || piece > len - off ? len - off : piece;
		size_t ol, consumed;
		st = reader_data_decode(d, in + off, n, tmp, &ol, &consumed);
		memcpy(out + o, tmp, ol);
		o += ol;
		off += consumed;
		if (st != READER_MORE)
			break;
		ck_assert_uint_eq(consumed, n);
	}
	*outlen = o;
	*used = off;
	return st;
}

START_TEST(test_data_decode)
{
	const char *in = data_cases[_i].in;
	size_t len = strlen(in);

	/* whole, then every piece size down to one octet at a time */
	for (size_t piece = 0; piece <= len; piece++) {
		char out[4096];
		size_t outlen, used;
		struct reader_data d;
		enum reader_status st = decode_pieces(in, len, piece, out, &outlen, &used, &d);
		ck_assert_msg(st == data_cases[_i].st, "case %d piece %zu: status %d",
		    _i, piece, st);
		ck_assert_msg(outlen == strlen(data_cases[_i].out) &&
		    memcmp(out, data_cases[_i].out, outlen) == 0,
		    "case %d piece %zu: got \"%.*s\"", _i, piece, (int)outlen, out);
		if (st == READER_LINE) {
			ck_assert_uint_eq(len - used, data_cases[_i].rest);
			ck_assert_uint_eq(d.hops, data_cases[_i].hops);
			ck_assert_uint_eq(d.size, outlen);
		}
	}
}
END_TEST

/* CRLF.CRLF found when the input is split in two at every position */
START_TEST(test_data_split_everywhere)
{
	static const char msg[] = "Subject: x\r\n\r\nline 1\r\n..dot\r\n.\r\n";
	static const char want[] = "Subject: x\r\n\r\nline 1\r\n.dot\r\n";
	size_t len = strlen(msg);

	for (size_t cut = 0; cut <= len; cut++) {
		struct reader_data d;
		char out[256];
		size_t o = 0, ol, consumed;
		reader_data_init(&d);
		enum reader_status st = reader_data_decode(&d, msg, cut, out, &ol, &consumed);
		ck_assert_int_eq(st, cut == len ? READER_LINE : READER_MORE);
		ck_assert_uint_eq(consumed, cut);
		o = ol;
		if (cut < len) {
			st = reader_data_decode(&d, msg + cut, len - cut, out + o, &ol, &consumed);
			ck_assert_int_eq(st, READER_LINE);
			ck_assert_uint_eq(consumed, len - cut);
			o += ol;
		}
		ck_assert_msg(o == strlen(want) && memcmp(out, want, o) == 0,
		    "cut %zu: \"%.*s\"", cut, (int)o, out);
	}
}
END_TEST

/* long text lines are kept intact (as Postfix keeps them) and counted */
START_TEST(test_data_long_line)
{
	size_t n = 5000;
	char *in = malloc(n + 16), *out = malloc(n + 16);
	struct reader_data d;
	size_t ol, consumed;

	memset(in, 'q', n);
	memcpy(in + n, "\r\n.\r\n", 5);
	reader_data_init(&d);
	ck_assert_int_eq(reader_data_decode(&d, in, n + 5, out, &ol, &consumed),
	    READER_LINE);
	ck_assert_uint_eq(ol, n + 2);
	ck_assert(memcmp(out, in, n + 2) == 0);
	ck_assert_uint_eq(d.long_lines, 1);
	free(in);
	free(out);
}
END_TEST

/* more than READER_MAX_HOPS hop headers are counted exactly */
START_TEST(test_data_hops)
{
	char in[8192], out[8192];
	size_t off = 0, ol, consumed;
	struct reader_data d;

	for (int i = 0; i < 51; i++)
		off += (size_t)snprintf(in + off, sizeof(in) - off, "Received: hop %d\r\n", i);
	off += (size_t)snprintf(in + off, sizeof(in) - off, "\r\nbody\r\n.\r\n");
	reader_data_init(&d);
	ck_assert_int_eq(reader_data_decode(&d, in, off, out, &ol, &consumed), READER_LINE);
	ck_assert_uint_eq(d.hops, 51);
	ck_assert_uint_gt(d.hops, READER_MAX_HOPS);
}
END_TEST

static Suite *
smtpd_reader_suite(void)
{
	Suite *s = suite_create("smtpd_reader");
	TCase *tc = tcase_create("reader");
	tcase_add_loop_test(tc, test_cmd_line, 0, sizeof(cmd_cases) / sizeof(cmd_cases[0]));
	tcase_add_loop_test(tc, test_cmd_limit, 0,
	    sizeof(limit_cases) / sizeof(limit_cases[0]));
	tcase_add_loop_test(tc, test_cmd_param_limit, 0,
	    sizeof(param_cases) / sizeof(param_cases[0]));
	tcase_add_test(tc, test_cmd_discard);
	tcase_add_loop_test(tc, test_cmd_nul, 0, sizeof(nul_cases) / sizeof(nul_cases[0]));
	tcase_add_loop_test(tc, test_data_decode, 0,
	    sizeof(data_cases) / sizeof(data_cases[0]));
	tcase_add_test(tc, test_data_split_everywhere);
	tcase_add_test(tc, test_data_long_line);
	tcase_add_test(tc, test_data_hops);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(smtpd_reader_suite)
