/*
 * Equality of definitions, for reload: an instance whose definition (its own
 * keys, its profile, the server keys a listener uses) is unchanged keeps running.
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
	    x->sender_login_match == y->sender_login_match &&
	    x->relay_authenticated == y->relay_authenticated &&
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
	    !strlist_equal(&sa->local_recipients, &sb->local_recipients) ||
	    CONFIG_AUTH_ON(a) != CONFIG_AUTH_ON(b))
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
	    str_equal(x->syslog_name, y->syslog_name) &&
	    str_equal(x->tls_cert, y->tls_cert) && str_equal(x->tls_key, y->tls_key) &&
	    x->tls_mode == y->tls_mode && x->require_tls == y->require_tls &&
	    x->auth_plaintext_loopback == y->auth_plaintext_loopback;
}

