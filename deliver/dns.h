/*
 * Asynchronous DNS for delivery: c-ares (Debian libc-ares-dev) driven by a libev loop,
 * so a lookup never blocks the agent's other sessions.
 *
 * dns_resolve_mx(domain) does what RFC 5321 5.1 asks of an SMTP client: the MX
 * records, in preference order with a random order among equal preferences; no MX
 * (NOERROR/NODATA) means the domain itself is the only host ("implicit MX", its
 * A/AAAA records); a null MX (RFC 7505, a single "0 .") is reported as DNS_NULLMX
 * (bounce at once, 5.1.10); then the IPv4 and IPv6 addresses of every host.
 * dns_resolve_host(host) is the A/AAAA half alone, for a bracketed next hop.
 *
 * Outcomes are what the queue manager needs to decide: DNS_NOTFOUND (NXDOMAIN, or no
 * address anywhere: bounce, 5.1.2 / 5.4.4) and DNS_TEMPFAIL (SERVFAIL, REFUSED,
 * timeout, network: defer, 4.4.3) are kept apart. A host is usable when it has at
 * least one address; an MX list whose hosts all failed is TEMPFAIL when any failure
 * was temporary, else NOTFOUND.
 *
 * Servers: dns_params.servers ("127.0.0.1:5353", "[::1]:53", "192.0.2.53"), default
 * /etc/resolv.conf. Queries go to DNS only (no search list; /etc/hosts is consulted
 * for dns_resolve_host names only, as Postfix's native lookups would).
 *
 * Driver: d = dns_new(loop, &params, &err) once per agent; q = dns_resolve_mx(d,
 * domain, cb, arg); cb(arg, result) runs later from the loop (never inside
 * dns_resolve_*), exactly once unless dns_cancel(q) came first; the result is valid
 * during the callback only. dns_free() cancels what is pending without callbacks.
 */
#ifndef RELAYVISOR_DNS_H
#define RELAYVISOR_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct ev_loop;

struct dns_params {
	const char *const *servers;	/* NULL or empty: /etc/resolv.conf */
	size_t n_servers;
	unsigned timeout_ms;		/* per try, default 3000 */
	unsigned tries;			/* default 3 */
	bool no_ipv4, no_ipv6;		/* Postfix's inet_protocols */
	unsigned max_hosts;		/* MX hosts kept, default 10 */
	/* uniform random integer for the shuffle among equal preferences; NULL:
	   random(3) */
	long (*rand)(void);
};

enum dns_status {
	DNS_OK,
	DNS_NOTFOUND,	/* NXDOMAIN, or no host with an address: bounce */
	DNS_NULLMX,	/* RFC 7505: the domain accepts no mail: bounce */
	DNS_TEMPFAIL,	/* SERVFAIL, timeout, ...: defer */
};

struct dns_addr {
	struct sockaddr_storage ss;	/* port 0: the caller sets it */
	socklen_t len;
};

struct dns_host {
	char name[256];
	int pref;			/* MX preference; 0 for an implicit MX */
	enum dns_status status;		/* of its address lookups */
	struct dns_addr *addrs;		/* IPv6 first, then IPv4 */
	size_t n_addrs;
};

struct dns_result {
	enum dns_status status;
	bool mx_found;			/* false: implicit MX or dns_resolve_host */
	/* "Host not found", "Host not found, try again", ..., for logs and DSNs:
	   "Name service error for name=example.com type=MX: Host not found, try again" */
	char error[400];
	struct dns_host *hosts;		/* delivery order */
	size_t n_hosts;
};

struct dns;
struct dns_query;
typedef void dns_cb(void *arg, const struct dns_result *res);

struct dns *dns_new(struct ev_loop *loop, const struct dns_params *p, const char **error_r);
void dns_free(struct dns *d);
struct dns_query *dns_resolve_mx(struct dns *d, const char *domain, dns_cb *cb, void *arg);
struct dns_query *dns_resolve_host(struct dns *d, const char *host, dns_cb *cb, void *arg);
void dns_cancel(struct dns_query *q);
const char *dns_status_name(enum dns_status st);

#endif
