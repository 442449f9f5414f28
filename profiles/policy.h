/*
 * The relay decision of DESIGN.md section 5 as a chain of checks. Each check answers
 * OK, DUNNO, REJECT or ERROR; the first answer that is not DUNNO wins, and an error
 * never turns into a permit. Used by relayvisor-smtpd at every RCPT and by the
 * supervisor for `relayvisorctl check`.
 */
#ifndef RELAYVISOR_POLICY_H
#define RELAYVISOR_POLICY_H

#include <stdbool.h>
#include <sys/socket.h>

#include "common/config.h"
#include "common/address.h"

enum policy_answer { POLICY_DUNNO, POLICY_OK, POLICY_REJECT, POLICY_ERROR };

struct policy_ctx {
	const struct config *cfg;
	const struct instance *inst;
	const struct sockaddr *client;	/* the client's address */
	const struct mailaddr *sender;	/* parsed MAIL FROM (may be null sender) */
	bool authenticated;		/* the session authenticated (SMTP AUTH) */
	/* the instance's own listening addresses, for [IP] literals; NULL = inst->listen */
	const struct sockaddr *const *own_addrs;
	size_t n_own_addrs;
};

struct policy_result {
	enum policy_answer answer;	/* OK or REJECT (or ERROR) */
	bool local;			/* OK for local delivery (not relayed) */
	int code;			/* 250, 550, 554, 451 */
	char enhanced[8];		/* "2.1.5", "5.7.1", "5.1.3" */
	char text[512];			/* full reply text after the enhanced code, e.g.
					   "<v@remote.example>: Relay access denied" */
	const char *rule;		/* the check that decided, e.g. "lan",
					   "always_relay_to", "relay_access_denied" */
	bool relay_denied;		/* REJECT because relaying is not permitted
					   (554 5.7.1 or 530 5.7.0), not bad syntax */
};

/*
 * 0: res is OK (250 2.1.5 "Ok", res->local for local delivery) or REJECT (550 5.1.3,
 * 550 5.1.1, 554 5.7.1, 530 5.7.0). -1: res is ERROR, 451 4.3.0 (incomplete
 * context). Rules: null_recipient, postmaster, bare_recipient, bad_local_part,
 * local_recipients, local_domain, always_relay_to, always_relay_from, lan,
 * relay_outside_lan, auth (authenticated, relay_authenticated), relay_nonlocal_senders,
 * auth_required (530 5.7.0: require_auth, not authenticated), relay_access_denied,
 * error.
 */
int policy_check_rcpt(const struct policy_ctx *ctx, const struct mailaddr *rcpt,
    struct policy_result *res);
/*
 * The steps relayvisor-smtpd takes for one client and one MAIL/RCPT pair, in its
 * order: the access check at connect (policy_client_allowed), MAIL's path
 * (address_parse_path), RCPT's path, then policy_check_rcpt() with the context
 * the session builds at RCPT. The one entry point for whoever asks "what would
 * the listener answer" without a session: `relayvisorctl check` and the audit.
 * mail and rcpt are paths as sent ("<a@b>", then maybe parameters: *_end says
 * where the path ended). authenticated: the client as if it had passed SMTP AUTH
 * (`check --auth`, the audit's authenticated class).
 */
enum policy_stage { POLICY_AT_CONNECT, POLICY_AT_MAIL, POLICY_AT_RCPT, POLICY_DECIDED };
struct policy_verdict {
	enum policy_stage stage;	/* the step that refused; DECIDED: res holds
					   policy_check_rcpt's answer */
	const char *syntax_error;	/* at MAIL or RCPT: why the path was refused */
	size_t mail_end, rcpt_end;
	struct mailaddr sender, rcpt;
	struct policy_result res;
};
void policy_evaluate(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client, bool authenticated, const char *mail,
    const char *rcpt, struct policy_verdict *v);
/* domain (canonical, as in struct mailaddr) is one of server.local_domains */
bool policy_domain_is_local(const struct config *cfg, const char *domain);
/* client is in the LAN of the instance's profile */
bool policy_client_in_lan(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client);
/* client may connect at all (instance access:) */
bool policy_client_allowed(const struct config *cfg, const struct instance *inst,
    const struct sockaddr *client);

#endif
