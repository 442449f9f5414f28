/*
 * The relay audit's corpus runner (audit.h). A case is predicted by walking the
 * steps relayvisor-smtpd takes for that client: the access check at connect
 * (policy_client_allowed), MAIL's path syntax (address_parse_path), RCPT's path
 * syntax, then policy_check_rcpt() with the same context the session builds. The
 * reply lines are the session's own words, so `relayvisorctl audit` can compare
 * them with what a live listener says, line for line.
 */
#include "profiles/audit.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "common/address.h"
#include "common/net.h"
#include "profiles/policy.h"

const struct audit_case audit_corpus[] = {
#define TRICK(c, h, m, r, s) { c, h, m, r, s },
#include "profiles/relay_tricks.def"
#undef TRICK
};
const size_t audit_corpus_n = sizeof(audit_corpus) / sizeof(audit_corpus[0]);

const char *const audit_sender_kinds[AUDIT_SENDERS] = { "local", "non-local", "null" };
const char *const audit_rcpt_kinds[AUDIT_RCPTS] = { "local", "remote" };

/* documentation addresses (RFC 5737, RFC 3849) a stranger is picked from */
static const char *const stranger4[] = { "192.0.2.1", "198.51.100.1", "203.0.113.1" };
static const char *const stranger6[] = { "2001:db8::1", "2001:db8:ffff::1" };

const char *
audit_case_name(size_t i, char *buf, size_t len)
{
	unsigned n = 0;

	for (size_t j = 0; j <= i && j < audit_corpus_n; j++)
		if (strcmp(audit_corpus[j].cls, audit_corpus[i].cls) == 0)
			n++;
	snprintf(buf, len, "%s/%u", audit_corpus[i].cls, n);
	return buf;
}

void
audit_vars_init(const struct config *cfg, const struct instance *inst,
    struct audit_vars *v)
{
	memset(v, 0, sizeof(*v));
	snprintf(v->local, sizeof(v->local), "%s", cfg->server.local_domains.n > 0 ?
	    cfg->server.local_domains.v[0] : "local.invalid");
	bool start = true;
	for (size_t i = 0; v->local[i] != '\0'; i++) {
		unsigned char c = (unsigned char)v->local[i];
		v->local_upper[i] = (char)toupper(c);
		v->local_cap[i] = (char)(start ? toupper(c) : c);
		start = c == '.';
	}
	snprintf(v->hostname, sizeof(v->hostname), "%s",
	    cfg->server.hostname != NULL ? cfg->server.hostname : "localhost");
	char ip[64] = "0.0.0.0";
	const struct sockaddr *sa = inst->n_listen > 0 ?
	    (const struct sockaddr *)&inst->listen[0].ss : NULL;
	if (sa != NULL)
		net_sockaddr_ntop(sa, ip, sizeof(ip));
	if (sa != NULL && sa->sa_family == AF_INET6 && strchr(ip, ':') != NULL)
		snprintf(v->own, sizeof(v->own), "[IPv6:%s]", ip);
	else
		snprintf(v->own, sizeof(v->own), "[%s]", ip);
}

bool
audit_expand(const char *tmpl, const struct audit_vars *v, char *buf, size_t len)
{
	static const struct {
		const char *name;
		size_t off;
	} vars[] = {
		{ "{local}", offsetof(struct audit_vars, local) },
		{ "{LOCAL}", offsetof(struct audit_vars, local_upper) },
		{ "{Local}", offsetof(struct audit_vars, local_cap) },
		{ "{own}", offsetof(struct audit_vars, own) },
		{ "{hostname}", offsetof(struct audit_vars, hostname) },
	};
	size_t n = 0;

	while (*tmpl != '\0') {
		const char *val = NULL;
		size_t skip = 1;
		for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
			size_t l = strlen(vars[i].name);
			if (strncmp(tmpl, vars[i].name, l) == 0) {
				val = (const char *)v + vars[i].off;
				skip = l;
				break;
			}
		}
		size_t vl = val != NULL ? strlen(val) : 1;
		if (n + vl + 1 > len)
			return false;
		memcpy(buf + n, val != NULL ? val : tmpl, vl);
		n += vl;
		tmpl += skip;
	}
	buf[n] = '\0';
	return true;
}

const char *
audit_greeting(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client)
{
	return policy_client_allowed(cfg, inst, client) ? "220" : "554 5.7.1";
}

/* what check_mail / check_rcpt answer to something after the path */
static bool
params_refused(const char *rest, char *reply, size_t len)
{
	while (*rest == ' ')
		rest++;
	if (*rest == '\0')
		return false;
	snprintf(reply, len, "555 5.5.4 Unsupported option: %.*s",
	    (int)strcspn(rest, " "), rest);
	return true;
}

void
audit_simulate_pair(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client, bool authenticated, const char *mail,
    const char *rcpt, struct audit_outcome *o)
{
	struct policy_verdict v;

	o->mail[0] = o->rcpt[0] = '\0';
	o->accepted = o->relayed = false;
	policy_evaluate(cfg, inst, client, authenticated, mail, rcpt, &v);
	if (v.stage == POLICY_AT_CONNECT) {
		o->stage = AUDIT_AT_CONNECT;
		o->rule = "access";
		return;
	}
	o->stage = AUDIT_AT_MAIL;
	o->rule = "syntax";
	if (v.stage == POLICY_AT_MAIL) {
		snprintf(o->mail, sizeof(o->mail), "501 5.1.7 Bad sender address syntax");
		return;
	}
	if (params_refused(mail + v.mail_end, o->mail, sizeof(o->mail)))
		return;
	snprintf(o->mail, sizeof(o->mail), "250 2.1.0 Ok");
	o->stage = AUDIT_AT_RCPT;
	if (v.stage == POLICY_AT_RCPT || v.rcpt.null) {
		snprintf(o->rcpt, sizeof(o->rcpt), "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (params_refused(rcpt + v.rcpt_end, o->rcpt, sizeof(o->rcpt)))
		return;

	const struct policy_result *res = &v.res;
	o->rule = res->rule != NULL ? res->rule : "error";
	if (res->answer == POLICY_OK) {
		snprintf(o->rcpt, sizeof(o->rcpt), "250 2.1.5 Ok");
		o->accepted = true;
		o->relayed = !res->local;
		return;
	}
	if (res->code < 400 || res->code > 599 || res->enhanced[0] == '\0')
		snprintf(o->rcpt, sizeof(o->rcpt),
		    "451 4.3.5 <%s>: Server configuration error", v.rcpt.text);
	else
		snprintf(o->rcpt, sizeof(o->rcpt), "%d %s %s", res->code, res->enhanced,
		    res->text);
}

void
audit_simulate(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client, bool authenticated, const struct audit_vars *v,
    size_t i, struct audit_outcome *o)
{
	const struct audit_case *c = &audit_corpus[i];

	memset(o, 0, sizeof(*o));
	if (!audit_expand(c->helo[0] != '\0' ? c->helo : AUDIT_DEFAULT_HELO, v, o->helo,
	    sizeof(o->helo)) ||
	    !audit_expand(c->mail, v, o->mail_arg, sizeof(o->mail_arg)) ||
	    !audit_expand(c->rcpt, v, o->rcpt_arg, sizeof(o->rcpt_arg))) {
		/* cannot happen with sane names; never counts as accepted */
		o->stage = AUDIT_AT_MAIL;
		o->rule = "expand";
		snprintf(o->mail, sizeof(o->mail), "501 5.5.4 case too long");
		return;
	}
	audit_simulate_pair(cfg, inst, client, authenticated, o->mail_arg, o->rcpt_arg,
	    o);
}

int
audit_run_client(const struct config *cfg, const struct instance *inst,
    const char *ip, bool authenticated, const char *label, struct audit_client *c)
{
	struct sockaddr_storage ss;
	struct audit_vars v;
	struct audit_outcome o;

	memset(c, 0, sizeof(*c));
	if (net_sockaddr_parse(ip, 0, &ss, NULL) == -1)
		return -1;
	const struct sockaddr *sa = (const struct sockaddr *)&ss;
	snprintf(c->label, sizeof(c->label), "%s", label);
	snprintf(c->ip, sizeof(c->ip), "%s", ip);
	c->in_lan = policy_client_in_lan(cfg, inst, sa);
	c->allowed = policy_client_allowed(cfg, inst, sa);
	c->relayed_cases = xcalloc(audit_corpus_n, sizeof(*c->relayed_cases));
	audit_vars_init(cfg, inst, &v);
	for (size_t i = 0; i < audit_corpus_n; i++) {
		audit_simulate(cfg, inst, sa, authenticated, &v, i, &o);
		c->evaluated++;
		if (o.relayed)
			c->relayed_cases[c->relayed++] = i;
		else if (o.accepted)
			c->local++;
	}
	return 0;
}

void
audit_client_free(struct audit_client *c)
{
	free(c->relayed_cases);
	c->relayed_cases = NULL;
}

/* ---- where a listener is reachable from ---- */

const char *
audit_scope_name(enum audit_scope s)
{
	switch (s) {
	case SCOPE_LOOPBACK:
		return "loopback";
	case SCOPE_PRIVATE:
		return "private";
	case SCOPE_WILDCARD:
		return "wildcard";
	case SCOPE_PUBLIC:
		return "public";
	}
	return "public";
}

enum audit_scope
audit_scope_of(const struct sockaddr *sa)
{
	const unsigned char *a;
	static const unsigned char zero[16];

	if (net_sockaddr_is_loopback(sa))
		return SCOPE_LOOPBACK;
	if (sa->sa_family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		if (memcmp(a, zero, 4) == 0)
			return SCOPE_WILDCARD;
		if (a[0] == 127)
			return SCOPE_LOOPBACK;
		if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
		    (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254) ||
		    (a[0] == 100 && (a[1] & 0xc0) == 64))
			return SCOPE_PRIVATE;
		return SCOPE_PUBLIC;
	}
	a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
	if (memcmp(a, zero, 16) == 0)
		return SCOPE_WILDCARD;
	if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
		return SCOPE_PRIVATE;
	return SCOPE_PUBLIC;
}

/* a host address inside a LAN entry: the network's first host, or the address */
static bool
lan_representative(const char *entry, char *ip, size_t len)
{
	char buf[128];
	unsigned char addr[16];
	int family, max, prefix;

	if (strlen(entry) >= sizeof(buf))
		return false;
	snprintf(buf, sizeof(buf), "%s", entry);
	if (strchr(buf, '*') != NULL) {
		int fixed = 0;
		bool wild = false;
		char out[96] = "";
		char *save = NULL;
		for (char *t = strtok_r(buf, ".", &save); t != NULL;
		    t = strtok_r(NULL, ".", &save)) {
			if (strcmp(t, "*") == 0)
				wild = true;
			else if (!wild)
				fixed++;
			snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s",
			    out[0] != '\0' ? "." : "", strcmp(t, "*") == 0 ? "0" : t);
		}
		snprintf(buf, sizeof(buf), "%s/%d", out, fixed * 8);
	}
	char *slash = strchr(buf, '/');
	if (slash != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1) {
		family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, addr) == 1) {
		family = AF_INET6;
		max = 128;
	} else {
		return false;
	}
	prefix = slash != NULL ? atoi(slash) : max;
	if (prefix < 0 || prefix > max)
		return false;
	if (prefix < max) {
		for (int bit = prefix; bit < max; bit++)
			addr[bit / 8] &= (unsigned char)~(0x80 >> (bit % 8));
		addr[max / 8 - 1] |= 1;
	}
	return inet_ntop(family, addr, ip, (socklen_t)len) != NULL;
}

/* the first candidate outside the profile's LAN, else the first one */
static const char *
pick_stranger(const struct config *cfg, const struct instance *inst,
    const char *const *cand, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		if (net_sockaddr_parse(cand[i], 0, &ss, NULL) == 0 &&
		    !policy_client_in_lan(cfg, inst, (const struct sockaddr *)&ss))
			return cand[i];
	}
	return cand[0];
}

static void
matrix_row(const struct config *cfg, const struct instance *inst, const char *label,
    const char *ip, bool authenticated, struct audit_matrix_row *row)
{
	struct audit_vars v;
	struct sockaddr_storage ss;
	char local[300];

	memset(row, 0, sizeof(*row));
	snprintf(row->client, sizeof(row->client), "%s", label);
	snprintf(row->ip, sizeof(row->ip), "%s", ip);
	if (net_sockaddr_parse(ip, 0, &ss, NULL) == -1)
		return;
	audit_vars_init(cfg, inst, &v);
	snprintf(local, sizeof(local), "<audit@%s>", v.local);
	bool have_local = cfg->server.local_domains.n > 0;
	const char *senders[AUDIT_SENDERS] = { local, "<audit@client.example>", "<>" };
	const char *rcpts[AUDIT_RCPTS] = { local, "<audit@remote.example>" };
	for (size_t s = 0; s < AUDIT_SENDERS; s++) {
		for (size_t r = 0; r < AUDIT_RCPTS; r++) {
			char *cell = row->cell[s][r];
			size_t len = sizeof(row->cell[s][r]);
			if (!have_local && (s == 0 || r == 0)) {
				snprintf(cell, len, "n/a");
				continue;
			}
			struct audit_outcome o;
			audit_simulate_pair(cfg, inst, (const struct sockaddr *)&ss,
			    authenticated, senders[s], rcpts[r], &o);
			if (o.stage == AUDIT_AT_CONNECT)
				snprintf(cell, len, "554 5.7.1 at connect");
			else if (o.accepted)
				snprintf(cell, len, "accept");
			else
				snprintf(cell, len, "%.9s",
				    o.stage == AUDIT_AT_MAIL ? o.mail : o.rcpt);
		}
	}
}

static void
add_check(struct audit_instance *a, int step, bool ok, const char *setting,
    const char *key, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void
add_check(struct audit_instance *a, int step, bool ok, const char *setting,
    const char *key, const char *fmt, ...)
{
	struct audit_check *c = &a->checks[a->n_checks++];
	va_list ap;

	c->step = step;
	c->ok = ok;
	snprintf(c->setting, sizeof(c->setting), "%s", setting);
	snprintf(c->key, sizeof(c->key), "%s", key);
	va_start(ap, fmt);
	vsnprintf(c->value, sizeof(c->value), fmt, ap);
	va_end(ap);
	if (!ok)
		a->checklist_ok = false;
}

static void
strlist_join(const struct strlist *l, char *buf, size_t len)
{
	buf[0] = '\0';
	for (size_t i = 0; i < l->n; i++)
		snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? ", " : "",
		    l->v[i]);
}

/* Mailtraq's Step 1 and Step 2, with the key that changes each */
static void
checklist(const struct config *cfg, const struct instance *inst,
    struct audit_instance *a)
{
	const struct profile *p = inst->profile;
	const struct netlist *lan = config_profile_lan(cfg, p);
	size_t nlan = lan != NULL ? netlist_count(lan) : 0;
	char key[160], list[400] = "", wide[400] = "";

	a->checklist_ok = true;
	for (size_t i = 0; i < nlan; i++) {
		const char *e = netlist_entry(lan, i);
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
		    i ? ", " : "", e);
		if (net_entry_overwide(e))
			snprintf(wide + strlen(wide), sizeof(wide) - strlen(wide), "%s%s",
			    wide[0] ? ", " : "", e);
	}
	if (p->lan_set)
		snprintf(key, sizeof(key), "profiles.%s.lan", p->name);
	else
		snprintf(key, sizeof(key), "lan");
	if (nlan == 0)
		add_check(a, 1, true, "LAN", key, "none (trusts no network)");
	else if (wide[0] != '\0')
		add_check(a, 1, false, "LAN", key, "%s; wider than needed: %s", list, wide);
	else
		add_check(a, 1, true, "LAN", key, "%s", list);

	snprintf(key, sizeof(key), "profiles.%s.relay_outside_lan", p->name);
	add_check(a, 2, !p->relay_outside_lan,
	    "Relay for client machines outside this LAN", key, "%s",
	    p->relay_outside_lan ? "on" : "off");
	/* it matters only for clients allowed to relay at all */
	bool moot = !p->relay_outside_lan && (nlan == 0 || p->require_auth);
	snprintf(key, sizeof(key), "profiles.%s.relay_nonlocal_senders", p->name);
	add_check(a, 2, !p->relay_nonlocal_senders || moot, "Relay for non-local senders",
	    key, "%s", !p->relay_nonlocal_senders ? "off" : moot ?
	    "on (no effect: no unauthenticated client may relay)" : "on");
	strlist_join(&p->always_relay_from, list, sizeof(list));
	snprintf(key, sizeof(key), "profiles.%s.always_relay_from", p->name);
	add_check(a, 2, p->always_relay_from.n == 0,
	    "Always allow relaying from these senders", key, "%s",
	    p->always_relay_from.n == 0 ? "empty" : list);
	strlist_join(&p->always_relay_to, list, sizeof(list));
	snprintf(key, sizeof(key), "profiles.%s.always_relay_to", p->name);
	add_check(a, 2, p->always_relay_to.n == 0,
	    "Always allow relaying to these recipients", key, "%s",
	    p->always_relay_to.n == 0 ? "empty" : list);
	/* informational: an authenticated client is no stranger, so this item
	   passes either way; it says who AUTH lets relay */
	snprintf(key, sizeof(key), "profiles.%s.%s", p->name,
	    p->relay_authenticated ? "require_auth" : "relay_authenticated");
	add_check(a, 2, true, "Use SMTP User Authentication", key, "%s%s",
	    !p->relay_authenticated ? (p->require_auth ?
	    "required, but authenticated clients may not relay either "
	    "(relay_authenticated: false): only always_relay_* relay" :
	    "authenticated clients do not relay (relay_authenticated: false)") :
	    p->require_auth ? "required: only authenticated clients relay "
	    "(relay_authenticated), the LAN no longer does" :
	    "authenticated clients relay too (relay_authenticated)",
	    a->auth_offered ? "" : "; AUTH is not offered here (no tls, or no server.auth)");
}

/*
 * Whether a client can authenticate on the instance at all: AUTH is offered only
 * over TLS (or on loopback with auth_plaintext_loopback) and only with a server.auth
 * backend, so an
 * instance without a certificate has no authenticated clients, whatever its
 * profile would let them do.
 */
bool
audit_auth_offered(const struct config *cfg, const struct instance *inst)
{
	return CONFIG_AUTH_ON(cfg) &&
	    (inst->tls_cert != NULL || inst->auth_plaintext_loopback);
}

const char *
audit_relays_for(const struct audit_instance *a)
{
	bool auth = a->auth_offered && a->auth_run && a->auth.relayed > 0;

	if (a->stranger_relayed > 0)
		return "strangers";
	if (a->lan_relayed > 0)
		return auth ? "LAN and authenticated clients" : "LAN clients only";
	return auth ? "authenticated clients only" : "nobody";
}

/* a listener relaying for a LAN, reachable from elsewhere */
static void
exposure(const struct instance *inst, struct audit_instance *a)
{
	if (a->lan_relayed == 0)
		return;
	a->exposure = xcalloc(inst->n_listen, sizeof(*a->exposure));
	for (size_t i = 0; i < inst->n_listen; i++) {
		enum audit_scope s = audit_scope_of((const struct sockaddr *)
		    &inst->listen[i].ss);
		if (s != SCOPE_WILDCARD && s != SCOPE_PUBLIC)
			continue;
		char msg[1024];
		snprintf(msg, sizeof(msg), "%s relays for its LAN but listens on %s, %s: "
		    "on a multi-homed host the Internet side reaches it too. Listen on "
		    "the LAN interface's address instead (listen: [\"lan0:%u\"])%s",
		    inst->name, inst->listen[i].text, s == SCOPE_WILDCARD ?
		    "a wildcard address (every interface)" : "a public address",
		    inst->listen[i].port, inst->access == ACCESS_ANY ?
		    " and let only the LAN connect (access: lan)" :
		    "; access: already refuses other clients at connect");
		a->exposure[a->n_exposure++] = xstrdup(msg);
	}
}

void
audit_instance(const struct config *cfg, const struct instance *inst, bool internet,
    struct audit_instance *a)
{
	char ip[64], label[160];

	memset(a, 0, sizeof(*a));
	a->inst = inst;
	a->acknowledged = inst->profile->open_relay_ok;
	a->auth_offered = audit_auth_offered(cfg, inst);
	a->internet = internet;
	for (size_t i = 0; i < inst->n_listen; i++)
		if (inst->listen[i].port == 25)
			a->internet = true;

	/* strangers: IPv4, IPv6, and the IPv4 one as an IPv4-mapped client */
	const char *s4 = pick_stranger(cfg, inst, stranger4,
	    sizeof(stranger4) / sizeof(stranger4[0]));
	const char *s6 = pick_stranger(cfg, inst, stranger6,
	    sizeof(stranger6) / sizeof(stranger6[0]));
	char mapped[64];
	snprintf(mapped, sizeof(mapped), "::ffff:%s", s4);
	const char *sips[] = { s4, s6, mapped };
	a->strangers = xcalloc(3, sizeof(*a->strangers));
	for (size_t i = 0; i < 3; i++) {
		if (audit_run_client(cfg, inst, sips[i], false, "stranger",
		    &a->strangers[a->n_strangers]) == -1)
			continue;
		a->stranger_evaluated += a->strangers[a->n_strangers].evaluated;
		a->stranger_relayed += a->strangers[a->n_strangers].relayed;
		a->n_strangers++;
	}

	/* a representative client of each LAN entry */
	const struct netlist *lan = config_profile_lan(cfg, inst->profile);
	size_t nlan = lan != NULL ? netlist_count(lan) : 0;
	a->lans = xcalloc(nlan + 1, sizeof(*a->lans));
	a->matrix = xcalloc(nlan + 1, sizeof(*a->matrix));
	matrix_row(cfg, inst, "stranger", s4, false, &a->matrix[a->n_matrix++]);
	for (size_t i = 0; i < nlan; i++) {
		const char *e = netlist_entry(lan, i);
		if (!lan_representative(e, ip, sizeof(ip)))
			continue;
		snprintf(label, sizeof(label), "LAN %s", e);
		if (audit_run_client(cfg, inst, ip, false, e, &a->lans[a->n_lans]) == -1)
			continue;
		a->lan_relayed += a->lans[a->n_lans].relayed;
		a->n_lans++;
		matrix_row(cfg, inst, label, ip, false, &a->matrix[a->n_matrix++]);
	}

	/* the IPv4 stranger again, as if it had passed SMTP AUTH: predicted only */
	a->matrix = xreallocarray(a->matrix, a->n_matrix + 1, sizeof(*a->matrix));
	if (audit_run_client(cfg, inst, s4, true, "authenticated", &a->auth) == 0) {
		a->auth_run = true;
		matrix_row(cfg, inst, "authenticated", s4, true, &a->matrix[a->n_matrix++]);
	}
	checklist(cfg, inst, a);
	exposure(inst, a);
}

void
audit_instance_free(struct audit_instance *a)
{
	for (size_t i = 0; i < a->n_strangers; i++)
		audit_client_free(&a->strangers[i]);
	for (size_t i = 0; i < a->n_lans; i++)
		audit_client_free(&a->lans[i]);
	if (a->auth_run)
		audit_client_free(&a->auth);
	for (size_t i = 0; i < a->n_exposure; i++)
		free(a->exposure[i]);
	free(a->strangers);
	free(a->lans);
	free(a->matrix);
	free(a->exposure);
	memset(a, 0, sizeof(*a));
}

void
audit_log_config(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_instances; i++) {
		struct audit_instance a;
		audit_instance(cfg, &cfg->instances[i], false, &a);
		if (a.stranger_relayed == 0)
			log_info("audit: %s: strangers relayed 0/%u; relays for %s",
			    a.inst->name, a.stranger_evaluated, audit_relays_for(&a));
		else
			log_warnx("audit: %s: strangers relayed %u/%u%s", a.inst->name,
			    a.stranger_relayed, a.stranger_evaluated, a.acknowledged ?
			    " (open relay acknowledged: open_relay: i-understand)" :
			    ": this instance is an open relay");
		audit_instance_free(&a);
	}
}
