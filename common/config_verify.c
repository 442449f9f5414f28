/*
 * The verify pass, after every file is parsed: what needs the whole picture
 * (profile references, the open-relay interlock of DESIGN.md section 4, listen
 * conflicts, over-wide LANs, addresses not on this host).
 */

#include "common/config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#include "common/xmalloc.h"
#include "common/address.h"
#include "common/net.h"
#include "deliver/route.h"

/* ---- verify ---- */

bool
listen_same(const struct listen_addr *a, const struct listen_addr *b)
{
	return a->sslen == b->sslen && memcmp(&a->ss, &b->ss, a->sslen) == 0;
}

static bool
listen_is_wildcard(const struct listen_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
		    htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

/* a wildcard and a specific address of one family on one port: the second bind()
   fails with EADDRINUSE, so say it now */
static bool
listen_overlap(const struct listen_addr *a, const struct listen_addr *b)
{
	return a->ss.ss_family == b->ss.ss_family && a->port == b->port &&
	    (listen_is_wildcard(a) || listen_is_wildcard(b));
}

/* why a profile relays for anyone, for the interlock message; NULL if it doesn't */
static char *
relays_for_anyone_why(const struct config *cfg, const struct profile *p)
{
	const struct netlist *lan = config_profile_lan(cfg, p);

	if (p->relay_outside_lan)
		return xstrdup("relay_outside_lan: true");
	for (size_t i = 0; i < netlist_count(lan); i++)
		if (net_entry_covers_all(netlist_entry(lan, i)))
			return xasprintf("its lan has '%s'", netlist_entry(lan, i));
	switch (netlist_public_span(lan)) {
	case AF_INET:
		return xstrdup("its lan entries together cover more public IPv4 "
		    "addresses than a /8");
	case AF_INET6:
		return xstrdup("its lan entries together cover more public IPv6 "
		    "addresses than a /16");
	}
	for (size_t i = 0; i < p->always_relay_from.n; i++)
		if (strcmp(p->always_relay_from.v[i], "@.") == 0)
			return xstrdup("always_relay_from has '@.'");
	for (size_t i = 0; i < p->always_relay_to.n; i++)
		if (strcmp(p->always_relay_to.v[i], "@.") == 0)
			return xstrdup("always_relay_to has '@.'");
	return NULL;
}

bool
config_profile_relays_for_anyone(const struct config *cfg, const struct profile *p)
{
	char *why = relays_for_anyone_why(cfg, p);
	bool r = why != NULL;

	free(why);
	return r;
}

static void
verify_server(struct loader *ld)
{
	struct server *s = &ld->cfg->server;

	if (s->hostname == NULL) {
		char host[256];
		if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		s->hostname = xstrdup(host);
	}
	server_path_defaults(s);
	if (s->auth_passwd_file != NULL && s->auth_dovecot != NULL)
		diag_error(ld, seen_find(ld, "server/auth/dovecot"), "auth of server: "
		    "expected one backend, passwd_file or dovecot, not both");
	if (s->auth_passwd_file != NULL && s->auth_passwd_file[0] == '\0')
		diag_error(ld, seen_find(ld, "server/auth/passwd_file"), "auth.passwd_file "
		    "of server: expected a file name");
}

const char *
delivery_tls_name(int level)
{
	switch (level) {
	case DELIVERY_TLS_NONE: return "none";
	case DELIVERY_TLS_MAY: return "may";
	case DELIVERY_TLS_ENCRYPT: return "encrypt";
	case DELIVERY_TLS_VERIFY: return "verify";
	}
	return "default";
}

/* the place of delivery/KEY when it was written, else the section's */
static const struct cfg_mark *
delivery_key_mark(struct loader *ld, const char *key)
{
	char *path = xasprintf("delivery/%s", key);
	const struct cfg_mark *m = seen_find(ld, path);
	free(path);
	return m != NULL ? m : &ld->cfg->delivery.mark;
}

/* outbound TLS and relayhost AUTH: levels only where SMTP goes, one level per
   next hop (the agents look the policy up by next hop, as Postfix's
   smtp_tls_policy_maps), and a password only over TLS */
static void
verify_delivery_tls(struct loader *ld)
{
	struct delivery *d = &ld->cfg->delivery;
	/* a key written with a bad value was reported already: not "missing" too */
	bool user = d->relayhost_auth_user != NULL ||
	    seen_find(ld, "delivery/relayhost_auth/user") != NULL;
	bool pwfile = d->relayhost_auth_password_file != NULL ||
	    seen_find(ld, "delivery/relayhost_auth/password_file") != NULL;
	struct nexthop nh, rh;
	const char *err;
	char name[ROUTE_PATH_MAX + 16], rname[ROUTE_PATH_MAX + 16];

	if (user != pwfile)
		diag_error(ld, delivery_key_mark(ld, "relayhost_auth"), "relayhost_auth "
		    "in delivery: expected both user and password_file");
	if (user && d->relayhost == NULL)
		diag_error(ld, delivery_key_mark(ld, "relayhost_auth"), "relayhost_auth "
		    "in delivery needs a relayhost");
	if (d->relayhost_tls != DELIVERY_TLS_DEFAULT && d->relayhost == NULL)
		diag_error(ld, delivery_key_mark(ld, "relayhost_tls"), "relayhost_tls in "
		    "delivery needs a relayhost");
	int rtls = d->relayhost_tls != DELIVERY_TLS_DEFAULT ? d->relayhost_tls : d->tls;
	if (user && rtls == DELIVERY_TLS_NONE)
		diag_error(ld, delivery_key_mark(ld, d->relayhost_tls !=
		    DELIVERY_TLS_DEFAULT ? "relayhost_tls" : "tls"), "relayhost_auth in "
		    "delivery: a password is sent only over TLS, but TLS to the relayhost "
		    "is none (use may, encrypt or verify)");
	bool have_rh = d->relayhost != NULL &&
	    route_parse_nexthop(d->relayhost, &rh, &err) == 0;
	if (have_rh)
		route_nexthop_name(&rh, rname, sizeof(rname));
	if (have_rh && rh.kind != NH_SMTP && (user ||
	    d->relayhost_tls != DELIVERY_TLS_DEFAULT))
		diag_error(ld, delivery_key_mark(ld, "relayhost"), "relayhost in delivery: "
		    "relayhost_tls and relayhost_auth need an SMTP next hop");
	for (size_t i = 0; i < d->n_routes; i++) {
		struct delivery_route *r = &d->routes[i];
		if (r->tls == DELIVERY_TLS_DEFAULT ||
		    route_parse_nexthop(r->nexthop, &nh, &err) == -1)
			continue;
		if (nh.kind != NH_SMTP) {
			diag_error(ld, &r->mark, "route '%s' in delivery: tls applies to SMTP "
			    "next hops only (LMTP and maildir are local)", r->pattern);
			continue;
		}
		route_nexthop_name(&nh, name, sizeof(name));
		if (have_rh && strcmp(name, rname) == 0 && r->tls != rtls)
			diag_error(ld, &r->mark, "route '%s' in delivery: tls %s differs "
			    "from relayhost_tls %s for the same next hop %s", r->pattern,
			    delivery_tls_name(r->tls), delivery_tls_name(rtls), r->nexthop);
		for (size_t k = 0; k < i; k++) {
			struct delivery_route *o = &d->routes[k];
			struct nexthop onh;
			char oname[ROUTE_PATH_MAX + 16];
			int otls = o->tls != DELIVERY_TLS_DEFAULT ? o->tls : d->tls;
			if (route_parse_nexthop(o->nexthop, &onh, &err) == -1)
				continue;
			route_nexthop_name(&onh, oname, sizeof(oname));
			if (strcmp(name, oname) == 0 && otls != r->tls) {
				diag_error(ld, &r->mark, "route '%s' in delivery: tls %s "
				    "differs from tls %s of route '%s' for the same next hop %s",
				    r->pattern, delivery_tls_name(r->tls),
				    delivery_tls_name(otls), o->pattern, r->nexthop);
				break;
			}
		}
	}
}

/* delivery: values that only make sense together */
static void
verify_delivery(struct loader *ld)
{
	struct delivery *d = &ld->cfg->delivery;
	if (!d->configured)
		return;
	if (d->local == NULL)
		d->local = nexthop_absolute(DELIVERY_LOCAL_DEFAULT);
	if (d->retry_min > d->retry_max)
		diag_error(ld, &d->mark, "delivery: retry_min (%gs) is longer than "
		    "retry_max (%gs)", d->retry_min, d->retry_max);
	if (d->dest_concurrency > d->dest_concurrency_max)
		diag_error(ld, &d->mark, "delivery: dest_concurrency (%u) is above "
		    "dest_concurrency_max (%u)", d->dest_concurrency,
		    d->dest_concurrency_max);
	if (d->delay_warning > 0 && d->delay_warning >= d->max_lifetime)
		diag_warning(ld, &d->mark, "delivery: delay_warning (%gs) is not "
		    "shorter than max_lifetime (%gs): no delay warning will be sent",
		    d->delay_warning, d->max_lifetime);
	verify_delivery_tls(ld);
}

/* the pattern (canonical: "user@dom", "@dom", "@.dom") matches some address of
   a local domain */
static const char *
pattern_local_domain(const struct server *sv, const char *pat)
{
	const char *at = strrchr(pat, '@');

	if (at == NULL)
		return NULL;
	for (size_t i = 0; i < sv->local_domains.n; i++) {
		const char *d = sv->local_domains.v[i];
		if (at[1] == '.') {
			size_t dl = strlen(d), sl = strlen(at + 1);
			if (at[2] != '\0' && dl > sl && strcmp(d + dl - sl, at + 1) == 0)
				return d;
		} else if (strcmp(d, at + 1) == 0) {
			return d;
		}
	}
	return NULL;
}

static void
verify_patterns(struct loader *ld, const struct profile *p, const char *key,
    const struct strlist *l)
{
	char *path = xasprintf("profiles/%s/%s", p->name, key);
	const struct cfg_mark *m = seen_find(ld, path);
	const char *local;

	free(path);
	for (size_t i = 0; i < l->n; i++) {
		const char *pat = l->v[i];
		/* "@.com": every domain under a top-level domain */
		if (strncmp(pat, "@.", 2) == 0 && pat[2] != '\0' &&
		    strchr(pat + 2, '.') == NULL)
			diag_warning(ld, m, "entry '%s' of %s in profile '%s' covers the "
			    "whole top-level domain '%s'", pat, key, p->name, pat + 2);
		if (strcmp(key, "always_relay_from") == 0 &&
		    (local = pattern_local_domain(&ld->cfg->server, pat)) != NULL)
			diag_warning(ld, m, "entry '%s' of always_relay_from in profile "
			    "'%s' names local domain '%s': anyone can forge such a sender "
			    "and relay", pat, p->name, local);
	}
}

/* numeric server defaults, set before the files are read */
static void
verify_profile(struct loader *ld, const struct profile *p)
{
	/* require_auth shuts the LAN out of relaying; relay_authenticated: false
	   shuts authenticated clients out too: only the allow lists are left */
	if (p->require_auth && !p->relay_authenticated) {
		char *path = xasprintf("profiles/%s/relay_authenticated", p->name);
		const struct cfg_mark *m = seen_find(ld, path);
		free(path);
		diag_warning(ld, m, "'relay_authenticated: false' with 'require_auth: "
		    "true' in profile '%s': nobody relays, authenticated or not; only "
		    "always_relay_* entries do", p->name);
	} else if (p->require_auth && !CONFIG_AUTH_ON(ld->cfg)) {
		char *path = xasprintf("profiles/%s/require_auth", p->name);
		const struct cfg_mark *m = seen_find(ld, path);
		free(path);
		diag_warning(ld, m, "'require_auth' in profile '%s': server.auth names "
		    "no backend (passwd_file or dovecot), so nobody can authenticate; "
		    "only always_relay_* entries relay", p->name);
	}
	verify_patterns(ld, p, "always_relay_from", &p->always_relay_from);
	verify_patterns(ld, p, "always_relay_to", &p->always_relay_to);
}

/* the address belongs to this host: a socket can be bound to it (port 0, so
   nothing is taken; the kernel's own answer covers 127.0.0.0/8 on lo and
   every other local route). Errors other than EADDRNOTAVAIL say nothing. */
static bool
listen_addr_local(const struct listen_addr *la)
{
	struct sockaddr_storage ss = la->ss;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	else
		return true;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return true;
	bool local = bind(fd, (struct sockaddr *)&ss, la->sslen) == 0 ||
	    errno != EADDRNOTAVAIL;
	close(fd);
	return local;
}

/* the place of instances/NAME/KEY when it was written, else the instance's */
static const struct cfg_mark *
instance_key_mark(struct loader *ld, const struct instance *inst, const char *key)
{
	char *path = xasprintf("instances/%s/%s", inst->name, key);
	const struct cfg_mark *m = seen_find(ld, path);
	free(path);
	return m != NULL ? m : &inst->mark;
}

/* tls: {cert, key} come together; implicit TLS and require_tls need them (the
   supervisor reads the files: a listener never opens them) */
static void
verify_instance_tls(struct loader *ld, struct instance *inst)
{
	if ((inst->tls_cert == NULL) != (inst->tls_key == NULL))
		diag_error(ld, instance_key_mark(ld, inst, "tls"), "tls of instance "
		    "'%s': expected both cert and key", inst->name);
	if (inst->tls_cert != NULL)
		return;
	if (inst->tls_mode == TLS_MODE_IMPLICIT)
		diag_error(ld, instance_key_mark(ld, inst, "tls_mode"), "tls_mode "
		    "implicit of instance '%s' needs tls: {cert, key}", inst->name);
	if (inst->require_tls)
		diag_error(ld, instance_key_mark(ld, inst, "require_tls"), "require_tls "
		    "of instance '%s' needs tls: {cert, key} (STARTTLS is offered only "
		    "with a certificate)", inst->name);
}

static void
verify_instance(struct loader *ld, struct instance *inst)
{
	struct config *cfg = ld->cfg;
	char *path = xasprintf("instances/%s/profile", inst->name);
	const struct cfg_mark *pm = seen_find(ld, path);

	free(path);
	if (inst->syslog_name == NULL)
		inst->syslog_name = xasprintf("relayvisor/%s", inst->name);
	if (inst->n_listen == 0) {
		/* a listen: that was given is empty or wrong, and reported already */
		path = xasprintf("instances/%s/listen", inst->name);
		const struct cfg_mark *lm = seen_find(ld, path);
		free(path);
		if (lm == NULL)
			diag_error(ld, &inst->mark, "instance '%s' has no listen address",
			    inst->name);
	}
	/* relayvisord would start, but this instance could not bind (FATAL) */
	for (size_t i = 0; i < inst->n_listen; i++)
		if (!listen_addr_local(&inst->listen[i]))
			diag_warning(ld, &inst->listen[i].mark, "listen address %s of "
			    "instance '%s' is not an address of this host (on no "
			    "interface): the instance cannot serve (FATAL) until it is",
			    inst->listen[i].text, inst->name);
	if (inst->backoff_max < inst->backoff_initial) {
		path = xasprintf("instances/%s/backoff/max", inst->name);
		const struct cfg_mark *bm = seen_find(ld, path);
		free(path);
		diag_error(ld, bm != NULL ? bm : &inst->mark,
		    "backoff of instance '%s': max (%gs) is below initial (%gs)",
		    inst->name, inst->backoff_max, inst->backoff_initial);
	}
	verify_instance_tls(ld, inst);
	if (inst->profile_name == NULL) {
		if (pm == NULL)
			diag_error(ld, &inst->mark, "instance '%s' needs a profile",
			    inst->name);
		return;
	}
	inst->profile = config_profile(cfg, inst->profile_name);
	if (inst->profile == NULL) {
		const char **names = xcalloc(cfg->n_profiles, sizeof(*names));
		for (size_t i = 0; i < cfg->n_profiles; i++)
			names[i] = cfg->profiles[i].name;
		char *dym = did_you_mean(nearest(inst->profile_name, names,
		    cfg->n_profiles));
		diag_error(ld, pm != NULL ? pm : &inst->mark,
		    "instance '%s': no profile named '%s'%s", inst->name,
		    inst->profile_name, dym);
		free(dym);
		free(names);
		return;
	}
	const struct profile *p = inst->profile;
	bool lan_invalid = p->lan_set ? p->lan_invalid : cfg->lan_invalid;
	if (inst->access == ACCESS_LAN && netlist_count(config_profile_lan(cfg, p)) == 0 &&
	    !lan_invalid)
		diag_warning(ld, &inst->mark, "instance '%s' has access: lan but profile "
		    "'%s' trusts no network: no client can connect", inst->name, p->name);

	char *why = relays_for_anyone_why(cfg, p);
	if (why != NULL && !p->open_relay_ok) {
		for (size_t i = 0; i < inst->n_listen; i++) {
			const struct listen_addr *la = &inst->listen[i];
			if (net_sockaddr_is_loopback((const struct sockaddr *)&la->ss))
				continue;
			diag_error(ld, &la->mark, "instance '%s' would be an open relay: it "
			    "listens on %s, which is not loopback, and its profile '%s' "
			    "relays for any client (%s); add open_relay: i-understand to "
			    "the profile if that is really meant", inst->name, la->text,
			    p->name, why);
			break;
		}
	}
	free(why);
}

static void
verify_listen_conflicts(struct loader *ld)
{
	struct config *cfg = ld->cfg;

	for (size_t i = 0; i < cfg->n_instances; i++) {
		struct instance *x = &cfg->instances[i];
		for (size_t a = 0; a < x->n_listen; a++) {
			bool dup = false;
			for (size_t j = 0; j <= i && !dup; j++) {
				struct instance *y = &cfg->instances[j];
				size_t lim = j == i ? a : y->n_listen;
				for (size_t b = 0; b < lim && !dup; b++) {
					const struct listen_addr *la = &x->listen[a];
					const struct listen_addr *lb = &y->listen[b];
					if (listen_same(la, lb)) {
						diag_error(ld, &la->mark, "listen address "
						    "'%s' of instance '%s' is already used by "
						    "instance '%s' at %s:%u:%u", la->text,
						    x->name, y->name, lb->mark.file,
						    lb->mark.line, lb->mark.column);
						dup = true;
					} else if (listen_overlap(la, lb)) {
						diag_error(ld, &la->mark, "listen address "
						    "'%s' of instance '%s' overlaps '%s' of "
						    "instance '%s' at %s:%u:%u (same port, one "
						    "is a wildcard)", la->text, x->name,
						    lb->text, y->name, lb->mark.file,
						    lb->mark.line, lb->mark.column);
						dup = true;
					}
				}
			}
		}
	}
}

void
verify(struct loader *ld)
{
	struct config *cfg = ld->cfg;

	verify_server(ld);
	verify_delivery(ld);
	for (size_t i = 0; i < cfg->n_profiles; i++)
		verify_profile(ld, &cfg->profiles[i]);
	for (size_t i = 0; i < cfg->n_instances; i++)
		verify_instance(ld, &cfg->instances[i]);
	verify_listen_conflicts(ld);
}

