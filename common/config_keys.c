/*
 * The configuration's key tables (name, type, where the value goes, its range;
 * Dovecot's setting_define) and the defaults set before parsing. A new config
 * key: its field in config.h, its row here with its default, its check in
 * config_verify.c if it needs the whole picture, its line in README's
 * configuration reference and relayvisor.conf(5) (check_readme compares them),
 * and, for a listener setting, its comparison in config_diff.c.
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

#define KEY(st, field, name, type) { name, type, offsetof(struct st, field), 0, 0, NULL }
#define KEYR(st, field, name, type, lo, hi) \
	{ name, type, offsetof(struct st, field), lo, hi, NULL }
#define KEYEND { NULL, T_STRING, 0, 0, 0, NULL }

#define KEY(st, field, name, type) { name, type, offsetof(struct st, field), 0, 0, NULL }
#define KEYR(st, field, name, type, lo, hi) \
	{ name, type, offsetof(struct st, field), lo, hi, NULL }
#define KEYEND { NULL, T_STRING, 0, 0, 0, NULL }

static const struct cfg_key auth_keys[] = {
	KEY(server, auth_passwd_file, "passwd_file", T_STRING),
	KEY(server, auth_dovecot, "dovecot", T_SOCKPATH),
	KEYEND
};

const struct cfg_key server_keys[] = {
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
	{ "auth", T_SECTION, 0, 0, 0, auth_keys },
	KEYEND
};

const struct cfg_key profile_keys[] = {
	KEY(profile, lan, "lan", T_PROFILE_LAN),
	KEY(profile, relay_outside_lan, "relay_outside_lan", T_BOOL),
	KEY(profile, relay_nonlocal_senders, "relay_nonlocal_senders", T_BOOL),
	KEY(profile, always_relay_from, "always_relay_from", T_PATTERNS),
	KEY(profile, always_relay_to, "always_relay_to", T_PATTERNS),
	KEY(profile, require_auth, "require_auth", T_BOOL),
	KEY(profile, sender_login_match, "sender_login_match", T_BOOL),
	KEY(profile, relay_authenticated, "relay_authenticated", T_BOOL),
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

static const struct cfg_key tls_keys[] = {
	KEY(instance, tls_cert, "cert", T_STRING),
	KEY(instance, tls_key, "key", T_STRING),
	KEYEND
};

const struct cfg_key instance_keys[] = {
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
	{ "tls", T_SECTION, 0, 0, 0, tls_keys },
	KEY(instance, tls_mode, "tls_mode", T_TLS_MODE),
	KEY(instance, require_tls, "require_tls", T_BOOL),
	KEY(instance, auth_plaintext_loopback, "auth_plaintext_loopback", T_BOOL),
	KEYEND
};

static const struct cfg_key relayhost_auth_keys[] = {
	KEY(delivery, relayhost_auth_user, "user", T_STRING),
	KEY(delivery, relayhost_auth_password_file, "password_file", T_FILE),
	KEYEND
};

const struct cfg_key delivery_keys[] = {
	KEY(delivery, relayhost, "relayhost", T_NEXTHOP),
	KEY(delivery, relayhost_tls, "relayhost_tls", T_DELIVERY_TLS),
	{ "relayhost_auth", T_SECTION, 0, 0, 0, relayhost_auth_keys },
	KEY(delivery, tls, "tls", T_DELIVERY_TLS),
	KEY(delivery, tls_ca_file, "tls_ca_file", T_FILE),
	KEY(delivery, local, "local", T_NEXTHOP),
	KEY(delivery, routes, "routes", T_ROUTES),
	KEY(delivery, dns_servers, "dns_servers", T_SERVERS),
	KEYR(delivery, procs, "procs", T_UINT, 1, 64),
	KEYR(delivery, smtp_port, "smtp_port", T_UINT, 1, 65535),
	KEYR(delivery, retry_min, "retry_min", T_DURATION, 1, 86400),
	KEYR(delivery, retry_max, "retry_max", T_DURATION, 1, 7 * 86400),
	KEYR(delivery, delay_warning, "delay_warning", T_DURATION, 0, 30 * 86400),
	KEYR(delivery, max_lifetime, "max_lifetime", T_DURATION, 60, 90 * 86400),
	KEYR(delivery, dest_concurrency, "dest_concurrency", T_UINT, 1, 1000),
	KEYR(delivery, dest_concurrency_max, "dest_concurrency_max", T_UINT, 1, 1000),
	KEYR(delivery, total_concurrency, "total_concurrency", T_UINT, 1, 10000),
	KEYEND
};

const char *const toplevel_keys[] = {
	"server", "lan", "profiles", "instances", "delivery", NULL
};

/* ---- defaults ---- */

void
profile_defaults(struct profile *p, const char *name, struct cfg_mark mark)
{
	memset(p, 0, sizeof(*p));
	p->name = xstrdup(name);
	p->mark = mark;
	p->relay_nonlocal_senders = true;
	p->relay_authenticated = true;
}

void
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


void
delivery_defaults(struct delivery *d)
{
	d->procs = 1;
	d->smtp_port = 25;
	d->retry_min = 300;
	d->retry_max = 3600;
	d->delay_warning = 4 * 3600;
	d->max_lifetime = 5 * 86400;
	d->dest_concurrency = 5;
	d->dest_concurrency_max = 20;
	d->total_concurrency = 100;
	d->tls = DELIVERY_TLS_MAY;
	d->relayhost_tls = DELIVERY_TLS_DEFAULT;
}

void
server_defaults(struct server *s)
{
	s->log_max_bytes = (uint64_t)50 << 20;
	s->log_backups = 10;
}

/* the paths a configuration left out, once every file is read */
void
server_path_defaults(struct server *s)
{
	if (s->spool == NULL)
		s->spool = xstrdup(CONFIG_DEFAULT_SPOOL);
	if (s->control == NULL)
		s->control = xstrdup(CONFIG_DEFAULT_CONTROL);
	if (s->logs == NULL)
		s->logs = xstrdup(CONFIG_DEFAULT_LOGS);
}

