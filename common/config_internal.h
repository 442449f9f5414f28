/*
 * Private to common/config*.c: the layout of a config_source (config_source.c),
 * the key tables' types (config_keys.c), the loader's state, and the functions
 * the loader's files (parse, value, verify, diff, report) call in each other.
 */
#ifndef RELAYVISOR_CONFIG_INTERNAL_H
#define RELAYVISOR_CONFIG_INTERNAL_H

#include <ifaddrs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "common/config.h"

struct config_file {
	char *name;	/* "10-server.yaml" */
	char *path;	/* dir + "/" + name: what diagnostics print */
	char *data;	/* NUL-terminated */
	size_t len;
};

struct config_source {
	char *dir;
	struct config_file *files;
	size_t n;
	/* "*.yml" names found beside them: not read, each an error of the loader
	   (never in a snapshot: a source with them never validates) */
	char **yml;
	size_t n_yml;
};


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
	T_TLS_MODE,
	T_AUTORESTART,
	T_SIGNAL,
	T_OPEN_RELAY,
	T_SECTION,	/* nested mapping, keys in sub */
	T_NEXTHOP,	/* a next hop (deliver/route.h) */
	T_ROUTES,	/* delivery.routes: domain pattern -> next hop */
	T_SERVERS,	/* a list of "host", "host:port", "[v6]:port" */
	T_DELIVERY_TLS,	/* none, may, encrypt, verify (enum delivery_tls) */
	T_FILE,		/* an absolute path to a regular file */
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t off;		/* into the struct the table describes */
	double min, max;	/* T_UINT, T_SIZE, T_DURATION */
	const struct cfg_key *sub;	/* T_SECTION */
};

extern const struct cfg_key server_keys[], profile_keys[], instance_keys[],
    delivery_keys[];
extern const char *const toplevel_keys[];

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


/* config_keys.c */
void profile_defaults(struct profile *p, const char *name, struct cfg_mark mark);
/* config_keys.c */
void instance_defaults(struct instance *inst, const char *name, struct cfg_mark mark);
/* config_keys.c */
void server_defaults(struct server *s);
/* config_parse.c */
void diags_init(struct config_diags *d);
/* config_parse.c */
void diag_error(struct loader *ld, const struct cfg_mark *mark, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* config_parse.c */
void diag_warning(struct loader *ld, const struct cfg_mark *mark, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* config_parse.c */
const char * nearest(const char *word, const char *const *cands, size_t n);
/* config_parse.c */
char * did_you_mean(const char *suggestion);
/* config_parse.c */
const struct cfg_mark * seen_find(const struct loader *ld, const char *path);
/* config_parse.c */
void parse_file(struct loader *ld, const struct config_file *f);
/* config_value.c */
void strlist_add(struct strlist *l, const char *s);
/* config_value.c */
void strlist_free(struct strlist *l);
/* config_value.c */
bool strlist_equal(const struct strlist *a, const struct strlist *b);
/* config_value.c */
bool parse_uint64(const char *s, uint64_t *v);
/* config_value.c */
bool parse_bool(const char *s, bool *v);
/* config_value.c */
bool parse_size(const char *s, uint64_t *v);
/* config_value.c */
bool parse_duration(const char *s, double *v);
/* config_value.c */
bool valid_domain(const char *d);
/* config_value.c */
char * domain_canon(const char *s);
/* config_value.c */
bool valid_localpart(const char *s);
/* config_value.c */
bool parse_signal(const char *s, int *sig);
/* config_value.c */
char * fmt_size(uint64_t v);
/* config_value.c */
char * listen_parse(struct loader *ld, const char *text, struct listen_addr *la);
/* config_verify.c */
bool listen_same(const struct listen_addr *a, const struct listen_addr *b);
/* config_verify.c */
void verify(struct loader *ld);
/* config_keys.c */
void server_path_defaults(struct server *s);
/* config_keys.c */
void delivery_defaults(struct delivery *d);
/* config.c */
void delivery_free(struct delivery *d);
/* config_parse.c: "may" -> DELIVERY_TLS_MAY; false for anything else */
bool delivery_tls_parse(const char *s, int *level);
/* config_parse.c: a relative maildir: next hop made absolute (malloc'd) */
char *nexthop_absolute(const char *s);

#endif
