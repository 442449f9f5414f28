/*
 * Routing: where mail for a recipient domain goes, and "is that host me?".
 *
 * Next-hop syntax is Postfix's (transport_maps, relayhost):
 *   "[host]:port", "[host]"        SMTP to host's A/AAAA, no MX lookup
 *   "[192.0.2.1]", "[2001:db8::1]:2525"   SMTP to that address
 *   "host:port", "host"            SMTP with an MX lookup of host (port for every MX)
 *   "smtp:" before any of these    the same, transport named
 *   "lmtp:unix:/path"              LMTP on a unix socket (Dovecot's lmtp)
 *   "lmtp:HOST:PORT", "lmtp:[HOST]:PORT", "lmtp:inet:HOST:PORT"   LMTP over TCP
 *                                  (never MX; port defaults to 24)
 *   "maildir:/var/mail/%d/%u"      Maildir delivery, %d domain, %u local part, %% '%'
 * Ports are numbers 1-65535. Errors say what was expected, for the config verify pass
 * (the caller adds file:line:column).
 *
 * Decision for a recipient domain (route_decide), Postfix's order: a local domain ->
 * the `local` next hop; else `routes` (exact "example.net", then ".example.net"
 * entries from the nearest parent outwards, as transport_maps does); else the
 * relayhost; else the domain itself: an address literal goes straight to that address,
 * a name gets an MX lookup (RFC 5321 5.1).
 *
 * Loops: route_self holds our hostname and our addresses (listen addresses with
 * their ports; interface addresses with port 0 = any). route_mx_usable() applies RFC
 * 5321 5.1 to a resolved MX list: MX hosts at or above our own preference are dropped;
 * if we are the best MX, the mail "loops back to myself" (bounce 5.4.6). Only MX
 * results are pruned: an explicit next hop ([host], routes, relayhost) is the
 * administrator's choice, as in Postfix.
 */
#ifndef RELAYVISOR_ROUTE_H
#define RELAYVISOR_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct dns_result;	/* deliver/dns.h */

enum nexthop_kind { NH_SMTP, NH_LMTP_INET, NH_LMTP_UNIX, NH_MAILDIR };

#define ROUTE_HOST_MAX 255
#define ROUTE_PATH_MAX 4096

struct nexthop {
	enum nexthop_kind kind;
	char host[ROUTE_HOST_MAX + 1];	/* SMTP/LMTP inet: name or address, no brackets */
	bool mx;			/* SMTP: look up MX records of host */
	bool literal;			/* host is an IP address: no lookup at all */
	uint16_t port;
	char path[ROUTE_PATH_MAX];	/* LMTP unix socket, or the Maildir template */
};

int route_parse_nexthop(const char *s, struct nexthop *nh, const char **error_r);
/* canonical name, the scheduler's destination key: "smtp:[mx.example]:25",
   "smtp:example.com:25", "lmtp:unix:/run/dovecot/lmtp", "maildir:/var/mail/%d/%u" */
void route_nexthop_name(const struct nexthop *nh, char *buf, size_t len);

struct route_table;

struct route_table *route_table_new(void);
void route_table_free(struct route_table *t);
/* "example.test" (case and trailing dot ignored) */
int route_add_local_domain(struct route_table *t, const char *domain, const char **error_r);
int route_set_local(struct route_table *t, const char *nexthop, const char **error_r);
int route_set_relayhost(struct route_table *t, const char *nexthop, const char **error_r);
/* pattern "example.net" (that domain) or ".example.net" (its subdomains) */
int route_add(struct route_table *t, const char *pattern, const char *nexthop,
    const char **error_r);

enum route_via { ROUTE_LOCAL, ROUTE_ROUTES, ROUTE_RELAYHOST, ROUTE_DIRECT };

struct route_result {
	enum route_via via;
	struct nexthop nh;
	const char *matched;	/* the routes: key that matched, or NULL */
};

/*
 * Route a recipient domain (as the listener canonicalised it: lowercase, no trailing
 * dot, "[192.0.2.1]" / "[ipv6:2001:db8::1]" for literals). Returns -1 with *error_r
 * when the domain is local and no local transport is set, or the domain is empty.
 */
int route_decide(const struct route_table *t, const char *domain, struct route_result *r,
    const char **error_r);
bool route_is_local(const struct route_table *t, const char *domain);

struct route_self;
struct route_self *route_self_new(const char *hostname);
void route_self_free(struct route_self *s);
/* port 0: the address is ours whatever the port */
void route_self_add(struct route_self *s, const struct sockaddr *sa, uint16_t port);
/* every address of every interface (getifaddrs), port 0; -1 on failure */
int route_self_add_interfaces(struct route_self *s);
/* host name equal to ours (case-insensitive, trailing dot ignored), or sa (with
   port) one of our addresses; either may be NULL */
bool route_is_self(const struct route_self *s, const char *host, const struct sockaddr *sa,
    uint16_t port);
/*
 * RFC 5321 5.1 on a dns_resolve_mx() result (an implicit MX counts too; delivery
 * port `port`): *n_r = how
 * many hosts from the start of r->hosts may be tried (those preferred over every
 * host that is us). Returns -1 with *error_r = "mail for DOMAIN loops back to
 * myself" when we are (one of) the best MX; the caller bounces with 5.4.6.
 */
int route_mx_usable(const struct route_self *s, const struct dns_result *r,
    const char *domain, uint16_t port, size_t *n_r, char *error, size_t errlen);

#endif
