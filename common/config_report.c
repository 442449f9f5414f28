/*
 * What the configuration tells people: `relayvisord -t` (every diag, then a
 * summary line) and the list of known keys the README test compares with the
 * documented ones.
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
	known_table(&keys, &n, "delivery", delivery_keys);
	return keys;
}

