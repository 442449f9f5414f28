/*
 * Next-hop parsing, the routing decision and the "is it me" test (route.h).
 * Tables are small arrays searched linearly: a few dozen routes at most, looked up
 * once per recipient domain by the qmgr.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "common/xmalloc.h"
#include "deliver/dns.h"
#include "deliver/route.h"

struct route_entry {
	char *pattern;		/* lowercased; leading '.' = subdomains */
	struct nexthop nh;
};

struct route_table {
	char **local;
	size_t n_local;
	bool has_local_nh, has_relayhost;
	struct nexthop local_nh, relayhost;
	struct route_entry *routes;
	size_t n_routes;
};

struct self_addr {
	struct sockaddr_storage ss;
	uint16_t port;
};

struct route_self {
	char *hostname;
	struct self_addr *addrs;
	size_t n;
};

/* letters, digits, '-', '_' in dot-separated labels of 1-63; 253 in all */
static bool
hostname_valid(const char *s)
{
	size_t len = strlen(s), label = 0;

	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(ch) && ch != '-' && ch != '_')
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

static bool
is_ip(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static int
parse_port(const char *s, uint16_t *port, const char **error_r)
{
	unsigned long v = 0;

	if (*s == '\0') {
		*error_r = "expected a port number after ':'";
		return -1;
	}
	for (const char *p = s; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p) || (v = v * 10 + (unsigned)(*p - '0')) > 65535) {
			*error_r = "expected a port number 1-65535";
			return -1;
		}
	}
	if (v == 0) {
		*error_r = "expected a port number 1-65535";
		return -1;
	}
	*port = (uint16_t)v;
	return 0;
}

/* "[host]:port", "[host]", "host:port", "host" into nh->host/port/mx/literal */
static int
parse_hostport(const char *s, struct nexthop *nh, bool mx_allowed, const char **error_r)
{
	const char *port = NULL;
	size_t hlen;

	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL) {
			*error_r = "missing ']' after the host";
			return -1;
		}
		hlen = (size_t)(close - s - 1);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0') {
			*error_r = "expected ':port' or nothing after ']'";
			return -1;
		}
		s++;
		nh->mx = false;
	} else {
		const char *colon = strrchr(s, ':');
		if (colon != NULL && strchr(s, ':') != colon) {
			*error_r = "an IPv6 address must be written in brackets: [2001:db8::1]:25";
			return -1;
		}
		hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
		if (colon != NULL)
			port = colon + 1;
		nh->mx = mx_allowed;
	}
	if (hlen == 0 || hlen > ROUTE_HOST_MAX) {
		*error_r = hlen == 0 ? "expected a host name or address" : "host name too long";
		return -1;
	}
	memcpy(nh->host, s, hlen);
	nh->host[hlen] = '\0';
	if (strncasecmp(nh->host, "ipv6:", 5) == 0)	/* RFC 5321 literal form */
		memmove(nh->host, nh->host + 5, hlen - 4);
	else if (hlen > 1 && nh->host[hlen - 1] == '.')	/* absolute name */
		nh->host[hlen - 1] = '\0';
	if (is_ip(nh->host)) {
		nh->literal = true;
		nh->mx = false;
	} else if (!hostname_valid(nh->host)) {
		*error_r = "expected a host name (letters, digits, '-', dots) or an IP address";
		return -1;
	} else {
		for (char *p = nh->host; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	if (port != NULL && parse_port(port, &nh->port, error_r) == -1)
		return -1;
	return 0;
}

static int
parse_maildir(const char *s, struct nexthop *nh, const char **error_r)
{
	if (s[0] != '/') {
		*error_r = "maildir: expected an absolute path, e.g. maildir:/var/mail/%d/%u";
		return -1;
	}
	if (strlen(s) >= sizeof(nh->path)) {
		*error_r = "maildir: path too long";
		return -1;
	}
	for (const char *p = s; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*error_r = "maildir: control character in the path";
			return -1;
		}
		if (*p == '%') {
			if (p[1] != 'd' && p[1] != 'u' && p[1] != '%') {
				*error_r = "maildir: only %d (domain), %u (local part) and %% may follow '%'";
				return -1;
			}
			p++;
		}
	}
	for (const char *p = s; (p = strstr(p, "/..")) != NULL; p += 3)
		if (p[3] == '/' || p[3] == '\0') {
			*error_r = "maildir: '..' in the path";
			return -1;
		}
	nh->kind = NH_MAILDIR;
	snprintf(nh->path, sizeof(nh->path), "%s", s);
	return 0;
}

int
route_parse_nexthop(const char *s, struct nexthop *nh, const char **error_r)
{
	memset(nh, 0, sizeof(*nh));
	if (s == NULL || *s == '\0') {
		*error_r = "expected a next hop: [host]:port, host, lmtp:unix:/path, "
		    "lmtp:HOST:PORT or maildir:/path/%d/%u";
		return -1;
	}
	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
			*error_r = "white space or control character in the next hop";
			return -1;
		}
	if (strncasecmp(s, "maildir:", 8) == 0)
		return parse_maildir(s + 8, nh, error_r);
	if (strncasecmp(s, "lmtp:", 5) == 0) {
		s += 5;
		if (strncasecmp(s, "unix:", 5) == 0) {
			s += 5;
			if (s[0] != '/') {
				*error_r = "lmtp:unix: expected an absolute socket path";
				return -1;
			}
			if (strlen(s) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
				*error_r = "lmtp:unix: socket path too long (107 octets at most)";
				return -1;
			}
			nh->kind = NH_LMTP_UNIX;
			snprintf(nh->path, sizeof(nh->path), "%s", s);
			return 0;
		}
		if (strncasecmp(s, "inet:", 5) == 0)
			s += 5;
		nh->kind = NH_LMTP_INET;
		nh->port = 24;
		return parse_hostport(s, nh, false, error_r);
	}
	if (strncasecmp(s, "smtp:", 5) == 0)
		s += 5;
	nh->kind = NH_SMTP;
	nh->port = 25;
	return parse_hostport(s, nh, true, error_r);
}

void
route_nexthop_name(const struct nexthop *nh, char *buf, size_t len)
{
	switch (nh->kind) {
	case NH_SMTP:
		if (nh->mx)
			snprintf(buf, len, "smtp:%s:%u", nh->host, nh->port);
		else
			snprintf(buf, len, "smtp:[%s]:%u", nh->host, nh->port);
		return;
	case NH_LMTP_INET:
		snprintf(buf, len, "lmtp:[%s]:%u", nh->host, nh->port);
		return;
	case NH_LMTP_UNIX:
		snprintf(buf, len, "lmtp:unix:%s", nh->path);
		return;
	case NH_MAILDIR:
		snprintf(buf, len, "maildir:%s", nh->path);
		return;
	}
}

struct route_table *
route_table_new(void)
{
	return xcalloc(1, sizeof(struct route_table));
}

void
route_table_free(struct route_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_local; i++)
		free(t->local[i]);
	free(t->local);
	for (size_t i = 0; i < t->n_routes; i++)
		free(t->routes[i].pattern);
	free(t->routes);
	free(t);
}

/* lowercase, trailing dot dropped; NULL when not a domain */
static char *
domain_canon(const char *d, bool allow_leading_dot)
{
	size_t len = strlen(d);
	const char *body;

	if (len > 0 && d[len - 1] == '.')
		len--;
	char *c = xstrndup(d, len);
	for (char *p = c; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	body = c;
	if (allow_leading_dot && *body == '.')
		body++;
	if (!hostname_valid(body)) {
		free(c);
		return NULL;
	}
	return c;
}

int
route_add_local_domain(struct route_table *t, const char *domain, const char **error_r)
{
	char *c = domain_canon(domain, false);

	if (c == NULL) {
		*error_r = "expected a domain name";
		return -1;
	}
	t->local = xreallocarray(t->local, t->n_local + 1, sizeof(*t->local));
	t->local[t->n_local++] = c;
	return 0;
}

int
route_set_local(struct route_table *t, const char *nexthop, const char **error_r)
{
	if (route_parse_nexthop(nexthop, &t->local_nh, error_r) == -1)
		return -1;
	t->has_local_nh = true;
	return 0;
}

int
route_set_relayhost(struct route_table *t, const char *nexthop, const char **error_r)
{
	struct nexthop nh;

	if (route_parse_nexthop(nexthop, &nh, error_r) == -1)
		return -1;
	if (nh.kind == NH_MAILDIR) {
		*error_r = "a relayhost is an SMTP or LMTP server, not a maildir";
		return -1;
	}
	t->relayhost = nh;
	t->has_relayhost = true;
	return 0;
}

int
route_add(struct route_table *t, const char *pattern, const char *nexthop,
    const char **error_r)
{
	struct nexthop nh;
	char *c = domain_canon(pattern, true);

	if (c == NULL) {
		*error_r = "expected a domain (example.net) or .domain (its subdomains)";
		return -1;
	}
	if (route_parse_nexthop(nexthop, &nh, error_r) == -1) {
		free(c);
		return -1;
	}
	for (size_t i = 0; i < t->n_routes; i++)
		if (strcmp(t->routes[i].pattern, c) == 0) {
			free(c);
			*error_r = "route defined twice";
			return -1;
		}
	t->routes = xreallocarray(t->routes, t->n_routes + 1, sizeof(*t->routes));
	t->routes[t->n_routes].pattern = c;
	t->routes[t->n_routes].nh = nh;
	t->n_routes++;
	return 0;
}

bool
route_is_local(const struct route_table *t, const char *domain)
{
	size_t len = strlen(domain);

	if (len > 0 && domain[len - 1] == '.')
		len--;
	for (size_t i = 0; i < t->n_local; i++)
		if (strlen(t->local[i]) == len && strncasecmp(t->local[i], domain, len) == 0)
			return true;
	return false;
}

static const struct route_entry *
route_lookup(const struct route_table *t, const char *d, bool subdomain)
{
	for (size_t i = 0; i < t->n_routes; i++) {
		const char *p = t->routes[i].pattern;
		if (subdomain ? (p[0] == '.' && strcmp(p + 1, d) == 0) : strcmp(p, d) == 0)
			return &t->routes[i];
	}
	return NULL;
}

int
route_decide(const struct route_table *t, const char *domain, struct route_result *r,
    const char **error_r)
{
	char d[ROUTE_HOST_MAX + 1];
	size_t len = strlen(domain);

	memset(r, 0, sizeof(*r));
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len >= sizeof(d)) {
		*error_r = "empty or overlong recipient domain";
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		d[i] = (char)tolower((unsigned char)domain[i]);
	d[len] = '\0';

	if (route_is_local(t, d)) {
		if (!t->has_local_nh) {
			*error_r = "local domain but no local transport configured";
			return -1;
		}
		r->via = ROUTE_LOCAL;
		r->nh = t->local_nh;
		return 0;
	}
	if (d[0] != '[') {
		const struct route_entry *e = route_lookup(t, d, false);
		/* then ".parent" entries, nearest parent first */
		for (const char *p = d; e == NULL && (p = strchr(p, '.')) != NULL; p++)
			e = route_lookup(t, p + 1, true);
		if (e != NULL) {
			r->via = ROUTE_ROUTES;
			r->nh = e->nh;
			r->matched = e->pattern;
			return 0;
		}
	}
	if (t->has_relayhost) {
		r->via = ROUTE_RELAYHOST;
		r->nh = t->relayhost;
		return 0;
	}
	r->via = ROUTE_DIRECT;
	r->nh.kind = NH_SMTP;
	r->nh.port = 25;
	if (d[0] == '[') {
		/* address literal: "[192.0.2.1]" or "[ipv6:2001:db8::1]" */
		char *close = strchr(d, ']');
		const char *a = d + 1;
		if (close == NULL || close[1] != '\0') {
			*error_r = "malformed address literal";
			return -1;
		}
		*close = '\0';
		if (strncmp(a, "ipv6:", 5) == 0)
			a += 5;
		if (!is_ip(a)) {
			*error_r = "malformed address literal";
			return -1;
		}
		snprintf(r->nh.host, sizeof(r->nh.host), "%s", a);
		r->nh.literal = true;
		return 0;
	}
	if (!hostname_valid(d)) {
		*error_r = "recipient domain is not a host name";
		return -1;
	}
	snprintf(r->nh.host, sizeof(r->nh.host), "%s", d);
	r->nh.mx = true;
	return 0;
}

struct route_self *
route_self_new(const char *hostname)
{
	struct route_self *s = xcalloc(1, sizeof(*s));

	s->hostname = domain_canon(hostname != NULL ? hostname : "", false);
	return s;
}

void
route_self_free(struct route_self *s)
{
	if (s == NULL)
		return;
	free(s->hostname);
	free(s->addrs);
	free(s);
}

void
route_self_add(struct route_self *s, const struct sockaddr *sa, uint16_t port)
{
	size_t len = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : 0;

	if (len == 0)
		return;
	s->addrs = xreallocarray(s->addrs, s->n + 1, sizeof(*s->addrs));
	memset(&s->addrs[s->n], 0, sizeof(s->addrs[s->n]));
	memcpy(&s->addrs[s->n].ss, sa, len);
	s->addrs[s->n].port = port;
	s->n++;
}

int
route_self_add_interfaces(struct route_self *s)
{
	struct ifaddrs *ifa, *i;

	if (getifaddrs(&ifa) == -1)
		return -1;
	for (i = ifa; i != NULL; i = i->ifa_next)
		if (i->ifa_addr != NULL)
			route_self_add(s, i->ifa_addr, 0);
	freeifaddrs(ifa);
	return 0;
}

/* the same address; an IPv4-mapped IPv6 address equals its IPv4 form */
static bool
same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
	const unsigned char *pa, *pb;
	unsigned char ma[16], mb[16];
	size_t la, lb;

	if (a->sa_family == AF_INET) {
		memset(ma, 0, 10), ma[10] = ma[11] = 0xff;
		memcpy(ma + 12, &((const struct sockaddr_in *)a)->sin_addr, 4);
		pa = ma, la = 16;
	} else {
		pa = (const unsigned char *)&((const struct sockaddr_in6 *)a)->sin6_addr, la = 16;
	}
	if (b->sa_family == AF_INET) {
		memset(mb, 0, 10), mb[10] = mb[11] = 0xff;
		memcpy(mb + 12, &((const struct sockaddr_in *)b)->sin_addr, 4);
		pb = mb, lb = 16;
	} else {
		pb = (const unsigned char *)&((const struct sockaddr_in6 *)b)->sin6_addr, lb = 16;
	}
	return la == lb && memcmp(pa, pb, la) == 0;
}

bool
route_is_self(const struct route_self *s, const char *host, const struct sockaddr *sa,
    uint16_t port)
{
	if (host != NULL && s->hostname != NULL) {
		size_t len = strlen(host);
		if (len > 0 && host[len - 1] == '.')
			len--;
		if (strlen(s->hostname) == len && strncasecmp(s->hostname, host, len) == 0)
			return true;
	}
	if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return false;
	for (size_t i = 0; i < s->n; i++)
		if ((s->addrs[i].port == 0 || s->addrs[i].port == port) &&
		    same_addr((const struct sockaddr *)&s->addrs[i].ss, sa))
			return true;
	return false;
}

int
route_mx_usable(const struct route_self *s, const struct dns_result *r,
    const char *domain, uint16_t port, size_t *n_r, char *error, size_t errlen)
{
	size_t n = r->n_hosts;

	for (size_t i = 0; i < r->n_hosts; i++) {
		const struct dns_host *h = &r->hosts[i];
		bool me = route_is_self(s, h->name, NULL, port);
		for (size_t k = 0; !me && k < h->n_addrs; k++)
			me = route_is_self(s, NULL, (const struct sockaddr *)&h->addrs[k].ss, port);
		if (!me)
			continue;
		/* hosts are in preference order: keep those strictly better than us */
		n = i;
		while (n > 0 && r->hosts[n - 1].pref >= h->pref)
			n--;
		break;
	}
	*n_r = n;
	if (n == 0 && r->n_hosts > 0) {
		snprintf(error, errlen, "mail for %s loops back to myself", domain);
		return -1;
	}
	return 0;
}
