/*
 * common/net.c: entry syntax, matching (IPv4, IPv6, wildcards, CIDR, IPv4-mapped
 * clients), the covers-all and over-wide predicates, loopback detection and ntop.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "common/net.h"
#include "tests/unit/testmain.h"
#include "tests/unit/testutil.h"

static const char *const good_entries[] = {
	"127.0.0.1", "192.168.1.*", "10.*.*.*", "*.*.*.*", "192.168.*.*",
	"10.0.0.0/8", "0.0.0.0/0", "192.168.1.5/24", "::1", "2001:db8::/32", "::/0",
	"fe80::1", "::ffff:10.0.0.1", "::ffff:10.0.0.0/104", "194.222.58.129",
	"1.2.3.4/32", "2001:db8::1/128",
};

static const char *const bad_entries[] = {
	"", "192.*.1.1", "*.168.1.1", "1.2.3", "1.2.3.4.5", "256.1.1.1", "10",
	"1.2.3.4/33", "1.2.3.4/", "1.2.3.4/abc", "1.2.3.4/255.255.0.0", "::1/129",
	"*", "1.2.*", "1.2.3.*.*", "1..3.*", "eth0", "localhost", "1.2.3.4 ",
	"::g", "2001:db8::/-1", "1.2.3.4/1000", "1.2.3.*/24", ".1.2.*",
	"1.2.3.**", "a.*.*.*",
};

START_TEST(test_good_entry)
{
	struct netlist *nl = netlist_new();
	const char *err = NULL;

	ck_assert_msg(netlist_add(nl, good_entries[_i], &err) == 0, "%s rejected",
	    good_entries[_i]);
	ck_assert_uint_eq(netlist_count(nl), 1);
	ck_assert_str_eq(netlist_entry(nl, 0), good_entries[_i]);
	ck_assert_ptr_null(netlist_entry(nl, 1));
	netlist_free(nl);
}
END_TEST

START_TEST(test_bad_entry)
{
	struct netlist *nl = netlist_new();
	const char *err = NULL;

	ck_assert_msg(netlist_add(nl, bad_entries[_i], &err) == -1, "'%s' accepted",
	    bad_entries[_i]);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, "expected"));
	ck_assert_uint_eq(netlist_count(nl), 0);
	netlist_free(nl);
}
END_TEST

static const struct {
	const char *entry, *client;
	bool match;
} matches[] = {
	{ "127.0.0.1", "127.0.0.1", true },
	{ "127.0.0.1", "127.0.0.2", false },
	{ "192.168.1.*", "192.168.1.200", true },
	{ "192.168.1.*", "192.168.2.1", false },
	{ "10.*.*.*", "10.255.0.3", true },
	{ "10.*.*.*", "11.0.0.1", false },
	{ "*.*.*.*", "203.0.113.9", true },
	{ "*.*.*.*", "::1", false },
	{ "10.0.0.0/8", "10.1.2.3", true },
	{ "10.0.0.0/8", "9.255.255.255", false },
	{ "192.168.1.5/24", "192.168.1.77", true },
	{ "192.168.1.5/24", "192.168.0.77", false },
	{ "0.0.0.0/0", "1.1.1.1", true },
	{ "::1", "::1", true },
	{ "::1", "::2", false },
	{ "2001:db8::/32", "2001:db8:ffff::1", true },
	{ "2001:db8::/32", "2001:db9::1", false },
	{ "::/0", "2001:db8::1", true },
	{ "::/0", "10.0.0.1", false },
	/* IPv4-mapped clients match IPv4 entries, and mapped entries are IPv4 */
	{ "127.0.0.1", "::ffff:127.0.0.1", true },
	{ "192.168.1.*", "::ffff:192.168.1.9", true },
	{ "192.168.1.*", "::ffff:192.168.2.9", false },
	{ "10.0.0.0/8", "::ffff:10.9.9.9", true },
	{ "::ffff:10.0.0.1", "10.0.0.1", true },
	{ "::ffff:10.0.0.0/104", "10.3.3.3", true },
	{ "::ffff:10.0.0.0/104", "11.3.3.3", false },
	/* an IPv4 entry never matches a plain IPv6 client */
	{ "0.0.0.0/0", "2001:db8::1", false },
	{ "127.0.0.1", "not-an-ip", false },
};

START_TEST(test_match)
{
	struct netlist *nl = netlist_new();
	const char *err = NULL;

	ck_assert_int_eq(netlist_add(nl, matches[_i].entry, &err), 0);
	ck_assert_msg(netlist_match_str(nl, matches[_i].client) == matches[_i].match,
	    "%s vs %s: expected %d", matches[_i].entry, matches[_i].client,
	    matches[_i].match);
	netlist_free(nl);
}
END_TEST

START_TEST(test_match_list_and_sockaddr)
{
	struct netlist *nl = netlist_new();
	const char *err = NULL;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	ck_assert(!netlist_match_str(nl, "127.0.0.1"));	/* empty list trusts nobody */
	ck_assert(!netlist_match_str(NULL, "127.0.0.1"));
	ck_assert_int_eq(netlist_add(nl, "192.168.1.*", &err), 0);
	ck_assert_int_eq(netlist_add(nl, "::1", &err), 0);
	ck_assert_int_eq(netlist_add(nl, "bogus", &err), -1);
	ck_assert_uint_eq(netlist_count(nl), 2);
	ck_assert_str_eq(netlist_entry(nl, 1), "::1");

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "192.168.1.3", &sin.sin_addr);
	ck_assert(netlist_match(nl, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "192.168.3.3", &sin.sin_addr);
	ck_assert(!netlist_match(nl, (struct sockaddr *)&sin));

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
	ck_assert(netlist_match(nl, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "::ffff:192.168.1.40", &sin6.sin6_addr);
	ck_assert(netlist_match(nl, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "::ffff:192.168.4.40", &sin6.sin6_addr);
	ck_assert(!netlist_match(nl, (struct sockaddr *)&sin6));
	netlist_free(nl);
}
END_TEST

static const struct {
	const char *entry;
	bool all, overwide;
} wide[] = {
	{ "0.0.0.0/0", true, true },
	{ "*.*.*.*", true, true },
	{ "::/0", true, true },
	{ "1.2.3.4/0", true, true },
	{ "8.0.0.0/8", false, true },
	{ "12.*.*.*", false, true },
	{ "128.0.0.0/1", false, true },
	{ "10.0.0.0/8", false, false },
	{ "10.*.*.*", false, false },
	{ "127.0.0.0/8", false, false },
	{ "192.168.1.*", false, false },
	{ "194.222.58.129", false, false },
	{ "8.0.0.0/9", false, false },
	{ "2000::/3", false, true },
	{ "2001:db8::/32", false, false },
	{ "2001::/16", false, false },
	{ "::1", false, false },
	{ "garbage", false, false },
	/* private space is no stranger's, however wide */
	{ "fc00::/7", false, false },
	{ "fe80::/10", false, false },
	{ "172.16.0.0/12", false, false },
	{ "10.0.0.0/7", false, true },		/* 11/8 is public */
	{ "224.0.0.0/3", false, false },	/* multicast and reserved */
};

/* the union of a list, judged as one (the open-relay interlock) */
static const struct {
	const char *entries[6];
	int family;
} spans[] = {
	{ { "0.0.0.0/1", "128.0.0.0/1" }, AF_INET },
	{ { "1.0.0.0/8", "2.0.0.0/8" }, AF_INET },
	{ { "1.0.0.0/8", "1.0.0.0/8" }, 0 },
	{ { "1.0.0.0/8", "1.2.0.0/16", "10.0.0.0/8" }, 0 },
	{ { "1.0.0.0/8", "2.0.0.0/32" }, AF_INET },
	{ { "10.0.0.0/7", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16" }, 0 },
	{ { "::ffff:0.0.0.0/97", "::ffff:128.0.0.0/97" }, AF_INET },
	{ { "::/1", "8000::/1" }, AF_INET6 },
	{ { "2001::/16", "2002::/16" }, AF_INET6 },
	{ { "2001::/16", "2001:db8::/32" }, 0 },
	{ { "fc00::/7", "fe80::/10", "::1" }, 0 },
	{ { "*.*.*.*" }, AF_INET },
	{ { NULL }, 0 },
};

START_TEST(test_public_span)
{
	struct netlist *nl = netlist_new();
	const char *err;

	for (int i = 0; i < 6 && spans[_i].entries[i] != NULL; i++)
		ck_assert_int_eq(netlist_add(nl, spans[_i].entries[i], &err), 0);
	ck_assert_int_eq(netlist_public_span(nl), spans[_i].family);
	netlist_free(nl);
}
END_TEST

START_TEST(test_wide)
{
	ck_assert_msg(net_entry_covers_all(wide[_i].entry) == wide[_i].all,
	    "covers_all(%s)", wide[_i].entry);
	ck_assert_msg(net_entry_overwide(wide[_i].entry) == wide[_i].overwide,
	    "overwide(%s)", wide[_i].entry);
}
END_TEST

static const struct {
	const char *ip;
	bool loopback;
	const char *ntop;
} addrs[] = {
	{ "127.0.0.1", true, "127.0.0.1" },
	{ "127.0.0.2", true, "127.0.0.2" },
	{ "10.0.0.1", false, "10.0.0.1" },
	{ "0.0.0.0", false, "0.0.0.0" },
	{ "::1", true, "::1" },
	{ "::", false, "::" },
	{ "2001:db8::1", false, "2001:db8::1" },
	{ "::ffff:127.0.0.1", true, "127.0.0.1" },
	{ "::ffff:192.0.2.7", false, "192.0.2.7" },
};

START_TEST(test_sockaddr)
{
	struct sockaddr_storage ss;
	char buf[64];

	memset(&ss, 0, sizeof(ss));
	if (strchr(addrs[_i].ip, ':') != NULL) {
		ss.ss_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, addrs[_i].ip,
		    &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
	} else {
		ss.ss_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, addrs[_i].ip,
		    &((struct sockaddr_in *)&ss)->sin_addr), 1);
	}
	ck_assert(net_sockaddr_is_loopback((struct sockaddr *)&ss) == addrs[_i].loopback);
	ck_assert_str_eq(net_sockaddr_ntop((struct sockaddr *)&ss, buf, sizeof(buf)),
	    addrs[_i].ntop);
}
END_TEST


static Suite *
net_suite(void)
{
	Suite *s = suite_create("net");
	TCase *tc = tcase_create("net");

	tcase_add_loop_test(tc, test_good_entry, 0, N(good_entries));
	tcase_add_loop_test(tc, test_bad_entry, 0, N(bad_entries));
	tcase_add_loop_test(tc, test_match, 0, N(matches));
	tcase_add_test(tc, test_match_list_and_sockaddr);
	tcase_add_loop_test(tc, test_wide, 0, N(wide));
	tcase_add_loop_test(tc, test_public_span, 0, sizeof(spans) / sizeof(spans[0]));
	tcase_add_loop_test(tc, test_sockaddr, 0, N(addrs));
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(net_suite)
