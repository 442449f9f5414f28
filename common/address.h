/*
 * RFC 5321 paths: "<local@domain>", "<>", "<@a,@b:local@domain>", quoted local
 * parts with escapes, address literals ([192.0.2.1], [IPv6:2001:db8::1]). Limits of
 * RFC 5321 4.5.3.1 (local part 64, domain 255, path 256 octets) are enforced.
 * The domain is what follows the last '@' outside quotes; source routes are parsed
 * and dropped. Nothing in a local part is ever re-read as a route.
 */
#ifndef RELAYVISOR_ADDRESS_H
#define RELAYVISOR_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDR_PATH_MAX 256

struct mailaddr {
	bool null;		/* "<>" */
	bool bare;		/* no domain ("<postmaster>") */
	bool domain_literal;	/* "[...]" */
	bool route_chars;	/* local part holds '@', '%' or '!' (quoted, escaped or not) */
	bool had_source_route;	/* "<@a,@b:...>" form, route dropped */
	char local[ADDR_LOCAL_MAX + 1];		/* canonical: quotes and escapes removed */
	char domain[ADDR_DOMAIN_MAX + 1];	/* lowercased, trailing dot removed;
						   literal kept with brackets, lowercased */
	char text[ADDR_PATH_MAX + 8];	/* canonical "local@domain" (local re-quoted
					   when needed), "" for null */
};

/*
 * Parse a path starting at s (the text after "MAIL FROM:" / "RCPT TO:", leading
 * spaces already skipped). On success returns 0 and sets *end to the octet after
 * '>' (ESMTP parameters follow). On failure returns -1 and *error_r is the text of
 * a 501 reply without code (e.g. "5.1.3 Bad recipient address syntax" is the
 * caller's; error_r says what is wrong: "missing <", "local part too long", ...).
 */
int address_parse_path(const char *s, size_t len, struct mailaddr *a, size_t *end,
    const char **error_r);
/* the same on a whole string ("<a@b>"), nothing may follow */
int address_parse(const char *s, struct mailaddr *a, const char **error_r);
/* "postmaster" local part, any case */
bool address_is_postmaster(const struct mailaddr *a);
/*
 * Does a match a pattern of always_relay_from/_to: "user@domain" (exact, domain
 * case-insensitive), "@domain" (that domain), "@.domain" (strict subdomains).
 */
bool address_match_pattern(const struct mailaddr *a, const char *pattern);
/* pattern is one of those three forms and well formed (for the config verify pass;
   a malformed pattern matches nothing) */
bool address_pattern_valid(const char *pattern);
/* the canonical form of a valid pattern (domain lowercased, no trailing dot; "@."
   stands for every domain) into out; false when malformed or out is too small */
bool address_pattern_canon(const char *pattern, char *out, size_t outlen);

#endif
