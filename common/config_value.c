/*
 * Value syntax of the configuration: booleans, sizes, durations, domains, local
 * parts, signal names, and listen addresses ("IP:port", "[v6]:port",
 * "iface:port").
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
#include "common/signame.h"
#include "common/childproto.h"

/* ---- value syntax ---- */

void
strlist_add(struct strlist *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = xstrdup(s);
}

void
strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

bool
strlist_equal(const struct strlist *a, const struct strlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}

bool
parse_bool(const char *s, bool *v)
{
	if (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0) {
		*v = true;
		return true;
	}
	if (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0) {
		*v = false;
		return true;
	}
	return false;
}

bool
parse_uint64(const char *s, uint64_t *v)
{
	uint64_t x = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return false;
		if (x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*v = x;
	return true;
}

/* "10485760", "512K", "10M" (K and M are binary: 1024, 1024*1024) */
bool
parse_size(const char *s, uint64_t *v)
{
	size_t len = strlen(s);
	uint64_t mult = 1, x;
	char buf[32];

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len + 1);
	switch (buf[len - 1]) {
	case 'K': case 'k':
		mult = 1024;
		buf[--len] = '\0';
		break;
	case 'M': case 'm':
		mult = 1024 * 1024;
		buf[--len] = '\0';
		break;
	}
	if (!parse_uint64(buf, &x) || x > UINT64_MAX / mult)
		return false;
	*v = x * mult;
	return true;
}

/* "30", "30s", "1.5s", "5m": seconds */
bool
parse_duration(const char *s, double *v)
{
	size_t len = strlen(s), i = 0;
	double mult = 1, x = 0, frac = 0.1;
	bool digits = false;

	if (len > 0 && strchr("smhd", s[len - 1]) != NULL) {
		mult = s[len - 1] == 'm' ? 60 : s[len - 1] == 'h' ? 3600 :
		    s[len - 1] == 'd' ? 86400 : 1;
		len--;
	}
	for (; i < len && isdigit((unsigned char)s[i]); i++) {
		x = x * 10 + (s[i] - '0');
		digits = true;
	}
	if (i < len && s[i] == '.') {
		for (i++; i < len && isdigit((unsigned char)s[i]); i++) {
			x += (s[i] - '0') * frac;
			frac /= 10;
			digits = true;
		}
	}
	if (!digits || i != len || x > 1e9)
		return false;
	*v = x * mult;
	return true;
}

bool
valid_domain(const char *d)
{
	size_t label = 0, total = strlen(d);

	if (total == 0 || total > 253)
		return false;
	for (const char *p = d;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || label > 63 || p[-1] == '-')
				return false;
			if (*p == '\0')
				return true;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return false;
		if (label == 0 && *p == '-')
			return false;
		label++;
	}
}

/* lowercased, trailing dot removed: how every domain is compared */
char *
domain_canon(const char *s)
{
	char *d = xstrdup(s);
	size_t len = strlen(d);

	for (char *p = d; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	if (len > 1 && d[len - 1] == '.')
		d[len - 1] = '\0';
	return d;
}

bool
valid_localpart(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s == '@' || isspace((unsigned char)*s) || *s == '<' || *s == '>' ||
		    iscntrl((unsigned char)*s))
			return false;
	return true;
}

bool
parse_signal(const char *s, int *sig)
{
	int n = signame_parse(s);
	/* exactly the signals a child treats as a graceful stop */
	static const int stop[] = { CHILD_STOP_SIGNALS };
	for (size_t i = 0; i < sizeof(stop) / sizeof(stop[0]); i++) {
		if (n == stop[i]) {
			*sig = n;
			return true;
		}
	}
	return false;
}

char *
fmt_size(uint64_t v)
{
	if (v >= 1024 * 1024 && v % (1024 * 1024) == 0)
		return xasprintf("%lluM", (unsigned long long)(v / (1024 * 1024)));
	if (v >= 1024 && v % 1024 == 0)
		return xasprintf("%lluK", (unsigned long long)(v / 1024));
	return xasprintf("%llu", (unsigned long long)v);
}

/* ---- listen addresses ---- */

static struct ifaddrs *
loader_ifaddrs(struct loader *ld)
{
	if (!ld->ifa_done) {
		ld->ifa_done = true;
		if (getifaddrs(&ld->ifa) == -1)
			ld->ifa = NULL;
	}
	return ld->ifa;
}

/* the interface's first address, IPv4 preferred; -1: no such interface, -2: none */
static int
iface_address(struct loader *ld, const char *name, struct sockaddr_storage *ss,
    socklen_t *len)
{
	bool exists = if_nametoindex(name) != 0;
	const struct ifaddrs *v6 = NULL;

	for (const struct ifaddrs *i = loader_ifaddrs(ld); i != NULL; i = i->ifa_next) {
		if (strcmp(i->ifa_name, name) != 0)
			continue;
		exists = true;
		if (i->ifa_addr == NULL)
			continue;
		if (i->ifa_addr->sa_family == AF_INET) {
			memcpy(ss, i->ifa_addr, sizeof(struct sockaddr_in));
			*len = sizeof(struct sockaddr_in);
			return 0;
		}
		if (i->ifa_addr->sa_family == AF_INET6 && v6 == NULL)
			v6 = i;
	}
	if (v6 != NULL) {
		memcpy(ss, v6->ifa_addr, sizeof(struct sockaddr_in6));
		*len = sizeof(struct sockaddr_in6);
		return 0;
	}
	return exists ? -2 : -1;
}

static bool
parse_port(const char *s, uint16_t *port)
{
	uint64_t v;

	if (!parse_uint64(s, &v) || v < 1 || v > 65535 || strlen(s) > 5)
		return false;
	*port = (uint16_t)v;
	return true;
}

static bool
looks_numeric_v4(const char *s)
{
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s) && *s != '.')
			return false;
	return true;
}

/* "IPv4:port", "[IPv6]:port", "iface:port"; NULL, or a message for the error */
char *
listen_parse(struct loader *ld, const char *text, struct listen_addr *la)
{
	static const char forms[] = "expected IPv4:port, [IPv6]:port or interface:port";
	const char *colon;
	char host[256];
	size_t hlen;

	memset(la, 0, sizeof(*la));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':')
			return xstrdup(forms);
		colon = close + 1;
		hlen = (size_t)(close - text - 1);
		if (hlen >= sizeof(host))
			return xstrdup(forms);
		memcpy(host, text + 1, hlen);
		host[hlen] = '\0';
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || colon == text)
			return xstrdup(forms);
		hlen = (size_t)(colon - text);
		if (hlen >= sizeof(host))
			return xstrdup(forms);
		memcpy(host, text, hlen);
		host[hlen] = '\0';
		if (strchr(host, ':') != NULL)
			return xstrdup("an IPv6 address needs brackets, e.g. [::1]:25");
	}
	if (!parse_port(colon + 1, &la->port))
		return xasprintf("port '%s' is not a number from 1 to 65535", colon + 1);

	if (text[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&la->ss;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return xasprintf("'%s' is not an IPv6 address", host);
		/* the kernel refuses to bind an IPv6 socket (V6ONLY) to it */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			return xasprintf("'%s' is an IPv4-mapped address: listen on the IPv4 "
			    "address itself", host);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(la->port);
		la->sslen = sizeof(*s6);
		return NULL;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&la->ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(la->port);
		la->sslen = sizeof(*s4);
		return NULL;
	}
	if (looks_numeric_v4(host))
		return xasprintf("'%s' is not an IPv4 address", host);
	switch (iface_address(ld, host, &la->ss, &la->sslen)) {
	case -1:
		return xasprintf("no interface named '%s' (%s)", host, forms);
	case -2:
		return xasprintf("interface '%s' has no IP address", host);
	}
	if (la->ss.ss_family == AF_INET) {
		s4->sin_port = htons(la->port);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&la->ss;
		s6->sin6_port = htons(la->port);
		if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr))
			s6->sin6_scope_id = if_nametoindex(host);
	}
	la->iface = xstrdup(host);
	return NULL;
}

