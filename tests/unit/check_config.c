/*
 * common/config.c: every broken configuration reports the exact message at the exact
 * file:line:column; good configurations yield the expected structures and defaults;
 * the shipped conf.d loads cleanly; the snapshot a child gets loads identically.
 * Tests run from the repository root (the shipped configuration is "conf.d").
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "common/config.h"
#include "common/net.h"
#include "tests/unit/testmain.h"
#include "tests/unit/testutil.h"


/* load one or two files named conf.d/10-a.yaml and conf.d/20-b.yaml */
static struct config *
load2(const char *a, const char *b, struct config_diags *d)
{
	const char *names[] = { "10-a.yaml", "20-b.yaml" };
	const char *bufs[] = { a, b };

	return config_load(config_source_from_buffers("conf.d", names, bufs,
	    b != NULL ? 2 : 1), d);
}

/* every diag of one kind, one "FILE:LINE:COLUMN: KIND: MESSAGE" line each */
static char *
diags_text(const struct config_diags *d, bool warnings)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(fp);
	for (size_t i = 0; i < d->n; i++) {
		const struct config_diag *g = &d->v[i];
		if (g->warning != warnings)
			continue;
		ck_assert_ptr_nonnull(g->mark.file);
		fprintf(fp, "%s:%u:%u: %s: %s\n", g->mark.file, g->mark.line,
		    g->mark.column, warnings ? "warning" : "error", g->message);
	}
	fclose(fp);
	return buf;
}

/* the whole output of config_diags_print() */
static char *
diags_printed(const struct config_diags *d)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(fp);
	config_diags_print(d, fp);
	fclose(fp);
	return buf;
}

static const struct {
	const char *name, *a, *b, *expect;
} broken[] = {
	{ "syntax_flow",
	    "server:\n  hostname: [a\n",
	    NULL,
	    "conf.d/10-a.yaml:3:1: error: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)" },
	{ "syntax_tab",
	    "server:\n\thostname: x\n",
	    NULL,
	    "conf.d/10-a.yaml:2:1: error: YAML syntax error: found character that cannot start any token (while scanning for the next token)" },
	{ "syntax_indent",
	    "server:\n  hostname: x\n local_domains: []\n",
	    NULL,
	    "conf.d/10-a.yaml:3:2: error: YAML syntax error: did not find expected key (while parsing a block mapping)" },
	{ "unknown_toplevel",
	    "lans: []\n",
	    NULL,
	    "conf.d/10-a.yaml:1:1: error: unknown top-level key 'lans' (did you mean 'lan'?)" },
	/* a suggestion only for a likely typo, never the least different word */
	{ "unknown_toplevel_far",
	    "log: []\n",
	    NULL,
	    "conf.d/10-a.yaml:1:1: error: unknown top-level key 'log'" },
	{ "unknown_toplevel_near",
	    "sever: {}\n",
	    NULL,
	    "conf.d/10-a.yaml:1:1: error: unknown top-level key 'sever' (did you mean 'server'?)" },
	{ "unknown_instance_key_swap",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    porcs: 2\n",
	    NULL,
	    "conf.d/10-a.yaml:7:5: error: unknown key 'porcs' in instance 'x' (did you mean 'procs'?)" },
	{ "unknown_instance_key_far",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    max_size: 1M\n",
	    NULL,
	    "conf.d/10-a.yaml:7:5: error: unknown key 'max_size' in instance 'x'" },
	{ "unknown_server_key",
	    "server:\n  hostnam: x\n",
	    NULL,
	    "conf.d/10-a.yaml:2:3: error: unknown key 'hostnam' in server (did you mean 'hostname'?)" },
	{ "unknown_profile_key",
	    "profiles:\n  x:\n    relay_outside_lans: true\n",
	    NULL,
	    "conf.d/10-a.yaml:3:5: error: unknown key 'relay_outside_lans' in profile 'x' (did you mean 'relay_outside_lan'?)" },
	{ "unknown_instance_key",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    colour: red\n",
	    NULL,
	    "conf.d/10-a.yaml:7:5: error: unknown key 'colour' in instance 'x'" },
	{ "unknown_backoff_key",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    backoff: {inital: 2s}\n",
	    NULL,
	    "conf.d/10-a.yaml:7:15: error: unknown key 'inital' in backoff of instance 'x' (did you mean 'initial'?)" },
	{ "bool",
	    "profiles:\n  x:\n    relay_outside_lan: maybe\n",
	    NULL,
	    "conf.d/10-a.yaml:3:24: error: 'relay_outside_lan' in profile 'x': expected true or false, got 'maybe'" },
	{ "int",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    procs: two\n",
	    NULL,
	    "conf.d/10-a.yaml:7:12: error: 'procs' in instance 'x': expected an integer, got 'two'" },
	{ "int_low",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    procs: 0\n",
	    NULL,
	    "conf.d/10-a.yaml:7:12: error: 'procs' in instance 'x': 0 is out of range (1 to 64)" },
	{ "int_high",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    procs: 65\n",
	    NULL,
	    "conf.d/10-a.yaml:7:12: error: 'procs' in instance 'x': 65 is out of range (1 to 64)" },
	{ "int_negative",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    max_errors: -1\n",
	    NULL,
	    "conf.d/10-a.yaml:7:17: error: 'max_errors' in instance 'x': -1 is out of range (1 to 1000)" },
	{ "size",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    max_message_size: 10X\n",
	    NULL,
	    "conf.d/10-a.yaml:7:23: error: 'max_message_size' in instance 'x': expected a size (bytes, or with K or M, e.g. 10M), got '10X'" },
	{ "size_range",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    max_message_size: 2000M\n",
	    NULL,
	    "conf.d/10-a.yaml:7:23: error: 'max_message_size' in instance 'x': 2000M is out of range (1K to 1024M)" },
	{ "duration",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    startsecs: 5w\n",
	    NULL,
	    "conf.d/10-a.yaml:7:16: error: 'startsecs' in instance 'x': expected a duration (seconds, or with s, m, h or d, e.g. 30s, 5m, 4h), got '5w'" },
	{ "duration_range",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    timeouts: {command: 0}\n",
	    NULL,
	    "conf.d/10-a.yaml:7:25: error: 'command' in timeouts of instance 'x': 0 is out of range (1s to 3600s)" },
	{ "list_expected",
	    "lan: 127.0.0.1\n",
	    NULL,
	    "conf.d/10-a.yaml:1:6: error: 'lan': expected a list, got '127.0.0.1'" },
	{ "map_expected",
	    "server: [a]\n",
	    NULL,
	    "conf.d/10-a.yaml:1:9: error: 'server': expected a mapping, got a list" },
	{ "string_expected",
	    "server:\n  spool: [a]\n",
	    NULL,
	    "conf.d/10-a.yaml:2:10: error: 'spool' in server: expected a non-empty string, got a list" },
	{ "string_empty",
	    "server:\n  spool: \"\"\n",
	    NULL,
	    "conf.d/10-a.yaml:2:10: error: 'spool' in server: expected a non-empty string, got ''" },
	{ "section_expected",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    timeouts: 30s\n",
	    NULL,
	    "conf.d/10-a.yaml:7:15: error: 'timeouts' in instance 'x': expected a mapping, got '30s'" },
	{ "dup_profile",
	    "profiles:\n  x: {}\n  x: {}\n",
	    NULL,
	    "conf.d/10-a.yaml:3:3: error: profile 'x' already defined at conf.d/10-a.yaml:2:3" },
	{ "dup_instance_files",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n",
	    "instances:\n  x:\n    listen: [\"127.0.0.1:2526\"]\n    profile: p\n",
	    "conf.d/20-b.yaml:2:3: error: instance 'x' already defined at conf.d/10-a.yaml:4:3" },
	{ "dup_key_files",
	    "server:\n  hostname: a.example\n",
	    "\nserver:\n  hostname: b.example\n",
	    "conf.d/20-b.yaml:3:3: error: 'hostname' in server already defined at conf.d/10-a.yaml:2:3" },
	{ "dup_lan_files",
	    "lan: []\n",
	    "lan: [10.0.0.1]\n",
	    "conf.d/20-b.yaml:1:1: error: 'lan' already defined at conf.d/10-a.yaml:1:1" },
	{ "dup_instance_key",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    procs: 1\n    procs: 2\n",
	    NULL,
	    "conf.d/10-a.yaml:8:5: error: 'procs' in instance 'x' already defined at conf.d/10-a.yaml:7:5" },
	{ "no_such_profile",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: q\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: instance 'x': no profile named 'q'" },
	{ "no_profile",
	    "instances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:2:3: error: instance 'x' needs a profile" },
	{ "no_listen",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n",
	    NULL,
	    "conf.d/10-a.yaml:4:3: error: instance 'x' has no listen address" },
	{ "listen_empty",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: []\n",
	    NULL,
	    "conf.d/10-a.yaml:6:13: error: 'listen' in instance 'x': expected at least one address" },
	{ "listen_form",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: [localhost]\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: entry 'localhost' of 'listen' in instance 'x': expected IPv4:port, [IPv6]:port or interface:port" },
	{ "listen_iface",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: [\"nosuchif9:25\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: entry 'nosuchif9:25' of 'listen' in instance 'x': no interface named 'nosuchif9' (expected IPv4:port, [IPv6]:port or interface:port)" },
	{ "listen_port0",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: [\"127.0.0.1:0\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: entry '127.0.0.1:0' of 'listen' in instance 'x': port '0' is not a number from 1 to 65535" },
	{ "listen_port_big",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: [\"127.0.0.1:70000\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: entry '127.0.0.1:70000' of 'listen' in instance 'x': port '70000' is not a number from 1 to 65535" },
	{ "listen_v6_brackets",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: [\"::1:25\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: entry '::1:25' of 'listen' in instance 'x': an IPv6 address needs brackets, e.g. [::1]:25" },
	{ "listen_bad_v4",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: [\"256.1.1.1:25\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: entry '256.1.1.1:25' of 'listen' in instance 'x': '256.1.1.1' is not an IPv4 address" },
	{ "listen_bad_v6",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: [\"[::g]:25\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: entry '[::g]:25' of 'listen' in instance 'x': '::g' is not an IPv6 address" },
	{ "listen_v4mapped",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    profile: p\n    listen: [\"[::ffff:127.0.0.1]:25\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: entry '[::ffff:127.0.0.1]:25' of 'listen' in instance 'x': '::ffff:127.0.0.1' is an IPv4-mapped address: listen on the IPv4 address itself" },
	{ "lan_wildcard",
	    "lan: [127.0.0.1, \"192.*.1.1\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:1:18: error: entry '192.*.1.1' of 'lan': expected an IPv4 or IPv6 address, a CIDR block (192.168.1.0/24, 2001:db8::/32) or an IPv4 address with trailing octet wildcards (192.168.1.*)" },
	{ "profile_lan_cidr",
	    "profiles:\n  x:\n    lan: [10.0.0.0/33]\n",
	    NULL,
	    "conf.d/10-a.yaml:3:11: error: entry '10.0.0.0/33' of 'lan' in profile 'x': expected an IPv4 or IPv6 address, a CIDR block (192.168.1.0/24, 2001:db8::/32) or an IPv4 address with trailing octet wildcards (192.168.1.*)" },
	{ "access_entry",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    access: [foo]\n",
	    NULL,
	    "conf.d/10-a.yaml:7:14: error: entry 'foo' of 'access' in instance 'x': expected an IPv4 or IPv6 address, a CIDR block (192.168.1.0/24, 2001:db8::/32) or an IPv4 address with trailing octet wildcards (192.168.1.*)" },
	{ "access_word",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    access: some\n",
	    NULL,
	    "conf.d/10-a.yaml:7:13: error: 'access' in instance 'x': expected any, lan or a list of networks, got 'some'" },
	{ "relay_to",
	    "profiles:\n  x:\n    always_relay_to: [\"user@\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:3:23: error: entry 'user@' of 'always_relay_to' in profile 'x': expected user@domain, @domain or @.domain (subdomains)" },
	{ "relay_from",
	    "profiles:\n  x:\n    always_relay_from: [nodomain]\n",
	    NULL,
	    "conf.d/10-a.yaml:3:25: error: entry 'nodomain' of 'always_relay_from' in profile 'x': expected user@domain, @domain or @.domain (subdomains)" },
	{ "local_domain",
	    "server:\n  local_domains: [example.test, \"bad domain\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:2:33: error: entry 'bad domain' of 'local_domains' in server: expected a domain name" },
	{ "local_recipient",
	    "server:\n  local_recipients: [a@b]\n",
	    NULL,
	    "conf.d/10-a.yaml:2:22: error: entry 'a@b' of 'local_recipients' in server: expected a local part (the part before @, without @ or spaces)" },
	{ "open_relay_value",
	    "profiles:\n  x:\n    open_relay: yes\n",
	    NULL,
	    "conf.d/10-a.yaml:3:17: error: 'open_relay' in profile 'x': expected i-understand (the only accepted value), got 'yes'" },
	{ "autorestart",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    autorestart: sometimes\n",
	    NULL,
	    "conf.d/10-a.yaml:7:18: error: 'autorestart' in instance 'x': expected true, false or unexpected, got 'sometimes'" },
	{ "stopsignal",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    stopsignal: FOO\n",
	    NULL,
	    "conf.d/10-a.yaml:7:17: error: 'stopsignal' in instance 'x': expected a signal name (TERM, INT, QUIT, USR1, USR2), got 'FOO'" },
	/* a listener ignores HUP and cannot stop gracefully on KILL */
	{ "stopsignal HUP",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    stopsignal: HUP\n",
	    NULL,
	    "conf.d/10-a.yaml:7:17: error: 'stopsignal' in instance 'x': expected a signal name (TERM, INT, QUIT, USR1, USR2), got 'HUP'" },
	/* a listener ignores HUP and cannot stop gracefully on KILL */
	{ "stopsignal KILL",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    stopsignal: KILL\n",
	    NULL,
	    "conf.d/10-a.yaml:7:17: error: 'stopsignal' in instance 'x': expected a signal name (TERM, INT, QUIT, USR1, USR2), got 'KILL'" },
	{ "backoff_order",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    backoff:\n      initial: 10s\n      max: 5s\n",
	    NULL,
	    "conf.d/10-a.yaml:9:12: error: backoff of instance 'x': max (5s) is below initial (10s)" },
	{ "tls_cert_without_key",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    tls: {cert: /etc/ssl/c.pem}\n",
	    NULL,
	    "conf.d/10-a.yaml:7:10: error: tls of instance 'x': expected both cert and key" },
	{ "tls_implicit_without_cert",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    tls_mode: implicit\n",
	    NULL,
	    "conf.d/10-a.yaml:7:15: error: tls_mode implicit of instance 'x' needs tls: {cert, key}" },
	{ "auth_two_backends",
	    "server:\n  auth:\n    passwd_file: ./pw\n    dovecot: /run/dovecot/auth-client\n",
	    NULL,
	    "conf.d/10-a.yaml:4:14: error: auth of server: expected one backend, passwd_file or dovecot, not both" },
	{ "auth_not_a_mapping",
	    "server:\n  auth: ./pw\n",
	    NULL,
	    "conf.d/10-a.yaml:2:9: error: 'auth' in server: expected a mapping, got './pw'" },
	{ "auth_unknown_key",
	    "server:\n  auth: {passwdfile: ./pw}\n",
	    NULL,
	    "conf.d/10-a.yaml:2:10: error: unknown key 'passwdfile' in auth of server (did you mean 'passwd_file'?)" },
	{ "sender_login_match_not_bool",
	    "profiles:\n  p: {sender_login_match: maybe}\n",
	    NULL,
	    "conf.d/10-a.yaml:2:27: error: 'sender_login_match' in profile 'p': expected true or false, got 'maybe'" },
	{ "auth_plaintext_loopback_not_bool",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    auth_plaintext_loopback: 2\n",
	    NULL,
	    "conf.d/10-a.yaml:7:30: error: 'auth_plaintext_loopback' in instance 'x': expected true or false, got '2'" },
	{ "tls_mode_unknown",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    tls_mode: smtps\n",
	    NULL,
	    "conf.d/10-a.yaml:7:15: error: 'tls_mode' in instance 'x': expected starttls or implicit, got 'smtps'" },
	{ "require_tls_without_cert",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    require_tls: true\n",
	    NULL,
	    "conf.d/10-a.yaml:7:18: error: require_tls of instance 'x' needs tls: {cert, key} (STARTTLS is offered only with a certificate)" },
	{ "interlock_outside",
	    "profiles:\n  p:\n    relay_outside_lan: true\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\", \"0.0.0.0:2526\"]\n    profile: p\n",
	    NULL,
	    "conf.d/10-a.yaml:6:32: error: instance 'x' would be an open relay: it listens on 0.0.0.0:2526, which is not loopback, and its profile 'p' relays for any client (relay_outside_lan: true); add open_relay: i-understand to the profile if that is really meant" },
	{ "interlock_lan",
	    "lan: [\"0.0.0.0/0\"]\nprofiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"0.0.0.0:2525\"]\n    profile: p\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: instance 'x' would be an open relay: it listens on 0.0.0.0:2525, which is not loopback, and its profile 'p' relays for any client (its lan has '0.0.0.0/0'); add open_relay: i-understand to the profile if that is really meant" },
	{ "interlock_relay_to",
	    "profiles:\n  p:\n    always_relay_to: [\"@.\"]\ninstances:\n  x:\n    listen: [\"[::]:2525\"]\n    profile: p\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: instance 'x' would be an open relay: it listens on [::]:2525, which is not loopback, and its profile 'p' relays for any client (always_relay_to has '@.'); add open_relay: i-understand to the profile if that is really meant" },
	{ "listen_conflict",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n  y:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n",
	    NULL,
	    "conf.d/10-a.yaml:8:14: error: listen address '127.0.0.1:2525' of instance 'y' is already used by instance 'x' at conf.d/10-a.yaml:5:14" },
	{ "hostname",
	    "server:\n  hostname: \"bad host\"\n",
	    NULL,
	    "conf.d/10-a.yaml:2:13: error: 'hostname' in server: expected a host name, got 'bad host'" },
	{ "user",
	    "server:\n  user: no-such-user-rv\n",
	    NULL,
	    "conf.d/10-a.yaml:2:9: error: 'user' in server: no such user 'no-such-user-rv'" },
	{ "control_long",
	    "server:\n  control: /xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
	    NULL,
	    "conf.d/10-a.yaml:2:12: error: 'control' in server: a unix socket path must be shorter than 108 bytes" },
	{ "instance_name",
	    "instances:\n  \"a b\": {}\n",
	    NULL,
	    "conf.d/10-a.yaml:2:3: error: expected an instance name (letters, digits, '-', '_', '.'), got 'a b'" },
	{ "toplevel_list",
	    "- a\n",
	    NULL,
	    "conf.d/10-a.yaml:1:1: error: the top level: expected a mapping (server, lan, profiles, instances, delivery), got a list" },
	{ "key_not_scalar",
	    "server:\n  [a]: b\n",
	    NULL,
	    "conf.d/10-a.yaml:2:3: error: expected a key name in server" },
	{ "syslog_name",
	    "profiles:\n  p: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    syslog_name: \"a b\"\n",
	    NULL,
	    "conf.d/10-a.yaml:7:18: error: 'syslog_name' in instance 'x': expected a syslog tag without spaces, got 'a b'" },
	{ "list_item_type",
	    "lan: [[127.0.0.1]]\n",
	    NULL,
	    "conf.d/10-a.yaml:1:7: error: an entry of 'lan': expected a string, got a list" },
	{ "bad_utf8",
	    "server:\n  hostname: a\xff\n",
	    NULL,
	    "conf.d/10-a.yaml:2:14: error: YAML syntax error: invalid leading UTF-8 octet" },
	{ "listen_overlap",
	    "profiles: {p: {}}\ninstances:\n  x: {listen: [\"0.0.0.0:2525\"], profile: p}\n"
	    "  y: {listen: [\"127.0.0.1:2525\", \"[::1]:2525\"], profile: p}\n",
	    NULL,
	    "conf.d/10-a.yaml:4:16: error: listen address '127.0.0.1:2525' of instance 'y' overlaps '0.0.0.0:2525' of instance 'x' at conf.d/10-a.yaml:3:16 (same port, one is a wildcard)" },
	/* a dotted profile name is no key path: "a.lan" does not collide with a's lan */
	{ "dotted_names",
	    "profiles:\n  a: {lan: []}\n  a.lan: {}\n  a.lan: {}\n",
	    NULL,
	    "conf.d/10-a.yaml:4:3: error: profile 'a.lan' already defined at conf.d/10-a.yaml:3:3" },
	{ "delivery_relayhost",
	    "delivery:\n  relayhost: \"[smtp.example]:99999\"\n",
	    NULL,
	    "conf.d/10-a.yaml:2:14: error: 'relayhost' in delivery: expected a port number 1-65535" },
	{ "delivery_route",
	    "delivery:\n  routes:\n    example.net: \"lmtp:unix:\"\n",
	    NULL,
	    "conf.d/10-a.yaml:3:18: error: route 'example.net' in 'routes' in delivery: lmtp:unix: expected an absolute socket path" },
	{ "delivery_route_key",
	    "delivery:\n  routes:\n    \"a b\": \"[10.1.2.3]\"\n",
	    NULL,
	    "conf.d/10-a.yaml:3:5: error: 'routes' in delivery: expected a domain (\"example.net\") or its subdomains (\".example.net\") as a key" },
	{ "delivery_dns",
	    "delivery:\n  dns_servers: [\"127.0.0.1:0\"]\n",
	    NULL,
	    "conf.d/10-a.yaml:2:17: error: entry '127.0.0.1:0' of 'dns_servers' in delivery: expected an IP address, optionally with :port (\"127.0.0.1:5353\", \"[::1]:53\")" },
	{ "delivery_retry",
	    "delivery:\n  retry_min: 2h\n  retry_max: 1h\n",
	    NULL,
	    "conf.d/10-a.yaml:1:1: error: delivery: retry_min (7200s) is longer than retry_max (3600s)" },
	{ "delivery_tls_level",
	    "delivery:\n  tls: opportunistic\n",
	    NULL,
	    "conf.d/10-a.yaml:2:8: error: 'tls' in delivery: expected none, may, encrypt or verify, got 'opportunistic'" },
	{ "delivery_route_tls",
	    "delivery:\n  routes:\n    example.net: {nexthop: \"[10.1.2.3]:25\", tls: secure}\n",
	    NULL,
	    "conf.d/10-a.yaml:3:50: error: route 'example.net' in 'routes' in delivery: tls: expected none, may, encrypt or verify" },
	{ "delivery_route_map_key",
	    "delivery:\n  routes:\n    example.net: {next_hop: \"[10.1.2.3]:25\"}\n",
	    NULL,
	    "conf.d/10-a.yaml:3:19: error: route 'example.net' in 'routes' in delivery: unknown key 'next_hop' (expected nexthop or tls)" },
	{ "delivery_route_no_nexthop",
	    "delivery:\n  routes:\n    example.net: {tls: verify}\n",
	    NULL,
	    "conf.d/10-a.yaml:3:18: error: route 'example.net' in 'routes' in delivery: expected a next hop (\"[10.1.2.3]:25\") or a mapping with nexthop: and optionally tls:" },
	{ "delivery_route_tls_lmtp",
	    "delivery:\n  routes:\n    example.net: {nexthop: \"lmtp:unix:/run/l\", tls: encrypt}\n",
	    NULL,
	    "conf.d/10-a.yaml:3:5: error: route 'example.net' in delivery: tls applies to SMTP next hops only (LMTP and maildir are local)" },
	{ "delivery_route_tls_conflict",
	    "delivery:\n  routes:\n    a.example: {nexthop: \"[10.1.2.3]\", tls: verify}\n"
	    "    b.example: {nexthop: \"[10.1.2.3]:25\", tls: encrypt}\n",
	    NULL,
	    "conf.d/10-a.yaml:4:5: error: route 'b.example' in delivery: tls encrypt differs from tls verify of route 'a.example' for the same next hop [10.1.2.3]:25" },
	{ "delivery_auth_half",
	    "delivery:\n  relayhost: \"[smtp.example]:587\"\n  relayhost_auth: {user: bob}\n",
	    NULL,
	    "conf.d/10-a.yaml:3:19: error: relayhost_auth in delivery: expected both user and password_file" },
	{ "delivery_auth_no_relayhost",
	    "delivery:\n  relayhost_auth: {user: bob, password_file: /etc/pw}\n",
	    NULL,
	    "conf.d/10-a.yaml:2:19: error: relayhost_auth in delivery needs a relayhost" },
	{ "delivery_auth_relative",
	    "delivery:\n  relayhost: \"[smtp.example]:587\"\n  relayhost_auth: {user: bob, password_file: pw}\n",
	    NULL,
	    "conf.d/10-a.yaml:3:46: error: 'password_file' in relayhost_auth of delivery: expected an absolute path, got 'pw'" },
	{ "delivery_auth_cleartext",
	    "delivery:\n  relayhost: \"[smtp.example]:587\"\n  relayhost_tls: none\n"
	    "  relayhost_auth: {user: bob, password_file: /etc/pw}\n",
	    NULL,
	    "conf.d/10-a.yaml:3:18: error: relayhost_auth in delivery: a password is sent only over TLS, but TLS to the relayhost is none (use may, encrypt or verify)" },
	{ "delivery_relayhost_tls_alone",
	    "delivery:\n  relayhost_tls: verify\n",
	    NULL,
	    "conf.d/10-a.yaml:2:18: error: relayhost_tls in delivery needs a relayhost" },
	{ "delivery_ca_relative",
	    "delivery:\n  tls_ca_file: ca.pem\n",
	    NULL,
	    "conf.d/10-a.yaml:2:16: error: 'tls_ca_file' in delivery: expected an absolute path, got 'ca.pem'" },
	{ "no_such_profile_suggest",
	    "profiles:\n  lan-relay: {}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n"
	    "    profile: lan-rely\n",
	    NULL,
	    "conf.d/10-a.yaml:6:14: error: instance 'x': no profile named 'lan-rely' (did you mean 'lan-relay'?)" },
};

START_TEST(test_broken)
{
	struct config_diags d;
	struct config *cfg = load2(broken[_i].a, broken[_i].b, &d);
	char *errors = diags_text(&d, false), *expect;

	ck_assert_int_ge(asprintf(&expect, "%s\n", broken[_i].expect), 0);
	ck_assert_msg(strcmp(errors, expect) == 0, "%s: got\n%s\nexpected\n%s",
	    broken[_i].name, errors, expect);
	ck_assert_uint_eq(d.n_errors, 1);
	free(errors);
	free(expect);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* five mistakes spread over two files: every one is reported, none hides another */
START_TEST(test_five_mistakes)
{
	const char *a =
	    "server:\n"
	    "  hostnam: mail.example.test\n"			/* 1: unknown key */
	    "lan: [127.0.0.1, \"10.*.0.1\"]\n"			/* 2: bad wildcard */
	    "profiles:\n"
	    "  p:\n"
	    "    relay_outside_lan: sometimes\n";		/* 3: not a bool */
	const char *b =
	    "instances:\n"
	    "  x:\n"
	    "    listen: [\"127.0.0.1:99999\"]\n"		/* 4: port */
	    "    profile: p\n"
	    "    max_message_size: 10G\n";			/* 5: size */
	struct config_diags d;
	struct config *cfg = load2(a, b, &d);
	char *errors = diags_text(&d, false);

	ck_assert_str_eq(errors,
	    "conf.d/10-a.yaml:2:3: error: unknown key 'hostnam' in server (did you mean 'hostname'?)\n"
	    "conf.d/10-a.yaml:3:18: error: entry '10.*.0.1' of 'lan': expected an IPv4 or IPv6 address, a CIDR block (192.168.1.0/24, 2001:db8::/32) or an IPv4 address with trailing octet wildcards (192.168.1.*)\n"
	    "conf.d/10-a.yaml:6:24: error: 'relay_outside_lan' in profile 'p': expected true or false, got 'sometimes'\n"
	    "conf.d/20-b.yaml:3:14: error: entry '127.0.0.1:99999' of 'listen' in instance 'x': port '99999' is not a number from 1 to 65535\n"
	    "conf.d/20-b.yaml:5:23: error: 'max_message_size' in instance 'x': expected a size (bytes, or with K or M, e.g. 10M), got '10G'\n");
	ck_assert_uint_eq(d.n_errors, 5);
	ck_assert_uint_eq(d.n_warnings, 0);
	free(errors);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* a syntax error ends the reading of its own file only */
START_TEST(test_syntax_error_other_file)
{
	struct config_diags d;
	struct config *cfg = load2("server:\n  hostname: [x\n",
	    "server:\n  spool: [a]\nlan: [\"1.2.*.4\"]\n", &d);
	char *errors = diags_text(&d, false);

	ck_assert_str_eq(errors,
	    "conf.d/10-a.yaml:3:1: error: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence)\n"
	    "conf.d/20-b.yaml:2:10: error: 'spool' in server: expected a non-empty string, got a list\n"
	    "conf.d/20-b.yaml:3:7: error: entry '1.2.*.4' of 'lan': expected an IPv4 or IPv6 address, a CIDR block (192.168.1.0/24, 2001:db8::/32) or an IPv4 address with trailing octet wildcards (192.168.1.*)\n");
	ck_assert_uint_eq(d.n_errors, 3);
	free(errors);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

static const char full_a[] =
    "server:\n"
    "  hostname: Mail.Example.TEST\n"
    "  user: root\n"
    "  spool: /tmp/rv-spool\n"
    "  control: /tmp/rv.sock\n"
    "  control_group: root\n"
    "  logs: /tmp/rv-logs\n"
    "  local_domains: [Example.TEST., other.example]\n"
    "  local_recipients: [postmaster, alice]\n"
    "lan: [127.0.0.1, \"192.168.1.*\", \"::1\", 10.0.0.0/8]\n";

static const char full_b[] =
    "profiles:\n"
    "  locked-down:\n"
    "    lan: []\n"
    "  lan-relay:\n"
    "    relay_outside_lan: false\n"
    "    relay_nonlocal_senders: no\n"
    "    always_relay_from: [\"boss@Corp.Example.\", \"@corp.example\"]\n"
    "    always_relay_to: [\"@partner.example\", \"@.Sub.Example\"]\n"
    "    require_auth: false\n"
    "    accept_domain_literals: yes\n"
    "  open:\n"
    "    relay_outside_lan: true\n"
    "    open_relay: i-understand\n"
    "instances:\n"
    "  internet:\n"
    "    listen: [\"127.0.0.2:2525\", \"[::1]:2525\"]\n"
    "    profile: locked-down\n"
    "  lan:\n"
    "    listen: [\"lo:2526\"]\n"
    "    profile: lan-relay\n"
    "    access: lan\n"
    "    procs: 4\n"
    "    autostart: false\n"
    "    autorestart: true\n"
    "    startsecs: 2s\n"
    "    startretries: 5\n"
    "    backoff: {initial: 0.5s, max: 2m}\n"
    "    stopsignal: SIGQUIT\n"
    "    stopwaitsecs: 1.5s\n"
    "    max_connections: 300\n"
    "    max_per_client: 7\n"
    "    max_recipients: 250\n"
    "    max_message_size: 512K\n"
    "    max_errors: 9\n"
    "    timeouts: {command: 5m, data: 90}\n"
    "    syslog_name: postfix/lan\n"
    "  list:\n"
    "    listen: [\"0.0.0.0:2527\"]\n"
    "    profile: open\n"
    "    access: [192.0.2.0/24, \"2001:db8::/32\"]\n"
    "    autorestart: unexpected\n";

START_TEST(test_full)
{
	struct config_diags d;
	struct config *cfg = load2(full_a, full_b, &d);
	char *errors = diags_text(&d, false);
	ck_assert_str_eq(errors, "");
	free(errors);
	ck_assert_uint_eq(d.n_warnings, 0);

	const struct server *s = &cfg->server;
	ck_assert_str_eq(cfg->dir, "conf.d");
	ck_assert_str_eq(s->hostname, "Mail.Example.TEST");
	ck_assert_str_eq(s->user, "root");
	ck_assert_str_eq(s->spool, "/tmp/rv-spool");
	ck_assert_str_eq(s->control, "/tmp/rv.sock");
	ck_assert_str_eq(s->control_group, "root");
	ck_assert_str_eq(s->logs, "/tmp/rv-logs");
	ck_assert_uint_eq(s->local_domains.n, 2);
	ck_assert_str_eq(s->local_domains.v[0], "example.test");
	ck_assert_str_eq(s->local_domains.v[1], "other.example");
	ck_assert_uint_eq(s->local_recipients.n, 2);
	ck_assert_str_eq(s->local_recipients.v[1], "alice");
	ck_assert_uint_eq(netlist_count(cfg->lan), 4);
	ck_assert_str_eq(netlist_entry(cfg->lan, 1), "192.168.1.*");

	ck_assert_uint_eq(cfg->n_profiles, 3);
	const struct profile *ld = config_profile(cfg, "locked-down");
	ck_assert_ptr_nonnull(ld);
	ck_assert(ld->lan_set);
	ck_assert_uint_eq(netlist_count(config_profile_lan(cfg, ld)), 0);
	ck_assert(!ld->relay_outside_lan);
	ck_assert(ld->relay_nonlocal_senders);
	ck_assert_str_eq(ld->mark.file, "conf.d/20-b.yaml");
	ck_assert_uint_eq(ld->mark.line, 2);
	ck_assert_uint_eq(ld->mark.column, 3);

	const struct profile *lr = config_profile(cfg, "lan-relay");
	ck_assert(!lr->lan_set);
	ck_assert_ptr_eq(config_profile_lan(cfg, lr), cfg->lan);
	ck_assert(!lr->relay_nonlocal_senders);
	ck_assert(lr->accept_domain_literals);
	ck_assert(!lr->require_auth);
	ck_assert(!lr->open_relay_ok);
	ck_assert_uint_eq(lr->always_relay_from.n, 2);
	ck_assert_str_eq(lr->always_relay_from.v[0], "boss@corp.example");
	ck_assert_str_eq(lr->always_relay_to.v[1], "@.sub.example");
	ck_assert(!config_profile_relays_for_anyone(cfg, lr));
	const struct profile *op = config_profile(cfg, "open");
	ck_assert(op->open_relay_ok);
	ck_assert(config_profile_relays_for_anyone(cfg, op));
	ck_assert_ptr_null(config_profile(cfg, "nope"));

	ck_assert_uint_eq(cfg->n_instances, 3);
	const struct instance *in = config_instance(cfg, "internet");
	ck_assert_uint_eq(in->n_listen, 2);
	ck_assert_str_eq(in->listen[0].text, "127.0.0.2:2525");
	ck_assert_ptr_null(in->listen[0].iface);
	ck_assert_int_eq(in->listen[0].ss.ss_family, AF_INET);
	ck_assert_uint_eq(in->listen[0].port, 2525);
	ck_assert_uint_eq(in->listen[0].sslen, sizeof(struct sockaddr_in));
	ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&in->listen[0].ss)->sin_port),
	    2525);
	ck_assert_int_eq(in->listen[1].ss.ss_family, AF_INET6);
	ck_assert_uint_eq(in->listen[1].sslen, sizeof(struct sockaddr_in6));
	ck_assert_ptr_eq(in->profile, ld);
	ck_assert_str_eq(in->syslog_name, "relayvisor/internet");
	ck_assert_int_eq(in->access, ACCESS_ANY);

	const struct instance *lan = config_instance(cfg, "lan");
	ck_assert_str_eq(lan->listen[0].iface, "lo");
	ck_assert(net_sockaddr_is_loopback((struct sockaddr *)&lan->listen[0].ss));
	ck_assert_uint_eq(lan->listen[0].port, 2526);
	ck_assert_int_eq(lan->access, ACCESS_LAN);
	ck_assert_uint_eq(lan->procs, 4);
	ck_assert(!lan->autostart);
	ck_assert_int_eq(lan->autorestart, AUTORESTART_TRUE);
	ck_assert(lan->startsecs == 2);
	ck_assert_uint_eq(lan->startretries, 5);
	ck_assert(lan->backoff_initial == 0.5);
	ck_assert(lan->backoff_max == 120);
	ck_assert_int_eq(lan->stopsignal, SIGQUIT);
	ck_assert(lan->stopwaitsecs == 1.5);
	ck_assert_uint_eq(lan->max_connections, 300);
	ck_assert_uint_eq(lan->max_per_client, 7);
	ck_assert_uint_eq(lan->max_recipients, 250);
	ck_assert_uint_eq(lan->max_message_size, 512 * 1024);
	ck_assert_uint_eq(lan->max_errors, 9);
	ck_assert(lan->timeout_command == 300);
	ck_assert(lan->timeout_data == 90);
	ck_assert_str_eq(lan->syslog_name, "postfix/lan");

	const struct instance *li = config_instance(cfg, "list");
	ck_assert_int_eq(li->access, ACCESS_LIST);
	ck_assert_uint_eq(netlist_count(li->access_list), 2);
	ck_assert(netlist_match_str(li->access_list, "192.0.2.9"));
	ck_assert(!netlist_match_str(li->access_list, "192.0.3.9"));
	ck_assert_int_eq(li->autorestart, AUTORESTART_UNEXPECTED);
	ck_assert_ptr_null(config_instance(cfg, "nope"));

	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

START_TEST(test_defaults)
{
	struct config_diags d;
	struct config *cfg = load2("profiles: {p: {}}\n"
	    "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n", NULL, &d);
	char host[256];

	ck_assert_uint_eq(d.n, 0);
	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	ck_assert_str_eq(cfg->server.hostname, host);
	ck_assert_ptr_null(cfg->server.user);
	ck_assert_ptr_null(cfg->server.control_group);
	ck_assert_str_eq(cfg->server.spool, "./var/spool");
	ck_assert_str_eq(cfg->server.control, "./var/run/relayvisor.sock");
	ck_assert_str_eq(cfg->server.logs, "./var/log");
	ck_assert_uint_eq(cfg->server.local_domains.n, 0);
	ck_assert_uint_eq(cfg->server.local_recipients.n, 0);
	ck_assert_ptr_nonnull(cfg->lan);
	ck_assert_uint_eq(netlist_count(cfg->lan), 0);

	const struct profile *p = config_profile(cfg, "p");
	ck_assert(!p->lan_set);
	ck_assert_ptr_null(p->lan);
	ck_assert(!p->relay_outside_lan);
	ck_assert(p->relay_nonlocal_senders);
	ck_assert_uint_eq(p->always_relay_from.n, 0);
	ck_assert_uint_eq(p->always_relay_to.n, 0);
	ck_assert(!p->require_auth);
	ck_assert(!p->accept_domain_literals);
	ck_assert(!p->open_relay_ok);
	ck_assert(!config_profile_relays_for_anyone(cfg, p));

	const struct instance *x = config_instance(cfg, "x");
	ck_assert_int_eq(x->access, ACCESS_ANY);
	ck_assert_ptr_null(x->access_list);
	ck_assert_uint_eq(x->procs, 1);
	ck_assert(x->autostart);
	ck_assert_int_eq(x->autorestart, AUTORESTART_UNEXPECTED);
	ck_assert(x->startsecs == 1);
	ck_assert_uint_eq(x->startretries, 3);
	ck_assert(x->backoff_initial == 1);
	ck_assert(x->backoff_max == 60);
	ck_assert_int_eq(x->stopsignal, SIGTERM);
	ck_assert(x->stopwaitsecs == 10);
	ck_assert_uint_eq(x->max_connections, 1000);
	ck_assert_uint_eq(x->max_per_client, 50);
	ck_assert_uint_eq(x->max_recipients, 100);
	ck_assert_uint_eq(x->max_message_size, 10 * 1024 * 1024);
	ck_assert_uint_eq(x->max_errors, 20);
	ck_assert(x->timeout_command == 300);
	ck_assert(x->timeout_data == 180);
	ck_assert_str_eq(x->syslog_name, "relayvisor/x");
	ck_assert_str_eq(x->profile_name, "p");
	ck_assert_ptr_eq(x->profile, p);
	ck_assert_str_eq(x->mark.file, "conf.d/10-a.yaml");
	ck_assert_uint_eq(x->mark.line, 3);
	ck_assert_uint_eq(x->mark.column, 3);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* sections merge across files; profiles may be defined after their instances */
START_TEST(test_merge)
{
	struct config_diags d;
	struct config *cfg = load2(
	    "server:\n  hostname: a.example\ninstances:\n"
	    "  x: {listen: [\"127.0.0.1:2525\"], profile: late}\n",
	    "server:\n  local_domains: [b.example]\nprofiles:\n  late: {}\n"
	    "instances:\n  y: {listen: [\"127.0.0.1:2526\"], profile: late}\n", &d);

	ck_assert_uint_eq(d.n, 0);
	ck_assert_str_eq(cfg->server.hostname, "a.example");
	ck_assert_str_eq(cfg->server.local_domains.v[0], "b.example");
	ck_assert_uint_eq(cfg->n_instances, 2);
	ck_assert_ptr_eq(config_instance(cfg, "x")->profile, config_profile(cfg, "late"));
	ck_assert_str_eq(config_instance(cfg, "y")->mark.file, "conf.d/20-b.yaml");
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

static const struct {
	const char *yaml, *expect;
} warned[] = {
	{ "lan: [\"*.*.*.*\"]\n",
	  "conf.d/10-a.yaml:1:7: warning: entry '*.*.*.*' of 'lan' is over-wide: it trusts every address\n" },
	{ "lan: [10.0.0.0/8, 8.0.0.0/8]\n",
	  "conf.d/10-a.yaml:1:19: warning: entry '8.0.0.0/8' of 'lan' is over-wide: it trusts a public /8 or more\n" },
	{ "profiles:\n  p:\n    lan: [\"2000::/3\"]\n",
	  "conf.d/10-a.yaml:3:11: warning: entry '2000::/3' of 'lan' in profile 'p' is over-wide: it trusts more than an IPv6 /16\n" },
	{ "profiles:\n  p:\n    require_auth: true\n",
	  "conf.d/10-a.yaml:3:19: warning: 'require_auth' in profile 'p': server.auth names no backend (passwd_file or dovecot), so nobody can authenticate; only always_relay_* entries relay\n" },
	/* require_auth with a backend is the submission profile: no warning (see
	   test_auth_profile_quiet); without a backend, or without
	   relay_authenticated, nobody relays */
	{ "profiles:\n  p:\n    require_auth: true\n    relay_authenticated: false\n",
	  "conf.d/10-a.yaml:4:26: warning: 'relay_authenticated: false' with 'require_auth: true' in profile 'p': nobody relays, authenticated or not; only always_relay_* entries do\n" },
	{ "profiles:\n  p: {lan: []}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n"
	  "    profile: p\n    access: lan\n",
	  "conf.d/10-a.yaml:4:3: warning: instance 'x' has access: lan but profile 'p' trusts no network: no client can connect\n" },
	/* TLD-wide patterns and forgeable local senders */
	{ "profiles:\n  p:\n    always_relay_to: [\"@.COM\", \"@.example.com\"]\n",
	  "conf.d/10-a.yaml:3:22: warning: entry '@.com' of always_relay_to in profile 'p' covers the whole top-level domain 'com'\n" },
	{ "server: {local_domains: [example.test]}\nprofiles:\n  p:\n"
	  "    always_relay_from: [\"@Example.Test.\", \"@other.example\"]\n",
	  "conf.d/10-a.yaml:4:24: warning: entry '@example.test' of always_relay_from in profile 'p' names local domain 'example.test': anyone can forge such a sender and relay\n" },
	{ "server: {local_domains: [mail.example.test]}\nprofiles:\n  p:\n"
	  "    always_relay_from: [\"@.example.test\"]\n",
	  "conf.d/10-a.yaml:4:24: warning: entry '@.example.test' of always_relay_from in profile 'p' names local domain 'mail.example.test': anyone can forge such a sender and relay\n" },
	{ "server: {local_domains: [example.test]}\nprofiles:\n  p:\n"
	  "    always_relay_from: [\"boss@example.test\"]\n",
	  "conf.d/10-a.yaml:4:24: warning: entry 'boss@example.test' of always_relay_from in profile 'p' names local domain 'example.test': anyone can forge such a sender and relay\n" },
	/* loopback only: an open profile is no danger and needs no interlock */
	{ "lan: [\"0.0.0.0/0\"]\nprofiles:\n  p: {}\ninstances:\n"
	  "  x: {listen: [\"127.0.0.1:2525\", \"[::1]:2525\"], profile: p}\n",
	  "conf.d/10-a.yaml:1:7: warning: entry '0.0.0.0/0' of 'lan' is over-wide: it trusts every address\n" },
	/* -t passes, but relayvisord could not bind it: say so (TEST-NET-1) */
	{ "profiles:\n  p: {}\ninstances:\n  x: {listen: [\"192.0.2.1:2525\"], profile: p}\n",
	  "conf.d/10-a.yaml:4:16: warning: listen address 192.0.2.1:2525 of instance 'x' is not an address of this host (on no interface): the instance cannot serve (FATAL) until it is\n" },
};

START_TEST(test_warnings)
{
	struct config_diags d;
	struct config *cfg = load2(warned[_i].yaml, NULL, &d);
	char *w = diags_text(&d, true), *all = diags_printed(&d);

	ck_assert_uint_eq(d.n_errors, 0);
	ck_assert_uint_eq(d.n_warnings, 1);
	ck_assert_str_eq(w, warned[_i].expect);
	ck_assert_str_eq(all, warned[_i].expect);
	free(w);
	free(all);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* the submission profile: require_auth with authenticated clients relaying (the
   default) is what it should be, no warning; relay_authenticated defaults to on */
START_TEST(test_auth_profile_quiet)
{
	struct config_diags d = { 0 };
	struct config *cfg = load2("server:\n  auth: {passwd_file: /etc/relayvisor/passwd}\n"
	    "profiles:\n  sub: {require_auth: true}\n  plain: {}\n"
	    "  off: {relay_authenticated: no}\n", NULL, &d);

	ck_assert_ptr_nonnull(cfg);
	ck_assert_uint_eq(d.n_errors, 0);
	ck_assert_uint_eq(d.n_warnings, 0);
	const struct profile *sub = config_profile(cfg, "sub");
	const struct profile *plain = config_profile(cfg, "plain");
	const struct profile *off = config_profile(cfg, "off");
	ck_assert(sub->require_auth && sub->relay_authenticated);
	ck_assert(!plain->require_auth && plain->relay_authenticated);
	ck_assert(!off->require_auth && !off->relay_authenticated);
	config_free(cfg);
	config_diags_free(&d);

	/* a bad value names file:line:column and what was expected */
	cfg = load2("profiles:\n  p:\n    relay_authenticated: sometimes\n", NULL, &d);
	char *w = diags_text(&d, false);
	ck_assert_str_eq(w, "conf.d/10-a.yaml:3:26: error: 'relay_authenticated' in profile "
	    "'p': expected true or false, got 'sometimes'\n");
	free(w);
	if (cfg != NULL)
		config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* the interlock: what makes a profile relay for anyone, and the way out */
static const struct {
	const char *profile;	/* body of profile p */
	bool anyone;
} open_profiles[] = {
	{ "{}", false },
	{ "{relay_outside_lan: true}", true },
	{ "{lan: [\"0.0.0.0/0\"]}", true },
	{ "{lan: [\"*.*.*.*\"]}", true },
	{ "{lan: [\"::/0\"]}", true },
	{ "{lan: [\"8.0.0.0/8\"]}", false },
	/* entries are judged together: more public space than a /8 (IPv6: /16) */
	{ "{lan: [\"0.0.0.0/1\", \"128.0.0.0/1\"]}", true },
	{ "{lan: [\"1.0.0.0/8\", \"2.0.0.0/8\"]}", true },
	{ "{lan: [\"0.0.0.0/2\"]}", true },
	{ "{lan: [\"::ffff:0.0.0.0/97\", \"::ffff:128.0.0.0/97\"]}", true },
	{ "{lan: [\"10.0.0.0/7\"]}", false },
	{ "{lan: [\"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.0.0/16\", "
	    "\"100.64.0.0/10\", \"127.0.0.0/8\", \"169.254.0.0/16\"]}", false },
	{ "{lan: [\"8.0.0.0/9\", \"8.128.0.0/9\", \"9.0.0.0/24\"]}", true },
	{ "{lan: [\"8.0.0.0/9\", \"8.128.0.0/9\", \"8.1.0.0/16\"]}", false },
	{ "{lan: [\"::/1\", \"8000::/1\"]}", true },
	{ "{lan: [\"2000::/4\"]}", true },
	{ "{lan: [\"2001:db8::/32\", \"fc00::/7\", \"fe80::/10\"]}", false },
	{ "{lan: [\"2001::/16\", \"2002::/16\"]}", true },
	{ "{always_relay_from: [\"@.\"]}", true },
	{ "{always_relay_to: [\"@.\"]}", true },
	{ "{always_relay_to: [\"@.example\"]}", false },
	{ "{relay_nonlocal_senders: false}", false },
};

START_TEST(test_interlock)
{
	char *yaml;
	struct config_diags d;
	struct config *cfg;

	/* on a non-loopback address: an error unless the profile says i-understand */
	ck_assert_int_ge(asprintf(&yaml, "profiles:\n  p: %s\ninstances:\n"
	    "  x: {listen: [\"0.0.0.0:2525\"], profile: p}\n",
	    open_profiles[_i].profile), 0);
	cfg = load2(yaml, NULL, &d);
	ck_assert(config_profile_relays_for_anyone(cfg, config_profile(cfg, "p")) ==
	    open_profiles[_i].anyone);
	ck_assert_uint_eq(d.n_errors, open_profiles[_i].anyone ? 1 : 0);
	config_free(cfg);
	config_diags_free(&d);
	free(yaml);

	/* the same profile with the acknowledgement added */
	char *yaml2;
	const char *body = open_profiles[_i].profile;
	ck_assert_int_ge(asprintf(&yaml2, "profiles:\n  p: {open_relay: i-understand%s%s\n"
	    "instances:\n  x: {listen: [\"0.0.0.0:2525\"], profile: p}\n",
	    strcmp(body, "{}") == 0 ? "}" : ", ", strcmp(body, "{}") == 0 ? "" : body + 1),
	    0);
	cfg = load2(yaml2, NULL, &d);
	ck_assert_uint_eq(d.n_errors, 0);
	ck_assert(config_profile(cfg, "p")->open_relay_ok);
	config_free(cfg);
	config_diags_free(&d);
	free(yaml2);
}
END_TEST

START_TEST(test_shipped)
{
	struct config_diags d;
	struct config *cfg = config_load_dir("conf.d", &d);
	char *all = diags_printed(&d);

	ck_assert_msg(cfg != NULL && d.n == 0, "conf.d:\n%s", all);
	free(all);
	ck_assert_uint_eq(cfg->n_instances, 3);
	ck_assert_uint_eq(cfg->n_profiles, 3);
	ck_assert_ptr_null(cfg->server.user);
	ck_assert_str_eq(cfg->server.spool, "./var/spool");
	ck_assert_str_eq(cfg->server.control, "./var/run/relayvisor.sock");
	ck_assert_str_eq(cfg->server.logs, "./var/log");
	ck_assert_uint_eq(cfg->server.local_domains.n, 1);
	ck_assert_str_eq(cfg->server.local_domains.v[0], "example.test");

	const struct instance *in = config_instance(cfg, "internet");
	ck_assert_ptr_nonnull(in);
	ck_assert_str_eq(in->listen[0].text, "127.0.0.2:2525");
	const struct netlist *inlan = config_profile_lan(cfg, in->profile);
	ck_assert_uint_eq(netlist_count(inlan), 0);
	ck_assert(!in->profile->relay_outside_lan);
	ck_assert(!in->profile->relay_authenticated);	/* submission is for that */
	ck_assert(!config_profile_relays_for_anyone(cfg, in->profile));

	const struct instance *lan = config_instance(cfg, "lan");
	ck_assert_ptr_nonnull(lan);
	ck_assert_str_eq(lan->listen[0].text, "127.0.0.1:2525");
	const struct netlist *ll = config_profile_lan(cfg, lan->profile);
	ck_assert(netlist_match_str(ll, "127.0.0.1"));
	ck_assert(!netlist_match_str(ll, "127.0.0.2"));
	ck_assert(!config_profile_relays_for_anyone(cfg, lan->profile));

	/* submission: STARTTLS required, AUTH required, relaying for
	   authenticated users only */
	const struct instance *sub = config_instance(cfg, "submission");
	ck_assert_ptr_nonnull(sub);
	ck_assert_str_eq(sub->listen[0].text, "127.0.0.1:2587");
	ck_assert_str_eq(sub->tls_cert, "./var/tls/cert.pem");
	ck_assert_str_eq(sub->tls_key, "./var/tls/key.pem");
	ck_assert_int_eq(sub->tls_mode, TLS_MODE_STARTTLS);
	ck_assert(sub->require_tls);
	ck_assert(sub->profile->require_auth && sub->profile->relay_authenticated);
	ck_assert(!sub->profile->relay_outside_lan);
	ck_assert(!config_profile_relays_for_anyone(cfg, sub->profile));
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

/* config_check_report() with its two streams captured: returns the exit code */
static int
check_report(const char *dir, char **diag, char **out)
{
	size_t dlen = 0, olen = 0;
	FILE *dfp = open_memstream(diag, &dlen), *ofp = open_memstream(out, &olen);

	ck_assert_ptr_nonnull(dfp);
	ck_assert_ptr_nonnull(ofp);
	int rc = config_check_report(dir, dfp, ofp);
	fclose(dfp);
	fclose(ofp);
	return rc;
}

/* -t as nginx -t: every problem on the diagnostics stream, the summary alone on
   the other */
START_TEST(test_check_report)
{
	char *dir = testutil_tmpdir("cfgtest"), *path, *out, *diag, *expect;
	FILE *fp;

	ck_assert_ptr_nonnull(dir);
	ck_assert_int_ge(asprintf(&path, "%s/10-a.yaml", dir), 0);
	fp = fopen(path, "w");
	fputs("lan: [8.0.0.0/8]\nprofiles: {p: {}}\n"
	    "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n", fp);
	fclose(fp);
	ck_assert_int_eq(check_report(dir, &diag, &out), 0);
	ck_assert_int_ge(asprintf(&expect, "%s/10-a.yaml:1:7: warning: entry '8.0.0.0/8' "
	    "of 'lan' is over-wide: it trusts a public /8 or more\n", dir), 0);
	ck_assert_str_eq(diag, expect);
	free(expect);
	ck_assert_int_ge(asprintf(&expect, "%s: ok: 1 instance, 1 profile, 1 warning\n",
	    dir), 0);
	ck_assert_str_eq(out, expect);
	free(out);
	free(diag);
	free(expect);

	fp = fopen(path, "w");
	fputs("server: {hostnam: x}\nlans: []\n", fp);
	fclose(fp);
	ck_assert_int_eq(check_report(dir, &diag, &out), 1);
	ck_assert_int_ge(asprintf(&expect, "%s/10-a.yaml:1:10: error: unknown key 'hostnam' "
	    "in server (did you mean 'hostname'?)\n"
	    "%s/10-a.yaml:2:1: error: unknown top-level key 'lans' (did you mean 'lan'?)\n",
	    dir, dir), 0);
	ck_assert_str_eq(diag, expect);
	free(expect);
	ck_assert_int_ge(asprintf(&expect, "%s: 2 errors\n", dir), 0);
	ck_assert_str_eq(out, expect);
	free(out);
	free(diag);
	free(expect);

	/* a *.yml file is an error, not silently skipped */
	char *yml;
	ck_assert_int_ge(asprintf(&yml, "%s/20-extra.yml", dir), 0);
	fp = fopen(yml, "w");
	fputs("lan: []\n", fp);
	fclose(fp);
	fp = fopen(path, "w");
	fputs("profiles: {p: {}}\n"
	    "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n", fp);
	fclose(fp);
	ck_assert_int_eq(check_report(dir, &diag, &out), 1);
	ck_assert_int_ge(asprintf(&expect, "%s/20-extra.yml: error: not read: configuration "
	    "files end in .yaml (rename it to 20-extra.yaml)\n", dir), 0);
	ck_assert_str_eq(diag, expect);
	free(expect);
	ck_assert_int_ge(asprintf(&expect, "%s: 1 error\n", dir), 0);
	ck_assert_str_eq(out, expect);
	free(out);
	free(diag);
	free(expect);
	unlink(path);

	/* alone it is still the same error, not "no *.yaml files" on top */
	ck_assert_int_eq(check_report(dir, &diag, &out), 1);
	ck_assert_ptr_nonnull(strstr(diag, "rename it to 20-extra.yaml"));
	ck_assert_ptr_null(strstr(diag, "no *.yaml"));
	free(out);
	free(diag);
	unlink(yml);
	free(yml);

	/* an empty directory is a mistake, not an empty configuration */
	ck_assert_int_eq(check_report(dir, &diag, &out), 1);
	ck_assert_int_ge(asprintf(&expect, "error: %s: no *.yaml files\n", dir), 0);
	ck_assert_str_eq(diag, expect);
	free(expect);
	ck_assert_int_ge(asprintf(&expect, "%s: 1 error\n", dir), 0);
	ck_assert_str_eq(out, expect);
	free(out);
	free(diag);
	free(expect);
	testutil_rmtree(dir);

	ck_assert_int_eq(check_report("/nonexistent/rv", &diag, &out), 1);
	ck_assert_str_eq(diag, "error: opendir /nonexistent/rv: No such file or directory\n");
	ck_assert_str_eq(out, "/nonexistent/rv: 1 error\n");
	free(out);
	free(diag);
	free(path);

	ck_assert_int_eq(check_report("conf.d", &diag, &out), 0);
	ck_assert_str_eq(diag, "");
	ck_assert_str_eq(out, "conf.d: ok: 3 instances, 3 profiles\n");
	free(out);
	free(diag);
}
END_TEST

/* a refused lan entry is its own error; the list it leaves empty does not also
   draw "trusts no network" */
static const char *const bad_lan[] = {
	"profiles:\n  p: {lan: [10.0.0.300]}\ninstances:\n  x:\n    listen: [\"127.0.0.1:2525\"]\n"
	"    profile: p\n    access: lan\n",
	"lan: [\"192.*.1.1\"]\nprofiles:\n  p: {}\ninstances:\n  x:\n"
	"    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    access: lan\n",
	"lan: [[127.0.0.1]]\nprofiles:\n  p: {}\ninstances:\n  x:\n"
	"    listen: [\"127.0.0.1:2525\"]\n    profile: p\n    access: lan\n",
};

START_TEST(test_bad_lan_no_extra_warning)
{
	struct config_diags d;
	struct config *cfg = load2(bad_lan[_i], NULL, &d);
	char *all = diags_printed(&d);

	ck_assert_msg(d.n_errors == 1 && d.n_warnings == 0, "%s", all);
	ck_assert_msg(strstr(all, "trusts no network") == NULL, "%s", all);
	free(all);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

static void
write_file(const char *dir, const char *name, const char *text)
{
	char *path;
	FILE *fp;

	ck_assert_int_ge(asprintf(&path, "%s/%s", dir, name), 0);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
	free(path);
}

/* *.yaml only, hidden files skipped, name order; diag paths are dir/name */
START_TEST(test_read_dir)
{
	char tmpl[] = "/tmp/rv-cfgtest.XXXXXX";
	char *dir = mkdtemp(tmpl), *cmd;
	struct config_source *src;
	const char *err;
	struct config_diags d;

	ck_assert_ptr_nonnull(dir);
	write_file(dir, "20-b.yaml", "server: {hostnam: b}\n");
	write_file(dir, "10-a.yaml", "server: {hostname: a.example}\n");
	write_file(dir, "notes.txt", "not yaml: [\n");
	write_file(dir, ".hidden.yaml", "not yaml: [\n");
	write_file(dir, "30-c.yaml.orig", "not yaml: [\n");
	ck_assert_int_eq(config_source_read_dir(dir, &src, &err), 0);
	ck_assert_str_eq(config_source_dir(src), dir);
	ck_assert_uint_eq(config_source_count(src), 2);
	ck_assert_str_eq(config_source_name(src, 0), "10-a.yaml");
	ck_assert_str_eq(config_source_name(src, 1), "20-b.yaml");
	ck_assert_ptr_null(config_source_name(src, 2));
	struct config *cfg = config_load(src, &d);
	ck_assert_uint_eq(d.n_errors, 1);
	char *expect;
	ck_assert_int_ge(asprintf(&expect, "%s/20-b.yaml", dir), 0);
	ck_assert_str_eq(d.v[0].mark.file, expect);
	ck_assert_str_eq(cfg->server.hostname, "a.example");
	free(expect);
	config_free(cfg);
	config_diags_free(&d);

	ck_assert_int_ge(asprintf(&cmd, "rm -rf '%s'", dir), 0);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
	ck_assert_int_eq(config_source_read_dir(dir, &src, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
}
END_TEST

/* the snapshot a child gets loads to the very same diags and instances */
START_TEST(test_snapshot)
{
	const char *names[] = { "10-a.yaml", "20-b.yaml" };
	const char *bufs[] = { full_a,
	    "profiles: {p: {relay_outside_lan: maybe}, q: {}}\ninstances:\n"
	    "  x: {listen: [\"127.0.0.1:2525\", \"eth99:25\"], profile: p}\n"
	    "  y: {listen: [\"127.0.0.1:2526\"], profile: q, procs: 3}\n" };
	struct config_diags d1, d2;
	struct config *c1 = config_load(config_source_from_buffers("conf.d", names, bufs,
	    2), &d1);
	const char *err = NULL;
	int fd = config_source_memfd(c1->source, &err);
	struct config_source *src;

	ck_assert_msg(fd >= 0, "%s", err);
	ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 0);
	/* sealed: the child cannot change what the supervisor validated */
	ck_assert_int_eq(write(fd, "x", 1), -1);
	/* read twice: pread from 0 does not depend on the shared offset */
	ck_assert_int_eq(config_source_read_fd(fd, &src, &err), 0);
	config_source_free(src);
	ck_assert_int_eq(config_source_read_fd(fd, &src, &err), 0);
	close(fd);
	ck_assert_uint_eq(config_source_count(src), 2);
	struct config *c2 = config_load(src, &d2);
	char *p1 = diags_printed(&d1), *p2 = diags_printed(&d2);
	ck_assert_str_eq(p1, p2);
	ck_assert_uint_eq(d1.n_errors, 2);
	ck_assert_str_eq(c2->dir, "conf.d");
	ck_assert_uint_eq(c2->n_instances, 2);
	ck_assert(config_instance_equal(c1, config_instance(c1, "y"), c2,
	    config_instance(c2, "y")));
	free(p1);
	free(p2);
	config_free(c2);
	config_diags_free(&d2);

	/* a pipe works as well */
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(config_source_write(c1->source, pfd[1], &err), 0);
	close(pfd[1]);
	ck_assert_int_eq(config_source_read_fd(pfd[0], &src, &err), 0);
	close(pfd[0]);
	ck_assert_str_eq(config_source_name(src, 1), "20-b.yaml");
	config_source_free(src);
	config_free(c1);
	config_diags_free(&d1);
}
END_TEST

#define BYTES(s) { s, sizeof(s) - 1 }
static const struct {
	const char *p;
	size_t len;
} corrupt[] = {
	BYTES(""), BYTES("RVCF"), BYTES("XXXX\0\0\0\1"), BYTES("RVCF\0\0\0\2"),
	/* one file announced, its name cut short */
	BYTES("RVCF\0\0\0\1\0\0\0\6conf.d\0\0\0\1\0\0\0\0011"),
	/* no files, then bytes nobody announced */
	BYTES("RVCF\0\0\0\1\0\0\0\6conf.d\0\0\0\0junk"),
	/* a file claiming 256 bytes of data with 2 present */
	BYTES("RVCF\0\0\0\1\0\0\0\6conf.d\0\0\0\1\0\0\0\1a\0\0\1\0ab"),
	/* a million files announced in a few bytes */
	BYTES("RVCF\0\0\0\1\0\0\0\6conf.d\0\x10\0\0"),
};

START_TEST(test_snapshot_corrupt)
{
	int pfd[2];
	struct config_source *src = NULL;
	const char *err = NULL;

	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(write(pfd[1], corrupt[_i].p, corrupt[_i].len),
	    (ssize_t)corrupt[_i].len);
	close(pfd[1]);
	ck_assert_int_eq(config_source_read_fd(pfd[0], &src, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "config snapshot"));
	close(pfd[0]);
}
END_TEST

/* reload: which edits make an instance differ */
static const char eq_base_a[] =
    "server: {hostname: a.example, local_domains: [example.test]}\n"
    "lan: [127.0.0.1]\n";
static const char eq_base_b[] =
    "profiles:\n  p: {}\n  q: {lan: [10.0.0.1]}\n"
    "instances:\n"
    "  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n"
    "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: [10.0.0.0/8]}\n";

static const struct {
	const char *a, *b;
	bool x_equal, y_equal;
} eq_cases[] = {
	{ eq_base_a, eq_base_b, true, true },
	/* another file layout, same definitions */
	{ "\n\n", "\n" "lan: [127.0.0.1]\nserver: {local_domains: [example.test]}\n"
	  "server: {hostname: a.example}\n" "profiles:\n  q: {lan: [10.0.0.1]}\n  p: {}\n"
	  "instances:\n"
	  "  y: {profile: q, access: [10.0.0.0/8], listen: [\"127.0.0.1:2526\"]}\n"
	  "  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n", true, true },
	/* the server-wide LAN matters only to the profile that uses it */
	{ "server: {hostname: a.example, local_domains: [example.test]}\n"
	  "lan: [127.0.0.2]\n", eq_base_b, false, true },
	{ "server: {hostname: b.example, local_domains: [example.test]}\n"
	  "lan: [127.0.0.1]\n", eq_base_b, false, false },
	{ "server: {hostname: a.example, local_domains: [example.test, b.test]}\n"
	  "lan: [127.0.0.1]\n", eq_base_b, false, false },
	{ eq_base_a, "profiles:\n  p: {relay_nonlocal_senders: false}\n  q: {lan: [10.0.0.1]}\n"
	  "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n"
	  "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: [10.0.0.0/8]}\n",
	  false, true },
	/* who AUTH lets relay changes what the listener answers: it restarts */
	{ eq_base_a, "profiles:\n  p: {relay_authenticated: false}\n  q: {lan: [10.0.0.1]}\n"
	  "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n"
	  "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: [10.0.0.0/8]}\n",
	  false, true },
	{ eq_base_a, "profiles:\n  p: {relay_authenticated: true}\n  q: {lan: [10.0.0.1]}\n"
	  "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n"
	  "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: [10.0.0.0/8]}\n",
	  true, true },
	{ eq_base_a, "profiles:\n  p: {}\n  q: {lan: [10.0.0.2]}\n"
	  "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p}\n"
	  "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: [10.0.0.0/8]}\n",
	  true, false },
	{ eq_base_a, "profiles:\n  p: {}\n  q: {lan: [10.0.0.1]}\n"
	  "instances:\n  x: {listen: [\"127.0.0.1:2527\"], profile: p}\n"
	  "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: [10.0.0.0/16]}\n",
	  false, false },
	{ eq_base_a, "profiles:\n  p: {}\n  q: {lan: [10.0.0.1]}\n"
	  "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p, procs: 2}\n"
	  "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: [10.0.0.0/8],"
	  " timeouts: {data: 1m}}\n", false, false },
	{ eq_base_a, "profiles:\n  p: {}\n  q: {lan: [10.0.0.1]}\n"
	  "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: q}\n"
	  "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: lan}\n",
	  false, false },
	{ eq_base_a, "profiles:\n  p: {}\n  q: {lan: [10.0.0.1]}\n"
	  "instances:\n  x: {listen: [\"127.0.0.1:2525\"], profile: p, syslog_name: rv/x}\n"
	  "  y: {listen: [\"127.0.0.1:2526\"], profile: q, access: [10.0.0.0/8],"
	  " stopsignal: INT}\n", false, false },
};

START_TEST(test_instance_equal)
{
	struct config_diags d1, d2;
	struct config *c1 = load2(eq_base_a, eq_base_b, &d1);
	struct config *c2 = load2(eq_cases[_i].a, eq_cases[_i].b, &d2);

	ck_assert_uint_eq(d1.n_errors, 0);
	ck_assert_uint_eq(d2.n_errors, 0);
	ck_assert(config_instance_equal(c1, config_instance(c1, "x"), c2,
	    config_instance(c2, "x")) == eq_cases[_i].x_equal);
	ck_assert(config_instance_equal(c1, config_instance(c1, "y"), c2,
	    config_instance(c2, "y")) == eq_cases[_i].y_equal);
	ck_assert(config_instance_equal(c2, config_instance(c2, "y"), c1,
	    config_instance(c1, "y")) == eq_cases[_i].y_equal);
	ck_assert(!config_instance_equal(c1, config_instance(c1, "x"), c1,
	    config_instance(c1, "y")));
	config_free(c1);
	config_free(c2);
	config_diags_free(&d1);
	config_diags_free(&d2);
}
END_TEST

START_TEST(test_known_keys)
{
	const char *const *k = config_known_keys();
	size_t n = 0;
	bool host = false, backoff = false, lan = false, section = false;

	for (; k[n] != NULL; n++) {
		host |= strcmp(k[n], "server.hostname") == 0;
		backoff |= strcmp(k[n], "instances.*.backoff.initial") == 0;
		lan |= strcmp(k[n], "lan") == 0;
		section |= strcmp(k[n], "instances.*.backoff") == 0;
		for (size_t i = 0; i < n; i++)
			ck_assert_str_ne(k[i], k[n]);
	}
	ck_assert(host && backoff && lan && !section);
	/* + delivery.*, + tls.cert, tls.key, tls_mode, require_tls, + delivery's
	   tls, tls_ca_file, relayhost_tls, relayhost_auth.user, .password_file,
	   + server.auth.passwd_file, .dovecot, sender_login_match,
	   auth_plaintext_loopback, + relay_authenticated */
	ck_assert_uint_eq(n, 10 + 1 + 9 + 23 + 13 + 4 + 5 + 4);
	ck_assert_ptr_eq(config_known_keys(), k);
}
END_TEST

/* delivery: defaults, routes, and a relative maildir made absolute (the cwd) */
START_TEST(test_delivery_section)
{
	struct config_diags d;
	struct config *cfg = load2("server: {local_domains: [example.test]}\n", NULL, &d);
	ck_assert_uint_eq(d.n_errors, 0);
	ck_assert(!cfg->delivery.configured);
	config_free(cfg);
	config_diags_free(&d);

	cfg = load2("delivery:\n  relayhost: \"[smtp.example]:587\"\n"
	    "  local: \"maildir:./var/mail/%d/%u\"\n"
	    "  routes:\n    example.net: \"[10.1.2.3]:25\"\n    .Sub.Example: \"lmtp:unix:/run/l\"\n"
	    "  dns_servers: [\"127.0.0.1:5353\", \"[::1]:53\"]\n  delay_warning: 0\n"
	    "  max_lifetime: 2d\n", NULL, &d);
	ck_assert_uint_eq(d.n_errors, 0);
	const struct delivery *dl = &cfg->delivery;
	ck_assert(dl->configured);
	ck_assert_str_eq(dl->relayhost, "[smtp.example]:587");
	char cwd[4096], want[4200];
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	snprintf(want, sizeof(want), "maildir:%s/var/mail/%%d/%%u", cwd);
	ck_assert_str_eq(dl->local, want);
	ck_assert_uint_eq(dl->n_routes, 2);
	ck_assert_str_eq(dl->routes[0].pattern, "example.net");
	ck_assert_str_eq(dl->routes[1].pattern, ".sub.example");
	ck_assert_str_eq(dl->routes[1].nexthop, "lmtp:unix:/run/l");
	ck_assert_uint_eq(dl->dns_servers.n, 2);
	ck_assert_uint_eq(dl->procs, 1);
	ck_assert(dl->delay_warning == 0);
	ck_assert(dl->max_lifetime == 2 * 86400);
	ck_assert(dl->retry_min == 300 && dl->retry_max == 3600);
	ck_assert_uint_eq(dl->dest_concurrency, 5);
	ck_assert_uint_eq(dl->total_concurrency, 100);
	ck_assert_int_eq(dl->tls, DELIVERY_TLS_MAY);
	ck_assert_int_eq(dl->relayhost_tls, DELIVERY_TLS_DEFAULT);
	ck_assert_int_eq(dl->routes[0].tls, DELIVERY_TLS_DEFAULT);
	ck_assert_ptr_null(dl->tls_ca_file);
	ck_assert_ptr_null(dl->relayhost_auth_user);
	config_free(cfg);
	config_diags_free(&d);

	/* TLS levels, the routes' mapping form beside the plain one, relayhost AUTH */
	cfg = load2("delivery:\n  relayhost: \"[smtp.example]:587\"\n  tls: encrypt\n"
	    "  tls_ca_file: /etc/ssl/ca.pem\n  relayhost_tls: verify\n"
	    "  relayhost_auth: {user: bob@example.test, password_file: /etc/relayvisor/pw}\n"
	    "  routes:\n    example.net: {nexthop: \"[10.1.2.3]:25\", tls: verify}\n"
	    "    example.org: \"[10.1.2.4]\"\n    example.com: {nexthop: \"[10.1.2.5]\"}\n"
	    "    example.info: {nexthop: \"[10.1.2.4]:25\", tls: encrypt}\n", NULL, &d);
	ck_assert_msg(d.n_errors == 0, "%s", diags_text(&d, false));
	dl = &cfg->delivery;
	ck_assert_int_eq(dl->tls, DELIVERY_TLS_ENCRYPT);
	ck_assert_int_eq(dl->relayhost_tls, DELIVERY_TLS_VERIFY);
	ck_assert_str_eq(dl->tls_ca_file, "/etc/ssl/ca.pem");
	ck_assert_str_eq(dl->relayhost_auth_user, "bob@example.test");
	ck_assert_str_eq(dl->relayhost_auth_password_file, "/etc/relayvisor/pw");
	ck_assert_uint_eq(dl->n_routes, 4);
	ck_assert_str_eq(dl->routes[0].nexthop, "[10.1.2.3]:25");
	ck_assert_int_eq(dl->routes[0].tls, DELIVERY_TLS_VERIFY);
	ck_assert_int_eq(dl->routes[1].tls, DELIVERY_TLS_DEFAULT);
	ck_assert_str_eq(dl->routes[2].nexthop, "[10.1.2.5]");
	ck_assert_int_eq(dl->routes[2].tls, DELIVERY_TLS_DEFAULT);
	ck_assert_str_eq(delivery_tls_name(dl->routes[3].tls), "encrypt");
	config_free(cfg);
	config_diags_free(&d);

	/* an empty section turns delivery on with the default Maildir */
	cfg = load2("delivery: {}\n", NULL, &d);
	ck_assert_uint_eq(d.n_errors, 0);
	ck_assert(cfg->delivery.configured);
	snprintf(want, sizeof(want), "maildir:%s/var/mail/%%d/%%u", cwd);
	ck_assert_str_eq(cfg->delivery.local, want);
	config_free(cfg);
	config_diags_free(&d);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_loop_test(tc, test_broken, 0, N(broken));
	tcase_add_test(tc, test_five_mistakes);
	tcase_add_test(tc, test_syntax_error_other_file);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_merge);
	tcase_add_loop_test(tc, test_warnings, 0, N(warned));
	tcase_add_test(tc, test_auth_profile_quiet);
	tcase_add_loop_test(tc, test_interlock, 0, N(open_profiles));
	tcase_add_loop_test(tc, test_bad_lan_no_extra_warning, 0, N(bad_lan));
	tcase_add_test(tc, test_shipped);
	tcase_add_test(tc, test_check_report);
	tcase_add_test(tc, test_read_dir);
	tcase_add_test(tc, test_snapshot);
	tcase_add_loop_test(tc, test_snapshot_corrupt, 0, N(corrupt));
	tcase_add_loop_test(tc, test_instance_equal, 0, N(eq_cases));
	tcase_add_test(tc, test_known_keys);
	tcase_add_test(tc, test_delivery_section);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(config_suite)
