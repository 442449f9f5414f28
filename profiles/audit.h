/*
 * The relay audit's corpus runner: the relay-trick corpus (profiles/relay_tricks.def)
 * played against an instance's profile for a chosen client, predicting, reply by
 * reply, what relayvisor-smtpd answers that client: the access check at connect,
 * MAIL's syntax check, RCPT's syntax check and then policy_check_rcpt(), the very
 * entry point the live session calls. Used by the supervisor (the verdict logged at
 * every start and reload, `relayvisorctl audit` and `check --corpus`) and by tests.
 *
 * On top of the runner, audit_instance() builds what the audit reports for one
 * instance: strangers (documentation addresses outside every LAN entry, IPv4, IPv6
 * and IPv4-mapped), a representative client of each LAN entry, the IPv4 stranger
 * as an authenticated client (predicted: a live replay has no credentials), the
 * who-may-relay matrix, Mailtraq's checklist and exposure warnings.
 */
#ifndef RELAYVISOR_AUDIT_H
#define RELAYVISOR_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/config.h"

/*
 * The audit over the control socket (common/ctlproto.h framing). Both ends,
 * supervisor/audit.c and ctl/audit.c, read this. Data lines are records whose
 * fields are separated by one TAB (fields never hold a TAB or LF):
 *
 * "audit [--internet NAME]... [NAME...]": per instance, in configuration order,
 *   instance  NAME PROFILE INTERNET(0|1) ACKNOWLEDGED(0|1) ACCESS(any|lan|list) CASES
 *   listen    TEXT IP PORT SCOPE(loopback|private|wildcard|public)      one per address
 *   stranger  IP IN_LAN ALLOWED EVALUATED RELAYED LOCAL                one per stranger
 *   lan       ENTRY IP IN_LAN ALLOWED EVALUATED RELAYED LOCAL OVERWIDE one per LAN entry
 *   tls       none|starttls|implicit REQUIRE_TLS(0|1)  how the replay reaches MAIL
 *   authenticated IP IN_LAN ALLOWED EVALUATED RELAYED LOCAL OFFERED   the IPv4
 *             stranger as an authenticated client (predicted only); OFFERED:
 *             the instance offers AUTH at all (audit_auth_offered)
 *   relays    WHO      "nobody", "LAN clients only", "authenticated clients
 *             only", "LAN and authenticated clients", "strangers"
 *   relayed   CLIENT_IP CASE HELO MAIL RCPT       each case relayed for a stranger
 *   check     STEP OK SETTING VALUE KEY                            Mailtraq's checklist
 *   matrix    CLIENT IP CELL*6   cells: sender local, non-local, null, each with
 *                                recipient local then remote; CLIENT "stranger",
 *                                "LAN <entry>", then "authenticated" (predicted)
 *   exposure  MESSAGE
 *   end
 * then ".OK 0"; an unknown NAME gives "NAME: ERROR (no such process)" and exit 4.
 *
 * "audit-expect NAME CLIENT_IP": what the instance's listener answers that client,
 *   greeting  220 | 554 5.7.1
 *   errors    MAX_ERRORS                   (the replay opens a new session in time)
 *   case      CASE HELO MAIL_ARG RCPT_ARG MAIL_REPLY RCPT_REPLY RELAYED(0|1)
 *             RCPT_REPLY is "" when MAIL is refused
 */

#define AUDIT_DEFAULT_HELO "client.example"
#define AUDIT_REPLY_MAX 640
#define AUDIT_ARG_MAX 512

struct audit_case {
	const char *cls;	/* trick class */
	const char *helo;	/* "" = AUDIT_DEFAULT_HELO */
	const char *mail, *rcpt;	/* templates with placeholders */
	const char *stranger;	/* expected reply prefix for a stranger, locked down */
};

extern const struct audit_case audit_corpus[];
extern const size_t audit_corpus_n;

/* "percent-hack/3": the case's class and number within it */
const char *audit_case_name(size_t i, char *buf, size_t len);

/* what the placeholders stand for, for one instance */
struct audit_vars {
	char local[256], local_upper[256], local_cap[256];
	char own[80];
	char hostname[256];
};
void audit_vars_init(const struct config *cfg, const struct instance *inst,
    struct audit_vars *v);
/* expand a template; false when it does not fit */
bool audit_expand(const char *tmpl, const struct audit_vars *v, char *buf, size_t len);

enum audit_stage { AUDIT_AT_CONNECT, AUDIT_AT_MAIL, AUDIT_AT_RCPT };

/* what one case gets, as the listener would write it */
struct audit_outcome {
	enum audit_stage stage;		/* where the case ended */
	char helo[AUDIT_ARG_MAX];	/* expanded EHLO argument */
	char mail_arg[AUDIT_ARG_MAX], rcpt_arg[AUDIT_ARG_MAX];
	char mail[AUDIT_REPLY_MAX];	/* "250 2.1.0 Ok", "501 5.1.7 ..."; "" at connect */
	char rcpt[AUDIT_REPLY_MAX];	/* "" unless stage is RCPT */
	bool accepted;			/* RCPT got 250 */
	bool relayed;			/* ... for a recipient that is not local */
	const char *rule;		/* policy rule, "access", "syntax" */
};

/* The greeting the client gets: "220" or the access refusal's "554 5.7.1". */
const char *audit_greeting(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client);
/* Predict one case (index into audit_corpus) for client; authenticated: as a
   client that passed SMTP AUTH (predicted only: the live replay has no
   credentials). */
void audit_simulate(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client, bool authenticated, const struct audit_vars *v,
    size_t i, struct audit_outcome *o);
/* Predict one MAIL/RCPT pair given literally (the matrix, `check`). */
void audit_simulate_pair(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client, bool authenticated, const char *mail,
    const char *rcpt, struct audit_outcome *o);

/* the whole corpus for one client */
struct audit_client {
	char label[128];	/* "stranger", or the LAN entry as written */
	char ip[64];		/* the client address evaluated */
	bool in_lan;		/* the client is in the profile's LAN */
	bool allowed;		/* access: lets it connect */
	unsigned evaluated, relayed, local;
	size_t *relayed_cases;	/* indices into audit_corpus, `relayed` of them */
};
/* -1 when ip does not parse */
int audit_run_client(const struct config *cfg, const struct instance *inst,
    const char *ip, bool authenticated, const char *label, struct audit_client *c);
void audit_client_free(struct audit_client *c);

enum audit_scope { SCOPE_LOOPBACK, SCOPE_PRIVATE, SCOPE_WILDCARD, SCOPE_PUBLIC };
const char *audit_scope_name(enum audit_scope s);
enum audit_scope audit_scope_of(const struct sockaddr *sa);

struct audit_check {
	int step;		/* Mailtraq's Step 1 (LAN) or 2 (relaying) */
	bool ok;
	char setting[96];	/* Mailtraq's words */
	char value[512];
	char key[160];		/* the key to change */
};

#define AUDIT_SENDERS 3		/* local, non-local, null */
#define AUDIT_RCPTS 2		/* local, remote */
extern const char *const audit_sender_kinds[AUDIT_SENDERS];
extern const char *const audit_rcpt_kinds[AUDIT_RCPTS];

struct audit_matrix_row {
	char client[128];	/* "stranger", "LAN 192.168.1.*" */
	char ip[64];
	/* "accept" or the refusal ("554 5.7.1"), "n/a" without a local domain */
	char cell[AUDIT_SENDERS][AUDIT_RCPTS][48];
};

struct audit_instance {
	const struct instance *inst;
	bool internet;		/* port 25, or named by --internet */
	bool acknowledged;	/* open_relay: i-understand */
	struct audit_client *strangers, *lans;
	size_t n_strangers, n_lans;
	unsigned stranger_evaluated, stranger_relayed;
	unsigned lan_relayed;	/* over every LAN client */
	/* the IPv4 stranger as an authenticated client (predicted: no credentials
	   for a live replay) */
	struct audit_client auth;
	bool auth_run;
	bool auth_offered;	/* a client can authenticate here (audit_auth_offered) */
	struct audit_check checks[7];
	size_t n_checks;
	bool checklist_ok;	/* every item passes */
	struct audit_matrix_row *matrix;
	size_t n_matrix;
	char **exposure;	/* warnings, one per listen address */
	size_t n_exposure;
};

void audit_instance(const struct config *cfg, const struct instance *inst,
    bool internet, struct audit_instance *a);
void audit_instance_free(struct audit_instance *a);
/* AUTH is offered on the instance (it has TLS) */
bool audit_auth_offered(const struct config *cfg, const struct instance *inst);
/* who relays through it (authenticated clients counted only where AUTH is
   offered): "strangers", "LAN clients only", "authenticated
   clients only", "LAN and authenticated clients" or "nobody" */
const char *audit_relays_for(const struct audit_instance *a);

/* relayvisord at start and reload: "audit: NAME: strangers relayed R/N" per
   instance, a warning when R is not 0 */
void audit_log_config(const struct config *cfg);

#endif
