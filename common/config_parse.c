/*
 * The configuration loader's walk: libyaml documents walked against the key
 * tables (config_keys.c), each value checked by config_value.c, every problem a
 * diag with file:line:column; parsing goes on, so one run reports all of them.
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
#include "deliver/route.h"
#include "common/address.h"
#include "common/net.h"

/* ---- diagnostics ---- */

void
diags_init(struct config_diags *d)
{
	memset(d, 0, sizeof(*d));
}

static void
diag_vadd(struct config_diags *d, const struct cfg_mark *mark, bool warning,
    const char *fmt, va_list ap)
{
	struct config_diag *g;

	d->v = xreallocarray(d->v, d->n + 1, sizeof(*d->v));
	g = &d->v[d->n++];
	if (mark != NULL) {
		g->mark = *mark;
		/* diags outlive the source when config_load_dir() fails */
		if (mark->file != NULL)
			g->mark.file = xstrdup(mark->file);
	} else {
		memset(&g->mark, 0, sizeof(g->mark));
	}
	g->warning = warning;
	if (vasprintf(&g->message, fmt, ap) < 0)
		abort();
	if (warning)
		d->n_warnings++;
	else
		d->n_errors++;
}

void
diag_error(struct loader *ld, const struct cfg_mark *mark, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vadd(ld->diags, mark, false, fmt, ap);
	va_end(ap);
}

void
diag_warning(struct loader *ld, const struct cfg_mark *mark, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vadd(ld->diags, mark, true, fmt, ap);
	va_end(ap);
}

void
config_diags_free(struct config_diags *diags)
{
	if (diags == NULL)
		return;
	for (size_t i = 0; i < diags->n; i++) {
		free(diags->v[i].message);
		free((char *)diags->v[i].mark.file);
	}
	free(diags->v);
	diags_init(diags);
}

void
config_diags_print(const struct config_diags *diags, FILE *fp)
{
	for (size_t i = 0; i < diags->n; i++) {
		const struct config_diag *g = &diags->v[i];
		const char *kind = g->warning ? "warning" : "error";
		if (g->mark.file != NULL && g->mark.line == 0)
			fprintf(fp, "%s: %s: %s\n", g->mark.file, kind, g->message);
		else if (g->mark.file != NULL)
			fprintf(fp, "%s:%u:%u: %s: %s\n", g->mark.file, g->mark.line,
			    g->mark.column, kind, g->message);
		else
			fprintf(fp, "%s: %s\n", kind, g->message);
	}
}

/* ---- helpers on nodes ---- */

static struct cfg_mark
node_mark(const struct loader *ld, const yaml_node_t *node)
{
	struct cfg_mark m = { ld->file, (unsigned)node->start_mark.line + 1,
	    (unsigned)node->start_mark.column + 1 };

	return m;
}

static const char *
node_scalar(const yaml_node_t *node)
{
	return node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value :
	    NULL;
}

/* a plain empty value ("key:" with nothing, "~", "null") */
static bool
node_is_null(const yaml_node_t *node)
{
	const char *s = node_scalar(node);

	return s != NULL && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (*s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0);
}

/* what the user wrote, for "expected X, got Y" */
static char *
node_describe(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_SEQUENCE_NODE:
		return xstrdup("a list");
	case YAML_MAPPING_NODE:
		return xstrdup("a mapping");
	default:
		if (node_is_null(node))
			return xstrdup("an empty value");
		return xasprintf("'%s'", node_scalar(node));
	}
}

static void
type_error(struct loader *ld, const yaml_node_t *node, const char *label,
    const char *expected)
{
	struct cfg_mark m = node_mark(ld, node);
	char *got = node_describe(node);

	diag_error(ld, &m, "%s: expected %s, got %s", label, expected, got);
	free(got);
}

/* optimal string alignment distance: insertions, deletions, substitutions and
   swaps of two neighbours ("porcs") cost 1; case is ignored */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), w = lb + 1;
	size_t *d = xcalloc((la + 1) * w, sizeof(*d));
	size_t r;

	for (size_t i = 0; i <= la; i++)
		d[i * w] = i;
	for (size_t j = 0; j <= lb; j++)
		d[j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int ca = tolower((unsigned char)a[i - 1]);
			int cb = tolower((unsigned char)b[j - 1]);
			size_t best = d[(i - 1) * w + j - 1] + (ca == cb ? 0 : 1);
			if (d[(i - 1) * w + j] + 1 < best)
				best = d[(i - 1) * w + j] + 1;
			if (d[i * w + j - 1] + 1 < best)
				best = d[i * w + j - 1] + 1;
			if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == cb &&
			    d[(i - 2) * w + j - 2] + 1 < best)
				best = d[(i - 2) * w + j - 2] + 1;
			d[i * w + j] = best;
		}
	}
	r = d[la * w + lb];
	free(d);
	return r;
}

/*
 * The nearest candidate when it is close enough to be a typo, else NULL: one
 * edit for words up to 4 letters, two up to 10, three beyond. A suggestion that
 * is merely the least different of unrelated words misleads more than none.
 */
const char *
nearest(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t bestd = (size_t)-1;

	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(word, cands[i]);
		if (d < bestd) {
			bestd = d;
			best = cands[i];
		}
	}
	if (best == NULL)
		return NULL;
	size_t len = strlen(word) > strlen(best) ? strlen(word) : strlen(best);
	size_t limit = len <= 4 ? 1 : len <= 10 ? 2 : 3;
	return bestd <= limit && bestd < strlen(best) ? best : NULL;
}

static const char *
nearest_key(const char *word, const struct cfg_key *table)
{
	const char *names[32];
	size_t n = 0;

	for (; table->name != NULL && n < 32; table++)
		names[n++] = table->name;
	return nearest(word, names, n);
}

/* " (did you mean 'x'?)" or "" */
char *
did_you_mean(const char *suggestion)
{
	return suggestion != NULL ? xasprintf(" (did you mean '%s'?)", suggestion) :
	    xstrdup("");
}

/* false (and an error naming both places) when path was defined before */
static bool
seen_check(struct loader *ld, const char *path, const struct cfg_mark *mark,
    const struct cfg_mark *vmark, const char *what)
{
	for (size_t i = 0; i < ld->n_seen; i++) {
		if (strcmp(ld->seen[i].path, path) != 0)
			continue;
		const struct cfg_mark *p = &ld->seen[i].mark;
		diag_error(ld, mark, "%s already defined at %s:%u:%u", what, p->file,
		    p->line, p->column);
		return false;
	}
	if (ld->n_seen == ld->cap_seen) {
		ld->cap_seen = ld->cap_seen == 0 ? 64 : ld->cap_seen * 2;
		ld->seen = xreallocarray(ld->seen, ld->cap_seen, sizeof(*ld->seen));
	}
	ld->seen[ld->n_seen].path = xstrdup(path);
	ld->seen[ld->n_seen].mark = *mark;
	ld->seen[ld->n_seen].vmark = *vmark;
	ld->n_seen++;
	return true;
}

/* the value's mark of a key path, NULL when the key was not given */
const struct cfg_mark *
seen_find(const struct loader *ld, const char *path)
{
	for (size_t i = 0; i < ld->n_seen; i++)
		if (strcmp(ld->seen[i].path, path) == 0)
			return &ld->seen[i].vmark;
	return NULL;
}

/* ---- the key table walk ---- */

static void parse_map(struct loader *ld, yaml_node_t *map, const struct cfg_key *table,
    void *base, const char *ctx, const char *path);

/* each scalar item of a sequence; non-scalars are reported */
typedef void item_fn(struct loader *ld, const char *text, const yaml_node_t *item,
    const char *label, void *arg);

static bool
for_each_item(struct loader *ld, yaml_node_t *seq, const char *label, item_fn *fn,
    void *arg)
{
	if (seq->type != YAML_SEQUENCE_NODE) {
		type_error(ld, seq, label, "a list");
		return false;
	}
	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	    it < seq->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(ld->doc, *it);
		if (item == NULL)
			continue;
		if (item->type != YAML_SCALAR_NODE) {
			char *l = xasprintf("an entry of %s", label);
			type_error(ld, item, l, "a string");
			free(l);
			continue;
		}
		fn(ld, node_scalar(item), item, label, arg);
	}
	return true;
}

static void
entry_error(struct loader *ld, const yaml_node_t *item, const char *text,
    const char *label, const char *why)
{
	struct cfg_mark m = node_mark(ld, item);

	diag_error(ld, &m, "entry '%s' of %s: %s", text, label, why);
}

struct net_item_arg {
	struct netlist *nl;
	bool warn_wide;		/* a LAN: over-wide entries are warnings */
};

static void
net_item(struct loader *ld, const char *text, const yaml_node_t *item,
    const char *label, void *arg)
{
	struct net_item_arg *a = arg;
	const char *err;

	if (netlist_add(a->nl, text, &err) < 0) {
		entry_error(ld, item, text, label, err);
		return;
	}
	if (a->warn_wide && net_entry_overwide(text)) {
		struct cfg_mark m = node_mark(ld, item);
		const char *what = net_entry_covers_all(text) ? "every address" :
		    strchr(text, ':') != NULL ? "more than an IPv6 /16" :
		    "a public /8 or more";
		diag_warning(ld, &m, "entry '%s' of %s is over-wide: it trusts %s",
		    text, label, what);
	}
}

static void
domain_item(struct loader *ld, const char *text, const yaml_node_t *item,
    const char *label, void *arg)
{
	char *d = domain_canon(text);

	if (!valid_domain(d))
		entry_error(ld, item, text, label, "expected a domain name");
	else
		strlist_add(arg, d);
	free(d);
}

static void
localpart_item(struct loader *ld, const char *text, const yaml_node_t *item,
    const char *label, void *arg)
{
	if (!valid_localpart(text))
		entry_error(ld, item, text, label,
		    "expected a local part (the part before @, without @ or spaces)");
	else
		strlist_add(arg, text);
}

static void
pattern_item(struct loader *ld, const char *text, const yaml_node_t *item,
    const char *label, void *arg)
{
	char canon[ADDR_PATH_MAX + 8];

	if (!address_pattern_canon(text, canon, sizeof(canon)))
		entry_error(ld, item, text, label,
		    "expected user@domain, @domain or @.domain (subdomains)");
	else
		strlist_add(arg, canon);
}

struct listen_item_arg {
	struct instance *inst;
};

static void
listen_item(struct loader *ld, const char *text, const yaml_node_t *item,
    const char *label, void *arg)
{
	struct instance *inst = ((struct listen_item_arg *)arg)->inst;
	struct listen_addr la;
	char *err = listen_parse(ld, text, &la);

	if (err != NULL) {
		entry_error(ld, item, text, label, err);
		free(err);
		return;
	}
	la.text = xstrdup(text);
	la.mark = node_mark(ld, item);
	inst->listen = xreallocarray(inst->listen, inst->n_listen + 1,
	    sizeof(*inst->listen));
	inst->listen[inst->n_listen++] = la;
}

static const char *want_string(struct loader *ld, yaml_node_t *v, const char *label);

/* "maildir:./var/mail/%d/%u" is relative to the working directory, like
   server.spool: made absolute here, so every process reads the same path */
char *
nexthop_absolute(const char *s)
{
	char cwd[4096];
	if (strncmp(s, "maildir:", 8) != 0 || s[8] == '/' || s[8] == '\0' ||
	    getcwd(cwd, sizeof(cwd)) == NULL)
		return xstrdup(s);
	const char *rel = s + 8;
	while (rel[0] == '.' && rel[1] == '/')
		rel += 2;
	return xasprintf("maildir:%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", rel);
}

/* a DNS server: "192.0.2.53", "127.0.0.1:5353", "::1", "[::1]:5353" */
static void
server_item(struct loader *ld, const char *text, const yaml_node_t *item,
    const char *label, void *arg)
{
	char host[INET6_ADDRSTRLEN + 8];
	const char *port = NULL;
	unsigned char buf[sizeof(struct in6_addr)];
	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (end == NULL || (size_t)(end - text - 1) >= sizeof(host) ||
		    (end[1] != '\0' && end[1] != ':')) {
			entry_error(ld, item, text, label, "expected an IP address, "
			    "optionally with :port (\"[::1]:5353\")");
			return;
		}
		memcpy(host, text + 1, (size_t)(end - text - 1));
		host[end - text - 1] = '\0';
		port = end[1] == ':' ? end + 2 : NULL;
	} else {
		snprintf(host, sizeof(host), "%s", text);
		char *colon = strchr(host, ':');
		if (colon != NULL && strchr(colon + 1, ':') == NULL) {
			*colon = '\0';
			port = text + (colon - host) + 1;
		}
	}
	uint64_t pn = 0;
	if ((inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) ||
	    (port != NULL && (!parse_uint64(port, &pn) || pn < 1 || pn > 65535))) {
		entry_error(ld, item, text, label, "expected an IP address, optionally "
		    "with :port (\"127.0.0.1:5353\", \"[::1]:53\")");
		return;
	}
	strlist_add(arg, text);
}

bool
delivery_tls_parse(const char *s, int *level)
{
	static const char *const names[] = { "none", "may", "encrypt", "verify" };

	for (int i = 0; s != NULL && i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*level = i;
			return true;
		}
	return false;
}

#define DELIVERY_TLS_EXPECTED "none, may, encrypt or verify"

/* a route's value: "NEXTHOP", or {nexthop: NEXTHOP, tls: LEVEL}; the next hop's
   text (a node's scalar) or NULL, everything wrong reported */
static const char *
route_value(struct loader *ld, yaml_node_t *vn, const char *what, int *tls)
{
	*tls = DELIVERY_TLS_DEFAULT;
	if (vn->type != YAML_MAPPING_NODE)
		return want_string(ld, vn, what);
	const char *nexthop = NULL;
	bool bad = false;
	for (yaml_node_pair_t *pr = vn->data.mapping.pairs.start;
	    pr < vn->data.mapping.pairs.top; pr++) {
		yaml_node_t *kn = yaml_document_get_node(ld->doc, pr->key);
		yaml_node_t *v = yaml_document_get_node(ld->doc, pr->value);
		if (kn == NULL || v == NULL)
			continue;
		struct cfg_mark km = node_mark(ld, kn);
		struct cfg_mark m = node_mark(ld, v);
		const char *name = node_scalar(kn);
		if (name != NULL && strcmp(name, "nexthop") == 0) {
			if ((nexthop = want_string(ld, v, what)) == NULL)
				bad = true;
		} else if (name != NULL && strcmp(name, "tls") == 0) {
			if (!delivery_tls_parse(node_scalar(v), tls)) {
				diag_error(ld, &m, "%s: tls: expected %s", what,
				    DELIVERY_TLS_EXPECTED);
				bad = true;
			}
		} else {
			diag_error(ld, &km, "%s: unknown key '%s' (expected nexthop or tls)",
			    what, name != NULL ? name : "?");
			bad = true;
		}
	}
	if (nexthop == NULL && !bad) {
		struct cfg_mark m = node_mark(ld, vn);
		diag_error(ld, &m, "%s: expected a next hop (\"[10.1.2.3]:25\") or a "
		    "mapping with nexthop: and optionally tls:", what);
	}
	return bad ? NULL : nexthop;
}

/* delivery.routes: a mapping of domain patterns to next hops */
static void
routes_parse(struct loader *ld, yaml_node_t *map, struct delivery *d, const char *label)
{
	if (map->type != YAML_MAPPING_NODE) {
		if (!node_is_null(map))
			type_error(ld, map, label,
			    "a mapping of domains to next hops (example.net: \"[10.1.2.3]:25\")");
		return;
	}
	for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
	    pr < map->data.mapping.pairs.top; pr++) {
		yaml_node_t *kn = yaml_document_get_node(ld->doc, pr->key);
		yaml_node_t *vn = yaml_document_get_node(ld->doc, pr->value);
		if (kn == NULL || vn == NULL)
			continue;
		struct cfg_mark km = node_mark(ld, kn);
		const char *pat = node_scalar(kn);
		char *canon = pat != NULL ? domain_canon(pat[0] == '.' ? pat + 1 : pat) : NULL;
		if (canon == NULL || !valid_domain(canon)) {
			diag_error(ld, &km, "%s: expected a domain (\"example.net\") or its "
			    "subdomains (\".example.net\") as a key", label);
			free(canon);
			continue;
		}
		char *key = pat[0] == '.' ? xasprintf(".%s", canon) : xstrdup(canon);
		free(canon);
		char *kpath = xasprintf("delivery/routes/%s", key);
		char *what = xasprintf("route '%s' in %s", key, label);
		struct cfg_mark vm = node_mark(ld, vn);
		const char *s;
		struct nexthop nh;
		const char *err;
		int tls;
		if (!seen_check(ld, kpath, &km, &vm, what)) {
			free(key);
		} else if ((s = route_value(ld, vn, what, &tls)) == NULL) {
			free(key);
		} else if (route_parse_nexthop(s, &nh, &err) == -1) {
			diag_error(ld, &vm, "%s: %s", what, err);
			free(key);
		} else {
			d->routes = xreallocarray(d->routes, d->n_routes + 1,
			    sizeof(*d->routes));
			d->routes[d->n_routes++] = (struct delivery_route){ key, xstrdup(s),
			    km, tls };
		}
		free(what);
		free(kpath);
	}
}

/* a scalar string value; NULL (reported) otherwise */
static const char *
want_string(struct loader *ld, yaml_node_t *v, const char *label)
{
	const char *s = node_scalar(v);

	if (s == NULL || node_is_null(v) || *s == '\0') {
		type_error(ld, v, label, "a non-empty string");
		return NULL;
	}
	return s;
}

static void
set_string(char **field, const char *s)
{
	free(*field);
	*field = xstrdup(s);
}

static void
range_error(struct loader *ld, yaml_node_t *v, const char *label, const char *lo,
    const char *hi)
{
	struct cfg_mark m = node_mark(ld, v);

	diag_error(ld, &m, "%s: %s is out of range (%s to %s)", label, node_scalar(v),
	    lo, hi);
}

static void
set_value(struct loader *ld, const struct cfg_key *k, yaml_node_t *v, void *base,
    const char *label, const char *ctx, const char *path)
{
	void *field = (char *)base + k->off;
	struct cfg_mark m = node_mark(ld, v);
	const char *s;

	switch (k->type) {
	case T_STRING:
	case T_HOSTNAME:
	case T_USER:
	case T_GROUP:
	case T_SOCKPATH:
	case T_TAG:
		if ((s = want_string(ld, v, label)) == NULL)
			return;
		if (k->type == T_HOSTNAME && !valid_domain(s)) {
			type_error(ld, v, label, "a host name");
			return;
		}
		if (k->type == T_USER && getpwnam(s) == NULL) {
			diag_error(ld, &m, "%s: no such user '%s'", label, s);
			return;
		}
		if (k->type == T_GROUP && getgrnam(s) == NULL) {
			diag_error(ld, &m, "%s: no such group '%s'", label, s);
			return;
		}
		if (k->type == T_SOCKPATH &&
		    strlen(s) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			diag_error(ld, &m, "%s: a unix socket path must be shorter than "
			    "%zu bytes", label, sizeof(((struct sockaddr_un *)0)->sun_path));
			return;
		}
		if (k->type == T_TAG && strpbrk(s, " \t\r\n") != NULL) {
			type_error(ld, v, label, "a syslog tag without spaces");
			return;
		}
		set_string(field, s);
		return;
	case T_BOOL:
		if ((s = node_scalar(v)) == NULL || !parse_bool(s, field)) {
			type_error(ld, v, label, "true or false");
			return;
		}
		return;
	case T_UINT: {
		uint64_t x;
		if ((s = node_scalar(v)) == NULL || !parse_uint64(s, &x)) {
			if (s != NULL && s[0] == '-' && parse_uint64(s + 1, &x)) {
				char lo[32], hi[32];
				snprintf(lo, sizeof(lo), "%.0f", k->min);
				snprintf(hi, sizeof(hi), "%.0f", k->max);
				range_error(ld, v, label, lo, hi);
				return;
			}
			type_error(ld, v, label, "an integer");
			return;
		}
		if ((double)x < k->min || (double)x > k->max) {
			char lo[32], hi[32];
			snprintf(lo, sizeof(lo), "%.0f", k->min);
			snprintf(hi, sizeof(hi), "%.0f", k->max);
			range_error(ld, v, label, lo, hi);
			return;
		}
		*(unsigned *)field = (unsigned)x;
		return;
	}
	case T_SIZE: {
		uint64_t x;
		if ((s = node_scalar(v)) == NULL || !parse_size(s, &x)) {
			type_error(ld, v, label, "a size (bytes, or with K or M, e.g. 10M)");
			return;
		}
		if ((double)x < k->min || (double)x > k->max) {
			char *lo = fmt_size((uint64_t)k->min), *hi = fmt_size((uint64_t)k->max);
			range_error(ld, v, label, lo, hi);
			free(lo);
			free(hi);
			return;
		}
		*(uint64_t *)field = x;
		return;
	}
	case T_DURATION: {
		double x;
		if ((s = node_scalar(v)) == NULL || !parse_duration(s, &x)) {
			type_error(ld, v, label,
			    "a duration (seconds, or with s, m, h or d, e.g. 30s, 5m, 4h)");
			return;
		}
		if (x < k->min || x > k->max) {
			char lo[32], hi[32];
			snprintf(lo, sizeof(lo), "%gs", k->min);
			snprintf(hi, sizeof(hi), "%gs", k->max);
			range_error(ld, v, label, lo, hi);
			return;
		}
		*(double *)field = x;
		return;
	}
	case T_DOMAINS:
		strlist_free(field);
		for_each_item(ld, v, label, domain_item, field);
		return;
	case T_LOCALPARTS:
		strlist_free(field);
		for_each_item(ld, v, label, localpart_item, field);
		return;
	case T_PATTERNS:
		strlist_free(field);
		for_each_item(ld, v, label, pattern_item, field);
		return;
	case T_PROFILE_LAN: {
		struct profile *p = base;
		struct net_item_arg a = { netlist_new(), true };
		size_t errors = ld->diags->n_errors;
		bool ok = for_each_item(ld, v, label, net_item, &a);
		/* an entry that was refused is reported; the list it leaves behind
		   is not what the user meant, so verify judges nothing by it */
		p->lan_invalid = ld->diags->n_errors > errors;
		if (!ok) {
			netlist_free(a.nl);
			return;
		}
		netlist_free(p->lan);
		p->lan = a.nl;
		p->lan_set = true;
		return;
	}
	case T_LISTEN: {
		struct listen_item_arg a = { base };
		if (v->type == YAML_SEQUENCE_NODE &&
		    v->data.sequence.items.start == v->data.sequence.items.top) {
			diag_error(ld, &m, "%s: expected at least one address", label);
			return;
		}
		for_each_item(ld, v, label, listen_item, &a);
		return;
	}
	case T_ACCESS: {
		struct instance *inst = base;
		if ((s = node_scalar(v)) != NULL) {
			if (strcmp(s, "any") == 0) {
				inst->access = ACCESS_ANY;
			} else if (strcmp(s, "lan") == 0) {
				inst->access = ACCESS_LAN;
			} else {
				type_error(ld, v, label, "any, lan or a list of networks");
			}
			return;
		}
		struct net_item_arg a = { netlist_new(), false };
		if (v->type != YAML_SEQUENCE_NODE) {
			type_error(ld, v, label, "any, lan or a list of networks");
			netlist_free(a.nl);
			return;
		}
		for_each_item(ld, v, label, net_item, &a);
		netlist_free(inst->access_list);
		inst->access_list = a.nl;
		inst->access = ACCESS_LIST;
		return;
	}
	case T_TLS_MODE: {
		enum tls_mode *tm = field;
		if ((s = node_scalar(v)) != NULL && strcmp(s, "starttls") == 0)
			*tm = TLS_MODE_STARTTLS;
		else if (s != NULL && strcmp(s, "implicit") == 0)
			*tm = TLS_MODE_IMPLICIT;
		else
			type_error(ld, v, label, "starttls or implicit");
		return;
	}
	case T_AUTORESTART: {
		bool b;
		enum autorestart *ar = field;
		if ((s = node_scalar(v)) != NULL && strcmp(s, "unexpected") == 0) {
			*ar = AUTORESTART_UNEXPECTED;
		} else if (s != NULL && parse_bool(s, &b)) {
			*ar = b ? AUTORESTART_TRUE : AUTORESTART_FALSE;
		} else {
			type_error(ld, v, label, "true, false or unexpected");
		}
		return;
	}
	case T_SIGNAL:
		if ((s = node_scalar(v)) == NULL || !parse_signal(s, field))
			type_error(ld, v, label,
			    "a signal name (TERM, INT, QUIT, USR1, USR2)");
		return;
	case T_OPEN_RELAY:
		if ((s = node_scalar(v)) == NULL || strcmp(s, "i-understand") != 0) {
			type_error(ld, v, label, "i-understand (the only accepted value)");
			return;
		}
		*(bool *)field = true;
		return;
	case T_NEXTHOP: {
		struct nexthop nh;
		const char *err;
		if ((s = want_string(ld, v, label)) == NULL)
			return;
		char *abs = nexthop_absolute(s);
		if (route_parse_nexthop(abs, &nh, &err) == -1) {
			diag_error(ld, &m, "%s: %s", label, err);
			free(abs);
			return;
		}
		free(*(char **)field);
		*(char **)field = abs;
		return;
	}
	case T_ROUTES:
		routes_parse(ld, v, base, label);
		return;
	case T_SERVERS:
		strlist_free(field);
		for_each_item(ld, v, label, server_item, field);
		return;
	case T_DELIVERY_TLS:
		if (!delivery_tls_parse(node_scalar(v), field))
			type_error(ld, v, label, DELIVERY_TLS_EXPECTED);
		return;
	case T_FILE:
		if ((s = want_string(ld, v, label)) == NULL)
			return;
		if (s[0] != '/') {
			type_error(ld, v, label, "an absolute path");
			return;
		}
		set_string(field, s);
		return;
	case T_SECTION: {
		if (v->type != YAML_MAPPING_NODE) {
			type_error(ld, v, label, "a mapping");
			return;
		}
		char *subctx = xasprintf("%s of %s", k->name, ctx);
		parse_map(ld, v, k->sub, base, subctx, path);
		free(subctx);
		return;
	}
	}
}

/*
 * Walk a mapping against a key table. ctx names the mapping in messages ("server",
 * "profile 'x'"), path is its key path for duplicate detection ("profiles/x").
 */
static void
parse_map(struct loader *ld, yaml_node_t *map, const struct cfg_key *table,
    void *base, const char *ctx, const char *path)
{
	for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
	    pr < map->data.mapping.pairs.top; pr++) {
		yaml_node_t *kn = yaml_document_get_node(ld->doc, pr->key);
		yaml_node_t *vn = yaml_document_get_node(ld->doc, pr->value);
		const char *name;
		const struct cfg_key *k;

		if (kn == NULL || vn == NULL)
			continue;
		struct cfg_mark km = node_mark(ld, kn);
		if ((name = node_scalar(kn)) == NULL) {
			diag_error(ld, &km, "expected a key name in %s", ctx);
			continue;
		}
		for (k = table; k->name != NULL; k++)
			if (strcmp(k->name, name) == 0)
				break;
		if (k->name == NULL) {
			char *dym = did_you_mean(nearest_key(name, table));
			diag_error(ld, &km, "unknown key '%s' in %s%s", name, ctx, dym);
			free(dym);
			continue;
		}
		char *label = xasprintf("'%s' in %s", name, ctx);
		char *kpath = xasprintf("%s/%s", path, name);
		struct cfg_mark vm = node_mark(ld, vn);
		if (seen_check(ld, kpath, &km, &vm, label))
			set_value(ld, k, vn, base, label, ctx, kpath);
		free(kpath);
		free(label);
	}
}

/* ---- top level ---- */

static bool
valid_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* profiles: or instances: (kind "profile"/"instance") */
static void
parse_named(struct loader *ld, yaml_node_t *map, bool is_profile)
{
	const char *kind = is_profile ? "profile" : "instance";
	struct config *cfg = ld->cfg;

	if (map->type != YAML_MAPPING_NODE) {
		if (!node_is_null(map))
			type_error(ld, map, is_profile ? "'profiles'" : "'instances'",
			    "a mapping of names");
		return;
	}
	for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
	    pr < map->data.mapping.pairs.top; pr++) {
		yaml_node_t *kn = yaml_document_get_node(ld->doc, pr->key);
		yaml_node_t *vn = yaml_document_get_node(ld->doc, pr->value);
		const char *name;

		if (kn == NULL || vn == NULL)
			continue;
		struct cfg_mark km = node_mark(ld, kn);
		if ((name = node_scalar(kn)) == NULL || !valid_name(name)) {
			char *got = node_describe(kn);
			diag_error(ld, &km, "expected %s name (letters, digits, '-', '_', "
			    "'.'), got %s", is_profile ? "a profile" : "an instance", got);
			free(got);
			continue;
		}
		char *what = xasprintf("%s '%s'", kind, name);
		char *path = xasprintf("%s/%s", is_profile ? "profiles" : "instances",
		    name);
		if (!seen_check(ld, path, &km, &km, what))
			goto next;
		if (vn->type != YAML_MAPPING_NODE && !node_is_null(vn)) {
			type_error(ld, vn, what, "a mapping of settings");
			goto next;
		}
		if (is_profile) {
			cfg->profiles = xreallocarray(cfg->profiles, cfg->n_profiles + 1,
			    sizeof(*cfg->profiles));
			struct profile *p = &cfg->profiles[cfg->n_profiles++];
			profile_defaults(p, name, km);
			if (vn->type == YAML_MAPPING_NODE)
				parse_map(ld, vn, profile_keys, p, what, path);
		} else {
			cfg->instances = xreallocarray(cfg->instances, cfg->n_instances + 1,
			    sizeof(*cfg->instances));
			struct instance *inst = &cfg->instances[cfg->n_instances++];
			instance_defaults(inst, name, km);
			if (vn->type == YAML_MAPPING_NODE)
				parse_map(ld, vn, instance_keys, inst, what, path);
		}
next:
		free(path);
		free(what);
	}
}

static void
parse_root(struct loader *ld, yaml_node_t *root)
{
	if (root->type != YAML_MAPPING_NODE) {
		if (!node_is_null(root))
			type_error(ld, root, "the top level",
			    "a mapping (server, lan, profiles, instances, delivery)");
		return;
	}
	for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
	    pr < root->data.mapping.pairs.top; pr++) {
		yaml_node_t *kn = yaml_document_get_node(ld->doc, pr->key);
		yaml_node_t *vn = yaml_document_get_node(ld->doc, pr->value);
		const char *name;

		if (kn == NULL || vn == NULL)
			continue;
		struct cfg_mark km = node_mark(ld, kn);
		if ((name = node_scalar(kn)) == NULL) {
			diag_error(ld, &km, "expected a key name at the top level");
			continue;
		}
		if (strcmp(name, "server") == 0) {
			/* several files may each hold part of server:, a key only once */
			if (vn->type == YAML_MAPPING_NODE)
				parse_map(ld, vn, server_keys, &ld->cfg->server, "server",
				    "server");
			else if (!node_is_null(vn))
				type_error(ld, vn, "'server'", "a mapping");
		} else if (strcmp(name, "delivery") == 0) {
			/* like server:, it may be split over files, a key only once */
			ld->cfg->delivery.configured = true;
			if (ld->cfg->delivery.mark.file == NULL)
				ld->cfg->delivery.mark = km;
			if (vn->type == YAML_MAPPING_NODE)
				parse_map(ld, vn, delivery_keys, &ld->cfg->delivery,
				    "delivery", "delivery");
			else if (!node_is_null(vn))
				type_error(ld, vn, "'delivery'", "a mapping");
		} else if (strcmp(name, "lan") == 0) {
			if (!seen_check(ld, "lan", &km, &km, "'lan'"))
				continue;
			struct net_item_arg a = { netlist_new(), true };
			size_t errors = ld->diags->n_errors;
			bool ok = for_each_item(ld, vn, "'lan'", net_item, &a);
			ld->cfg->lan_invalid = ld->diags->n_errors > errors;
			if (ok) {
				netlist_free(ld->cfg->lan);
				ld->cfg->lan = a.nl;
			} else {
				netlist_free(a.nl);
			}
		} else if (strcmp(name, "profiles") == 0) {
			parse_named(ld, vn, true);
		} else if (strcmp(name, "instances") == 0) {
			parse_named(ld, vn, false);
		} else {
			char *dym = did_you_mean(nearest(name, toplevel_keys, 4));
			diag_error(ld, &km, "unknown top-level key '%s'%s", name, dym);
			free(dym);
		}
	}
}

static struct cfg_mark
offset_mark(const struct config_file *f, size_t offset)
{
	struct cfg_mark m = { f->path, 1, 1 };

	for (size_t i = 0; i < offset && i < f->len; i++) {
		if (f->data[i] == '\n') {
			m.line++;
			m.column = 1;
		} else if (((unsigned char)f->data[i] & 0xc0) != 0x80) {
			m.column++;	/* count characters, not UTF-8 continuation bytes */
		}
	}
	return m;
}

void
parse_file(struct loader *ld, const struct config_file *f)
{
	yaml_parser_t parser;

	ld->file = f->path;
	if (!yaml_parser_initialize(&parser))
		abort();
	yaml_parser_set_input_string(&parser, (const unsigned char *)f->data, f->len);
	for (;;) {
		yaml_document_t doc;
		if (!yaml_parser_load(&parser, &doc)) {
			struct cfg_mark m = { f->path,
			    (unsigned)parser.problem_mark.line + 1,
			    (unsigned)parser.problem_mark.column + 1 };
			/* the reader (bad UTF-8, NUL) gives an offset, not a mark */
			if (parser.error == YAML_READER_ERROR)
				m = offset_mark(f, parser.problem_offset);
			if (parser.context != NULL)
				diag_error(ld, &m, "YAML syntax error: %s (%s)",
				    parser.problem != NULL ? parser.problem : "unknown",
				    parser.context);
			else
				diag_error(ld, &m, "YAML syntax error: %s",
				    parser.problem != NULL ? parser.problem : "unknown");
			break;
		}
		yaml_node_t *root = yaml_document_get_root_node(&doc);
		if (root == NULL) {
			yaml_document_delete(&doc);
			break;
		}
		ld->doc = &doc;
		parse_root(ld, root);
		ld->doc = NULL;
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);
}

