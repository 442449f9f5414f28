/*
 * Lists of networks (LAN, access lists). Each entry is validated strictly here
 * (libcidr alone accepts "10" as 0.0.0.10 and netmask forms), normalised to a CIDR
 * block and parsed once with libcidr; matching is then a walk with cidr_contains().
 * An IPv4-mapped IPv6 address, as client or as entry, is treated as the IPv4 address
 * it carries, so a dual-stack socket still matches IPv4 LAN entries.
 */
#include "common/net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libcidr.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct net_entry {
	char *text;	/* as written */
	CIDR *cidr;	/* IPv4-mapped entries converted to IPv4 */
};

struct netlist {
	struct net_entry *v;
	size_t n, cap;
};

/* a parsed entry: family, address bytes (network order), prefix length */
struct net_block {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int pflen;
};

static const char net_expected[] =
    "expected an IPv4 or IPv6 address, a CIDR block (192.168.1.0/24, 2001:db8::/32) "
    "or an IPv4 address with trailing octet wildcards (192.168.1.*)";

static bool
net_parse_prefix(const char *s, int max, int *pflen_r)
{
	int v = 0;

	if (*s == '\0' || strlen(s) > 3)
		return false;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return false;
		v = v * 10 + (*s - '0');
	}
	if (v > max)
		return false;
	*pflen_r = v;
	return true;
}

/* "a.b.*.*": leading literal octets then only wildcards; at least one wildcard */
static bool
net_parse_wildcard(const char *entry, struct net_block *b)
{
	char buf[64];
	unsigned char oct[4] = { 0, 0, 0, 0 };
	int nfixed = 0, nparts = 0;
	bool wild = false;
	char *save = NULL, *tok;

	if (strchr(entry, '*') == NULL || strlen(entry) >= sizeof(buf))
		return false;
	/* reject empty parts ("1..*") that strtok would hide */
	if (entry[0] == '.' || entry[strlen(entry) - 1] == '.' ||
	    strstr(entry, "..") != NULL)
		return false;
	strcpy(buf, entry);
	for (tok = strtok_r(buf, ".", &save); tok != NULL;
	    tok = strtok_r(NULL, ".", &save)) {
		if (nparts == 4)
			return false;
		nparts++;
		if (strcmp(tok, "*") == 0) {
			wild = true;
			continue;
		}
		if (wild)	/* a literal after a wildcard: "192.*.1.1" */
			return false;
		int v = 0;
		if (strlen(tok) > 3)
			return false;
		for (const char *p = tok; *p != '\0'; p++) {
			if (!isdigit((unsigned char)*p))
				return false;
			v = v * 10 + (*p - '0');
		}
		if (v > 255)
			return false;
		oct[nfixed++] = (unsigned char)v;
	}
	if (nparts != 4 || !wild)
		return false;
	b->family = AF_INET;
	memset(b->addr, 0, sizeof(b->addr));
	memcpy(b->addr, oct, 4);
	b->pflen = nfixed * 8;
	return true;
}

static bool
net_is_v4mapped(const unsigned char *a)
{
	static const unsigned char pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(a, pfx, sizeof(pfx)) == 0;
}

static int
net_parse_entry(const char *entry, struct net_block *b)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash;
	size_t alen;

	if (entry == NULL || *entry == '\0')
		return -1;
	if (net_parse_wildcard(entry, b))
		return 0;
	slash = strchr(entry, '/');
	alen = slash != NULL ? (size_t)(slash - entry) : strlen(entry);
	if (alen == 0 || alen >= sizeof(buf))
		return -1;
	memcpy(buf, entry, alen);
	buf[alen] = '\0';
	memset(b->addr, 0, sizeof(b->addr));
	if (inet_pton(AF_INET, buf, b->addr) == 1) {
		b->family = AF_INET;
		b->pflen = 32;
	} else if (inet_pton(AF_INET6, buf, b->addr) == 1) {
		b->family = AF_INET6;
		b->pflen = 128;
	} else {
		return -1;
	}
	if (slash != NULL &&
	    !net_parse_prefix(slash + 1, b->family == AF_INET ? 32 : 128, &b->pflen))
		return -1;
	/* ::ffff:10.0.0.0/104 is the IPv4 block 10.0.0.0/8 */
	if (b->family == AF_INET6 && b->pflen >= 96 && net_is_v4mapped(b->addr)) {
		memmove(b->addr, b->addr + 12, 4);
		memset(b->addr + 4, 0, 12);
		b->family = AF_INET;
		b->pflen -= 96;
	}
	return 0;
}

/*
 * IPv6 goes to libcidr fully expanded: its parser reads uninitialised memory on
 * short compressed forms such as "::1" (seen with valgrind, libcidr 1.2.3).
 */
static CIDR *
net_block_cidr(const struct net_block *b)
{
	char text[64];
	const unsigned char *a = b->addr;

	if (b->family == AF_INET) {
		snprintf(text, sizeof(text), "%u.%u.%u.%u/%d", a[0], a[1], a[2], a[3],
		    b->pflen);
	} else {
		snprintf(text, sizeof(text), "%x:%x:%x:%x:%x:%x:%x:%x/%d",
		    a[0] << 8 | a[1], a[2] << 8 | a[3], a[4] << 8 | a[5],
		    a[6] << 8 | a[7], a[8] << 8 | a[9], a[10] << 8 | a[11],
		    a[12] << 8 | a[13], a[14] << 8 | a[15], b->pflen);
	}
	return cidr_from_str(text);
}

struct netlist *
netlist_new(void)
{
	struct netlist *nl = calloc(1, sizeof(*nl));

	if (nl == NULL)
		abort();
	return nl;
}

void
netlist_free(struct netlist *nl)
{
	if (nl == NULL)
		return;
	for (size_t i = 0; i < nl->n; i++) {
		free(nl->v[i].text);
		cidr_free(nl->v[i].cidr);
	}
	free(nl->v);
	free(nl);
}

int
netlist_add(struct netlist *nl, const char *entry, const char **error_r)
{
	struct net_block b;
	CIDR *c;

	if (net_parse_entry(entry, &b) < 0 || (c = net_block_cidr(&b)) == NULL) {
		*error_r = net_expected;
		return -1;
	}
	if (nl->n == nl->cap) {
		size_t cap = nl->cap == 0 ? 4 : nl->cap * 2;
		struct net_entry *v = realloc(nl->v, cap * sizeof(*v));
		if (v == NULL)
			abort();
		nl->v = v;
		nl->cap = cap;
	}
	nl->v[nl->n].text = strdup(entry);
	if (nl->v[nl->n].text == NULL)
		abort();
	nl->v[nl->n].cidr = c;
	nl->n++;
	return 0;
}

size_t
netlist_count(const struct netlist *nl)
{
	return nl == NULL ? 0 : nl->n;
}

const char *
netlist_entry(const struct netlist *nl, size_t i)
{
	return nl != NULL && i < nl->n ? nl->v[i].text : NULL;
}

int
net_sockaddr_parse(const char *text, uint16_t port, struct sockaddr_storage *ss,
    socklen_t *len_r)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	socklen_t len;

	memset(ss, 0, sizeof(*ss));
	if (text == NULL)
		return -1;
	if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
		len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
		len = sizeof(*v6);
	} else {
		return -1;
	}
	if (len_r != NULL)
		*len_r = len;
	return 0;
}

bool
net_sockaddr_unmap(const struct sockaddr *sa, int *family, unsigned char addr[16])
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			*family = AF_INET;
			memcpy(addr, a6->s6_addr + 12, 4);
		} else {
			*family = AF_INET6;
			memcpy(addr, a6, 16);
		}
		return true;
	}
	return false;
}

bool
net_sockaddr_same_host(const struct sockaddr *a, const struct sockaddr *b)
{
	int fa, fb;
	unsigned char xa[16], xb[16];

	return net_sockaddr_unmap(a, &fa, xa) && net_sockaddr_unmap(b, &fb, xb) &&
	    fa == fb && memcmp(xa, xb, fa == AF_INET ? 4 : 16) == 0;
}

/* the client as a libcidr host address, IPv4-mapped unwrapped; NULL if not IP */
static CIDR *
net_client_cidr(const struct sockaddr *sa)
{
	int family;
	unsigned char addr[16];

	if (!net_sockaddr_unmap(sa, &family, addr))
		return NULL;
	if (family == AF_INET) {
		struct in_addr a4;
		memcpy(&a4, addr, 4);
		return cidr_from_inaddr(&a4);
	}
	struct in6_addr a6;
	memcpy(&a6, addr, 16);
	return cidr_from_in6addr(&a6);
}

bool
netlist_match(const struct netlist *nl, const struct sockaddr *sa)
{
	CIDR *client;
	bool found = false;

	if (nl == NULL || nl->n == 0 || sa == NULL)
		return false;
	if ((client = net_client_cidr(sa)) == NULL)
		return false;
	for (size_t i = 0; i < nl->n && !found; i++) {
		if (cidr_get_proto(nl->v[i].cidr) != cidr_get_proto(client))
			continue;
		found = cidr_contains(nl->v[i].cidr, client) == 0;
	}
	cidr_free(client);
	return found;
}

bool
netlist_match_str(const struct netlist *nl, const char *ip)
{
	struct sockaddr_storage ss;

	if (net_sockaddr_parse(ip, 0, &ss, NULL) == -1)
		return false;
	return netlist_match(nl, (struct sockaddr *)&ss);
}

bool
net_entry_covers_all(const char *entry)
{
	struct net_block b;

	return net_parse_entry(entry, &b) == 0 && b.pflen == 0;
}

bool
net_sockaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
		return (a >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a6))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127;
	}
	return false;
}

const char *
net_sockaddr_ntop(const struct sockaddr *sa, char *buf, size_t len)
{
	if (sa == NULL || len == 0)
		return "?";
	int family;
	unsigned char addr[16];
	if (net_sockaddr_unmap(sa, &family, addr) &&
	    inet_ntop(family, addr, buf, (socklen_t)len) != NULL)
		return buf;
	snprintf(buf, len, "?");
	return buf;
}

/* ---- the union of a list's entries ---- */

typedef unsigned __int128 net_u128;

struct net_range {
	net_u128 lo, hi;	/* inclusive */
};

/* addresses no stranger on the Internet connects from: private, loopback,
   link-local, shared (CGN), multicast and reserved space */
static const char *const net_nonpublic4[] = {
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3",
};
static const char *const net_nonpublic6[] = {
	"::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
};

static struct net_range
net_block_range(const struct net_block *b)
{
	int bits = b->family == AF_INET ? 32 : 128;
	net_u128 v = 0, span;
	struct net_range r;

	for (int i = 0; i < bits / 8; i++)
		v = v << 8 | b->addr[i];
	/* the host bits (all of them for /0: two shifts, never one by 128) */
	span = b->pflen == 0 ? ~(net_u128)0 >> (128 - bits) :
	    (((net_u128)1 << (bits - b->pflen)) - 1);
	r.lo = v & ~span;
	r.hi = r.lo | span;
	return r;
}

static int
net_range_cmp(const void *a, const void *b)
{
	const struct net_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* sorted, merged ranges of the family's entries; returns how many */
static size_t
net_union(const struct netlist *nl, int family, struct net_range *v)
{
	size_t n = 0, m = 0;

	for (size_t i = 0; i < netlist_count(nl); i++) {
		struct net_block b;
		if (net_parse_entry(nl->v[i].text, &b) == 0 && b.family == family)
			v[n++] = net_block_range(&b);
	}
	qsort(v, n, sizeof(*v), net_range_cmp);
	for (size_t i = 0; i < n; i++) {
		if (m > 0 && (v[m - 1].hi == ~(net_u128)0 || v[i].lo <= v[m - 1].hi + 1)) {
			if (v[i].hi > v[m - 1].hi)
				v[m - 1].hi = v[i].hi;
		} else {
			v[m++] = v[i];
		}
	}
	return m;
}

/* public addresses in the merged ranges, saturating */
static net_u128
net_public_count(const struct net_range *v, size_t n, const char *const *np, size_t nnp)
{
	struct net_range holes[8];
	net_u128 total = 0;

	for (size_t i = 0; i < nnp; i++) {
		struct net_block b;
		if (net_parse_entry(np[i], &b) < 0)
			abort();
		holes[i] = net_block_range(&b);
	}
	qsort(holes, nnp, sizeof(*holes), net_range_cmp);
	for (size_t i = 0; i < n; i++) {
		net_u128 cur = v[i].lo;
		bool done = false;
		for (size_t h = 0; h < nnp && !done; h++) {
			if (holes[h].hi < cur || holes[h].lo > v[i].hi)
				continue;
			if (holes[h].lo > cur)
				total += holes[h].lo - cur;
			if (holes[h].hi >= v[i].hi)
				done = true;
			else
				cur = holes[h].hi + 1;
		}
		if (!done) {
			net_u128 add = v[i].hi - cur;
			total += add == ~(net_u128)0 ? add : add + 1;
		}
	}
	return total;
}

int
netlist_public_span(const struct netlist *nl)
{
	size_t n = netlist_count(nl);
	struct net_range *v;
	int wide = 0;

	if (n == 0)
		return 0;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		abort();
	size_t m = net_union(nl, AF_INET, v);
	if (net_public_count(v, m, net_nonpublic4,
	    sizeof(net_nonpublic4) / sizeof(net_nonpublic4[0])) > (net_u128)1 << 24)
		wide = AF_INET;
	m = net_union(nl, AF_INET6, v);
	if (wide == 0 && net_public_count(v, m, net_nonpublic6,
	    sizeof(net_nonpublic6) / sizeof(net_nonpublic6[0])) > (net_u128)1 << 112)
		wide = AF_INET6;
	free(v);
	return wide;
}

/*
 * Over-wide for a LAN (a warning, not an error): covers everything, or holds
 * a public /8 worth of IPv4 addresses (16 million strangers), or more public
 * IPv6 space than a /16 (more than a whole RIR allocation). Private and other
 * non-public space (net_nonpublic4/6) does not count.
 */
bool
net_entry_overwide(const char *entry)
{
	struct net_block b;
	struct net_range r;

	if (net_parse_entry(entry, &b) < 0)
		return false;
	if (b.pflen == 0)
		return true;
	r = net_block_range(&b);
	if (b.family == AF_INET)
		return net_public_count(&r, 1, net_nonpublic4,
		    sizeof(net_nonpublic4) / sizeof(net_nonpublic4[0])) >= (net_u128)1 << 24;
	return net_public_count(&r, 1, net_nonpublic6,
	    sizeof(net_nonpublic6) / sizeof(net_nonpublic6[0])) > (net_u128)1 << 112;
}
