/*
 * RFC 5321 4.1.2 paths, parsed into a canonical form the relay policy can trust.
 *
 * The parser is strict where leniency could be abused and lenient only where the
 * result stays unambiguous: the domain is what follows the last '@' outside quotes,
 * so "<a@b@c>" parses with local part "a@b" (route_chars set) instead of being
 * misread as a route; the policy then refuses it. Nothing in a local part is ever
 * re-interpreted (no percent hack, no bang paths), and the canonical text re-quotes
 * any local part that is not a dot-atom, so what we log or relay is what we decided
 * on. Control characters, NUL, 8-bit octets (no SMTPUTF8 yet), spaces outside quotes
 * and backslashes outside quotes are refused.
 */
#include "common/address.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DNS_LABEL_MAX 63

static int
fail(const char **error_r, const char *msg)
{
	if (error_r != NULL)
		*error_r = msg;
	return -1;
}

static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 5322 atext */
static bool
is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static unsigned char
to_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool
has_route_char(const char *s)
{
	return strpbrk(s, "@%!") != NULL;
}

/*
 * RFC 5321 Domain: sub-domains of letters, digits and inner hyphens, each 1-63
 * octets, one trailing dot tolerated (and dropped). Writes the lowercased domain
 * to out (size ADDR_DOMAIN_MAX + 1) when out is not NULL.
 */
static int
parse_domain_name(const char *s, size_t len, char *out, const char **error_r)
{
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0)
		return fail(error_r, "missing domain");
	if (len > ADDR_DOMAIN_MAX)
		return fail(error_r, "domain too long");
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return fail(error_r, "bad domain syntax");
			label = 0;
			continue;
		}
		if (is_alpha(c) || is_digit(c)) {
			label++;
		} else if (c == '-') {
			if (label == 0)
				return fail(error_r, "bad domain syntax");
			label++;
		} else {
			return fail(error_r, "bad character in domain");
		}
		if (label > DNS_LABEL_MAX)
			return fail(error_r, "domain label too long");
	}
	if (label == 0 || s[len - 1] == '-')
		return fail(error_r, "bad domain syntax");
	if (out != NULL) {
		for (size_t i = 0; i < len; i++)
			out[i] = (char)to_lower((unsigned char)s[i]);
		out[len] = '\0';
	}
	return 0;
}

/*
 * "[192.0.2.1]" or "[IPv6:2001:db8::1]" (tag any case), checked with inet_pton and
 * written back in inet_ntop form so that equal addresses compare equal as text.
 * General-address-literals ("[tag:...]") are refused: nothing here could route them.
 */
static int
parse_domain_literal(const char *s, size_t len, char *out, const char **error_r)
{
	char buf[INET6_ADDRSTRLEN + 8], ntop[INET6_ADDRSTRLEN];
	bool v6 = false;

	if (len < 2 || s[0] != '[' || s[len - 1] != ']')
		return fail(error_r, "bad address literal");
	s++;
	len -= 2;
	if (len >= 5 && strncasecmp(s, "IPv6:", 5) == 0) {
		v6 = true;
		s += 5;
		len -= 5;
	}
	if (len == 0 || len >= sizeof(buf))
		return fail(error_r, "bad address literal");
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (v6) {
		struct in6_addr a6;
		if (inet_pton(AF_INET6, buf, &a6) != 1 ||
		    inet_ntop(AF_INET6, &a6, ntop, sizeof(ntop)) == NULL)
			return fail(error_r, "bad IPv6 address literal");
		snprintf(out, ADDR_DOMAIN_MAX + 1, "[ipv6:%s]", ntop);
	} else {
		struct in_addr a4;
		if (inet_pton(AF_INET, buf, &a4) != 1 ||
		    inet_ntop(AF_INET, &a4, ntop, sizeof(ntop)) == NULL)
			return fail(error_r, memchr(buf, ':', len) != NULL ?
			    "unsupported address literal" : "bad IPv4 address literal");
		snprintf(out, ADDR_DOMAIN_MAX + 1, "[%s]", ntop);
	}
	return 0;
}

/* position of the closing quote of the quoted string opening at s[i], or len */
static size_t
quote_end(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i;
	}
	return len;
}

/*
 * Local-part = Dot-string / Quoted-string. A dot-string here may also hold '@'
 * (the lenient several-'@' case, see the file comment); it may not mix quoted and
 * unquoted words. The canonical local part (quotes and escapes removed) goes to
 * a->local. The 64-octet limit applies to the local part as sent.
 */
static int
parse_local(const char *s, size_t len, struct mailaddr *a, const char **error_r)
{
	size_t n = 0;

	if (len == 0)
		return fail(error_r, "empty local part");
	if (len > ADDR_LOCAL_MAX)
		return fail(error_r, "local part too long");
	if (s[0] == '"') {
		if (quote_end(s, len, 0) != len - 1)
			return fail(error_r, "bad local part syntax");
		for (size_t i = 1; i < len - 1; i++) {
			char c = s[i];
			if (c == '\\')
				c = s[++i];
			a->local[n++] = c;
		}
		if (n == 0)
			return fail(error_r, "empty local part");
	} else {
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == '.') {
				if (i == 0 || i == len - 1 || s[i - 1] == '.')
					return fail(error_r, "bad local part syntax");
			} else if (!is_atext(c) && c != '@') {
				return fail(error_r, "bad local part syntax");
			}
			a->local[n++] = (char)c;
		}
	}
	a->local[n] = '\0';
	a->route_chars = has_route_char(a->local);
	return 0;
}

/* a dot-atom needs no quotes */
static bool
is_dot_atom(const char *s)
{
	if (*s == '\0' || *s == '.')
		return false;
	for (; *s != '\0'; s++) {
		if (*s == '.') {
			if (s[1] == '.' || s[1] == '\0')
				return false;
		} else if (!is_atext((unsigned char)*s)) {
			return false;
		}
	}
	return true;
}

/* the local part as it must be written on the wire: quoted when not a dot-atom */
static int
format_local(const char *local, char *out, size_t size)
{
	size_t n = 0;

	if (is_dot_atom(local)) {
		n = strlen(local);
		if (n >= size)
			return -1;
		memcpy(out, local, n + 1);
		return 0;
	}
	if (size < 3)
		return -1;
	out[n++] = '"';
	for (; *local != '\0'; local++) {
		if (n + 4 > size)
			return -1;
		if (*local == '"' || *local == '\\')
			out[n++] = '\\';
		out[n++] = *local;
	}
	out[n++] = '"';
	out[n] = '\0';
	return 0;
}

/* A-d-l = At-domain *( "," At-domain ), then ':'. Returns the octets consumed. */
static int
skip_source_route(const char *s, size_t len, size_t *used, const char **error_r)
{
	size_t i = 0;

	for (;;) {
		if (i >= len || s[i] != '@')
			return fail(error_r, "bad source route");
		size_t start = ++i;
		while (i < len && s[i] != ',' && s[i] != ':')
			i++;
		if (i >= len)
			return fail(error_r, "bad source route");
		if (parse_domain_name(s + start, i - start, NULL, error_r) < 0)
			return fail(error_r, "bad source route");
		if (s[i++] == ':')
			break;
	}
	*used = i;
	return 0;
}

/* Mailbox (or a bare local part): split at the last '@' outside quotes. */
static int
parse_mailbox(const char *s, size_t len, struct mailaddr *a, const char **error_r)
{
	size_t at = len;

	if (len == 0)
		return fail(error_r, "missing mailbox");
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"')
			i = quote_end(s, len, i);
		else if (s[i] == '@')
			at = i;
	}
	if (parse_local(s, at, a, error_r) < 0)
		return -1;
	if (at == len) {
		a->bare = true;
		return 0;
	}
	const char *d = s + at + 1;
	size_t dlen = len - at - 1;
	if (dlen > 0 && d[0] == '[') {
		a->domain_literal = true;
		return parse_domain_literal(d, dlen, a->domain, error_r);
	}
	return parse_domain_name(d, dlen, a->domain, error_r);
}

int
address_parse_path(const char *s, size_t len, struct mailaddr *a, size_t *end,
    const char **error_r)
{
	size_t i;
	bool in_quote = false;

	memset(a, 0, sizeof(*a));
	if (len == 0 || s[0] != '<')
		return fail(error_r, "missing <");
	/* find the closing '>' and refuse octets that have no place in a path */
	for (i = 1; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\0')
			return fail(error_r, "NUL in address");
		if (c < 32 || c == 127)
			return fail(error_r, "control character in address");
		if (c >= 128)
			return fail(error_r, "8-bit character in address");
		if (in_quote) {
			if (c == '"') {
				in_quote = false;
			} else if (c == '\\') {
				if (i + 1 >= len)
					return fail(error_r, "unbalanced quote");
				c = (unsigned char)s[++i];
				if (c < 32 || c >= 127)
					return fail(error_r, "bad escape in quoted string");
			}
			continue;
		}
		if (c == '>')
			break;
		if (c == '"')
			in_quote = true;
		else if (c == ' ')
			return fail(error_r, "space in address");
		else if (c == '\\')
			return fail(error_r, "backslash outside quotes");
		else if (c == '<')
			return fail(error_r, "unexpected <");
	}
	if (in_quote)
		return fail(error_r, "unbalanced quote");
	if (i >= len)
		return fail(error_r, "missing >");
	if (i + 1 > ADDR_PATH_MAX)
		return fail(error_r, "address too long");

	const char *p = s + 1;
	size_t plen = i - 1;
	if (plen == 0) {
		a->null = true;
		*end = i + 1;
		return 0;
	}
	if (p[0] == '@') {
		size_t used;
		if (skip_source_route(p, plen, &used, error_r) < 0)
			return -1;
		a->had_source_route = true;
		p += used;
		plen -= used;
	}
	if (parse_mailbox(p, plen, a, error_r) < 0)
		return -1;

	char local[2 * ADDR_LOCAL_MAX + 3];
	if (format_local(a->local, local, sizeof(local)) < 0)
		return fail(error_r, "address too long");
	/* the limit holds for what we store and send on, too: a local part that
	   needs quotes once canonical (e.g. one holding '@') may grow past it */
	if (strlen(local) > ADDR_LOCAL_MAX)
		return fail(error_r, "local part too long");
	int n = a->bare ? snprintf(a->text, sizeof(a->text), "%s", local) :
	    snprintf(a->text, sizeof(a->text), "%s@%s", local, a->domain);
	if (n < 0 || (size_t)n >= sizeof(a->text) || (size_t)n + 2 > ADDR_PATH_MAX)
		return fail(error_r, "address too long");
	*end = i + 1;
	return 0;
}

int
address_parse(const char *s, struct mailaddr *a, const char **error_r)
{
	size_t len = strlen(s), end;

	if (address_parse_path(s, len, a, &end, error_r) < 0)
		return -1;
	if (end != len) {
		memset(a, 0, sizeof(*a));
		return fail(error_r, "garbage after address");
	}
	return 0;
}

bool
address_is_postmaster(const struct mailaddr *a)
{
	return !a->null && strcasecmp(a->local, "postmaster") == 0;
}

/*
 * A pattern goes through the same parser as addresses, so case, trailing dots and
 * literal spellings compare canonically. "@domain" and "@.domain" are parsed as
 * "<x@domain>"; a full pattern must have a domain (a bare one would match bare
 * recipients only, which the policy never relays).
 */
static bool
parse_pattern(const char *pattern, struct mailaddr *p, bool *domain_only,
    bool *subdomains)
{
	char buf[ADDR_PATH_MAX + 8];
	int n;

	*domain_only = *subdomains = false;
	if (pattern == NULL || pattern[0] == '\0')
		return false;
	if (pattern[0] == '@') {
		*domain_only = true;
		pattern++;
		if (pattern[0] == '.') {
			*subdomains = true;
			pattern++;
		}
		n = snprintf(buf, sizeof(buf), "<x@%s>", pattern);
		if (n < 0 || (size_t)n >= sizeof(buf) || address_parse(buf, p, NULL) < 0)
			return false;
		/* "@@x" or "@a@b" is no domain */
		if (strcmp(p->local, "x") != 0 || p->had_source_route)
			return false;
		return !(*subdomains && p->domain_literal);
	}
	n = snprintf(buf, sizeof(buf), "<%s>", pattern);
	if (n < 0 || (size_t)n >= sizeof(buf) || address_parse(buf, p, NULL) < 0)
		return false;
	return !p->bare && !p->had_source_route;
}

/* "@." is every domain: accepted so that a profile saying so is matched as it reads
   (and caught by the open-relay interlock), never silently ignored */
static bool
pattern_is_everything(const char *pattern)
{
	return pattern != NULL && strcmp(pattern, "@.") == 0;
}

bool
address_pattern_canon(const char *pattern, char *out, size_t outlen)
{
	struct mailaddr p;
	bool domain_only, subdomains;
	int n;

	if (pattern_is_everything(pattern))
		n = snprintf(out, outlen, "@.");
	else if (!parse_pattern(pattern, &p, &domain_only, &subdomains))
		return false;
	else if (domain_only)
		n = snprintf(out, outlen, "@%s%s", subdomains ? "." : "", p.domain);
	else
		n = snprintf(out, outlen, "%s", p.text);
	return n >= 0 && (size_t)n < outlen;
}

bool
address_pattern_valid(const char *pattern)
{
	char buf[ADDR_PATH_MAX + 8];

	return address_pattern_canon(pattern, buf, sizeof(buf));
}

/* a malformed pattern matches nothing */
bool
address_match_pattern(const struct mailaddr *a, const char *pattern)
{
	struct mailaddr p;
	bool domain_only, subdomains;

	if (a->null || a->bare)
		return false;
	if (pattern_is_everything(pattern))
		return true;
	if (!parse_pattern(pattern, &p, &domain_only, &subdomains))
		return false;
	if (!domain_only)
		return strcmp(p.local, a->local) == 0 && strcmp(p.domain, a->domain) == 0;
	if (!subdomains)
		return strcmp(p.domain, a->domain) == 0;
	size_t n = strlen(a->domain), m = strlen(p.domain);
	return n > m + 1 && a->domain[n - m - 1] == '.' &&
	    strcmp(a->domain + n - m, p.domain) == 0;
}
