/*
 * profiles/audit.c: the relay-trick corpus and its runner. Configurations come
 * from YAML through the real loader; each test states what an administrator
 * would expect of the audit of that configuration: a locked-down profile gets
 * exactly the corpus's "stranger" answers and relays nothing, an open one is
 * caught case by case, LAN entries get a client inside them, access: refusals
 * end a case at connect, and the checklist, matrix and exposure warnings say
 * what the profile does.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "profiles/audit.h"
#include "common/net.h"
#include "tests/unit/testmain.h"

static const char server[] =
    "server:\n"
    "  hostname: mx.example.test\n"
    "  spool: /tmp/rv-audit-unit/spool\n"
    "  control: /tmp/rv-audit-unit/ctl.sock\n"
    "  logs: /tmp/rv-audit-unit/log\n"
    "  local_domains: [example.test]\n";

static struct config *
load(const char *rest)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s%s", server, rest);
	const char *names[] = { "10.yaml" };
	const char *bufs[] = { buf };
	struct config_diags diags = { 0 };
	struct config *cfg = config_load(config_source_from_buffers("conf.d", names,
	    bufs, 1), &diags);
	if (diags.n_errors > 0)
		config_diags_print(&diags, stderr);
	ck_assert_uint_eq(diags.n_errors, 0);
	config_diags_free(&diags);
	return cfg;
}

static void
sockaddr_of(const char *ip, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
		v6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &v6->sin6_addr), 1);
	} else {
		struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
		v4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip, &v4->sin_addr), 1);
	}
}

static ssize_t
case_index(const char *name)
{
	char buf[96];
	for (size_t i = 0; i < audit_corpus_n; i++)
		if (strcmp(audit_case_name(i, buf, sizeof(buf)), name) == 0)
			return (ssize_t)i;
	return -1;
}

static const char locked[] =
    "profiles:\n"
    "  locked: {lan: []}\n"
    "instances:\n"
    "  internet: {listen: [\"127.0.0.2:2525\"], profile: locked}\n";

START_TEST(corpus_covers_every_trick_class)
{
	static const char *const classes[] = { "percent-hack", "bang-path",
	    "quoted-escaped", "several-at", "source-route", "address-literal",
	    "dots-and-case", "forged-sender", "postmaster", "helo-forgery",
	    "length-limit" };
	ck_assert_uint_gt(audit_corpus_n, 80);
	for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
		unsigned n = 0;
		for (size_t i = 0; i < audit_corpus_n; i++)
			n += strcmp(audit_corpus[i].cls, classes[c]) == 0;
		ck_assert_msg(n >= 2, "class %s has %u cases", classes[c], n);
	}
	char a[96], b[96];
	for (size_t i = 0; i < audit_corpus_n; i++) {
		const char *s = audit_corpus[i].stranger;
		ck_assert_msg(s[0] == '2' || s[0] == '5', "case %zu: %s", i, s);
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(audit_case_name(i, a, sizeof(a)),
			    audit_case_name(j, b, sizeof(b)));
	}
	ck_assert_str_eq(audit_case_name(0, a, sizeof(a)), "control/1");
}
END_TEST

START_TEST(placeholders_expand)
{
	struct config *cfg = load(locked);
	struct audit_vars v;
	char out[256];
	audit_vars_init(cfg, config_instance(cfg, "internet"), &v);
	ck_assert(audit_expand("<a%{local}@{LOCAL}> {Local} {own} {hostname}", &v, out,
	    sizeof(out)));
	ck_assert_str_eq(out, "<a%example.test@EXAMPLE.TEST> Example.Test [127.0.0.2] "
	    "mx.example.test");
	ck_assert(!audit_expand("{local}{local}", &v, out, 10));
	config_free(cfg);
}
END_TEST

/* every case answers what the corpus says a stranger gets from a locked profile */
START_TEST(locked_down_stranger_gets_the_corpus_answers)
{
	struct config *cfg = load(locked);
	const struct instance *inst = config_instance(cfg, "internet");
	const char *ips[] = { "192.0.2.7", "2001:db8::7", "::ffff:192.0.2.7" };
	struct audit_vars v;
	audit_vars_init(cfg, inst, &v);
	for (size_t k = 0; k < 3; k++) {
		struct sockaddr_storage ss;
		sockaddr_of(ips[k], &ss);
		for (size_t i = 0; i < audit_corpus_n; i++) {
			struct audit_outcome o;
			char name[96];
			audit_simulate(cfg, inst, (struct sockaddr *)&ss, false, &v, i, &o);
			const char *want = audit_corpus[i].stranger;
			const char *got = o.stage == AUDIT_AT_MAIL ? o.mail : o.rcpt;
			audit_case_name(i, name, sizeof(name));
			ck_assert_msg(o.stage != AUDIT_AT_CONNECT, "%s", name);
			ck_assert_msg(strncmp(got, want, strlen(want)) == 0,
			    "%s from %s: MAIL FROM:%s RCPT TO:%s got '%s', corpus says '%s'",
			    name, ips[k], o.mail_arg, o.rcpt_arg, got, want);
			ck_assert_msg(!o.relayed, "%s relayed", name);
			if (o.stage == AUDIT_AT_MAIL)
				ck_assert_str_eq(o.mail, "501 5.1.7 Bad sender address syntax");
			else
				ck_assert_str_eq(o.mail, "250 2.1.0 Ok");
		}
	}
	struct audit_instance a;
	audit_instance(cfg, inst, false, &a);
	ck_assert_uint_eq(a.n_strangers, 3);
	ck_assert_uint_eq(a.stranger_evaluated, 3 * audit_corpus_n);
	ck_assert_uint_eq(a.stranger_relayed, 0);
	ck_assert_uint_eq(a.n_lans, 0);
	ck_assert(a.checklist_ok);
	ck_assert(!a.internet);
	ck_assert_uint_eq(a.n_exposure, 0);
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

START_TEST(open_relay_is_caught_case_by_case)
{
	struct config *cfg = load(
	    "profiles:\n"
	    "  open: {lan: [], relay_outside_lan: true, open_relay: i-understand}\n"
	    "instances:\n"
	    "  open: {listen: [\"127.0.0.3:2525\"], profile: open}\n");
	const struct instance *inst = config_instance(cfg, "open");
	struct audit_client c;
	ck_assert_int_eq(audit_run_client(cfg, inst, "192.0.2.7", false, "stranger", &c), 0);
	ck_assert_uint_eq(c.evaluated, audit_corpus_n);
	ck_assert_uint_gt(c.relayed, 10);
	/* the plain relay attempt is caught, a local delivery is not a relay */
	ssize_t relay = case_index("control/2"), local = case_index("control/1");
	ck_assert(relay >= 0 && local >= 0);
	bool seen_relay = false, seen_local = false;
	for (size_t i = 0; i < c.relayed; i++) {
		seen_relay = seen_relay || c.relayed_cases[i] == (size_t)relay;
		seen_local = seen_local || c.relayed_cases[i] == (size_t)local;
	}
	ck_assert(seen_relay);
	ck_assert(!seen_local);
	/* the count is what a case-by-case walk finds */
	struct sockaddr_storage ss;
	struct audit_vars v;
	unsigned n = 0;
	sockaddr_of("192.0.2.7", &ss);
	audit_vars_init(cfg, inst, &v);
	for (size_t i = 0; i < audit_corpus_n; i++) {
		struct audit_outcome o;
		audit_simulate(cfg, inst, (struct sockaddr *)&ss, false, &v, i, &o);
		if (o.relayed) {
			ck_assert_str_eq(o.rcpt, "250 2.1.5 Ok");
			ck_assert_str_eq(o.rule, "relay_outside_lan");
			n++;
		}
	}
	ck_assert_uint_eq(n, c.relayed);
	audit_client_free(&c);

	struct audit_instance a;
	audit_instance(cfg, inst, false, &a);
	ck_assert_uint_eq(a.stranger_relayed, 3 * n);
	ck_assert(a.acknowledged);
	ck_assert(!a.checklist_ok);
	ck_assert(!a.checks[1].ok);	/* relay_outside_lan */
	ck_assert_str_eq(a.checks[1].key, "profiles.open.relay_outside_lan");
	ck_assert_str_eq(a.matrix[0].cell[1][1], "accept");
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

START_TEST(strangers_are_outside_every_lan_entry)
{
	struct config *cfg = load(
	    "lan: [192.0.2.0/24, \"2001:db8::/48\"]\n"
	    "profiles:\n"
	    "  p: {}\n"
	    "instances:\n"
	    "  i: {listen: [\"127.0.0.1:2525\"], profile: p}\n");
	struct audit_instance a;
	audit_instance(cfg, config_instance(cfg, "i"), false, &a);
	ck_assert_uint_eq(a.n_strangers, 3);
	ck_assert_str_eq(a.strangers[0].ip, "198.51.100.1");
	ck_assert_str_eq(a.strangers[1].ip, "2001:db8:ffff::1");
	ck_assert_str_eq(a.strangers[2].ip, "::ffff:198.51.100.1");
	for (size_t i = 0; i < 3; i++)
		ck_assert(!a.strangers[i].in_lan);
	ck_assert_uint_eq(a.stranger_relayed, 0);
	/* the LAN relays: each entry's representative is inside it */
	ck_assert_uint_eq(a.n_lans, 2);
	ck_assert_str_eq(a.lans[0].ip, "192.0.2.1");
	ck_assert_str_eq(a.lans[1].ip, "2001:db8::1");
	ck_assert(a.lans[0].in_lan && a.lans[1].in_lan);
	ck_assert_uint_gt(a.lan_relayed, 0);
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

/* a LAN covering everything leaves no stranger outside it: they relay */
START_TEST(lan_covering_everything_relays_for_strangers)
{
	struct config *cfg = load(
	    "profiles:\n"
	    "  p: {lan: [\"0.0.0.0/0\"]}\n"
	    "instances:\n"
	    "  i: {listen: [\"127.0.0.1:2525\"], profile: p}\n");
	struct audit_instance a;
	audit_instance(cfg, config_instance(cfg, "i"), false, &a);
	ck_assert_str_eq(a.strangers[0].ip, "192.0.2.1");
	ck_assert(a.strangers[0].in_lan);
	ck_assert_uint_gt(a.strangers[0].relayed, 0);
	ck_assert_uint_eq(a.strangers[1].relayed, 0);	/* IPv6: not covered */
	ck_assert_uint_gt(a.strangers[2].relayed, 0);	/* IPv4-mapped: covered */
	ck_assert(!a.checks[0].ok);			/* Step 1: over-wide */
	ck_assert_ptr_nonnull(strstr(a.checks[0].value, "wider than needed"));
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

START_TEST(lan_representatives)
{
	struct config *cfg = load(
	    "profiles:\n"
	    "  p: {lan: [\"192.168.1.*\", 10.0.0.0/8, 127.0.0.1, \"fd00:1::/64\", "
	    "\"10.1.*.*\"]}\n"
	    "instances:\n"
	    "  i: {listen: [\"127.0.0.1:2525\"], profile: p}\n");
	struct audit_instance a;
	audit_instance(cfg, config_instance(cfg, "i"), false, &a);
	const char *want[] = { "192.168.1.1", "10.0.0.1", "127.0.0.1", "fd00:1::1",
	    "10.1.0.1" };
	ck_assert_uint_eq(a.n_lans, 5);
	for (size_t i = 0; i < 5; i++) {
		ck_assert_str_eq(a.lans[i].ip, want[i]);
		ck_assert(a.lans[i].in_lan);
		ck_assert_uint_gt(a.lans[i].relayed, 0);
	}
	ck_assert_uint_eq(a.n_matrix, 7);	/* stranger, 5 LAN entries, authenticated */
	ck_assert_str_eq(a.matrix[1].client, "LAN 192.168.1.*");
	ck_assert_str_eq(a.matrix[6].client, "authenticated");
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

/* access: lan refuses strangers at connect; the prediction says so */
START_TEST(access_refusal_is_what_a_stranger_sees)
{
	struct config *cfg = load(
	    "lan: [127.0.0.1]\n"
	    "profiles:\n"
	    "  p: {}\n"
	    "instances:\n"
	    "  i: {listen: [\"127.0.0.1:2525\"], profile: p, access: lan}\n");
	const struct instance *inst = config_instance(cfg, "i");
	struct sockaddr_storage out, in;
	sockaddr_of("192.0.2.9", &out);
	sockaddr_of("127.0.0.1", &in);
	ck_assert_str_eq(audit_greeting(cfg, inst, (struct sockaddr *)&out), "554 5.7.1");
	ck_assert_str_eq(audit_greeting(cfg, inst, (struct sockaddr *)&in), "220");
	struct audit_outcome o;
	audit_simulate_pair(cfg, inst, (struct sockaddr *)&out, false, "<a@example.test>",
	    "<v@remote.example>", &o);
	ck_assert_int_eq(o.stage, AUDIT_AT_CONNECT);
	ck_assert(!o.accepted);
	struct audit_instance a;
	audit_instance(cfg, inst, false, &a);
	ck_assert(!a.strangers[0].allowed);
	ck_assert_uint_eq(a.stranger_relayed, 0);
	ck_assert_str_eq(a.matrix[0].cell[0][1], "554 5.7.1 at connect");
	ck_assert_str_eq(a.matrix[1].cell[1][1], "accept");
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

START_TEST(syntax_refusals_are_the_sessions)
{
	struct config *cfg = load(locked);
	const struct instance *inst = config_instance(cfg, "internet");
	struct sockaddr_storage ss;
	struct audit_outcome o;
	sockaddr_of("192.0.2.9", &ss);
	audit_simulate_pair(cfg, inst, (struct sockaddr *)&ss, false, "<a@b", "<c@d>", &o);
	ck_assert_int_eq(o.stage, AUDIT_AT_MAIL);
	ck_assert_str_eq(o.mail, "501 5.1.7 Bad sender address syntax");
	audit_simulate_pair(cfg, inst, (struct sockaddr *)&ss, false, "<>", "<>", &o);
	ck_assert_str_eq(o.mail, "250 2.1.0 Ok");
	ck_assert_str_eq(o.rcpt, "501 5.1.3 Bad recipient address syntax");
	audit_simulate_pair(cfg, inst, (struct sockaddr *)&ss, false, "<>", "<u@example.test> X=1",
	    &o);
	ck_assert_str_eq(o.rcpt, "555 5.5.4 Unsupported option: X=1");
	audit_simulate_pair(cfg, inst, (struct sockaddr *)&ss, false, "<>", "<v@remote.example>",
	    &o);
	ck_assert_str_eq(o.rcpt, "554 5.7.1 <v@remote.example>: Relay access denied");
	config_free(cfg);
}
END_TEST

START_TEST(matrix_follows_relay_nonlocal_senders)
{
	struct config *cfg = load(
	    "lan: [127.0.0.1]\n"
	    "profiles:\n"
	    "  p: {relay_nonlocal_senders: false}\n"
	    "instances:\n"
	    "  i: {listen: [\"127.0.0.1:2525\"], profile: p}\n");
	struct audit_instance a;
	audit_instance(cfg, config_instance(cfg, "i"), false, &a);
	ck_assert_uint_eq(a.n_matrix, 3);
	const struct audit_matrix_row *s = &a.matrix[0], *l = &a.matrix[1];
	/* an authenticated client relays whatever its sender (relay_nonlocal_senders
	   is a rule for unauthenticated clients, as Mailtraq's checkbox is) */
	for (size_t k = 0; k < AUDIT_SENDERS; k++)
		ck_assert_str_eq(a.matrix[2].cell[k][1], "accept");
	for (size_t k = 0; k < AUDIT_SENDERS; k++) {
		ck_assert_str_eq(s->cell[k][0], "accept");
		ck_assert_str_eq(s->cell[k][1], "554 5.7.1");
		ck_assert_str_eq(l->cell[k][0], "accept");
	}
	ck_assert_str_eq(l->cell[0][1], "accept");
	ck_assert_str_eq(l->cell[1][1], "554 5.7.1");
	ck_assert_str_eq(l->cell[2][1], "554 5.7.1");
	ck_assert(a.checks[2].ok);	/* relay_nonlocal_senders off */
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

START_TEST(checklist_and_internet)
{
	struct config *cfg = load(
	    "profiles:\n"
	    "  p: {lan: [], always_relay_to: [\"@partner.example\"], "
	    "always_relay_from: [\"boss@friend.example\"]}\n"
	    "instances:\n"
	    "  mx: {listen: [\"127.0.0.1:25\"], profile: p}\n"
	    "  other: {listen: [\"127.0.0.1:2526\"], profile: p}\n");
	struct audit_instance a;
	audit_instance(cfg, config_instance(cfg, "mx"), false, &a);
	ck_assert(a.internet);		/* port 25 */
	ck_assert_uint_eq(a.n_checks, 6);
	ck_assert(a.checks[0].ok && a.checks[1].ok && a.checks[2].ok);
	ck_assert(a.checks[5].ok);	/* AUTH: informational */
	ck_assert_str_eq(a.checks[5].setting, "Use SMTP User Authentication");
	ck_assert_str_eq(a.checks[5].value, "authenticated clients relay too "
	    "(relay_authenticated); AUTH is not offered here (no tls, or no server.auth)");
	ck_assert(!a.checks[3].ok && !a.checks[4].ok);
	ck_assert_str_eq(a.checks[3].value, "boss@friend.example");
	ck_assert_str_eq(a.checks[4].key, "profiles.p.always_relay_to");
	ck_assert(!a.checklist_ok);
	/* the corpus names no allow-listed address: the checklist is what flags
	   the lists, the trick count stays what the tricks did */
	ck_assert_uint_eq(a.stranger_relayed, 0);
	audit_instance_free(&a);
	audit_instance(cfg, config_instance(cfg, "other"), false, &a);
	ck_assert(!a.internet);
	audit_instance_free(&a);
	audit_instance(cfg, config_instance(cfg, "other"), true, &a);
	ck_assert(a.internet);
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

/*
 * The authenticated class: the shipped submission profile relays for
 * authenticated clients only (not an open relay: no stranger relays), the
 * locked-down Internet profile for nobody while its instance offers no AUTH, and
 * the matrix shows the refusal an unauthenticated client gets.
 */
START_TEST(authenticated_class)
{
	struct config *cfg = load(
	    "lan: [127.0.0.1]\n"
	    "server: {auth: {passwd_file: /nonexistent/passwd}}\n"
	    "profiles:\n"
	    "  locked: {lan: []}\n"
	    "  submission: {require_auth: true, relay_outside_lan: false}\n"
	    "  lanrelay: {}\n"
	    "  noauth: {require_auth: true, relay_authenticated: false}\n"
	    "instances:\n"
	    "  internet: {listen: [\"127.0.0.2:2525\"], profile: locked}\n"
	    "  internet-tls: {listen: [\"127.0.0.2:2526\"], profile: locked,\n"
	    "    tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}}\n"
	    "  submission: {listen: [\"127.0.0.1:2587\"], profile: submission,\n"
	    "    tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem},\n"
	    "    require_tls: true}\n"
	    "  lan: {listen: [\"127.0.0.1:2525\"], profile: lanrelay,\n"
	    "    tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}}\n"
	    "  shut: {listen: [\"127.0.0.1:2588\"], profile: noauth,\n"
	    "    tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}}\n");
	struct audit_instance a;

	audit_instance(cfg, config_instance(cfg, "submission"), false, &a);
	ck_assert_uint_eq(a.stranger_relayed, 0);
	ck_assert_uint_eq(a.lan_relayed, 0);	/* require_auth: not even the LAN */
	ck_assert(a.auth_run && a.auth_offered);
	ck_assert_str_eq(a.auth.ip, "192.0.2.1");
	ck_assert_uint_eq(a.auth.evaluated, audit_corpus_n);
	ck_assert_uint_gt(a.auth.relayed, 0);
	ck_assert_str_eq(audit_relays_for(&a), "authenticated clients only");
	const struct audit_matrix_row *m = &a.matrix[a.n_matrix - 1];
	ck_assert_str_eq(m->client, "authenticated");
	ck_assert_str_eq(m->cell[1][1], "accept");
	ck_assert_str_eq(a.matrix[0].client, "stranger");
	ck_assert_str_eq(a.matrix[0].cell[1][1], "530 5.7.0");
	ck_assert_str_eq(a.matrix[0].cell[1][0], "accept");	/* local mail: no AUTH */
	ck_assert_str_eq(a.matrix[1].cell[0][1], "530 5.7.0");	/* LAN 127.0.0.1 */
	ck_assert(a.checklist_ok);
	audit_instance_free(&a);

	/* no TLS, so no AUTH: the Internet instance relays for nobody */
	audit_instance(cfg, config_instance(cfg, "internet"), false, &a);
	ck_assert_uint_eq(a.stranger_relayed, 0);
	ck_assert(!a.auth_offered);
	ck_assert_str_eq(audit_relays_for(&a), "nobody");
	ck_assert_str_eq(a.matrix[0].cell[1][1], "554 5.7.1");
	audit_instance_free(&a);
	/* with TLS it would offer AUTH, and authenticated users relay there
	   (relay_authenticated defaults to on): said, never counted as strangers */
	audit_instance(cfg, config_instance(cfg, "internet-tls"), false, &a);
	ck_assert_uint_eq(a.stranger_relayed, 0);
	ck_assert_str_eq(audit_relays_for(&a), "authenticated clients only");
	audit_instance_free(&a);
	audit_instance(cfg, config_instance(cfg, "lan"), false, &a);
	ck_assert_str_eq(audit_relays_for(&a), "LAN and authenticated clients");
	audit_instance_free(&a);
	audit_instance(cfg, config_instance(cfg, "shut"), false, &a);
	ck_assert_uint_eq(a.auth.relayed, 0);
	ck_assert_str_eq(audit_relays_for(&a), "nobody");
	ck_assert_str_eq(a.matrix[a.n_matrix - 1].cell[1][1], "554 5.7.1");
	audit_instance_free(&a);
	config_free(cfg);

	/* TLS but no server.auth backend: nobody can authenticate there */
	cfg = load("lan: [127.0.0.1]\n"
	    "profiles:\n  lanrelay: {}\n"
	    "instances:\n"
	    "  lan: {listen: [\"127.0.0.1:2525\"], profile: lanrelay,\n"
	    "    tls: {cert: /nonexistent/cert.pem, key: /nonexistent/key.pem}}\n");
	audit_instance(cfg, config_instance(cfg, "lan"), false, &a);
	ck_assert(!a.auth_offered);
	ck_assert_str_eq(audit_relays_for(&a), "LAN clients only");
	audit_instance_free(&a);
	config_free(cfg);
}
END_TEST

START_TEST(exposure_of_lan_listeners)
{
	struct config *cfg = load(
	    "lan: [127.0.0.1]\n"
	    "profiles:\n"
	    "  p: {}\n"
	    "  locked: {lan: []}\n"
	    "instances:\n"
	    "  wild: {listen: [\"0.0.0.0:2525\", \"127.0.0.1:2526\"], profile: p}\n"
	    "  lanonly: {listen: [\"127.0.0.1:2527\"], profile: p, access: lan}\n"
	    "  mx: {listen: [\"0.0.0.0:2528\"], profile: locked}\n");
	struct audit_instance a;
	audit_instance(cfg, config_instance(cfg, "wild"), false, &a);
	ck_assert_uint_eq(a.n_exposure, 1);
	ck_assert_ptr_nonnull(strstr(a.exposure[0], "0.0.0.0:2525"));
	ck_assert_ptr_nonnull(strstr(a.exposure[0], "lan0:2525"));
	ck_assert_ptr_nonnull(strstr(a.exposure[0], "access: lan"));
	audit_instance_free(&a);
	audit_instance(cfg, config_instance(cfg, "lanonly"), false, &a);
	ck_assert_uint_eq(a.n_exposure, 0);
	audit_instance_free(&a);
	/* relays for nobody: a wildcard listener exposes nothing */
	audit_instance(cfg, config_instance(cfg, "mx"), false, &a);
	ck_assert_uint_eq(a.n_exposure, 0);
	audit_instance_free(&a);
	config_free(cfg);

	struct sockaddr_storage ss;
	sockaddr_of("203.0.113.5", &ss);
	ck_assert_int_eq(audit_scope_of((struct sockaddr *)&ss), SCOPE_PUBLIC);
	sockaddr_of("192.168.3.4", &ss);
	ck_assert_int_eq(audit_scope_of((struct sockaddr *)&ss), SCOPE_PRIVATE);
	sockaddr_of("::", &ss);
	ck_assert_int_eq(audit_scope_of((struct sockaddr *)&ss), SCOPE_WILDCARD);
	sockaddr_of("::1", &ss);
	ck_assert_int_eq(audit_scope_of((struct sockaddr *)&ss), SCOPE_LOOPBACK);
	sockaddr_of("2001:db8::5", &ss);
	ck_assert_int_eq(audit_scope_of((struct sockaddr *)&ss), SCOPE_PUBLIC);
}
END_TEST

static Suite *
audit_suite(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("corpus");
	tcase_add_test(tc, corpus_covers_every_trick_class);
	tcase_add_test(tc, placeholders_expand);
	tcase_add_test(tc, locked_down_stranger_gets_the_corpus_answers);
	tcase_add_test(tc, open_relay_is_caught_case_by_case);
	tcase_add_test(tc, strangers_are_outside_every_lan_entry);
	tcase_add_test(tc, lan_covering_everything_relays_for_strangers);
	tcase_add_test(tc, lan_representatives);
	tcase_add_test(tc, access_refusal_is_what_a_stranger_sees);
	tcase_add_test(tc, syntax_refusals_are_the_sessions);
	tcase_add_test(tc, matrix_follows_relay_nonlocal_senders);
	tcase_add_test(tc, checklist_and_internet);
	tcase_add_test(tc, exposure_of_lan_listeners);
	tcase_add_test(tc, authenticated_class);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(audit_suite)
