/*
 * common/address.c: RFC 5321 paths, valid and invalid, with the canonical form and
 * flags the relay policy relies on; the length limits exactly at and one over; the
 * end offset handed back for ESMTP parameters; pattern matching for always_relay_*.
 */
#include <stdio.h>
#include <string.h>

#include "common/address.h"
#include "tests/unit/testmain.h"
#include "tests/unit/testutil.h"

enum {
	F_NULL = 1 << 0,
	F_BARE = 1 << 1,
	F_LIT = 1 << 2,
	F_ROUTE = 1 << 3,
	F_SR = 1 << 4,
};

static const struct {
	const char *in;
	const char *local, *domain, *text;
	unsigned flags;
} valid[] = {
	{ "<>", "", "", "", F_NULL },
	{ "<user@example.test>", "user", "example.test", "user@example.test", 0 },
	{ "<User@EXAMPLE.Test>", "User", "example.test", "User@example.test", 0 },
	{ "<user@example.test.>", "user", "example.test", "user@example.test", 0 },
	{ "<user@EXAMPLE.TEST.>", "user", "example.test", "user@example.test", 0 },
	{ "<first.last@sub.example.test>", "first.last", "sub.example.test",
	  "first.last@sub.example.test", 0 },
	{ "<a+tag@example.test>", "a+tag", "example.test", "a+tag@example.test", 0 },
	{ "<x@a-b.example>", "x", "a-b.example", "x@a-b.example", 0 },
	{ "<x@123.example>", "x", "123.example", "x@123.example", 0 },
	{ "<x@a>", "x", "a", "x@a", 0 },
	/* a dotted quad without brackets is a domain name, not a literal */
	{ "<x@192.0.2.1>", "x", "192.0.2.1", "x@192.0.2.1", 0 },
	{ "<postmaster>", "postmaster", "", "postmaster", F_BARE },
	{ "<PostMaster>", "PostMaster", "", "PostMaster", F_BARE },
	{ "<\"user\">", "user", "", "user", F_BARE },
	{ "<\"user@remote.example\">", "user@remote.example", "",
	  "\"user@remote.example\"", F_BARE | F_ROUTE },
	/* quoted local parts: quotes kept only where needed */
	{ "<\"john doe\"@example.test>", "john doe", "example.test",
	  "\"john doe\"@example.test", 0 },
	{ "<\"abc\"@example.test>", "abc", "example.test", "abc@example.test", 0 },
	{ "<\"a\\bc\"@example.test>", "abc", "example.test", "abc@example.test", 0 },
	{ "<\"john\\\"q\"@example.test>", "john\"q", "example.test",
	  "\"john\\\"q\"@example.test", 0 },
	{ "<\"a\\\\b\"@example.test>", "a\\b", "example.test",
	  "\"a\\\\b\"@example.test", 0 },
	{ "<\"a.\"@example.test>", "a.", "example.test", "\"a.\"@example.test", 0 },
	{ "<\"a..b\"@example.test>", "a..b", "example.test", "\"a..b\"@example.test", 0 },
	{ "<\" \"@example.test>", " ", "example.test", "\" \"@example.test", 0 },
	{ "<\"a>b\"@example.test>", "a>b", "example.test", "\"a>b\"@example.test", 0 },
	{ "<\"a<b\"@example.test>", "a<b", "example.test", "\"a<b\"@example.test", 0 },
	{ "<\"a,b:c\"@example.test>", "a,b:c", "example.test",
	  "\"a,b:c\"@example.test", 0 },
	/* every atext character; '!' makes it a route character */
	{ "<{}|~`'*#$&=?^_/-!@example.test>", "{}|~`'*#$&=?^_/-!", "example.test",
	  "{}|~`'*#$&=?^_/-!@example.test", F_ROUTE },
	/* source routes: parsed and dropped */
	{ "<@a.example:user@example.test>", "user", "example.test", "user@example.test",
	  F_SR },
	{ "<@a.example,@b.example,@c.example:user@example.test>", "user", "example.test",
	  "user@example.test", F_SR },
	{ "<@A.Example.:user@Example.Test>", "user", "example.test", "user@example.test",
	  F_SR },
	{ "<@example.test:user@remote.example>", "user", "remote.example",
	  "user@remote.example", F_SR },
	{ "<@a.example:\"q r\"@[192.0.2.1]>", "q r", "[192.0.2.1]", "\"q r\"@[192.0.2.1]",
	  F_SR | F_LIT },
	/* address literals, normalised */
	{ "<user@[192.0.2.1]>", "user", "[192.0.2.1]", "user@[192.0.2.1]", F_LIT },
	{ "<user@[IPv6:2001:db8::1]>", "user", "[ipv6:2001:db8::1]",
	  "user@[ipv6:2001:db8::1]", F_LIT },
	{ "<user@[ipv6:2001:DB8:0:0::1]>", "user", "[ipv6:2001:db8::1]",
	  "user@[ipv6:2001:db8::1]", F_LIT },
	{ "<user@[IPV6:::1]>", "user", "[ipv6:::1]", "user@[ipv6:::1]", F_LIT },
	{ "<user@[IPv6:::ffff:192.0.2.1]>", "user", "[ipv6:::ffff:192.0.2.1]",
	  "user@[ipv6:::ffff:192.0.2.1]", F_LIT },
	/* route characters: flagged, never re-read */
	{ "<user%remote.example@example.test>", "user%remote.example", "example.test",
	  "user%remote.example@example.test", F_ROUTE },
	{ "<remote.example!user@example.test>", "remote.example!user", "example.test",
	  "remote.example!user@example.test", F_ROUTE },
	{ "<\"user@remote.example\"@example.test>", "user@remote.example", "example.test",
	  "\"user@remote.example\"@example.test", F_ROUTE },
	{ "<\"user\\@remote.example\"@example.test>", "user@remote.example",
	  "example.test", "\"user@remote.example\"@example.test", F_ROUTE },
	{ "<\"user%remote.example\"@example.test>", "user%remote.example",
	  "example.test", "user%remote.example@example.test", F_ROUTE },
	/* several '@': the domain follows the last one, the rest is local part */
	{ "<user@remote.example@example.test>", "user@remote.example", "example.test",
	  "\"user@remote.example\"@example.test", F_ROUTE },
	{ "<user@example.test@remote.example>", "user@example.test", "remote.example",
	  "\"user@example.test\"@remote.example", F_ROUTE },
	{ "<a@b@c@example.test>", "a@b@c", "example.test", "\"a@b@c\"@example.test",
	  F_ROUTE },
	{ "<user@@example.test>", "user@", "example.test", "\"user@\"@example.test",
	  F_ROUTE },
};

START_TEST(test_valid)
{
	struct mailaddr a;
	const char *err = NULL;

	int r = address_parse(valid[_i].in, &a, &err);
	ck_assert_msg(r == 0, "%s: %s", valid[_i].in, err != NULL ? err : "?");
	ck_assert_str_eq(a.local, valid[_i].local);
	ck_assert_str_eq(a.domain, valid[_i].domain);
	ck_assert_str_eq(a.text, valid[_i].text);
	unsigned f = valid[_i].flags;
	ck_assert_msg(a.null == !!(f & F_NULL), "%s: null", valid[_i].in);
	ck_assert_msg(a.bare == !!(f & F_BARE), "%s: bare", valid[_i].in);
	ck_assert_msg(a.domain_literal == !!(f & F_LIT), "%s: literal", valid[_i].in);
	ck_assert_msg(a.route_chars == !!(f & F_ROUTE), "%s: route_chars", valid[_i].in);
	ck_assert_msg(a.had_source_route == !!(f & F_SR), "%s: source route",
	    valid[_i].in);

	/* the canonical text parses back to the same address */
	if (!a.null) {
		char buf[ADDR_PATH_MAX + 16];
		struct mailaddr b;
		snprintf(buf, sizeof(buf), "<%s>", a.text);
		ck_assert_msg(address_parse(buf, &b, &err) == 0, "%s: %s", buf, err);
		ck_assert_str_eq(b.local, a.local);
		ck_assert_str_eq(b.domain, a.domain);
		ck_assert_str_eq(b.text, a.text);
		ck_assert(b.route_chars == a.route_chars);
	}
}
END_TEST

static const struct {
	const char *in;
	const char *error;	/* substring of *error_r */
} invalid[] = {
	{ "", "missing <" },
	{ "user@example.test", "missing <" },
	{ "user@example.test>", "missing <" },
	{ "<user@example.test", "missing >" },
	{ "<", "missing >" },
	{ "<<user@example.test>>", "unexpected <" },
	{ "< user@example.test>", "space" },
	{ "<user @example.test>", "space" },
	{ "<user@example.test >", "space" },
	{ "<user@exam ple.test>", "space" },
	{ "< >", "space" },
	/* fuzz find: 64 octets as sent, but holding '@' it must be quoted once
	   canonical (66 octets), which we would then store and send on */
	{ "<u1%92JxaJJJJJJZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZost@@example.test>",
	  "local part too long" },
	/* the same at the path limit: 256 octets as sent, 258 once quoted */
	{ "<ZZot@@aTXZZot@@1@te.rzzt.t.m-elarle.le.m-le.rle.lg.le.le.m-le.rle.lg.rrt.tamzzt.tamem-le.rle.le222222e.rle.le.m-l222222222222222222222222222222222222222222222rrt.tamzzt.tamem-le.rle.le2222222222222222222222222222222222222222222222222222222.rt.tamzzzt.tme>",
	  "address too long" },
	{ "<user@>", "missing domain" },
	{ "<user@.>", "missing domain" },
	{ "<user@example..test>", "bad domain syntax" },
	{ "<user@.example.test>", "bad domain syntax" },
	{ "<user@example.test..>", "bad domain syntax" },
	{ "<user@-example.test>", "bad domain syntax" },
	{ "<user@example-.test>", "bad domain syntax" },
	{ "<user@example.test->", "bad domain syntax" },
	{ "<user@exa_mple.test>", "bad character in domain" },
	{ "<user@exa\"mple\".test>", "bad character in domain" },
	{ "<.user@example.test>", "bad local part syntax" },
	{ "<user.@example.test>", "bad local part syntax" },
	{ "<us..er@example.test>", "bad local part syntax" },
	{ "<us(er@example.test>", "bad local part syntax" },
	{ "<us,er@example.test>", "bad local part syntax" },
	{ "<us:er@example.test>", "bad local part syntax" },
	{ "<\"us\"er@example.test>", "bad local part syntax" },
	{ "<us\"er\"@example.test>", "bad local part syntax" },
	{ "<\"a@b\"@c@example.test>", "bad local part syntax" },
	{ "<\"\"@example.test>", "empty local part" },
	{ "<\"user@example.test>", "unbalanced quote" },
	{ "<\"user@example.test\\>", "unbalanced quote" },
	{ "<user\\@remote.example@example.test>", "backslash outside quotes" },
	{ "<user\x01@example.test>", "control character" },
	{ "<user\x7f@example.test>", "control character" },
	{ "<user@example.test\r\n>", "control character" },
	{ "<\"a\tb\"@example.test>", "control character" },
	{ "<\"a\\\x01\"@example.test>", "bad escape" },
	{ "<us\xc3\xa9r@example.test>", "8-bit character" },
	{ "<user@ex\xe4mple.test>", "8-bit character" },
	{ "<user@[192.0.2.256]>", "bad IPv4 address literal" },
	{ "<user@[192.0.2]>", "bad IPv4 address literal" },
	{ "<user@[192.0.2.01]>", "bad IPv4 address literal" },
	{ "<user@[]>", "bad address literal" },
	{ "<user@[192.0.2.1>", "bad address literal" },
	{ "<user@[192.0.2.1]x>", "bad address literal" },
	{ "<user@[192.0.2.1].>", "bad address literal" },
	{ "<user@[IPv6:2001:db8::g]>", "bad IPv6 address literal" },
	{ "<user@[IPv6:192.0.2.1]>", "bad IPv6 address literal" },
	{ "<user@[IPv6:]>", "bad address literal" },
	{ "<user@[2001:db8::1]>", "unsupported address literal" },
	{ "<user@[tag:stuff]>", "unsupported address literal" },
	{ "<@example.test>", "bad source route" },
	{ "<@a.example,user@example.test>", "bad source route" },
	{ "<@a.example,:user@example.test>", "bad source route" },
	{ "<@a.example,b.example:user@example.test>", "bad source route" },
	{ "<@a..example:user@example.test>", "bad source route" },
	{ "<@[192.0.2.1]:user@example.test>", "bad source route" },
	{ "<@:user@example.test>", "bad source route" },
	{ "<@a.example:>", "missing mailbox" },
	{ "<@a.example user@example.test>", "space" },
	{ "<user@example.test> SIZE=10", "garbage after address" },
	{ "<>>", "garbage after address" },
	{ "<user@example.test>x", "garbage after address" },
	{ "<@a.example:@b.example:user@example.test>", "bad local part syntax" },
};

START_TEST(test_invalid)
{
	struct mailaddr a;
	const char *err = NULL;

	ck_assert_msg(address_parse(invalid[_i].in, &a, &err) == -1, "'%s' accepted",
	    invalid[_i].in);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, invalid[_i].error) != NULL, "'%s': got '%s', want '%s'",
	    invalid[_i].in, err, invalid[_i].error);
}
END_TEST

/* address_parse_path hands back the offset after '>' and reads no further than len */
static const struct {
	const char *in;
	size_t len;	/* 0: strlen */
	int ret;
	size_t end;
	const char *text;
} paths[] = {
	{ "<a@b.example> SIZE=100", 0, 0, 13, "a@b.example" },
	{ "<> BODY=8BITMIME", 0, 0, 2, "" },
	{ "<\"a>b\"@x.example> X=1", 0, 0, 17, "\"a>b\"@x.example" },
	{ "<a@b.example>>", 0, 0, 13, "a@b.example" },
	/* what follows '>' is the caller's, even a byte we would refuse inside */
	{ "<a@b.example>\x01\xff", 0, 0, 13, "a@b.example" },
	{ "<a@b.example>", 5, -1, 0, NULL },
	{ "<a\0b@c.example>", 15, -1, 0, NULL },
	{ "<a@b.example\0>", 14, -1, 0, NULL },
};

START_TEST(test_path_end)
{
	struct mailaddr a;
	const char *err = NULL;
	size_t end = 12345;
	size_t len = paths[_i].len != 0 ? paths[_i].len : strlen(paths[_i].in);

	int r = address_parse_path(paths[_i].in, len, &a, &end, &err);
	ck_assert_int_eq(r, paths[_i].ret);
	if (r == 0) {
		ck_assert_uint_eq(end, paths[_i].end);
		ck_assert_str_eq(a.text, paths[_i].text);
	} else {
		ck_assert_ptr_nonnull(err);
	}
}
END_TEST

START_TEST(test_nul_reported)
{
	struct mailaddr a;
	const char *err = NULL;
	size_t end;

	ck_assert_int_eq(address_parse_path("<a\0b@c.example>", 15, &a, &end, &err), -1);
	ck_assert_str_eq(err, "NUL in address");
}
END_TEST

static void
fill(char *p, char c, size_t n)
{
	memset(p, c, n);
}

/* a domain of n octets: labels of 63 'd' separated by dots */
static void
make_domain(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (i % 64 == 63) ? '.' : 'd';
	if (n > 0 && p[n - 1] == '.')
		p[n - 1] = 'd';
	p[n] = '\0';
}

/*
 * Limits of RFC 5321 4.5.3.1, each exactly at and one over: local part 64 (as sent,
 * quotes included), path 256 including the brackets, DNS labels 63.
 */
static const struct {
	const char *what;
	size_t local, domain;	/* lengths; local of a dot-atom of 'l' */
	bool quoted;		/* local part is a quoted string of that total size */
	const char *error;	/* NULL: valid */
} limits[] = {
	{ "local 64", 64, 10, false, NULL },
	{ "local 65", 65, 10, false, "local part too long" },
	{ "quoted local 64", 64, 10, true, NULL },
	{ "quoted local 65", 65, 10, true, "local part too long" },
	{ "path 256", 64, 256 - 3 - 64, false, NULL },
	{ "path 257", 64, 257 - 3 - 64, false, "address too long" },
	{ "path 256 short local", 1, 252, false, NULL },
	{ "path 257 short local", 1, 253, false, "address too long" },
	{ "label 63", 5, 63, false, NULL },
	{ "label 64", 5, 64, false, "domain label too long" },
};

START_TEST(test_limits)
{
	char buf[600], *p = buf;
	struct mailaddr a;
	const char *err = NULL;

	*p++ = '<';
	if (limits[_i].quoted) {
		*p++ = '"';
		fill(p, 'q', limits[_i].local - 2);
		p += limits[_i].local - 2;
		*p++ = '"';
	} else {
		fill(p, 'l', limits[_i].local);
		p += limits[_i].local;
	}
	*p++ = '@';
	if (strstr(limits[_i].what, "label") != NULL) {
		fill(p, 'd', limits[_i].domain);
		p[limits[_i].domain] = '\0';
	} else {
		make_domain(p, limits[_i].domain);
	}
	p += limits[_i].domain;
	*p++ = '>';
	*p = '\0';

	int r = address_parse(buf, &a, &err);
	if (limits[_i].error == NULL) {
		ck_assert_msg(r == 0, "%s: %s", limits[_i].what, err);
		ck_assert_uint_eq(strlen(a.domain), limits[_i].domain);
		if (!limits[_i].quoted)
			ck_assert_uint_eq(strlen(a.local), limits[_i].local);
		else
			ck_assert_uint_eq(strlen(a.local), limits[_i].local - 2);
	} else {
		ck_assert_msg(r == -1, "%s accepted", limits[_i].what);
		ck_assert_str_eq(err, limits[_i].error);
	}
}
END_TEST

/* a path of exactly 256 octets whose domain carries a trailing dot */
START_TEST(test_limit_trailing_dot)
{
	char buf[300];
	struct mailaddr a;
	const char *err = NULL;

	buf[0] = '<';
	fill(buf + 1, 'l', 10);
	buf[11] = '@';
	make_domain(buf + 12, 242);
	buf[12 + 242] = '.';
	buf[12 + 243] = '>';
	buf[12 + 244] = '\0';
	ck_assert_uint_eq(strlen(buf), 256);
	ck_assert_int_eq(address_parse(buf, &a, &err), 0);
	ck_assert_uint_eq(strlen(a.domain), 242);
}
END_TEST

static const struct {
	const char *in;
	bool postmaster;
} postmasters[] = {
	{ "<postmaster>", true },
	{ "<POSTMASTER>", true },
	{ "<PostMaster@example.test>", true },
	{ "<\"postmaster\"@example.test>", true },
	{ "<postmaster@remote.example>", true },	/* the policy checks the domain */
	{ "<postmaster2@example.test>", false },
	{ "<post.master@example.test>", false },
	{ "<>", false },
};

START_TEST(test_postmaster)
{
	struct mailaddr a;
	const char *err = NULL;

	ck_assert_int_eq(address_parse(postmasters[_i].in, &a, &err), 0);
	ck_assert(address_is_postmaster(&a) == postmasters[_i].postmaster);
}
END_TEST

static const struct {
	const char *addr, *pattern;
	bool match;
} patterns[] = {
	{ "<u@partner.example>", "@partner.example", true },
	{ "<u@PARTNER.Example.>", "@partner.example", true },
	{ "<u@partner.example>", "@Partner.Example.", true },
	{ "<u@sub.partner.example>", "@partner.example", false },
	{ "<u@sub.partner.example>", "@.partner.example", true },
	{ "<u@a.b.partner.example>", "@.partner.example", true },
	{ "<u@partner.example>", "@.partner.example", false },
	{ "<u@xpartner.example>", "@.partner.example", false },
	{ "<u@xpartner.example>", "@partner.example", false },
	{ "<u@partner.example.evil.example>", "@partner.example", false },
	{ "<u@partner.example>", "u@partner.example", true },
	{ "<u@partner.example>", "u@PARTNER.example", true },
	{ "<U@partner.example>", "u@partner.example", false },
	{ "<v@partner.example>", "u@partner.example", false },
	{ "<u@other.example>", "u@partner.example", false },
	{ "<\"a b\"@x.example>", "\"a b\"@x.example", true },
	{ "<\"ab\"@x.example>", "ab@x.example", true },
	{ "<u@[192.0.2.1]>", "@[192.0.2.1]", true },
	{ "<u@[IPv6:2001:DB8::1]>", "@[ipv6:2001:db8:0::1]", true },
	{ "<u@[192.0.2.1]>", "@[192.0.2.2]", false },
	{ "<u@192.0.2.1>", "@[192.0.2.1]", false },
	{ "<user%partner.example@evil.example>", "@partner.example", false },
	{ "<\"user@partner.example\"@evil.example>", "@partner.example", false },
	{ "<@partner.example:user@evil.example>", "@partner.example", false },
	{ "<>", "@partner.example", false },
	{ "<postmaster>", "@partner.example", false },
	{ "<u@partner.example>", "", false },
	{ "<u@partner.example>", "@", false },
	{ "<u@partner.example>", "@.", true },	/* "@." is every domain */
	{ "<>", "@.", false },
	{ "<postmaster>", "@.", false },
	{ "<u@partner.example>", "@@partner.example", false },
	{ "<u@partner.example>", "partner.example", false },
};

START_TEST(test_pattern)
{
	struct mailaddr a;
	const char *err = NULL;

	ck_assert_int_eq(address_parse(patterns[_i].addr, &a, &err), 0);
	ck_assert_msg(address_match_pattern(&a, patterns[_i].pattern) == patterns[_i].match,
	    "%s vs %s", patterns[_i].addr, patterns[_i].pattern);
}
END_TEST

static const struct {
	const char *pattern;
	bool valid;
} pattern_syntax[] = {
	{ "@partner.example", true },
	{ "@.partner.example", true },
	{ "@Partner.Example.", true },
	{ "u@partner.example", true },
	{ "\"a b\"@partner.example", true },
	{ "@[192.0.2.1]", true },
	{ "@[IPv6:2001:db8::1]", true },
	{ "", false },
	{ "@", false },
	{ "@.", true },
	{ "@..partner.example", false },
	{ "@@partner.example", false },
	{ "@.[192.0.2.1]", false },
	{ "partner.example", false },		/* bare: no domain */
	{ "u@", false },
	{ "u@partner.example junk", false },
	{ "<u@partner.example>", false },
	{ "@a.example:u@partner.example", false },
	{ "u@part ner.example", false },
};

START_TEST(test_pattern_syntax)
{
	ck_assert_msg(address_pattern_valid(pattern_syntax[_i].pattern) ==
	    pattern_syntax[_i].valid, "%s", pattern_syntax[_i].pattern);
}
END_TEST


static Suite *
address_suite(void)
{
	Suite *s = suite_create("address");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, test_valid, 0, N(valid));
	tcase_add_loop_test(tc, test_invalid, 0, N(invalid));
	tcase_add_loop_test(tc, test_path_end, 0, N(paths));
	tcase_add_test(tc, test_nul_reported);
	tcase_add_loop_test(tc, test_limits, 0, N(limits));
	tcase_add_test(tc, test_limit_trailing_dot);
	suite_add_tcase(s, tc);

	tc = tcase_create("match");
	tcase_add_loop_test(tc, test_postmaster, 0, N(postmasters));
	tcase_add_loop_test(tc, test_pattern, 0, N(patterns));
	tcase_add_loop_test(tc, test_pattern_syntax, 0, N(pattern_syntax));
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(address_suite)
