/*
 * The configuration: every *.yaml of a directory, merged in name order, checked by a
 * key table plus a separate verify pass. The structures are plain data, read by every
 * program; only config.c builds or frees them.
 *
 * The supervisor reads the files once into a config_source (their names and bytes)
 * and hands children that exact snapshot (config_source_write/read over a memfd),
 * so a child never re-reads files that may have changed since they were validated.
 */
#ifndef RELAYVISOR_CONFIG_H
#define RELAYVISOR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

struct netlist;		/* common/net.h */

/* where a value came from, 1-based as printed */
struct cfg_mark {
	const char *file;	/* points into the config_source */
	unsigned line, column;
};

enum autorestart { AUTORESTART_FALSE, AUTORESTART_TRUE, AUTORESTART_UNEXPECTED };
enum access_kind { ACCESS_ANY, ACCESS_LAN, ACCESS_LIST };
/* starttls: plain SMTP that offers STARTTLS (25, 587); implicit: TLS from the
   first octet (465, RFC 8314) */
enum tls_mode { TLS_MODE_STARTTLS, TLS_MODE_IMPLICIT };

struct listen_addr {
	char *text;			/* as written, e.g. "[::1]:2525", "eth1:25" */
	char *iface;			/* interface name for "iface:port", else NULL */
	struct sockaddr_storage ss;	/* resolved address (interface's first address
					   for iface:port, IPv4 preferred) */
	socklen_t sslen;
	uint16_t port;
	struct cfg_mark mark;
};

struct strlist {
	char **v;
	size_t n;
};

struct profile {
	char *name;
	struct cfg_mark mark;
	bool lan_set;			/* profile has its own lan: (maybe empty) */
	struct netlist *lan;		/* own list if lan_set, else NULL */
	bool lan_invalid;		/* its lan: had an entry refused (reported) */
	bool relay_outside_lan;		/* default false */
	bool relay_nonlocal_senders;	/* default true */
	struct strlist always_relay_from;	/* "user@dom", "@dom", "@.dom" */
	struct strlist always_relay_to;
	bool require_auth;		/* default false */
	bool sender_login_match;	/* default false: MAIL FROM must be one of
					   the AUTH user's addresses */
	bool relay_authenticated;	/* default true (permit_sasl_authenticated) */
	bool accept_domain_literals;	/* default false */
	bool open_relay_ok;		/* open_relay: i-understand */
};

struct instance {
	char *name;
	struct cfg_mark mark;
	struct listen_addr *listen;
	size_t n_listen;
	char *profile_name;
	const struct profile *profile;	/* resolved by verify */
	enum access_kind access;
	struct netlist *access_list;	/* ACCESS_LIST only */
	unsigned procs;			/* default 1 */
	bool autostart;			/* default true */
	enum autorestart autorestart;	/* default unexpected */
	double startsecs;		/* default 1s */
	unsigned startretries;		/* default 3 */
	double backoff_initial;		/* default 1s */
	double backoff_max;		/* default 60s */
	int stopsignal;			/* default SIGTERM */
	double stopwaitsecs;		/* default 10s */
	unsigned max_connections;	/* default 1000 */
	unsigned max_per_client;	/* default 50 */
	unsigned max_recipients;	/* default 100 */
	uint64_t max_message_size;	/* default 10M */
	unsigned max_errors;		/* default 20 (Postfix smtpd_hard_error_limit) */
	double timeout_command;		/* default 300s (RFC 5321 4.5.3.2) */
	double timeout_data;		/* default 180s, plus octets / min_data_rate */
	double timeout_stress;		/* default 10s: command and data timeout
					   while the listener is under stress */
	unsigned recipient_overshoot_limit;	/* default 1000 (Postfix's) */
	uint64_t min_data_rate;		/* octets/s, default 500 (Postfix
					   smtpd_min_data_rate) */
	char *syslog_name;		/* default "relayvisor/<name>" */
	char *tls_cert;			/* tls.cert: PEM chain, NULL: no TLS */
	char *tls_key;			/* tls.key: PEM private key */
	enum tls_mode tls_mode;		/* default starttls */
	bool require_tls;		/* default false: MAIL before TLS gets 530 */
	bool auth_plaintext_loopback;	/* default false: AUTH without TLS for a
					   loopback client (tests) */
};

/* server: paths when the configuration names none (relayvisorctl uses them
   too, for a configuration too broken to load) */
#define CONFIG_DEFAULT_SPOOL "./var/spool"
#define CONFIG_DEFAULT_CONTROL "./var/run/relayvisor.sock"
#define CONFIG_DEFAULT_LOGS "./var/log"

struct server {
	char *hostname;			/* default gethostname() */
	char *user;			/* NULL: children keep the supervisor's uid */
	char *spool;			/* default ./var/spool */
	char *control;			/* default ./var/run/relayvisor.sock */
	char *control_group;		/* NULL: socket mode 0600 */
	char *logs;			/* default ./var/log */
	uint64_t log_max_bytes;		/* rotate logs/<instance>.log at this size; 0 never */
	unsigned log_backups;		/* rotated files kept: .1 .. .N */
	struct strlist local_domains;	/* lowercased, trailing dot removed */
	struct strlist local_recipients;	/* empty: any local part */
	char *auth_passwd_file;		/* auth.passwd_file, NULL: none */
	char *auth_dovecot;		/* auth.dovecot: Dovecot's auth-client socket */
};

/* server.auth names a backend: relayvisor-auth runs, listeners offer AUTH */
#define CONFIG_AUTH_ON(cfg) \
	((cfg)->server.auth_passwd_file != NULL || (cfg)->server.auth_dovecot != NULL)

/* delivery: (relayvisor-qmgr and relayvisor-deliver run when the section exists) */
/* outbound TLS, Postfix's smtp_tls_security_level: none, may (STARTTLS when
   offered, any certificate), encrypt (TLS required, any certificate), verify
   (TLS required, chain and host name checked against delivery.tls_ca_file) */
enum delivery_tls {
	DELIVERY_TLS_DEFAULT = -1,	/* a route or the relayhost: delivery.tls */
	DELIVERY_TLS_NONE = 0, DELIVERY_TLS_MAY, DELIVERY_TLS_ENCRYPT, DELIVERY_TLS_VERIFY,
};

struct delivery_route {
	char *pattern;			/* "example.net" or ".example.net" */
	char *nexthop;			/* deliver/route.h syntax */
	struct cfg_mark mark;
	int tls;			/* enum delivery_tls; the mapping form's tls: */
};

struct delivery {
	bool configured;		/* the configuration has a delivery: section */
	struct cfg_mark mark;
	char *relayhost;		/* NULL: MX delivery */
	char *local;			/* default "maildir:./var/mail/%d/%u" */
	struct delivery_route *routes;
	size_t n_routes;
	struct strlist dns_servers;	/* empty: /etc/resolv.conf */
	unsigned procs;			/* delivery agents, default 1 */
	unsigned smtp_port;		/* port of MX and bare next hops, default 25 */
	double retry_min;		/* 5 min */
	double retry_max;		/* 1 h */
	double delay_warning;		/* 4 h, 0 none */
	double max_lifetime;		/* 5 d */
	unsigned dest_concurrency;	/* 5 at first per destination */
	unsigned dest_concurrency_max;	/* 20 */
	unsigned total_concurrency;	/* 100 */
	int tls;			/* enum delivery_tls, default may */
	char *tls_ca_file;		/* NULL: the system store */
	int relayhost_tls;		/* enum delivery_tls, default delivery.tls */
	char *relayhost_auth_user;	/* relayhost_auth: {user, password_file} */
	char *relayhost_auth_password_file;
};
#define DELIVERY_CA_FILE_DEFAULT "/etc/ssl/certs/ca-certificates.crt"
/* "none", "may", "encrypt", "verify" */
const char *delivery_tls_name(int level);
#define DELIVERY_LOCAL_DEFAULT "maildir:./var/mail/%d/%u"

struct config {
	char *dir;
	struct server server;
	struct delivery delivery;
	struct netlist *lan;		/* server-wide LAN, never NULL */
	bool lan_invalid;		/* lan: had an entry refused (reported) */
	struct profile *profiles;
	size_t n_profiles;
	struct instance *instances;
	size_t n_instances;
	struct config_source *source;	/* the bytes this was built from */
};

/* the files of a configuration directory, read once */
struct config_source;

struct config_diag {
	struct cfg_mark mark;	/* file NULL for a message with no place; here file
				   is a copy owned by the diags, valid until
				   config_diags_free() */
	bool warning;
	char *message;
};

struct config_diags {
	struct config_diag *v;
	size_t n;
	size_t n_errors, n_warnings;
};

/* Read every *.yaml of dir (name order). -1 with *error_r when the dir can't be read. */
int config_source_read_dir(const char *dir, struct config_source **src_r,
    const char **error_r);
/* a source from memory, for tests and fuzzing: files[i] named names[i] */
struct config_source *config_source_from_buffers(const char *dir,
    const char *const *names, const char *const *bufs, size_t n);
/* serialise to / read from an fd (the snapshot a child gets) */
int config_source_write(const struct config_source *src, int fd, const char **error_r);
int config_source_read_fd(int fd, struct config_source **src_r, const char **error_r);
/* a memfd holding the snapshot, positioned at 0; -1 on error */
int config_source_memfd(const struct config_source *src, const char **error_r);
void config_source_free(struct config_source *src);
/* the directory, and the files in load order (names without the directory) */
const char *config_source_dir(const struct config_source *src);
size_t config_source_count(const struct config_source *src);
const char *config_source_name(const struct config_source *src, size_t i);

/*
 * Parse and verify. Always returns a config (possibly partial) and fills diags with
 * every error and warning; the config is usable only when diags->n_errors == 0.
 * Takes ownership of src.
 */
struct config *config_load(struct config_source *src, struct config_diags *diags);
/* convenience: read dir + load; returns NULL and fills diags on any error */
struct config *config_load_dir(const char *dir, struct config_diags *diags);
void config_free(struct config *cfg);
void config_diags_free(struct config_diags *diags);
/* "FILE:LINE:COLUMN: error: MESSAGE\n" for each diag */
void config_diags_print(const struct config_diags *diags, FILE *fp);

const struct instance *config_instance(const struct config *cfg, const char *name);
const struct profile *config_profile(const struct config *cfg, const char *name);
/* the LAN an instance's profile trusts (profile's own or server-wide) */
const struct netlist *config_profile_lan(const struct config *cfg,
    const struct profile *p);
/* true when two instances' definitions are equal (reload: untouched ones keep running) */
bool config_instance_equal(const struct config *a, const struct instance *x,
    const struct config *b, const struct instance *y);

/* the profile relays for any client: relay_outside_lan, or a LAN / always_relay_*
   entry covering everything (the open-relay interlock of DESIGN.md section 4) */
bool config_profile_relays_for_anyone(const struct config *cfg, const struct profile *p);

/* `relayvisord -t`: load dir, print every diag to diag and then the summary
   line ("conf.d: ok: 2 instances, 2 profiles" / "conf.d: 3 errors") to out, as
   nginx -t splits them (stderr, stdout); returns 0 or 1 */
int config_check_report(const char *dir, FILE *diag, FILE *out);

/* the keys the loader knows, "section.key" (e.g. "server.hostname",
   "profiles.*.relay_outside_lan", "instances.*.timeouts.command"), NULL-terminated;
   the README test compares this list with the documented keys */
const char *const *config_known_keys(void);

/* the configuration directory when none is named: ./conf.d where it exists
   (a source tree, make run), else the installed RELAYVISOR_SYSCONFDIR/conf.d */
#ifndef RELAYVISOR_SYSCONFDIR
#define RELAYVISOR_SYSCONFDIR "/etc/relayvisor"
#endif
const char *config_default_dir(void);

#endif
