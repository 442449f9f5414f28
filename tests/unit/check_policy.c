/*
 * profiles/policy.c: the relay decision of DESIGN.md section 5.
 *
 * The configuration is built by hand (the structs of common/config.h), so these
 * tests do not depend on the YAML loader. The big table walks every combination of
 * client (LAN / outside, IPv4, IPv6, IPv4-mapped) x sender (local / non-local / null)
 * x recipient (local / remote) x always_relay_to x always_relay_from (empty, matching,
 * near-miss) x relay_outside_lan x relay_nonlocal_senders x require_auth x
 * relay_authenticated x authenticated, and compares with expected_relay() below: the rules restated from
 * DESIGN.md, not derived from the code. Then the classic open-relay tricks from an
 * outside client, postmaster, local_recipients, address literals and errors.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "common/address.h"
#include "common/net.h"
#include "profiles/policy.h"
#include "tests/unit/testmain.h"
#include "tests/unit/testutil.h"


/* what a test's profile looks like; lists are NULL-terminated, NULL = empty */
struct opts {
	bool relay_outside_lan;
	bool relay_nonlocal_senders;
	bool require_auth;
	bool no_relay_authenticated;	/* relay_authenticated: false (default on) */
	bool accept_domain_literals;
	const char *const *relay_to;
	const char *const *relay_from;
	const char *const *profile_lan;		/* non-NULL: the profile's own lan: */
	const char *const *local_recipients;
	enum access_kind access;
	const char *const *access_list;
};

static struct config cfg;
static struct profile prof;
static struct instance inst;
static struct listen_addr listens[3];
/* a literal in local_domains must not make that literal local (only
   accept_domain_literals and the listening addresses do) */
static char *local_domains[] = { "example.test", "example.org", "[192.0.2.1]" };
static const char *const server_lan[] = {
	"127.0.0.1", "192.168.1.*", "::1", "fd00::/8", NULL,
};

static struct netlist *
make_netlist(const char *const *entries)
{
	struct netlist *nl = netlist_new();
	const char *err = NULL;

	for (size_t i = 0; entries != NULL && entries[i] != NULL; i++)
		ck_assert_msg(netlist_add(nl, entries[i], &err) == 0, "%s: %s", entries[i],
		    err);
	return nl;
}

static struct strlist
make_strlist(const char *const *v)
{
	struct strlist l = { NULL, 0 };

	while (v != NULL && v[l.n] != NULL)
		l.n++;
	l.v = (char **)v;
	return l;
}

static void
set_sockaddr(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	}
}

static void
setup(const struct opts *o)
{
	memset(&cfg, 0, sizeof(cfg));
	memset(&prof, 0, sizeof(prof));
	memset(&inst, 0, sizeof(inst));
	cfg.server.hostname = "mail.example.test";
	cfg.server.local_domains.v = local_domains;
	cfg.server.local_domains.n = N(local_domains);
	cfg.server.local_recipients = make_strlist(o->local_recipients);
	cfg.lan = make_netlist(server_lan);

	prof.name = "test";
	prof.relay_outside_lan = o->relay_outside_lan;
	prof.relay_nonlocal_senders = o->relay_nonlocal_senders;
	prof.require_auth = o->require_auth;
	prof.relay_authenticated = !o->no_relay_authenticated;
	prof.accept_domain_literals = o->accept_domain_literals;
	prof.always_relay_to = make_strlist(o->relay_to);
	prof.always_relay_from = make_strlist(o->relay_from);
	if (o->profile_lan != NULL) {
		prof.lan_set = true;
		prof.lan = make_netlist(o->profile_lan);
	}
	cfg.profiles = &prof;
	cfg.n_profiles = 1;

	/* the instance listens on 192.0.2.1:25, [2001:db8::1]:25 and 0.0.0.0:2525 */
	set_sockaddr(&listens[0].ss, "192.0.2.1", 25);
	listens[0].sslen = sizeof(struct sockaddr_in);
	set_sockaddr(&listens[1].ss, "2001:db8::1", 25);
	listens[1].sslen = sizeof(struct sockaddr_in6);
	set_sockaddr(&listens[2].ss, "0.0.0.0", 2525);
	listens[2].sslen = sizeof(struct sockaddr_in);
	inst.name = "test";
	inst.listen = listens;
	inst.n_listen = N(listens);
	inst.profile_name = "test";
	inst.profile = &prof;
	inst.access = o->access;
	if (o->access == ACCESS_LIST)
		inst.access_list = make_netlist(o->access_list);
	cfg.instances = &inst;
	cfg.n_instances = 1;
}

static void
teardown(void)
{
	netlist_free(cfg.lan);
	if (prof.lan != NULL)
		netlist_free(prof.lan);
	if (inst.access_list != NULL)
		netlist_free(inst.access_list);
}

/* parse and decide; sender NULL means no MAIL FROM parsed (not used: "<>" is null) */
static int
decide(const char *client, const char *from, const char *to, bool authenticated,
    struct policy_result *res)
{
	struct sockaddr_storage ss;
	struct mailaddr sender, rcpt;
	const char *err = NULL;

	set_sockaddr(&ss, client, 40000);
	ck_assert_msg(address_parse(from, &sender, &err) == 0, "%s: %s", from, err);
	ck_assert_msg(address_parse(to, &rcpt, &err) == 0, "%s: %s", to, err);
	struct policy_ctx ctx = {
		.cfg = &cfg,
		.inst = &inst,
		.client = (const struct sockaddr *)&ss,
		.sender = &sender,
		.authenticated = authenticated,
	};
	return policy_check_rcpt(&ctx, &rcpt, res);
}

/* ---- every combination ---- */

static const struct {
	const char *ip;
	bool in_lan;
} clients[] = {
	{ "192.168.1.10", true },
	{ "::ffff:192.168.1.10", true },	/* IPv4-mapped matches the IPv4 entry */
	{ "::1", true },
	{ "fd00::25", true },
	{ "203.0.113.5", false },
	{ "::ffff:203.0.113.5", false },
	{ "2001:db8:ffff::5", false },
	{ "192.168.2.10", false },
};

static const struct {
	const char *addr;
	bool local, null;
} senders[] = {
	{ "<s@example.test>", true, false },
	{ "<s@EXAMPLE.ORG.>", true, false },
	{ "<s@sender.example>", false, false },
	{ "<s@example.test.sender.example>", false, false },
	{ "<>", false, true },
};

static const struct {
	const char *addr;
	bool local;
	const char *canonical;
} rcpts[] = {
	{ "<r@example.test>", true, "r@example.test" },
	{ "<R@Example.Org.>", true, "R@example.org" },
	{ "<r@remote.example>", false, "r@remote.example" },
	{ "<R@Remote.Example.>", false, "R@remote.example" },
};

enum list_state { LIST_EMPTY, LIST_MATCH, LIST_NEAR_MISS, LIST_STATES };

/* always_relay_to: the match list covers remote.example; the near-miss list only
   looks like it (subdomains only, another user, another domain) */
static const char *const to_match[] = { "@other.example", "@remote.example", NULL };
static const char *const to_near[] = {
	"@.remote.example", "x@remote.example", "@remote.example.net", "@example", NULL,
};
/* always_relay_from: the match list covers every non-null sender above */
static const char *const from_match[] = {
	"@sender.example", "s@example.test", "@.test.sender.example", "s@example.org",
	NULL,
};
static const char *const from_near[] = {
	"@.example.test", "t@example.test", "@example.test.sender", "S@example.org",
	NULL,
};

static const char *const *
list_for(enum list_state st, const char *const *match, const char *const *near)
{
	return st == LIST_MATCH ? match : st == LIST_NEAR_MISS ? near : NULL;
}

struct expect {
	int code;
	const char *enhanced;
	const char *rule;
	bool local;
};

/*
 * DESIGN.md section 5, restated. A local recipient is delivered locally; otherwise
 * relaying is permitted by always_relay_to, always_relay_from (a null sender has no
 * address, so never matches), the unauthenticated rule (no require_auth, client in
 * LAN or relay_outside_lan, and relay_nonlocal_senders or a local sender), or an
 * authenticated session when relay_authenticated is on (Postfix's
 * permit_sasl_authenticated: from anywhere, for any sender). What is left is refused:
 * 530 5.7.0 Authentication required for an unauthenticated client where
 * require_auth and relay_authenticated say AUTH would let it relay (RFC 4954
 * section 6), else 554 5.7.1 Relay access denied.
 */
static struct expect
expected_relay(const struct opts *o, bool to_matches, bool from_matches, bool in_lan,
    bool sender_local, bool rcpt_local, bool authenticated)
{
	struct expect e = { 250, "2.1.5", NULL, false };
	bool client_ok = in_lan || o->relay_outside_lan;
	bool sender_ok = o->relay_nonlocal_senders || sender_local;

	if (rcpt_local) {
		e.rule = "local_domain";
		e.local = true;
	} else if (to_matches) {
		e.rule = "always_relay_to";
	} else if (from_matches) {
		e.rule = "always_relay_from";
	} else if (!o->require_auth && client_ok && sender_ok) {
		e.rule = in_lan ? "lan" : "relay_outside_lan";
	} else if (authenticated && !o->no_relay_authenticated) {
		e.rule = "auth";
	} else if (o->require_auth && !o->no_relay_authenticated) {
		e.code = 530;
		e.enhanced = "5.7.0";
		e.rule = "auth_required";
	} else {
		e.code = 554;
		e.enhanced = "5.7.1";
		e.rule = (!o->require_auth && client_ok && !sender_ok) ?
		    "relay_nonlocal_senders" : "relay_access_denied";
	}
	return e;
}

/* _i encodes the profile: 5 flags (with authenticated) x to-list x from-list */
#define COMBO_PROFILES (32 * LIST_STATES * LIST_STATES)

START_TEST(test_every_combination)
{
	int flags = _i % 32;
	enum list_state to_st = (enum list_state)((_i / 32) % LIST_STATES);
	enum list_state from_st = (enum list_state)(_i / 32 / LIST_STATES);
	bool authenticated = flags & 8;
	struct opts o = {
		.relay_outside_lan = flags & 1,
		.relay_nonlocal_senders = flags & 2,
		.require_auth = flags & 4,
		.no_relay_authenticated = flags & 16,
		.relay_to = list_for(to_st, to_match, to_near),
		.relay_from = list_for(from_st, from_match, from_near),
	};
	unsigned permits = 0, rejects = 0;

	setup(&o);
	for (int c = 0; c < N(clients); c++)
	for (int s = 0; s < N(senders); s++)
	for (int r = 0; r < N(rcpts); r++) {
		struct policy_result res;
		bool from_matches = from_st == LIST_MATCH && !senders[s].null;
		struct expect e = expected_relay(&o, to_st == LIST_MATCH, from_matches,
		    clients[c].in_lan, senders[s].local, rcpts[r].local, authenticated);
		char what[256];

		snprintf(what, sizeof(what),
		    "client %s from %s to %s outside=%d nonlocal=%d require_auth=%d "
		    "relay_authenticated=%d authenticated=%d to=%d from=%d",
		    clients[c].ip, senders[s].addr, rcpts[r].addr, o.relay_outside_lan,
		    o.relay_nonlocal_senders, o.require_auth, !o.no_relay_authenticated,
		    authenticated, to_st, from_st);
		int rc = decide(clients[c].ip, senders[s].addr, rcpts[r].addr, authenticated,
		    &res);
		ck_assert_msg(rc == 0, "%s: rc %d", what, rc);
		ck_assert_msg(res.code == e.code, "%s: code %d, want %d (%s)", what, res.code,
		    e.code, res.rule);
		ck_assert_msg(strcmp(res.enhanced, e.enhanced) == 0, "%s: %s", what,
		    res.enhanced);
		ck_assert_msg(res.rule != NULL && strcmp(res.rule, e.rule) == 0,
		    "%s: rule %s, want %s", what, res.rule, e.rule);
		ck_assert_msg(res.local == e.local, "%s: local %d", what, res.local);
		if (e.code == 250) {
			ck_assert_int_eq(res.answer, POLICY_OK);
			ck_assert_str_eq(res.text, "Ok");
			permits++;
		} else {
			char text[128];
			snprintf(text, sizeof(text), "<%s>: %s", rcpts[r].canonical,
			    e.code == 530 ? "Authentication required" :
			    "Relay access denied");
			ck_assert_int_eq(res.answer, POLICY_REJECT);
			ck_assert(res.relay_denied);
			ck_assert_str_eq(res.text, text);
			rejects++;
		}
	}
	/* every profile delivers the local recipients */
	ck_assert_uint_ge(permits, (unsigned)(N(clients) * N(senders) * 2));
	teardown();
}
END_TEST

/* ---- open-relay tricks and the other rules, one table ---- */

enum variant {
	LOCKED,		/* every default: no relay outside the LAN */
	STRICT_LAN,	/* relay_nonlocal_senders: false */
	PARTNER,	/* always_relay_to: ["@partner.example"] */
	LITERALS,	/* accept_domain_literals: true */
	RECIPIENTS,	/* local_recipients: [alice, bob@example.test] */
	NO_LAN,		/* profile lan: [] (trusts nobody, not even the LAN) */
};

static const char *const partner_list[] = { "@partner.example", NULL };
static const char *const recipients_list[] = { "alice", "Bob@Example.Test", NULL };
static const char *const empty_list[] = { NULL };

static void
setup_variant(enum variant v)
{
	struct opts o = { .relay_nonlocal_senders = true };

	switch (v) {
	case LOCKED:
		break;
	case STRICT_LAN:
		o.relay_nonlocal_senders = false;
		break;
	case PARTNER:
		o.relay_to = partner_list;
		break;
	case LITERALS:
		o.accept_domain_literals = true;
		break;
	case RECIPIENTS:
		o.local_recipients = recipients_list;
		break;
	case NO_LAN:
		o.profile_lan = empty_list;
		break;
	}
	setup(&o);
}

#define OUT "203.0.113.5"
#define LAN "192.168.1.10"
#define SND "<s@sender.example>"

static const struct {
	enum variant v;
	const char *client, *from, *to;
	int code;		/* 0: the address does not even parse */
	const char *enhanced, *rule;
	bool local;
	const char *text;	/* NULL: "Ok" or not checked */
} tricks[] = {
	/* percent hack, bang paths, quoted and escaped '@', several '@' */
	{ LOCKED, OUT, SND, "<user%remote.example@example.test>", 550, "5.1.3",
	  "bad_local_part", false, "Bad recipient address syntax" },
	{ LOCKED, OUT, SND, "<remote.example!user@example.test>", 550, "5.1.3",
	  "bad_local_part", false, "Bad recipient address syntax" },
	{ LOCKED, OUT, SND, "<\"user@remote.example\"@example.test>", 550, "5.1.3",
	  "bad_local_part", false, NULL },
	{ LOCKED, OUT, SND, "<\"user\\@remote.example\"@example.test>", 550, "5.1.3",
	  "bad_local_part", false, NULL },
	{ LOCKED, OUT, SND, "<\"user%remote.example\"@example.test>", 550, "5.1.3",
	  "bad_local_part", false, NULL },
	{ LOCKED, OUT, SND, "<\"remote.example!user\"@EXAMPLE.TEST.>", 550, "5.1.3",
	  "bad_local_part", false, NULL },
	{ LOCKED, OUT, SND, "<user@remote.example@example.test>", 550, "5.1.3",
	  "bad_local_part", false, NULL },
	{ LOCKED, OUT, SND, "<user%remote.example%example.test@example.test>", 550,
	  "5.1.3", "bad_local_part", false, NULL },
	{ LOCKED, OUT, SND, "<user\\@remote.example@example.test>", 0, NULL, NULL, false,
	  NULL },
	{ LOCKED, OUT, SND, "<user@example.test@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false,
	  "<\"user@example.test\"@remote.example>: Relay access denied" },
	{ LOCKED, OUT, SND, "<user%example.test@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	/* route characters with a remote final domain, even from the LAN, are relayed
	   only by the LAN rule for that final domain: never re-read */
	{ LOCKED, LAN, SND, "<user%example.test@remote.example>", 250, "2.1.5", "lan",
	  false, NULL },
	/* source routes are dropped: the final domain decides */
	{ LOCKED, OUT, SND, "<@example.test:user@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, "<user@remote.example>: Relay access denied" },
	{ LOCKED, OUT, SND,
	  "<@example.test,@mail.example.test,@example.org:user@remote.example>", 554,
	  "5.7.1", "relay_access_denied", false, NULL },
	{ LOCKED, OUT, SND, "<@remote.example:user@example.test>", 250, "2.1.5",
	  "local_domain", true, NULL },
	/* IP literals: remote domains unless accepted and ours */
	{ LOCKED, OUT, SND, "<user@[192.0.2.1]>", 554, "5.7.1", "relay_access_denied",
	  false, "<user@[192.0.2.1]>: Relay access denied" },
	{ LOCKED, OUT, SND, "<user@[IPv6:2001:db8::1]>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ LOCKED, OUT, SND, "<user@[203.0.113.99]>", 554, "5.7.1", "relay_access_denied",
	  false, NULL },
	{ LOCKED, OUT, SND, "<postmaster@[192.0.2.1]>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ LOCKED, OUT, SND, "<user@192.0.2.1>", 554, "5.7.1", "relay_access_denied",
	  false, NULL },
	{ LITERALS, OUT, SND, "<user@[192.0.2.1]>", 250, "2.1.5", "local_domain", true,
	  NULL },
	{ LITERALS, OUT, SND, "<user@[IPv6:2001:DB8:0::1]>", 250, "2.1.5",
	  "local_domain", true, NULL },
	{ LITERALS, OUT, SND, "<user@[IPv6:::ffff:192.0.2.1]>", 250, "2.1.5",
	  "local_domain", true, NULL },
	{ LITERALS, OUT, SND, "<user@[192.0.2.2]>", 554, "5.7.1", "relay_access_denied",
	  false, NULL },
	{ LITERALS, OUT, SND, "<user@[0.0.0.0]>", 554, "5.7.1", "relay_access_denied",
	  false, NULL },
	{ LITERALS, OUT, SND, "<user@[IPv6:::]>", 554, "5.7.1", "relay_access_denied",
	  false, NULL },
	{ LITERALS, OUT, SND, "<user%remote.example@[192.0.2.1]>", 550, "5.1.3",
	  "bad_local_part", false, NULL },
	{ LITERALS, OUT, SND, "<postmaster@[192.0.2.1]>", 250, "2.1.5", "postmaster",
	  true, NULL },
	{ LITERALS, OUT, SND, "<postmaster@[192.0.2.9]>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	/* trailing dots and case */
	{ LOCKED, OUT, SND, "<user@remote.example.>", 554, "5.7.1", "relay_access_denied",
	  false, "<user@remote.example>: Relay access denied" },
	{ LOCKED, OUT, SND, "<user@EXAMPLE.TEST.>", 250, "2.1.5", "local_domain", true,
	  "Ok" },
	{ LOCKED, OUT, SND, "<user@example.test.remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ LOCKED, OUT, SND, "<user@sub.example.test>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ LOCKED, OUT, SND, "<user@remote.example>", 554, "5.7.1", "relay_access_denied",
	  false, NULL },
	/* forged local sender from outside; null sender; IPv4-mapped clients */
	{ STRICT_LAN, OUT, "<s@example.test>", "<user@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ LOCKED, OUT, "<s@example.test>", "<user@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ STRICT_LAN, LAN, SND, "<user@remote.example>", 554, "5.7.1",
	  "relay_nonlocal_senders", false, "<user@remote.example>: Relay access denied" },
	{ STRICT_LAN, LAN, "<>", "<user@remote.example>", 554, "5.7.1",
	  "relay_nonlocal_senders", false, NULL },
	{ STRICT_LAN, LAN, "<s@Example.Test.>", "<user@remote.example>", 250, "2.1.5",
	  "lan", false, NULL },
	{ LOCKED, OUT, "<>", "<user@remote.example>", 554, "5.7.1", "relay_access_denied",
	  false, NULL },
	{ LOCKED, OUT, "<>", "<user@example.test>", 250, "2.1.5", "local_domain", true,
	  NULL },
	{ LOCKED, "::ffff:203.0.113.5", SND, "<user@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ LOCKED, "::ffff:192.168.1.10", SND, "<user@remote.example>", 250, "2.1.5",
	  "lan", false, NULL },
	{ LOCKED, "::ffff:127.0.0.1", SND, "<user@remote.example>", 250, "2.1.5", "lan",
	  false, NULL },
	/* a profile with lan: [] trusts nobody */
	{ NO_LAN, LAN, SND, "<user@remote.example>", 554, "5.7.1", "relay_access_denied",
	  false, NULL },
	{ NO_LAN, "127.0.0.1", SND, "<user@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ NO_LAN, LAN, SND, "<user@example.test>", 250, "2.1.5", "local_domain", true,
	  NULL },
	/* always_relay_to is about the final domain only */
	{ PARTNER, OUT, SND, "<user@partner.example>", 250, "2.1.5", "always_relay_to",
	  false, NULL },
	{ PARTNER, OUT, SND, "<user%remote.example@partner.example>", 250, "2.1.5",
	  "always_relay_to", false, NULL },
	{ PARTNER, OUT, SND, "<user%partner.example@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ PARTNER, OUT, SND, "<\"user@partner.example\"@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ PARTNER, OUT, SND, "<partner.example!user@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ PARTNER, OUT, SND, "<@partner.example:user@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ PARTNER, OUT, SND, "<user@partner.example.remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ PARTNER, OUT, SND, "<user@sub.partner.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	/* postmaster is always accepted, bare or at a local domain, any case */
	{ LOCKED, OUT, SND, "<postmaster>", 250, "2.1.5", "postmaster", true, "Ok" },
	{ LOCKED, OUT, SND, "<PostMaster>", 250, "2.1.5", "postmaster", true, NULL },
	{ LOCKED, OUT, SND, "<POSTMASTER@example.test>", 250, "2.1.5", "postmaster",
	  true, NULL },
	{ LOCKED, OUT, SND, "<postmaster@Example.Org.>", 250, "2.1.5", "postmaster",
	  true, NULL },
	{ LOCKED, OUT, SND, "<\"postmaster\"@example.test>", 250, "2.1.5", "postmaster",
	  true, NULL },
	{ LOCKED, OUT, "<>", "<postmaster>", 250, "2.1.5", "postmaster", true, NULL },
	{ NO_LAN, OUT, SND, "<@remote.example:postmaster@example.test>", 250, "2.1.5",
	  "postmaster", true, NULL },
	{ RECIPIENTS, OUT, SND, "<postmaster@example.test>", 250, "2.1.5", "postmaster",
	  true, NULL },
	{ STRICT_LAN, OUT, SND, "<postmaster>", 250, "2.1.5", "postmaster", true, NULL },
	{ LOCKED, OUT, SND, "<postmaster@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	/* bare and null recipients */
	{ LOCKED, OUT, SND, "<user>", 550, "5.1.3", "bare_recipient", false,
	  "Bad recipient address syntax" },
	{ LOCKED, LAN, SND, "<user%remote.example>", 550, "5.1.3", "bare_recipient",
	  false, NULL },
	{ LOCKED, LAN, SND, "<\"user@remote.example\">", 550, "5.1.3", "bare_recipient",
	  false, NULL },
	{ LOCKED, LAN, SND, "<>", 550, "5.1.3", "null_recipient", false,
	  "Bad recipient address syntax" },
	/* local_recipients */
	{ RECIPIENTS, OUT, SND, "<alice@example.test>", 250, "2.1.5", "local_domain",
	  true, NULL },
	{ RECIPIENTS, OUT, SND, "<ALICE@example.org>", 250, "2.1.5", "local_domain",
	  true, NULL },
	{ RECIPIENTS, OUT, SND, "<bob@example.test>", 250, "2.1.5", "local_domain",
	  true, NULL },
	{ RECIPIENTS, OUT, SND, "<bob@example.org>", 550, "5.1.1", "local_recipients",
	  false, "<bob@example.org>: Recipient address rejected: User unknown in local "
	  "recipient table" },
	{ RECIPIENTS, OUT, SND, "<carol@example.test>", 550, "5.1.1", "local_recipients",
	  false, "<carol@example.test>: Recipient address rejected: User unknown in "
	  "local recipient table" },
	{ RECIPIENTS, OUT, SND, "<alice%remote.example@example.test>", 550, "5.1.3",
	  "bad_local_part", false, NULL },
	{ RECIPIENTS, OUT, SND, "<alice@remote.example>", 554, "5.7.1",
	  "relay_access_denied", false, NULL },
	{ RECIPIENTS, LAN, SND, "<carol@remote.example>", 250, "2.1.5", "lan", false,
	  NULL },
};

START_TEST(test_trick)
{
	struct policy_result res;

	setup_variant(tricks[_i].v);
	if (tricks[_i].code == 0) {
		struct mailaddr a;
		const char *err = NULL;
		ck_assert_int_eq(address_parse(tricks[_i].to, &a, &err), -1);
		teardown();
		return;
	}
	int rc = decide(tricks[_i].client, tricks[_i].from, tricks[_i].to, false, &res);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(res.code == tricks[_i].code, "%s from %s: %d %s %s (%s)",
	    tricks[_i].to, tricks[_i].client, res.code, res.enhanced, res.text, res.rule);
	ck_assert_str_eq(res.enhanced, tricks[_i].enhanced);
	ck_assert_ptr_nonnull(res.rule);
	ck_assert_str_eq(res.rule, tricks[_i].rule);
	ck_assert(res.local == tricks[_i].local);
	ck_assert_int_eq(res.answer, tricks[_i].code == 250 ? POLICY_OK : POLICY_REJECT);
	if (tricks[_i].text != NULL)
		ck_assert_str_eq(res.text, tricks[_i].text);
	teardown();
}
END_TEST

/* own_addrs, when given, replaces the listening addresses for literals */
START_TEST(test_own_addrs)
{
	struct opts o = { .relay_nonlocal_senders = true, .accept_domain_literals = true };
	struct sockaddr_storage client, own;
	struct mailaddr sender, rcpt;
	struct policy_result res;
	const char *err = NULL;

	setup(&o);
	set_sockaddr(&client, OUT, 40000);
	set_sockaddr(&own, "10.0.0.1", 25);
	const struct sockaddr *owns[] = { (const struct sockaddr *)&own };
	struct policy_ctx ctx = {
		.cfg = &cfg, .inst = &inst, .client = (const struct sockaddr *)&client,
		.sender = &sender, .own_addrs = owns, .n_own_addrs = 1,
	};
	ck_assert_int_eq(address_parse(SND, &sender, &err), 0);

	ck_assert_int_eq(address_parse("<u@[10.0.0.1]>", &rcpt, &err), 0);
	ck_assert_int_eq(policy_check_rcpt(&ctx, &rcpt, &res), 0);
	ck_assert_int_eq(res.code, 250);
	ck_assert(res.local);

	ck_assert_int_eq(address_parse("<u@[192.0.2.1]>", &rcpt, &err), 0);
	ck_assert_int_eq(policy_check_rcpt(&ctx, &rcpt, &res), 0);
	ck_assert_int_eq(res.code, 554);
	ck_assert_str_eq(res.rule, "relay_access_denied");
	teardown();
}
END_TEST

/*
 * The shipped submission profile (require_auth, relay_authenticated,
 * relay_outside_lan off) through policy_evaluate, the entry point of `check` and
 * the audit: an authenticated stranger relays, nobody else does, and the refusal
 * tells an unauthenticated client to authenticate; local mail needs no AUTH.
 */
static const struct {
	const char *client, *from, *to;
	bool authenticated;
	int code;
	const char *enhanced, *rule, *text;
} submission[] = {
	{ OUT, SND, "<r@remote.example>", true, 250, "2.1.5", "auth", "Ok" },
	{ "2001:db8:ffff::5", "<>", "<r@remote.example>", true, 250, "2.1.5", "auth",
	  "Ok" },
	{ LAN, "<s@example.test>", "<r@remote.example>", true, 250, "2.1.5", "auth", "Ok" },
	{ OUT, SND, "<r@remote.example>", false, 530, "5.7.0", "auth_required",
	  "<r@remote.example>: Authentication required" },
	{ LAN, "<s@example.test>", "<r@remote.example>", false, 530, "5.7.0",
	  "auth_required", "<r@remote.example>: Authentication required" },
	{ OUT, SND, "<r@example.test>", false, 250, "2.1.5", "local_domain", "Ok" },
	{ OUT, SND, "<user%remote.example@example.test>", true, 550, "5.1.3",
	  "bad_local_part", "Bad recipient address syntax" },
	{ OUT, SND, "<postmaster>", false, 250, "2.1.5", "postmaster", "Ok" },
};

START_TEST(test_submission_profile)
{
	struct opts o = { .relay_nonlocal_senders = true, .require_auth = true };
	struct sockaddr_storage ss;
	struct policy_verdict v;

	setup(&o);
	set_sockaddr(&ss, submission[_i].client, 40000);
	policy_evaluate(&cfg, &inst, (const struct sockaddr *)&ss,
	    submission[_i].authenticated, submission[_i].from, submission[_i].to, &v);
	ck_assert_int_eq(v.stage, POLICY_DECIDED);
	ck_assert_msg(v.res.code == submission[_i].code, "%s -> %s auth=%d: %d %s (%s)",
	    submission[_i].client, submission[_i].to, submission[_i].authenticated,
	    v.res.code, v.res.text, v.res.rule);
	ck_assert_str_eq(v.res.enhanced, submission[_i].enhanced);
	ck_assert_str_eq(v.res.rule, submission[_i].rule);
	ck_assert_str_eq(v.res.text, submission[_i].text);
	teardown();
}
END_TEST

/* relay_authenticated: false takes the relay right away from authenticated
   clients (Postfix without permit_sasl_authenticated): 554, not 530, since
   authenticating would not help */
START_TEST(test_relay_authenticated_off)
{
	struct opts o = { .relay_nonlocal_senders = true, .require_auth = _i == 1,
	    .no_relay_authenticated = true };
	struct sockaddr_storage ss;
	struct policy_verdict v;

	setup(&o);
	set_sockaddr(&ss, OUT, 40000);
	for (int auth = 0; auth < 2; auth++) {
		policy_evaluate(&cfg, &inst, (const struct sockaddr *)&ss, auth, SND,
		    "<r@remote.example>", &v);
		ck_assert_int_eq(v.res.code, 554);
		ck_assert_str_eq(v.res.enhanced, "5.7.1");
		ck_assert_str_eq(v.res.rule, "relay_access_denied");
		ck_assert_str_eq(v.res.text, "<r@remote.example>: Relay access denied");
	}
	/* the LAN still relays without require_auth, whatever AUTH says */
	set_sockaddr(&ss, LAN, 40000);
	policy_evaluate(&cfg, &inst, (const struct sockaddr *)&ss, true, SND,
	    "<r@remote.example>", &v);
	ck_assert_int_eq(v.res.code, _i == 1 ? 554 : 250);
	teardown();
}
END_TEST

/* a context that cannot be decided is a 451, never a permit */
static const struct {
	const char *what;
	bool no_cfg, no_inst, no_profile, no_client;
} errors[] = {
	{ "no config", true, false, false, false },
	{ "no instance", false, true, false, false },
	{ "no profile", false, false, true, false },
	{ "no client", false, false, false, true },
};

START_TEST(test_error)
{
	/* a profile that would permit everything, were the context complete */
	static const char *const all[] = { "@remote.example", NULL };
	struct opts o = { .relay_outside_lan = true, .relay_nonlocal_senders = true,
	    .relay_to = all };
	struct sockaddr_storage client;
	struct mailaddr sender, rcpt;
	struct policy_result res;
	const char *err = NULL;

	setup(&o);
	set_sockaddr(&client, LAN, 40000);
	ck_assert_int_eq(address_parse(SND, &sender, &err), 0);
	ck_assert_int_eq(address_parse("<r@remote.example>", &rcpt, &err), 0);
	if (errors[_i].no_profile)
		inst.profile = NULL;
	struct policy_ctx ctx = {
		.cfg = errors[_i].no_cfg ? NULL : &cfg,
		.inst = errors[_i].no_inst ? NULL : &inst,
		.client = errors[_i].no_client ? NULL : (const struct sockaddr *)&client,
		.sender = &sender,
	};
	ck_assert_int_eq(policy_check_rcpt(&ctx, &rcpt, &res), -1);
	ck_assert_int_eq(res.answer, POLICY_ERROR);
	ck_assert_int_eq(res.code, 451);
	ck_assert_str_eq(res.enhanced, "4.3.0");
	ck_assert(!res.local);
	ck_assert_str_eq(res.text, "<r@remote.example>: Temporary lookup failure");
	teardown();
}
END_TEST

static const struct {
	enum access_kind access;
	const char *client;
	bool allowed;
} access_cases[] = {
	{ ACCESS_ANY, OUT, true },
	{ ACCESS_ANY, LAN, true },
	{ ACCESS_LAN, LAN, true },
	{ ACCESS_LAN, "::ffff:192.168.1.10", true },
	{ ACCESS_LAN, "::1", true },
	{ ACCESS_LAN, OUT, false },
	{ ACCESS_LAN, "2001:db8::5", false },
	{ ACCESS_LIST, "198.51.100.7", true },
	{ ACCESS_LIST, "::ffff:198.51.100.7", true },
	{ ACCESS_LIST, LAN, false },
	{ ACCESS_LIST, OUT, false },
};

START_TEST(test_client_allowed)
{
	static const char *const list[] = { "198.51.100.0/24", NULL };
	struct opts o = { .access = access_cases[_i].access, .access_list = list };
	struct sockaddr_storage ss;

	setup(&o);
	set_sockaddr(&ss, access_cases[_i].client, 40000);
	ck_assert_msg(policy_client_allowed(&cfg, &inst, (const struct sockaddr *)&ss) ==
	    access_cases[_i].allowed, "access %d client %s", access_cases[_i].access,
	    access_cases[_i].client);
	ck_assert(policy_client_in_lan(&cfg, &inst, (const struct sockaddr *)&ss) ==
	    netlist_match_str(cfg.lan, access_cases[_i].client));
	teardown();
}
END_TEST

/* the profile's own lan: replaces the server-wide list */
START_TEST(test_profile_lan)
{
	static const char *const own[] = { "10.1.0.0/16", NULL };
	struct opts o = { .profile_lan = own };
	struct sockaddr_storage a, b;

	setup(&o);
	set_sockaddr(&a, "10.1.2.3", 1);
	set_sockaddr(&b, LAN, 1);
	ck_assert(policy_client_in_lan(&cfg, &inst, (const struct sockaddr *)&a));
	ck_assert(!policy_client_in_lan(&cfg, &inst, (const struct sockaddr *)&b));
	teardown();
}
END_TEST

static const struct {
	const char *domain;
	bool local;
} domains[] = {
	{ "example.test", true },
	{ "EXAMPLE.test", true },
	{ "example.test.", true },
	{ "example.org", true },
	{ "sub.example.test", false },
	{ "example.test.remote.example", false },
	{ "xexample.test", false },
	{ "example", false },
	{ "", false },
	{ "[192.0.2.1]", false },
};

START_TEST(test_domain_is_local)
{
	struct opts o = { 0 };

	setup(&o);
	ck_assert_msg(policy_domain_is_local(&cfg, domains[_i].domain) == domains[_i].local,
	    "%s", domains[_i].domain);
	teardown();
}
END_TEST

static Suite *
policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("relay");

	tcase_add_loop_test(tc, test_every_combination, 0, COMBO_PROFILES);
	tcase_add_loop_test(tc, test_trick, 0, N(tricks));
	tcase_add_test(tc, test_own_addrs);
	tcase_add_loop_test(tc, test_submission_profile, 0, N(submission));
	tcase_add_loop_test(tc, test_relay_authenticated_off, 0, 2);
	tcase_add_loop_test(tc, test_error, 0, N(errors));
	suite_add_tcase(s, tc);

	tc = tcase_create("clients");
	tcase_add_loop_test(tc, test_client_allowed, 0, N(access_cases));
	tcase_add_test(tc, test_profile_lan);
	tcase_add_loop_test(tc, test_domain_is_local, 0, N(domains));
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(policy_suite)
