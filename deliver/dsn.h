/*
 * Delivery status notifications (RFC 3464 multipart/report, RFC 3461 semantics):
 * bounces, delay warnings and success reports, composed as a complete message
 * (headers and body, CRLF line ends) that the queue manager queues from the null
 * sender <> to the original envelope sender.
 *
 * The report has three parts: a human-readable explanation (Postfix's wording, one
 * "<rcpt>: reason" line per recipient), a message/delivery-status part
 * (Reporting-MTA, Original-Envelope-Id, Arrival-Date; per recipient Final-Recipient,
 * Original-Recipient from ORCPT, Action, Status, Remote-MTA, Diagnostic-Code smtp,
 * Last-Attempt-Date, Will-Retry-Until), and the original message: whole
 * (message/rfc822) when RET=FULL or no RET was given and it is no bigger than
 * full_limit, else its header only (text/rfc822-headers). Every value from the
 * network is stripped of control octets and bounded before it is written.
 *
 * Who gets one is decided by dsn_decide(): NOTIFY=NEVER, or a NOTIFY list without the
 * event, means none; no NOTIFY means failures (and delay warnings) only; a DSN is
 * never sent to <>: a failure for a message from <> is a double bounce, which the
 * caller sends to postmaster of the first local domain or drops with a log line
 * (and a double bounce that fails is dropped, never bounced again).
 *
 * Use (in relayvisor-qmgr, when recipients become final or the delay warning is due):
 *   if (dsn_decide(sender, rcpt.notify, DSN_FAILED) == DSN_TO_SENDER) add the
 *   recipient to a struct dsn_report; msg = dsn_compose(&report, original, len,
 *   complete, &msg_len, &eightbit); queue msg from <> to the sender (BODY=8BITMIME
 *   when eightbit), NOTIFY=NEVER on its recipient.
 */
#ifndef RELAYVISOR_DSN_H
#define RELAYVISOR_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED };
enum dsn_ret { DSN_RET_DEFAULT, DSN_RET_FULL, DSN_RET_HDRS };

struct dsn_rcpt {
	const char *addr;		/* final recipient, "local@domain" */
	const char *orcpt;		/* ORCPT as received ("rfc822;a+40b"), or NULL */
	enum dsn_action action;
	const char *status;		/* enhanced status "5.1.1" */
	const char *remote_mta;		/* "mx.remote.example", or NULL */
	const char *diagnostic;		/* the server's reply "550 5.1.1 ...", or NULL */
	const char *text;		/* why, for people ("host X said: ...") */
	time_t last_attempt;		/* 0: not known */
	const char *diagnostic_type;	/* Diagnostic-Code's type: NULL = "smtp" */
};

struct dsn_report {
	const char *reporting_mta;	/* our hostname */
	const char *qid;		/* the original message's queue id */
	const char *envid;		/* ENVID as received (xtext), or NULL */
	const char *sender;		/* the original envelope sender (the DSN's To:) */
	time_t arrival;
	time_t now;
	time_t retry_until;		/* delay warnings: when we give up */
	enum dsn_ret ret;
	size_t full_limit;		/* largest original returned whole; 0: 50 000 */
	const struct dsn_rcpt *rcpts;
	size_t n_rcpts;
};

enum dsn_target {
	DSN_NONE,		/* nobody is told */
	DSN_TO_SENDER,		/* a DSN from <> to the envelope sender */
	DSN_DOUBLE_BOUNCE,	/* failure of a message from <>: postmaster or drop */
};

/* notify: the recipient's SMTPC_NOTIFY_* bits (0 = no NOTIFY given) */
enum dsn_target dsn_decide(const char *sender, unsigned notify, enum dsn_action action);

/*
 * The whole DSN message (headers + body, CRLF), malloc'ed, length in *len_r.
 * orig/orig_len: the original message as stored; complete: orig is all of it (when
 * false only its header is used). *eightbit_r: the result holds 8-bit octets.
 */
char *dsn_compose(const struct dsn_report *r, const char *orig, size_t orig_len,
    bool complete, size_t *len_r, bool *eightbit_r);

/*
 * Fill d's remote_mta, diagnostic and diagnostic_type from a delivery agent's
 * reason (what the log's status=... says): "host NAME[ADDR]:PORT said: REPLY (in
 * reply to X command)" or "host NAME[ADDR]:PORT refused to talk to me: REPLY" give
 * Remote-MTA NAME and "Diagnostic-Code: smtp; REPLY" (Postfix's fields); any other
 * reason (DNS, connection, loop, expiry, Maildir) gives "Diagnostic-Code:
 * X-Relayvisor; REASON" and no Remote-MTA. The strings live in buf (len bytes).
 */
void dsn_rcpt_reason(struct dsn_rcpt *d, const char *reason, char *buf, size_t len);

/* RFC 3461 xtext decoding ("a+40b" -> "a@b"); -1 when malformed or too long */
int dsn_xtext_decode(const char *in, char *out, size_t len);
/* RFC 5322 date, "Mon, 30 Nov 2026 02:46:32 +0000" */
void dsn_date(time_t t, char *buf, size_t len);

#endif
