/*
 * The DSN SMTP extension's parameters (RFC 3461) as the listener receives them:
 * MAIL FROM's RET= and ENVID=, RCPT TO's NOTIFY= and ORCPT=. Limits come first
 * (ENVID 100 octets, ORCPT 500), then the syntax (xtext, keywords); a refused
 * parameter gets one of the replies below, word for word (Postfix's wording
 * where Postfix has one):
 *
 *   501 5.5.4 Duplicate RET parameter          501 5.5.4 Bad RET parameter syntax
 *   501 5.5.4 Duplicate ENVID parameter        501 5.5.4 ENVID parameter too long
 *   501 5.5.4 Bad ENVID parameter syntax       501 5.5.4 Duplicate NOTIFY parameter
 *   501 5.5.4 Bad NOTIFY parameter syntax      501 5.5.4 Duplicate ORCPT parameter
 *   501 5.5.4 NOTIFY=NEVER cannot be combined with other NOTIFY values
 *   501 5.5.4 ORCPT parameter too long         501 5.5.4 Bad ORCPT parameter syntax
 *
 * The values are kept as received (xtext, not decoded): that is what is stored
 * in the spool, passed on to a next hop that speaks DSN, and decoded only when
 * a report is written (deliver/dsn.c). The NOTIFY bits are deliver/smtpc.h's.
 */
#ifndef RELAYVISOR_DSNPARAM_H
#define RELAYVISOR_DSNPARAM_H

#include <stdbool.h>
#include <stddef.h>

#define DSNPARAM_NOTIFY_NEVER	(1u << 0)
#define DSNPARAM_NOTIFY_SUCCESS	(1u << 1)
#define DSNPARAM_NOTIFY_FAILURE	(1u << 2)
#define DSNPARAM_NOTIFY_DELAY	(1u << 3)
#define DSNPARAM_ENVID_MAX	100	/* RFC 3461 4.4 */
#define DSNPARAM_ORCPT_MAX	500	/* RFC 3461 4.2 */

enum dsnparam_ret { DSNPARAM_RET_NONE, DSNPARAM_RET_FULL, DSNPARAM_RET_HDRS };

struct dsnparam_mail {
	enum dsnparam_ret ret;
	bool has_envid;
	char envid[DSNPARAM_ENVID_MAX + 1];	/* xtext as received */
};

struct dsnparam_rcpt {
	unsigned notify;			/* DSNPARAM_NOTIFY_* bits, 0 none given */
	bool has_orcpt;
	char orcpt[DSNPARAM_ORCPT_MAX + 1];	/* "rfc822;xtext" as received */
};

/*
 * One ESMTP parameter of MAIL (RCPT): param points at "KEYWORD=value", len
 * octets (no space inside). 1: a DSN parameter, stored into *m (*r); 0: not a
 * DSN parameter (the caller goes on with its others); -1: refused, *reply_r is
 * the whole reply.
 */
int dsnparam_mail(struct dsnparam_mail *m, const char *param, size_t len,
    const char **reply_r);
int dsnparam_rcpt(struct dsnparam_rcpt *r, const char *param, size_t len,
    const char **reply_r);

/* RFC 3461 4: xtext ("+" and two upper-case hex digits, or a printable
   character other than "+" and "="), len octets, at least one */
bool dsnparam_xtext_valid(const char *s, size_t len);
/* NOTIFY's text for the spool envelope ("SUCCESS,FAILURE", "NEVER") and back;
   dsnparam_notify_parse -1 when it is not a valid list */
void dsnparam_notify_format(unsigned notify, char *buf, size_t len);
int dsnparam_notify_parse(const char *s, size_t len, unsigned *notify_r,
    const char **reply_r);
/* "rfc822;xtext" */
bool dsnparam_orcpt_valid(const char *s, size_t len);

#endif
