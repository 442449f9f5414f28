/*
 * Routing: next-hop syntax (Postfix's), the decision local -> routes -> relayhost ->
 * MX, transport_maps-style subdomain patterns, and the "is it me" test.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "deliver/dns.h"
#include "deliver/route.h"
#include "tests/unit/testmain.h"

static const struct {
	const char *in;
	int ok;
	const char *name;	/* route_nexthop_name, or the error's start */
	bool mx, literal;
} hops[] = {
	{ "[smtp.provider.example]:587", 1, "smtp:[smtp.provider.example]:587", false, false },
	{ "[smtp.provider.example]", 1, "smtp:[smtp.provider.example]:25", false, false },
	{ "mx.example", 1, "smtp:mx.example:25", true, false },
	{ "MX.Example.:2525", 1, "smtp:mx.example:2525", true, false },
	{ "smtp:[10.1.2.3]:25", 1, "smtp:[10.1.2.3]:25", false, true },
	{ "10.1.2.3", 1, "smtp:[10.1.2.3]:25", false, true },
	{ "[2001:db8::1]:2525", 1, "smtp:[2001:db8::1]:2525", false, true },
	{ "[IPv6:2001:db8::1]", 1, "smtp:[2001:db8::1]:25", false, true },
	{ "lmtp:unix:/run/dovecot/lmtp", 1, "lmtp:unix:/run/dovecot/lmtp", false, false },
	{ "lmtp:127.0.0.1:24", 1, "lmtp:[127.0.0.1]:24", false, true },
	{ "lmtp:inet:imap.example:2424", 1, "lmtp:[imap.example]:2424", false, false },
	{ "lmtp:[imap.example]", 1, "lmtp:[imap.example]:24", false, false },
	{ "maildir:/var/mail/%d/%u", 1, "maildir:/var/mail/%d/%u", false, false },
	{ "", 0, "expected a next hop", false, false },
	{ "2001:db8::1", 0, "an IPv6 address must be written in brackets", false, false },
	{ "[mx.example", 0, "missing ']'", false, false },
	{ "[mx.example]x", 0, "expected ':port'", false, false },
	{ "mx.example:0", 0, "expected a port number", false, false },
	{ "mx.example:65536", 0, "expected a port number", false, false },
	{ "mx.example:smtp", 0, "expected a port number", false, false },
	{ "mx.example:", 0, "expected a port number", false, false },
	{ "mx..example", 0, "expected a host name", false, false },
	{ "mx example", 0, "white space", false, false },
	{ "mx/example", 0, "expected a host name", false, false },
	{ "lmtp:unix:relative", 0, "lmtp:unix: expected an absolute", false, false },
	{ "maildir:var/mail", 0, "maildir: expected an absolute", false, false },
	{ "maildir:/var/mail/%x", 0, "maildir: only %d", false, false },
	{ "maildir:/var/mail/../etc/%u", 0, "maildir: '..'", false, false },
};

START_TEST(nexthop_syntax)
{
	struct nexthop nh;
	const char *err = NULL;
	char name[512];
	int rc = route_parse_nexthop(hops[_i].in, &nh, &err);

	if (!hops[_i].ok) {
		ck_assert_msg(rc == -1, "%s accepted", hops[_i].in);
		ck_assert_msg(strncmp(err, hops[_i].name, strlen(hops[_i].name)) == 0,
		    "%s: %s", hops[_i].in, err);
		return;
	}
	ck_assert_msg(rc == 0, "%s: %s", hops[_i].in, err);
	route_nexthop_name(&nh, name, sizeof(name));
	ck_assert_str_eq(name, hops[_i].name);
	ck_assert_int_eq(nh.mx, hops[_i].mx);
	ck_assert_int_eq(nh.literal, hops[_i].literal);
}
END_TEST

static struct route_table *
table(bool relayhost)
{
	struct route_table *t = route_table_new();
	const char *err;

	ck_assert_int_eq(route_add_local_domain(t, "Example.TEST.", &err), 0);
	ck_assert_int_eq(route_set_local(t, "maildir:/var/mail/%d/%u", &err), 0);
	ck_assert_int_eq(route_add(t, "example.net", "[10.1.2.3]:25", &err), 0);
	ck_assert_int_eq(route_add(t, ".example.net", "[10.9.9.9]", &err), 0);
	ck_assert_int_eq(route_add(t, ".deep.example.org", "[10.0.0.2]", &err), 0);
	ck_assert_int_eq(route_add(t, ".example.org", "[10.0.0.1]", &err), 0);
	ck_assert_int_eq(route_add(t, "example.net", "[10.1.2.4]", &err), -1);
	ck_assert_int_eq(route_add(t, "bad domain", "[10.1.2.4]", &err), -1);
	if (relayhost)
		ck_assert_int_eq(route_set_relayhost(t, "[smtp.provider.example]:587", &err), 0);
	return t;
}

static const struct {
	bool relayhost;
	const char *domain;
	enum route_via via;
	const char *name;
} decisions[] = {
	{ false, "example.test", ROUTE_LOCAL, "maildir:/var/mail/%d/%u" },
	{ false, "EXAMPLE.test.", ROUTE_LOCAL, "maildir:/var/mail/%d/%u" },
	{ false, "sub.example.test", ROUTE_DIRECT, "smtp:sub.example.test:25" },
	{ false, "example.net", ROUTE_ROUTES, "smtp:[10.1.2.3]:25" },
	{ false, "a.b.example.net", ROUTE_ROUTES, "smtp:[10.9.9.9]:25" },
	{ false, "x.deep.example.org", ROUTE_ROUTES, "smtp:[10.0.0.2]:25" },
	{ false, "deep.example.org", ROUTE_ROUTES, "smtp:[10.0.0.1]:25" },
	{ false, "example.org", ROUTE_DIRECT, "smtp:example.org:25" },	/* not .example.org */
	{ false, "notexample.net", ROUTE_DIRECT, "smtp:notexample.net:25" },
	{ false, "remote.example", ROUTE_DIRECT, "smtp:remote.example:25" },
	{ false, "[192.0.2.7]", ROUTE_DIRECT, "smtp:[192.0.2.7]:25" },
	{ false, "[ipv6:2001:db8::7]", ROUTE_DIRECT, "smtp:[2001:db8::7]:25" },
	{ true, "remote.example", ROUTE_RELAYHOST, "smtp:[smtp.provider.example]:587" },
	{ true, "[192.0.2.7]", ROUTE_RELAYHOST, "smtp:[smtp.provider.example]:587" },
	{ true, "example.net", ROUTE_ROUTES, "smtp:[10.1.2.3]:25" },
	{ true, "example.test", ROUTE_LOCAL, "maildir:/var/mail/%d/%u" },
};

START_TEST(decide)
{
	struct route_table *t = table(decisions[_i].relayhost);
	struct route_result r;
	const char *err = NULL;
	char name[512];

	ck_assert_msg(route_decide(t, decisions[_i].domain, &r, &err) == 0, "%s: %s",
	    decisions[_i].domain, err);
	ck_assert_int_eq(r.via, decisions[_i].via);
	route_nexthop_name(&r.nh, name, sizeof(name));
	ck_assert_str_eq(name, decisions[_i].name);
	route_table_free(t);
}
END_TEST

START_TEST(decide_errors)
{
	struct route_table *t = route_table_new();
	struct route_result r;
	const char *err;

	route_add_local_domain(t, "example.test", &err);
	ck_assert_int_eq(route_decide(t, "example.test", &r, &err), -1);
	ck_assert_str_eq(err, "local domain but no local transport configured");
	ck_assert_int_eq(route_decide(t, "", &r, &err), -1);
	ck_assert_int_eq(route_decide(t, "[192.0.2.300]", &r, &err), -1);
	ck_assert_int_eq(route_decide(t, "[1.2.3.4]x", &r, &err), -1);
	ck_assert_int_eq(route_decide(t, "a/../b", &r, &err), -1);
	ck_assert_int_eq(route_set_relayhost(t, "maildir:/x", &err), -1);
	route_table_free(t);
}
END_TEST

START_TEST(self)
{
	struct route_self *s = route_self_new("Mail.Example.TEST");
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };

	ck_assert(route_is_self(s, "mail.example.test.", NULL, 25));
	ck_assert(!route_is_self(s, "mx.example.test", NULL, 25));
	inet_pton(AF_INET, "192.0.2.10", &a4.sin_addr);
	route_self_add(s, (struct sockaddr *)&a4, 25);
	inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
	route_self_add(s, (struct sockaddr *)&a4, 2525);
	inet_pton(AF_INET, "192.0.2.10", &a4.sin_addr);
	ck_assert(route_is_self(s, NULL, (struct sockaddr *)&a4, 25));
	ck_assert(!route_is_self(s, NULL, (struct sockaddr *)&a4, 587));
	/* IPv4-mapped IPv6 is the same host */
	inet_pton(AF_INET6, "::ffff:192.0.2.10", &a6.sin6_addr);
	ck_assert(route_is_self(s, NULL, (struct sockaddr *)&a6, 25));
	/* a test MX on another loopback port is not us */
	inet_pton(AF_INET, "127.0.0.1", &a4.sin_addr);
	ck_assert(route_is_self(s, NULL, (struct sockaddr *)&a4, 2525));
	ck_assert(!route_is_self(s, NULL, (struct sockaddr *)&a4, 2626));
	/* interfaces: any port */
	ck_assert_int_eq(route_self_add_interfaces(s), 0);
	ck_assert(route_is_self(s, NULL, (struct sockaddr *)&a4, 2626));
	route_self_free(s);
}
END_TEST

static const struct {
	int pref[3];
	int self;		/* index of the host that is us (by address), -1 none */
	bool by_name;
	size_t want;		/* usable hosts; 0 = loop */
} mx_cases[] = {
	{ { 10, 10, 20 }, -1, false, 3 },
	{ { 5, 10, 20 }, 1, false, 1 },		/* a backup MX: the better one only */
	{ { 10, 10, 20 }, 1, false, 0 },	/* among the best: loop */
	{ { 5, 10, 20 }, 0, true, 0 },		/* the best, by name */
	{ { 5, 10, 20 }, 2, true, 2 },
};

START_TEST(mx_usable)
{
	struct route_self *s = route_self_new("me.example.test");
	struct sockaddr_in me = { .sin_family = AF_INET }, other = { .sin_family = AF_INET };
	struct dns_addr a_me, a_other;
	struct dns_host h[3];
	struct dns_result r = { .status = DNS_OK, .mx_found = true, .hosts = h, .n_hosts = 3 };
	char err[256];
	size_t n = 99;

	inet_pton(AF_INET, "192.0.2.25", &me.sin_addr);
	inet_pton(AF_INET, "192.0.2.99", &other.sin_addr);
	route_self_add(s, (struct sockaddr *)&me, 25);
	memset(&a_me, 0, sizeof(a_me));
	memcpy(&a_me.ss, &me, sizeof(me));
	memset(&a_other, 0, sizeof(a_other));
	memcpy(&a_other.ss, &other, sizeof(other));
	memset(h, 0, sizeof(h));
	for (int i = 0; i < 3; i++) {
		snprintf(h[i].name, sizeof(h[i].name), "mx%d.remote.example", i);
		h[i].pref = mx_cases[_i].pref[i];
		h[i].addrs = &a_other;
		h[i].n_addrs = 1;
	}
	if (mx_cases[_i].self >= 0) {
		if (mx_cases[_i].by_name)
			snprintf(h[mx_cases[_i].self].name, sizeof(h[0].name), "ME.example.test");
		else
			h[mx_cases[_i].self].addrs = &a_me;
	}
	int rc = route_mx_usable(s, &r, "remote.example", 25, &n, err, sizeof(err));
	ck_assert_uint_eq(n, mx_cases[_i].want);
	if (mx_cases[_i].want == 0) {
		ck_assert_int_eq(rc, -1);
		ck_assert_str_eq(err, "mail for remote.example loops back to myself");
	} else {
		ck_assert_int_eq(rc, 0);
	}
	/* on another port the address is not us (a test MX next to our listener) */
	if (mx_cases[_i].self >= 0 && !mx_cases[_i].by_name) {
		ck_assert_int_eq(route_mx_usable(s, &r, "remote.example", 2526, &n, err,
		    sizeof(err)), 0);
		ck_assert_uint_eq(n, 3);
	}
	route_self_free(s);
}
END_TEST

static Suite *
deliver_route_suite(void)
{
	Suite *s = suite_create("deliver_route");
	TCase *tc = tcase_create("route");

	tcase_add_loop_test(tc, nexthop_syntax, 0, sizeof(hops) / sizeof(hops[0]));
	tcase_add_loop_test(tc, decide, 0, sizeof(decisions) / sizeof(decisions[0]));
	tcase_add_test(tc, decide_errors);
	tcase_add_test(tc, self);
	tcase_add_loop_test(tc, mx_usable, 0, sizeof(mx_cases) / sizeof(mx_cases[0]));
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(deliver_route_suite)
