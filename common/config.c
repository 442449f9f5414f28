/*
 * The configuration (config.h): load = parse (config_parse.c) + verify
 * (config_verify.c), free, and lookups.
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
	delivery_defaults(&cfg->delivery);
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
	free(inst->tls_cert);
	free(inst->tls_key);
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
	free(cfg->server.auth_passwd_file);
	free(cfg->server.auth_dovecot);
	delivery_free(&cfg->delivery);
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


void
delivery_free(struct delivery *d)
{
	free(d->relayhost);
	free(d->local);
	for (size_t i = 0; i < d->n_routes; i++) {
		free(d->routes[i].pattern);
		free(d->routes[i].nexthop);
	}
	free(d->routes);
	strlist_free(&d->dns_servers);
	free(d->tls_ca_file);
	free(d->relayhost_auth_user);
	free(d->relayhost_auth_password_file);
}
