/*
 * The configuration loader: libyaml documents walked against key tables (name, type,
 * where the value goes, its range; Dovecot's setting_define), defaults set before
 * parsing, then a separate verify pass for what needs the whole picture (profile
 * references, the open-relay interlock, listen conflicts). Every problem becomes a
 * diag with file:line:column and parsing goes on, so one run reports all of them.
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

enum cfg_type {
	T_STRING,	/* non-empty, no whitespace-only */
	T_HOSTNAME,
	T_USER,
	T_GROUP,
	T_SOCKPATH,	/* fits sun_path */
	T_TAG,		/* syslog tag: no whitespace */
	T_BOOL,
	T_UINT,
	T_SIZE,
	T_DURATION,
	T_DOMAINS,	/* strlist of domains, lowercased, trailing dot removed */
	T_LOCALPARTS,	/* strlist of local parts */
	T_PATTERNS,	/* strlist of user@dom, @dom, @.dom */
	T_PROFILE_LAN,	/* netlist + lan_set */
	T_LISTEN,
	T_ACCESS,
	T_AUTORESTART,
	T_SIGNAL,
	T_OPEN_RELAY,
	T_SECTION,	/* nested mapping, keys in sub */
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t off;		/* into the struct the table describes */
	double min, max;	/* T_UINT, T_SIZE, T_DURATION */
	const struct cfg_key *sub;	/* T_SECTION */
};

#define KEY(st, field, name, type) { name, type, offsetof(struct st, field), 0, 0, NULL }
#define KEYR(st, field, name, type, lo, hi) \
	{ name, type, offsetof(struct st, field), lo, hi, NULL }
#define KEYEND { NULL, T_STRING, 0, 0, 0, NULL }

static const struct cfg_key server_keys[] = {
	KEY(server, hostname, "hostname", T_HOSTNAME),
	KEY(server, user, "user", T_USER),
	KEY(server, spool, "spool", T_STRING),
	KEY(server, control, "control", T_SOCKPATH),
	KEY(server, control_group, "control_group", T_GROUP),
	KEY(server, logs, "logs", T_STRING),
	KEYR(server, log_max_bytes, "log_max_bytes", T_SIZE, 0, 65536.0 * 1024 * 1024),
	KEYR(server, log_backups, "log_backups", T_UINT, 0, 1000),
	KEY(server, local_domains, "local_domains", T_DOMAINS),
	KEY(server, local_recipients, "local_recipients", T_LOCALPARTS),
	KEYEND
};

static const struct cfg_key profile_keys[] = {
	KEY(profile, lan, "lan", T_PROFILE_LAN),
	KEY(profile, relay_outside_lan, "relay_outside_lan", T_BOOL),
	KEY(profile, relay_nonlocal_senders, "relay_nonlocal_senders", T_BOOL),
	KEY(profile, always_relay_from, "always_relay_from", T_PATTERNS),
	KEY(profile, always_relay_to, "always_relay_to", T_PATTERNS),
	KEY(profile, require_auth, "require_auth", T_BOOL),
	KEY(profile, accept_domain_literals, "accept_domain_literals", T_BOOL),
	KEY(profile, open_relay_ok, "open_relay", T_OPEN_RELAY),
	KEYEND
};

static const struct cfg_key backoff_keys[] = {
	KEYR(instance, backoff_initial, "initial", T_DURATION, 0.1, 3600),
	KEYR(instance, backoff_max, "max", T_DURATION, 0.1, 86400),
	KEYEND
};

static const struct cfg_key timeout_keys[] = {
	KEYR(instance, timeout_command, "command", T_DURATION, 1, 3600),
	KEYR(instance, timeout_data, "data", T_DURATION, 1, 3600),
	KEYR(instance, timeout_stress, "stress", T_DURATION, 1, 3600),
	KEYEND
};

static const struct cfg_key instance_keys[] = {
	KEY(instance, listen, "listen", T_LISTEN),
	KEY(instance, profile_name, "profile", T_STRING),
	KEY(instance, access, "access", T_ACCESS),
	KEYR(instance, procs, "procs", T_UINT, 1, 64),
	KEY(instance, autostart, "autostart", T_BOOL),
	KEY(instance, autorestart, "autorestart", T_AUTORESTART),
	KEYR(instance, startsecs, "startsecs", T_DURATION, 0, 3600),
	KEYR(instance, startretries, "startretries", T_UINT, 0, 100),
	{ "backoff", T_SECTION, 0, 0, 0, backoff_keys },
	KEY(instance, stopsignal, "stopsignal", T_SIGNAL),
	KEYR(instance, stopwaitsecs, "stopwaitsecs", T_DURATION, 0, 3600),
	KEYR(instance, max_connections, "max_connections", T_UINT, 1, 100000),
	KEYR(instance, max_per_client, "max_per_client", T_UINT, 1, 100000),
	KEYR(instance, max_recipients, "max_recipients", T_UINT, 1, 100000),
	KEYR(instance, max_message_size, "max_message_size", T_SIZE, 1024,
	    1024.0 * 1024 * 1024),
	KEYR(instance, recipient_overshoot_limit, "recipient_overshoot_limit", T_UINT, 0,
	    1000000),
	KEYR(instance, max_errors, "max_errors", T_UINT, 1, 1000),
	KEYR(instance, min_data_rate, "min_data_rate", T_SIZE, 1, 1024.0 * 1024 * 1024),
	{ "timeouts", T_SECTION, 0, 0, 0, timeout_keys },
	KEY(instance, syslog_name, "syslog_name", T_TAG),
	KEYEND
};

static const char *const toplevel_keys[] = {
	"server", "lan", "profiles", "instances", NULL
};

/* a definition already seen, by key path ("instances/lan/procs"; "/" cannot occur
   in a name, so instance "a.b" and key "b" of instance "a" never collide) */
struct seen {
	char *path;
	struct cfg_mark mark;	/* of the key */
	struct cfg_mark vmark;	/* of its value: where "no profile named" points */
};

struct loader {
	struct config *cfg;
	struct config_diags *diags;
	const char *file;		/* path of the file being parsed */
	yaml_document_t *doc;
	struct seen *seen;
	size_t n_seen, cap_seen;
	struct ifaddrs *ifa;		/* getifaddrs(), on first iface:port */
	bool ifa_done;
};

/* ---- diagnostics ---- */

static void
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

static void __attribute__((format(printf, 3, 4)))
diag_error(struct loader *ld, const struct cfg_mark *mark, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	diag_vadd(ld->diags, mark, false, fmt, ap);
	va_end(ap);
}

static void __attribute__((format(printf, 3, 4)))
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
static const char *
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
static char *
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
static const struct cfg_mark *
seen_find(const struct loader *ld, const char *path)
{
	for (size_t i = 0; i < ld->n_seen; i++)
		if (strcmp(ld->seen[i].path, path) == 0)
			return &ld->seen[i].vmark;
	return NULL;
}

/* ---- value syntax ---- */

static void
strlist_add(struct strlist *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = xstrdup(s);
}

static void
strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static bool
strlist_equal(const struct strlist *a, const struct strlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	return true;
}

static bool
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

static bool
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
static bool
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
static bool
parse_duration(const char *s, double *v)
{
	size_t len = strlen(s), i = 0;
	double mult = 1, x = 0, frac = 0.1;
	bool digits = false;

	if (len > 0 && (s[len - 1] == 's' || s[len - 1] == 'm')) {
		mult = s[len - 1] == 'm' ? 60 : 1;
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

static bool
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
static char *
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

static bool
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

static const struct {
	const char *name;
	int sig;
} signals[] = {
	/* exactly the signals a listener treats as a graceful stop
	   (instances/main.c): HUP is ignored there, KILL drops every session */
	{ "TERM", SIGTERM }, { "INT", SIGINT }, { "QUIT", SIGQUIT },
	{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 },
};

static bool
parse_signal(const char *s, int *sig)
{
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
		if (strcasecmp(s, signals[i].name) == 0) {
			*sig = signals[i].sig;
			return true;
		}
	}
	return false;
}

static char *
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
static char *
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
			    "a duration (seconds, or with s or m, e.g. 30s, 5m)");
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

/* ---- defaults ---- */

static void
profile_defaults(struct profile *p, const char *name, struct cfg_mark mark)
{
	memset(p, 0, sizeof(*p));
	p->name = xstrdup(name);
	p->mark = mark;
	p->relay_nonlocal_senders = true;
}

static void
instance_defaults(struct instance *inst, const char *name, struct cfg_mark mark)
{
	memset(inst, 0, sizeof(*inst));
	inst->name = xstrdup(name);
	inst->mark = mark;
	inst->access = ACCESS_ANY;
	inst->procs = 1;
	inst->autostart = true;
	inst->autorestart = AUTORESTART_UNEXPECTED;
	inst->startsecs = 1;
	inst->startretries = 3;
	inst->backoff_initial = 1;
	inst->backoff_max = 60;
	inst->stopsignal = SIGTERM;
	inst->stopwaitsecs = 10;
	inst->max_connections = 1000;
	inst->max_per_client = 50;
	inst->max_recipients = 100;
	inst->max_message_size = 10 * 1024 * 1024;
	inst->max_errors = 20;
	inst->recipient_overshoot_limit = 1000;
	inst->min_data_rate = 500;
	inst->timeout_stress = 10;
	inst->timeout_command = 300;
	inst->timeout_data = 180;
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
			    "a mapping (server, lan, profiles, instances)");
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

static void
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

/* ---- verify ---- */

static bool
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
	if (s->spool == NULL)
		s->spool = xstrdup("./var/spool");
	if (s->control == NULL)
		s->control = xstrdup("./var/run/relayvisor.sock");
	if (s->logs == NULL)
		s->logs = xstrdup("./var/log");
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
server_defaults(struct server *s)
{
	s->log_max_bytes = (uint64_t)50 << 20;
	s->log_backups = 10;
}

static void
verify_profile(struct loader *ld, const struct profile *p)
{
	if (p->require_auth) {
		char *path = xasprintf("profiles/%s/require_auth", p->name);
		const struct cfg_mark *m = seen_find(ld, path);
		free(path);
		diag_warning(ld, m, "'require_auth' in profile '%s': AUTH is not "
		    "implemented yet; with require_auth only always_relay_* entries "
		    "relay", p->name);
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

static void
verify(struct loader *ld)
{
	struct config *cfg = ld->cfg;

	verify_server(ld);
	for (size_t i = 0; i < cfg->n_profiles; i++)
		verify_profile(ld, &cfg->profiles[i]);
	for (size_t i = 0; i < cfg->n_instances; i++)
		verify_instance(ld, &cfg->instances[i]);
	verify_listen_conflicts(ld);
}

/* ---- public ---- */

struct config *
config_load(struct config_source *src, struct config_diags *diags)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	struct loader ld;

	diags_init(diags);
	memset(&ld, 0, sizeof(ld));
	ld.cfg = cfg;
	ld.diags = diags;
	cfg->source = src;
	cfg->dir = xstrdup(src->dir);
	server_defaults(&cfg->server);
	cfg->lan = netlist_new();
	for (size_t i = 0; i < src->n_yml; i++) {
		char *path = xasprintf("%s/%s", src->dir, src->yml[i]);
		struct cfg_mark m = { path, 0, 0 };
		size_t stem = strlen(src->yml[i]) - 4;
		diag_error(&ld, &m, "not read: configuration files end in .yaml (rename "
		    "it to %.*s.yaml)", (int)stem, src->yml[i]);
		free(path);
	}
	if (src->n == 0 && src->n_yml == 0) {
		struct cfg_mark none = { NULL, 0, 0 };
		diag_error(&ld, &none, "%s: no *.yaml files", src->dir);
	}
	for (size_t i = 0; i < src->n; i++)
		parse_file(&ld, &src->files[i]);
	verify(&ld);
	for (size_t i = 0; i < ld.n_seen; i++)
		free(ld.seen[i].path);
	free(ld.seen);
	if (ld.ifa != NULL)
		freeifaddrs(ld.ifa);
	return cfg;
}

struct config *
config_load_dir(const char *dir, struct config_diags *diags)
{
	struct config_source *src;
	const char *error;
	struct config *cfg;

	diags_init(diags);
	if (config_source_read_dir(dir, &src, &error) < 0) {
		struct loader ld = { .diags = diags };
		diag_error(&ld, NULL, "%s", error);
		return NULL;
	}
	cfg = config_load(src, diags);
	if (diags->n_errors > 0) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

static void
profile_free(struct profile *p)
{
	free(p->name);
	netlist_free(p->lan);
	strlist_free(&p->always_relay_from);
	strlist_free(&p->always_relay_to);
}

static void
instance_free(struct instance *inst)
{
	free(inst->name);
	for (size_t i = 0; i < inst->n_listen; i++) {
		free(inst->listen[i].text);
		free(inst->listen[i].iface);
	}
	free(inst->listen);
	free(inst->profile_name);
	netlist_free(inst->access_list);
	free(inst->syslog_name);
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->server.hostname);
	free(cfg->server.user);
	free(cfg->server.spool);
	free(cfg->server.control);
	free(cfg->server.control_group);
	free(cfg->server.logs);
	strlist_free(&cfg->server.local_domains);
	strlist_free(&cfg->server.local_recipients);
	netlist_free(cfg->lan);
	for (size_t i = 0; i < cfg->n_profiles; i++)
		profile_free(&cfg->profiles[i]);
	free(cfg->profiles);
	for (size_t i = 0; i < cfg->n_instances; i++)
		instance_free(&cfg->instances[i]);
	free(cfg->instances);
	config_source_free(cfg->source);
	free(cfg->dir);
	free(cfg);
}

const struct instance *
config_instance(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_instances; i++)
		if (strcmp(cfg->instances[i].name, name) == 0)
			return &cfg->instances[i];
	return NULL;
}

const struct profile *
config_profile(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_profiles; i++)
		if (strcmp(cfg->profiles[i].name, name) == 0)
			return &cfg->profiles[i];
	return NULL;
}

const struct netlist *
config_profile_lan(const struct config *cfg, const struct profile *p)
{
	return p->lan_set ? p->lan : cfg->lan;
}

static bool
str_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
netlist_equal(const struct netlist *a, const struct netlist *b)
{
	if (netlist_count(a) != netlist_count(b))
		return false;
	for (size_t i = 0; i < netlist_count(a); i++)
		if (strcmp(netlist_entry(a, i), netlist_entry(b, i)) != 0)
			return false;
	return true;
}

static bool
profile_equal(const struct config *a, const struct profile *x,
    const struct config *b, const struct profile *y)
{
	if (x == NULL || y == NULL)
		return x == y;
	return str_equal(x->name, y->name) &&
	    netlist_equal(config_profile_lan(a, x), config_profile_lan(b, y)) &&
	    x->relay_outside_lan == y->relay_outside_lan &&
	    x->relay_nonlocal_senders == y->relay_nonlocal_senders &&
	    strlist_equal(&x->always_relay_from, &y->always_relay_from) &&
	    strlist_equal(&x->always_relay_to, &y->always_relay_to) &&
	    x->require_auth == y->require_auth &&
	    x->accept_domain_literals == y->accept_domain_literals &&
	    x->open_relay_ok == y->open_relay_ok;
}

/*
 * Everything a running listener was started with: the instance's own settings, its
 * resolved profile and effective LAN, and the server settings a child reads (host
 * name, user, spool, local domains and recipients). Marks are not compared: moving a
 * definition to another file changes nothing.
 */
bool
config_instance_equal(const struct config *a, const struct instance *x,
    const struct config *b, const struct instance *y)
{
	const struct server *sa = &a->server, *sb = &b->server;

	if (!str_equal(sa->hostname, sb->hostname) || !str_equal(sa->user, sb->user) ||
	    !str_equal(sa->spool, sb->spool) ||
	    !strlist_equal(&sa->local_domains, &sb->local_domains) ||
	    !strlist_equal(&sa->local_recipients, &sb->local_recipients))
		return false;
	if (!str_equal(x->name, y->name) || x->n_listen != y->n_listen)
		return false;
	for (size_t i = 0; i < x->n_listen; i++) {
		const struct listen_addr *l = &x->listen[i], *m = &y->listen[i];
		if (!str_equal(l->text, m->text) || !str_equal(l->iface, m->iface) ||
		    l->port != m->port || !listen_same(l, m))
			return false;
	}
	if (!str_equal(x->profile_name, y->profile_name) ||
	    !profile_equal(a, x->profile, b, y->profile))
		return false;
	if (x->access != y->access ||
	    (x->access == ACCESS_LIST && !netlist_equal(x->access_list, y->access_list)))
		return false;
	return x->procs == y->procs && x->autostart == y->autostart &&
	    x->autorestart == y->autorestart && x->startsecs == y->startsecs &&
	    x->startretries == y->startretries &&
	    x->backoff_initial == y->backoff_initial &&
	    x->backoff_max == y->backoff_max && x->stopsignal == y->stopsignal &&
	    x->stopwaitsecs == y->stopwaitsecs &&
	    x->max_connections == y->max_connections &&
	    x->max_per_client == y->max_per_client &&
	    x->max_recipients == y->max_recipients &&
	    x->max_message_size == y->max_message_size &&
	    x->max_errors == y->max_errors &&
	    x->recipient_overshoot_limit == y->recipient_overshoot_limit &&
	    x->min_data_rate == y->min_data_rate &&
	    x->timeout_command == y->timeout_command &&
	    x->timeout_data == y->timeout_data &&
	    x->timeout_stress == y->timeout_stress &&
	    str_equal(x->syslog_name, y->syslog_name);
}

static const char *
plural(size_t n)
{
	return n == 1 ? "" : "s";
}

int
config_check_report(const char *dir, FILE *diag, FILE *out)
{
	struct config_diags diags;
	struct config *cfg = config_load_dir(dir, &diags);
	int ret;

	config_diags_print(&diags, diag);
	fflush(diag);
	if (cfg != NULL) {
		fprintf(out, "%s: ok: %zu instance%s, %zu profile%s", dir,
		    cfg->n_instances, plural(cfg->n_instances), cfg->n_profiles,
		    plural(cfg->n_profiles));
		if (diags.n_warnings > 0)
			fprintf(out, ", %zu warning%s", diags.n_warnings,
			    plural(diags.n_warnings));
		fprintf(out, "\n");
		ret = 0;
	} else {
		fprintf(out, "%s: %zu error%s\n", dir, diags.n_errors,
		    plural(diags.n_errors));
		ret = 1;
	}
	config_free(cfg);
	config_diags_free(&diags);
	return ret;
}

static void
known_add(const char ***v, size_t *n, char *key)
{
	*v = xreallocarray(*v, *n + 2, sizeof(**v));
	(*v)[(*n)++] = key;
	(*v)[*n] = NULL;
}

static void
known_table(const char ***v, size_t *n, const char *prefix, const struct cfg_key *t)
{
	for (; t->name != NULL; t++) {
		char *key = xasprintf("%s.%s", prefix, t->name);
		if (t->type == T_SECTION) {
			known_table(v, n, key, t->sub);
			free(key);
		} else {
			known_add(v, n, key);
		}
	}
}

const char *const *
config_known_keys(void)
{
	/* a per-process singleton, built once from the key tables */
	static const char **keys;
	size_t n = 0;

	if (keys != NULL)
		return keys;
	known_table(&keys, &n, "server", server_keys);
	known_add(&keys, &n, xstrdup("lan"));
	known_table(&keys, &n, "profiles.*", profile_keys);
	known_table(&keys, &n, "instances.*", instance_keys);
	return keys;
}
