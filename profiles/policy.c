/*
 * The relay decision of DESIGN.md section 5, as a chain of checks in the manner of
 * Postfix's smtpd_check.c. Each check looks at one thing and answers OK, DUNNO,
 * REJECT or ERROR; the first answer that is not DUNNO decides, and reaching the end
 * of the chain is a rejection (locked down by default). A check that cannot decide
 * because something is missing answers ERROR, which is a 451: it never permits.
 *
 * What the SMTP client said in HELO is not an input: it never grants anything.
 * The recipient arrives parsed and canonical (common/address.c): its domain is the
 * one after the last '@' outside quotes, and a local part holding '@', '%' or '!'
 * is never re-read as a route.
 */
#include "profiles/policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/net.h"

/* what the checks share while one RCPT is decided */
struct rcpt_state {
	const struct policy_ctx *ctx;
	const struct profile *profile;
	const struct mailaddr *rcpt;
	bool rcpt_local;	/* recipient domain is one of ours */
	/* the relay rule for unauthenticated clients failed only on the sender */
	bool sender_refused;
};

typedef enum policy_answer (*policy_check_fn)(struct rcpt_state *st,
    struct policy_result *res);

static void
set_result(struct policy_result *res, enum policy_answer answer, bool local, int code,
    const char *enhanced, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static void
set_result(struct policy_result *res, enum policy_answer answer, bool local, int code,
    const char *enhanced, const char *rule, const char *fmt, ...)
{
	va_list ap;

	res->answer = answer;
	res->local = local;
	res->code = code;
	snprintf(res->enhanced, sizeof(res->enhanced), "%s", enhanced);
	res->rule = rule;
	va_start(ap, fmt);
	vsnprintf(res->text, sizeof(res->text), fmt, ap);
	va_end(ap);
}

static enum policy_answer
permit(struct policy_result *res, bool local, const char *rule)
{
	set_result(res, POLICY_OK, local, 250, "2.1.5", rule, "Ok");
	return POLICY_OK;
}

/* the address inside a literal domain ("[192.0.2.1]", "[ipv6:...]"), IPv4-mapped
   IPv6 unwrapped so either spelling of an IPv4 address compares equal */
static bool
literal_addr(const char *domain, int *family, unsigned char addr[16])
{
	char buf[ADDR_DOMAIN_MAX + 1];
	size_t len = strlen(domain);

	if (len < 3 || domain[0] != '[' || domain[len - 1] != ']' || len - 2 >= sizeof(buf))
		return false;
	memcpy(buf, domain + 1, len - 2);
	buf[len - 2] = '\0';
	if (strncasecmp(buf, "ipv6:", 5) == 0) {
		struct sockaddr_storage ss;
		return net_sockaddr_parse(buf + 5, 0, &ss, NULL) == 0 &&
		    ss.ss_family == AF_INET6 &&
		    net_sockaddr_unmap((struct sockaddr *)&ss, family, addr);
	}
	*family = AF_INET;
	return inet_pton(AF_INET, buf, addr) == 1;
}

static bool
sockaddr_equals(const struct sockaddr *sa, int family, const unsigned char addr[16])
{
	int f;
	unsigned char a[16];
	return net_sockaddr_unmap(sa, &f, a) && f == family &&
	    memcmp(a, addr, family == AF_INET ? 4 : 16) == 0;
}

/*
 * An address literal is ours only when the profile accepts literals and it names
 * one of the addresses this instance listens on. A wildcard listener (0.0.0.0, ::)
 * names no address, so it makes no literal local.
 */
static bool
literal_is_own(const struct policy_ctx *ctx, const struct profile *p, const char *domain)
{
	int family;
	unsigned char addr[16];

	static const unsigned char unspecified[16];

	if (!p->accept_domain_literals || !literal_addr(domain, &family, addr))
		return false;
	if (memcmp(addr, unspecified, family == AF_INET ? 4 : 16) == 0)
		return false;
	if (ctx->own_addrs != NULL) {
		for (size_t i = 0; i < ctx->n_own_addrs; i++)
			if (sockaddr_equals(ctx->own_addrs[i], family, addr))
				return true;
		return false;
	}
	for (size_t i = 0; i < ctx->inst->n_listen; i++)
		if (sockaddr_equals((const struct sockaddr *)&ctx->inst->listen[i].ss,
		    family, addr))
			return true;
	return false;
}

/* an address's domain is ours: a local domain, or (if allowed) our own literal */
static bool
addr_is_local(const struct policy_ctx *ctx, const struct profile *p,
    const struct mailaddr *a)
{
	if (a->null || a->bare)
		return false;
	if (a->domain_literal)
		return literal_is_own(ctx, p, a->domain);
	return policy_domain_is_local(ctx->cfg, a->domain);
}

/* RCPT TO:<> names nobody */
static enum policy_answer
check_null_recipient(struct rcpt_state *st, struct policy_result *res)
{
	if (!st->rcpt->null)
		return POLICY_DUNNO;
	set_result(res, POLICY_REJECT, false, 550, "5.1.3", "null_recipient",
	    "Bad recipient address syntax");
	return POLICY_REJECT;
}

/* RFC 5321 4.5.1: postmaster, bare or at a local domain, is always accepted */
static enum policy_answer
check_postmaster(struct rcpt_state *st, struct policy_result *res)
{
	if (!address_is_postmaster(st->rcpt) || (!st->rcpt->bare && !st->rcpt_local))
		return POLICY_DUNNO;
	return permit(res, true, "postmaster");
}

/*
 * Any other bare recipient has no domain to deliver or relay to. We do not append a
 * default domain (Postfix's $myorigin): guessing what a client meant is how relays
 * open up, so refuse it as bad syntax.
 */
static enum policy_answer
check_bare_recipient(struct rcpt_state *st, struct policy_result *res)
{
	if (!st->rcpt->bare)
		return POLICY_DUNNO;
	set_result(res, POLICY_REJECT, false, 550, "5.1.3", "bare_recipient",
	    "Bad recipient address syntax");
	return POLICY_REJECT;
}

/* local_recipients entries are local parts ("user") or whole addresses ("user@dom") */
static bool
local_recipient_listed(const struct config *cfg, const struct mailaddr *a)
{
	const struct strlist *l = &cfg->server.local_recipients;

	for (size_t i = 0; i < l->n; i++) {
		const char *e = l->v[i];
		const char *at = strrchr(e, '@');
		if (at == NULL) {
			if (strcasecmp(e, a->local) == 0)
				return true;
		} else if (strlen(a->local) == (size_t)(at - e) &&
		    strncasecmp(e, a->local, (size_t)(at - e)) == 0 &&
		    strcasecmp(at + 1, a->domain) == 0) {
			return true;
		}
	}
	return false;
}

/* a local domain: deliver locally, or refuse; never relay */
static enum policy_answer
check_local_domain(struct rcpt_state *st, struct policy_result *res)
{
	const struct config *cfg = st->ctx->cfg;

	if (!st->rcpt_local)
		return POLICY_DUNNO;
	if (st->rcpt->route_chars) {
		set_result(res, POLICY_REJECT, false, 550, "5.1.3", "bad_local_part",
		    "Bad recipient address syntax");
		return POLICY_REJECT;
	}
	if (cfg->server.local_recipients.n > 0 && !local_recipient_listed(cfg, st->rcpt)) {
		set_result(res, POLICY_REJECT, false, 550, "5.1.1", "local_recipients",
		    "<%s>: Recipient address rejected: User unknown in local recipient table",
		    st->rcpt->text);
		return POLICY_REJECT;
	}
	return permit(res, true, "local_domain");
}

static bool
match_any(const struct strlist *l, const struct mailaddr *a)
{
	for (size_t i = 0; i < l->n; i++)
		if (address_match_pattern(a, l->v[i]))
			return true;
	return false;
}

static enum policy_answer
check_always_relay_to(struct rcpt_state *st, struct policy_result *res)
{
	if (!match_any(&st->profile->always_relay_to, st->rcpt))
		return POLICY_DUNNO;
	return permit(res, false, "always_relay_to");
}

/* a null sender has no address to match (address_match_pattern refuses it) */
static enum policy_answer
check_always_relay_from(struct rcpt_state *st, struct policy_result *res)
{
	const struct mailaddr *sender = st->ctx->sender;

	if (sender == NULL || !match_any(&st->profile->always_relay_from, sender))
		return POLICY_DUNNO;
	return permit(res, false, "always_relay_from");
}

/* Mailtraq's two checkboxes: relay for the LAN (or everyone), for any sender (or ours) */
static enum policy_answer
check_unauthenticated_relay(struct rcpt_state *st, struct policy_result *res)
{
	const struct policy_ctx *ctx = st->ctx;
	const struct profile *p = st->profile;

	if (p->require_auth)
		return POLICY_DUNNO;
	bool in_lan = policy_client_in_lan(ctx->cfg, ctx->inst, ctx->client);
	if (!in_lan && !p->relay_outside_lan)
		return POLICY_DUNNO;
	bool sender_local = ctx->sender != NULL && addr_is_local(ctx, p, ctx->sender);
	if (!p->relay_nonlocal_senders && !sender_local) {
		st->sender_refused = true;
		return POLICY_DUNNO;
	}
	return permit(res, false, in_lan ? "lan" : "relay_outside_lan");
}

/*
 * Postfix's permit_sasl_authenticated: a client that authenticated relays from
 * anywhere (relay_outside_lan is about unauthenticated clients) and for any sender
 * (relay_nonlocal_senders too: which senders a user may write is
 * sender_login_match's business, checked at MAIL).
 */
static enum policy_answer
check_auth(struct rcpt_state *st, struct policy_result *res)
{
	if (!st->ctx->authenticated || !st->profile->relay_authenticated)
		return POLICY_DUNNO;
	return permit(res, false, "auth");
}

/*
 * The end of the chain: nothing permitted relaying. On an instance whose profile
 * says require_auth and lets authenticated clients relay, an unauthenticated
 * client is told what would help: RFC 4954 section 6's "530 5.7.0 Authentication
 * required", so a mail client asks its user for the password instead of showing
 * "Relay access denied". It is said at RCPT, not MAIL: require_auth is about
 * relaying, and local recipients and the always_relay_* lists still take mail
 * without AUTH. Everywhere else (and to an authenticated client that may not
 * relay, whom authenticating again would not help) it is Postfix's
 * "554 5.7.1 <rcpt>: Relay access denied".
 */
static enum policy_answer
check_relay_denied(struct rcpt_state *st, struct policy_result *res)
{
	const struct profile *p = st->profile;

	if (p->require_auth && p->relay_authenticated && !st->ctx->authenticated) {
		set_result(res, POLICY_REJECT, false, 530, "5.7.0", "auth_required",
		    "<%s>: Authentication required", st->rcpt->text);
		res->relay_denied = true;
		return POLICY_REJECT;
	}
	set_result(res, POLICY_REJECT, false, 554, "5.7.1",
	    st->sender_refused ? "relay_nonlocal_senders" : "relay_access_denied",
	    "<%s>: Relay access denied", st->rcpt->text);
	res->relay_denied = true;
	return POLICY_REJECT;
}

/* order matters: see DESIGN.md section 5 */
static const policy_check_fn rcpt_checks[] = {
	check_null_recipient,
	check_postmaster,
	check_bare_recipient,
	check_local_domain,
	check_always_relay_to,
	check_always_relay_from,
	check_unauthenticated_relay,
	check_auth,
	check_relay_denied,
};

static int
policy_error(struct policy_result *res, const struct mailaddr *rcpt)
{
	set_result(res, POLICY_ERROR, false, 451, "4.3.0", "error",
	    "<%s>: Temporary lookup failure", rcpt != NULL ? rcpt->text : "");
	return -1;
}

/*
 * Returns 0 with res filled (OK or REJECT), or -1 with res an ERROR (451 4.3.0) when
 * the context is incomplete (no config, instance, profile or client).
 */
int
policy_check_rcpt(const struct policy_ctx *ctx, const struct mailaddr *rcpt,
    struct policy_result *res)
{
	memset(res, 0, sizeof(*res));
	if (ctx == NULL || rcpt == NULL || ctx->cfg == NULL || ctx->inst == NULL ||
	    ctx->inst->profile == NULL || ctx->client == NULL)
		return policy_error(res, rcpt);

	struct rcpt_state st = {
		.ctx = ctx,
		.profile = ctx->inst->profile,
		.rcpt = rcpt,
	};
	st.rcpt_local = addr_is_local(ctx, st.profile, rcpt);

	for (size_t i = 0; i < sizeof(rcpt_checks) / sizeof(rcpt_checks[0]); i++) {
		switch (rcpt_checks[i](&st, res)) {
		case POLICY_DUNNO:
			continue;
		case POLICY_OK:
		case POLICY_REJECT:
			return 0;
		case POLICY_ERROR:
			return policy_error(res, rcpt);
		}
	}
	/* unreachable while check_relay_denied ends the chain; never a permit */
	return policy_error(res, rcpt);
}

bool
policy_domain_is_local(const struct config *cfg, const char *domain)
{
	size_t len = strlen(domain);

	/* literals are ours only through literal_is_own(), which needs the instance */
	if (len == 0 || domain[0] == '[')
		return false;
	if (domain[len - 1] == '.')
		len--;
	for (size_t i = 0; i < cfg->server.local_domains.n; i++) {
		const char *d = cfg->server.local_domains.v[i];
		size_t dlen = strlen(d);
		if (dlen > 0 && d[dlen - 1] == '.')
			dlen--;
		if (dlen == len && strncasecmp(d, domain, len) == 0)
			return true;
	}
	return false;
}

bool
policy_client_in_lan(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client)
{
	if (cfg == NULL || inst == NULL || inst->profile == NULL || client == NULL)
		return false;
	const struct netlist *lan = config_profile_lan(cfg, inst->profile);
	return lan != NULL && netlist_match(lan, client);
}

bool
policy_client_allowed(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client)
{
	switch (inst->access) {
	case ACCESS_ANY:
		return true;
	case ACCESS_LAN:
		return policy_client_in_lan(cfg, inst, client);
	case ACCESS_LIST:
		return client != NULL && inst->access_list != NULL &&
		    netlist_match(inst->access_list, client);
	}
	return false;
}

void
policy_evaluate(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client, bool authenticated, const char *mail,
    const char *rcpt, struct policy_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->stage = POLICY_AT_CONNECT;
	if (!policy_client_allowed(cfg, inst, client))
		return;
	v->stage = POLICY_AT_MAIL;
	if (address_parse_path(mail, strlen(mail), &v->sender, &v->mail_end,
	    &v->syntax_error) == -1)
		return;
	v->stage = POLICY_AT_RCPT;
	if (address_parse_path(rcpt, strlen(rcpt), &v->rcpt, &v->rcpt_end,
	    &v->syntax_error) == -1)
		return;
	v->stage = POLICY_DECIDED;
	/* the context relayvisor-smtpd's proceed_rcpt builds */
	struct policy_ctx ctx = {
		.cfg = cfg, .inst = inst, .client = client, .sender = &v->sender,
		.authenticated = authenticated,
	};
	if (policy_check_rcpt(&ctx, &v->rcpt, &v->res) == -1)
		v->res.answer = POLICY_ERROR;
}
