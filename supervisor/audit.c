/*
 * The audit verbs of the control server (supervisor/audit.h): the corpus runner of
 * profiles/audit.c applied to the configuration the supervisor runs, so what is
 * judged is the live profile, not files that may have changed since. The records'
 * format is documented in profiles/audit.h; relayvisorctl renders them.
 */
#include "supervisor/audit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/ctlproto.h"
#include "profiles/audit.h"
#include "common/net.h"
#include "supervisor/super.h"

/* one record: fields joined by TAB, any TAB or newline inside a field blanked */
struct rec {
	char buf[CTLPROTO_LINE_MAX - 8];
	size_t n;
};

static void
rec_str(struct rec *r, const char *s)
{
	if (r->n > 0 && r->n < sizeof(r->buf) - 1)
		r->buf[r->n++] = '\t';
	for (; *s != '\0' && r->n < sizeof(r->buf) - 1; s++)
		r->buf[r->n++] = *s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s;
	r->buf[r->n] = '\0';
}

static void
rec_num(struct rec *r, unsigned long v)
{
	char b[32];
	snprintf(b, sizeof(b), "%lu", v);
	rec_str(r, b);
}

static void
rec_send(const struct sv_out *out, struct rec *r)
{
	out->line(out->arg, r->buf);
	r->n = 0;
	r->buf[0] = '\0';
}

static const char *
access_name(enum access_kind k)
{
	return k == ACCESS_ANY ? "any" : k == ACCESS_LAN ? "lan" : "list";
}

static void
client_rec(const struct sv_out *out, const char *tag, const struct audit_client *c,
    const char *entry, bool overwide)
{
	struct rec r = { .n = 0 };
	rec_str(&r, tag);
	if (entry != NULL)
		rec_str(&r, entry);
	rec_str(&r, c->ip);
	rec_num(&r, c->in_lan);
	rec_num(&r, c->allowed);
	rec_num(&r, c->evaluated);
	rec_num(&r, c->relayed);
	rec_num(&r, c->local);
	if (entry != NULL)
		rec_num(&r, overwide);
	rec_send(out, &r);
}

static void
relayed_recs(const struct sv_out *out, const struct config *cfg,
    const struct instance *inst, const struct audit_client *c)
{
	struct sockaddr_storage ss;
	struct audit_vars v;
	char name[96];

	audit_vars_init(cfg, inst, &v);
	memset(&ss, 0, sizeof(ss));
	for (size_t k = 0; k < c->relayed; k++) {
		size_t i = c->relayed_cases[k];
		char helo[AUDIT_ARG_MAX], mail[AUDIT_ARG_MAX], rcpt[AUDIT_ARG_MAX];
		const struct audit_case *ac = &audit_corpus[i];
		audit_expand(ac->helo[0] != '\0' ? ac->helo : AUDIT_DEFAULT_HELO, &v, helo,
		    sizeof(helo));
		audit_expand(ac->mail, &v, mail, sizeof(mail));
		audit_expand(ac->rcpt, &v, rcpt, sizeof(rcpt));
		struct rec r = { .n = 0 };
		rec_str(&r, "relayed");
		rec_str(&r, c->ip);
		rec_str(&r, audit_case_name(i, name, sizeof(name)));
		rec_str(&r, helo);
		rec_str(&r, mail);
		rec_str(&r, rcpt);
		rec_send(out, &r);
	}
}

static void
instance_recs(const struct sv_out *out, const struct config *cfg,
    const struct instance *inst, bool internet)
{
	struct audit_instance a;
	struct rec r = { .n = 0 };
	char ip[64];

	audit_instance(cfg, inst, internet, &a);
	rec_str(&r, "instance");
	rec_str(&r, inst->name);
	rec_str(&r, inst->profile->name);
	rec_num(&r, a.internet);
	rec_num(&r, a.acknowledged);
	rec_str(&r, access_name(inst->access));
	rec_num(&r, audit_corpus_n);
	rec_send(out, &r);
	for (size_t i = 0; i < inst->n_listen; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&inst->listen[i].ss;
		rec_str(&r, "listen");
		rec_str(&r, inst->listen[i].text);
		rec_str(&r, net_sockaddr_ntop(sa, ip, sizeof(ip)));
		rec_num(&r, inst->listen[i].port);
		rec_str(&r, audit_scope_name(audit_scope_of(sa)));
		rec_send(out, &r);
	}
	for (size_t i = 0; i < a.n_strangers; i++)
		client_rec(out, "stranger", &a.strangers[i], NULL, false);
	for (size_t i = 0; i < a.n_lans; i++)
		client_rec(out, "lan", &a.lans[i], a.lans[i].label,
		    net_entry_overwide(a.lans[i].label));
	/* how the live replay reaches MAIL: the listener refuses MAIL in clear
	   with require_tls, so the replay starts TLS as a real client would */
	rec_str(&r, "tls");
	rec_str(&r, inst->tls_cert == NULL ? "none" :
	    inst->tls_mode == TLS_MODE_IMPLICIT ? "implicit" : "starttls");
	rec_num(&r, inst->require_tls);
	rec_send(out, &r);
	if (a.auth_run) {
		rec_str(&r, "authenticated");
		rec_str(&r, a.auth.ip);
		rec_num(&r, a.auth.in_lan);
		rec_num(&r, a.auth.allowed);
		rec_num(&r, a.auth.evaluated);
		rec_num(&r, a.auth.relayed);
		rec_num(&r, a.auth.local);
		rec_num(&r, a.auth_offered);
		rec_send(out, &r);
	}
	rec_str(&r, "relays");
	rec_str(&r, audit_relays_for(&a));
	rec_send(out, &r);
	for (size_t i = 0; i < a.n_strangers; i++)
		relayed_recs(out, cfg, inst, &a.strangers[i]);
	for (size_t i = 0; i < a.n_checks; i++) {
		rec_str(&r, "check");
		rec_num(&r, (unsigned long)a.checks[i].step);
		rec_num(&r, a.checks[i].ok);
		rec_str(&r, a.checks[i].setting);
		rec_str(&r, a.checks[i].value);
		rec_str(&r, a.checks[i].key);
		rec_send(out, &r);
	}
	for (size_t i = 0; i < a.n_matrix; i++) {
		rec_str(&r, "matrix");
		rec_str(&r, a.matrix[i].client);
		rec_str(&r, a.matrix[i].ip);
		for (size_t s = 0; s < AUDIT_SENDERS; s++)
			for (size_t t = 0; t < AUDIT_RCPTS; t++)
				rec_str(&r, a.matrix[i].cell[s][t]);
		rec_send(out, &r);
	}
	for (size_t i = 0; i < a.n_exposure; i++) {
		rec_str(&r, "exposure");
		rec_str(&r, a.exposure[i]);
		rec_send(out, &r);
	}
	rec_str(&r, "end");
	rec_send(out, &r);
	audit_instance_free(&a);
}

static int
unknown(const struct sv_out *out, const char *name)
{
	char line[256];
	snprintf(line, sizeof(line), "%s: ERROR (no such process)", name);
	out->line(out->arg, line);
	return CTL_EXIT_UNKNOWN;
}

/* audit [--internet NAME]... [NAME...] */
static int
cmd_audit(struct sv *sv, int argc, char **argv, const struct sv_out *out,
    const char **error_r)
{
	const struct config *cfg = sv_config(sv);
	const char *internet[CTLPROTO_ARGS_MAX], *names[CTLPROTO_ARGS_MAX];
	size_t n_internet = 0, n_names = 0;
	int code = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--internet") == 0) {
			if (++i == argc) {
				*error_r = "Error: audit [--internet NAME]... [NAME...]";
				return CTL_EXIT_USAGE;
			}
			internet[n_internet++] = argv[i];
		} else {
			names[n_names++] = argv[i];
		}
	}
	for (size_t i = 0; i < n_internet; i++)
		if (config_instance(cfg, internet[i]) == NULL)
			code = unknown(out, internet[i]);
	for (size_t i = 0; i < n_names; i++)
		if (config_instance(cfg, names[i]) == NULL)
			code = unknown(out, names[i]);
	if (code != 0)
		return code;
	for (size_t i = 0; i < cfg->n_instances; i++) {
		const struct instance *inst = &cfg->instances[i];
		bool wanted = n_names == 0, net = false;
		for (size_t j = 0; j < n_names; j++)
			wanted = wanted || strcmp(names[j], inst->name) == 0;
		for (size_t j = 0; j < n_internet; j++)
			net = net || strcmp(internet[j], inst->name) == 0;
		if (wanted)
			instance_recs(out, cfg, inst, net);
	}
	return 0;
}

/* audit-expect NAME IP */
static int
cmd_expect(struct sv *sv, int argc, char **argv, const struct sv_out *out,
    const char **error_r)
{
	const struct config *cfg = sv_config(sv);
	struct sockaddr_storage ss;

	if (argc != 3) {
		*error_r = "Error: audit-expect NAME CLIENT_IP";
		return CTL_EXIT_USAGE;
	}
	const struct instance *inst = config_instance(cfg, argv[1]);
	if (inst == NULL)
		return unknown(out, argv[1]);
	if (net_sockaddr_parse(argv[2], 0, &ss, NULL) == -1) {
		*error_r = "Error: audit-expect wants an IPv4 or IPv6 address";
		return CTL_EXIT_USAGE;
	}
	const struct sockaddr *client = (const struct sockaddr *)&ss;
	struct rec r = { .n = 0 };
	rec_str(&r, "greeting");
	rec_str(&r, audit_greeting(cfg, inst, client));
	rec_send(out, &r);
	rec_str(&r, "errors");
	rec_num(&r, inst->max_errors);
	rec_send(out, &r);
	struct audit_vars v;
	audit_vars_init(cfg, inst, &v);
	for (size_t i = 0; i < audit_corpus_n; i++) {
		struct audit_outcome o;
		char name[96];
		audit_simulate(cfg, inst, client, false, &v, i, &o);
		rec_str(&r, "case");
		rec_str(&r, audit_case_name(i, name, sizeof(name)));
		rec_str(&r, o.helo);
		rec_str(&r, o.mail_arg);
		rec_str(&r, o.rcpt_arg);
		rec_str(&r, o.mail);
		rec_str(&r, o.rcpt);
		rec_num(&r, o.relayed);
		rec_send(out, &r);
	}
	return 0;
}

bool
audit_is_corpus_check(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--corpus") == 0)
			return true;
	return false;
}

/* check INSTANCE --client IP --corpus: each case's reply and rule for that client */
static int
cmd_check_corpus(struct sv *sv, int argc, char **argv, const struct sv_out *out,
    const char **error_r)
{
	const struct config *cfg = sv_config(sv);
	const char *client = NULL;
	bool auth = false;
	struct sockaddr_storage ss;
	char line[CTLPROTO_LINE_MAX], name[96];

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--client") == 0 && i + 1 < argc)
			client = argv[++i];
		else if (strcmp(argv[i], "--auth") == 0) {
			auth = true;
			if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
				i++;	/* the user: the decision does not depend on it */
		} else if (strcmp(argv[i], "--corpus") != 0)
			client = NULL, i = argc;
	}
	if (argc < 2 || client == NULL || strcmp(argv[1], "--corpus") == 0) {
		*error_r = "Error: check INSTANCE --client IP [--auth [USER]] --corpus";
		return CTL_EXIT_USAGE;
	}
	const struct instance *inst = config_instance(cfg, argv[1]);
	if (inst == NULL)
		return unknown(out, argv[1]);
	if (net_sockaddr_parse(client, 0, &ss, NULL) == -1) {
		*error_r = "Error: --client wants an IPv4 or IPv6 address";
		return CTL_EXIT_USAGE;
	}
	struct audit_vars v;
	audit_vars_init(cfg, inst, &v);
	unsigned relayed = 0;
	for (size_t i = 0; i < audit_corpus_n; i++) {
		struct audit_outcome o;
		audit_simulate(cfg, inst, (const struct sockaddr *)&ss, auth, &v, i, &o);
		const char *reply = o.stage == AUDIT_AT_CONNECT ?
		    "554 5.7.1 Access denied" : o.stage == AUDIT_AT_MAIL ? o.mail : o.rcpt;
		snprintf(line, sizeof(line), "%-20s MAIL FROM:%s RCPT TO:%s -> %s "
		    "(rule: %s)%s", audit_case_name(i, name, sizeof(name)), o.mail_arg,
		    o.rcpt_arg, reply, o.rule, o.relayed ? " RELAYED" : "");
		out->line(out->arg, line);
		relayed += o.relayed;
	}
	snprintf(line, sizeof(line), "%s: client %s%s: relayed %u/%zu", inst->name,
	    client, auth ? " (authenticated)" : "", relayed, audit_corpus_n);
	out->line(out->arg, line);
	return relayed > 0 ? CTL_EXIT_ERROR : 0;
}

int
audit_control(struct sv *sv, int argc, char **argv, const struct sv_out *out,
    const char **error_r)
{
	*error_r = NULL;
	if (strcmp(argv[0], "audit-expect") == 0)
		return cmd_expect(sv, argc, argv, out, error_r);
	if (strcmp(argv[0], "check") == 0)
		return cmd_check_corpus(sv, argc, argv, out, error_r);
	return cmd_audit(sv, argc, argv, out, error_r);
}
