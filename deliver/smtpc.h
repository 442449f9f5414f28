/*
 * SMTP and LMTP client engine: one outbound connection as a state machine that never
 * touches a socket. The driver feeds it the octets the server sent and takes the
 * octets to send; the engine reports what happened as events. It is the delivery
 * agent's counterpart of the listener's fd -1 session mode, and is meant to sit on
 * the house I/O layer (common/io.[ch]) and a libev loop.
 *
 * Supported: EHLO with HELO fallback (LHLO for LMTP, no fallback), PIPELINING (MAIL,
 * every RCPT and DATA in one write when offered, one command per round trip
 * otherwise), SIZE (SIZE= sent; a message larger than the server's limit is bounced
 * before MAIL with 5.3.4), 8BITMIME (BODY=8BITMIME when the message says 8bit and the
 * server offers it; without the extension the message goes as is, like Postfix with
 * MIME conversion off), ENHANCEDSTATUSCODES (x.y.z taken from replies, else the class
 * default x.0.0), DSN (RFC 3461: RET, ENVID on MAIL, NOTIFY and ORCPT on RCPT, only
 * when offered), up to SMTPC_MAX_RCPTS recipients per transaction, multi-line replies,
 * per-recipient results (LMTP: one reply per accepted recipient after the final dot),
 * dot-stuffing of a body streamed in chunks, RSET and reuse, QUIT.
 *
 * TLS and AUTH (SMTP only), Postfix smtp(8)'s order: after EHLO, STARTTLS when
 * params.starttls and the server offers it; the 220 yields SMTPC_EV_STARTTLS (any
 * octet after the 220 is a protocol error: it came in clear); the driver runs the
 * handshake on its I/O layer and calls smtpc_tls_done(), then EHLO again. When
 * params.require_tls and STARTTLS is not offered the connection ends with 4.7.4
 * "TLS is required, but was not offered by host PEER"; a refused STARTTLS ends it
 * too ("TLS is required, but host PEER refused to start TLS: ...") or, without
 * require_tls, the session goes on in clear. With params.auth_user, AUTH PLAIN
 * (LOGIN when only that is offered) follows the EHLO over TLS, never in clear (the
 * driver sets require_tls with it); a failure closes with "SASL authentication
 * failed; server PEER said: 535 ..." as a 4.7.x (the administrator fixes the
 * password, the mail waits, as Postfix's smtp_sasl_auth_soft_bounce).
 *
 * Every octet from the server is hostile: a reply line longer than max_line, a reply
 * of more than max_reply_lines lines or max_reply_octets octets, a malformed line
 * (not three digits 2xx-5xx followed by ' ', '-' or the line end, or continuation
 * lines whose code differs), or a reply nobody asked for ends the connection as a
 * protocol error; nothing of it reaches the caller beyond max_text octets.
 *
 * ---------------------------------------------------------------------------------
 * Delivery design the integrator wires (what a relayvisor-deliver driver does)
 * ---------------------------------------------------------------------------------
 * relayvisor-qmgr owns the queue (the only writer of delivery state). It groups due
 * recipients by next hop (route.h: route_decide), asks sched.h whether a connection
 * to that destination may start (sched_may_connect / sched_conn_start) and hands an
 * agent a job: next hop + message id + up to SMTPC_MAX_RCPTS recipients (with their
 * NOTIFY/ORCPT) + sender, size, ENVID, RET, 8bit flag, and a read-only descriptor or
 * spool read access to the body. The agent answers one result per recipient
 * (status, enhanced code, reply, relay host[ip]:port) and one "connection ended"
 * (ok = the server completed the handshake, for sched_conn_done). The qmgr records
 * each result, then: SENT and BOUNCE are final; DEFER gets sched_next_try(); a
 * message whose recipients are all final is removed after any DSN (dsn.h) is queued.
 *
 * A relayvisor-deliver agent, per job:
 *  1. Next hop "local" with maildir: maildir.h, no network. Otherwise resolve with
 *     dns.h (MX unless the next hop is bracketed, then A/AAAA per host), drop hosts
 *     that are ourselves (route_is_self; "mail loops back to myself" when the best MX
 *     is us), and try the addresses in order.
 *  2. Connect (non-blocking) on the loop; a connect failure or timeout = try the next
 *     address. On connect: c = smtpc_new(&params), arm a timer with
 *     smtpc_timeout(c) seconds.
 *  3. Whenever bytes arrive: smtpc_feed(c, buf, n); at EOF smtpc_feed_eof(c); when the
 *     timer fires smtpc_timeout_fired(c). After each of these calls and after
 *     smtpc_send/smtpc_body/smtpc_quit: write out smtpc_output() (consume what the
 *     socket took with smtpc_output_consume), re-arm the timer with smtpc_timeout()
 *     (0 = no timer: idle), then drain events with smtpc_next_event():
 *       SMTPC_EV_READY  the connection is idle and usable: smtpc_send() the next
 *                       batch for this destination (reuse: up to 100 messages or
 *                       300 s per connection, the driver's policy), or smtpc_quit().
 *       SMTPC_EV_BODY   the server said 354: stream the message with smtpc_body()
 *                       in chunks, keeping smtpc_output_pending() bounded (feed the
 *                       next chunk when the I/O layer reports low water), then
 *                       smtpc_body_end().
 *       SMTPC_EV_RCPT   final result of recipient ev.rcpt of the current message
 *                       (exactly one per recipient per smtpc_send). ev.conn_failed
 *                       says the connection failed rather than the server judging
 *                       the recipient: such DEFERs may be retried at the next MX
 *                       right away (Postfix does), the others go back to the qmgr.
 *       SMTPC_EV_DONE   every recipient of the current message has its result.
 *       SMTPC_EV_CLOSED close the socket, smtpc_free(c). ev.handshake_ok tells the
 *                       scheduler whether the destination answered; ev.loop is the
 *                       "greeted me with my own hostname" case (bounce 5.4.6).
 *     Events are history: when one read holds a reply and then octets the server
 *     had no business sending, READY or BODY is followed by CLOSED in the same
 *     drain; smtpc_send() then fails (the connection is closed) and smtpc_body()
 *     does nothing. Act on CLOSED.
 *  4. A 421 or a lost connection defers every recipient not yet final (conn_failed).
 *  5. Logging (Postfix format, pflogsumm): "QID: to=<rcpt>, relay=host[ip]:port,
 *     delay=..., delays=a/b/c/d, dsn=X.Y.Z, status=sent (250 ...)": ev.dsn and
 *     smtpc_describe() give the status text.
 *
 * Timeouts are RFC 5321 4.5.3.2's: greeting 5 min, EHLO/HELO 5 min, MAIL 5 min,
 * RCPT 5 min, DATA initiation 2 min, data block 3 min (re-armed on every write
 * progress), final dot 10 min, RSET and QUIT 5 min.
 */
#ifndef RELAYVISOR_SMTPC_H
#define RELAYVISOR_SMTPC_H

#include <stdbool.h>
#include <stddef.h>

#define SMTPC_MAX_RCPTS 50
/* octets of "\0user\0password" (user 255, password 1023) */
#define SMTPC_AUTH_MAX (255 + 1023 + 2)

enum smtpc_proto { SMTPC_SMTP, SMTPC_LMTP };

struct smtpc_params {
	enum smtpc_proto proto;
	const char *helo_name;	/* our hostname, sent in EHLO/HELO/LHLO */
	const char *peer;	/* "mx.example[192.0.2.1]:25", for messages */
	bool check_loop;	/* greeting or EHLO reply naming helo_name = loop (SMTP) */
	size_t max_line;	/* longest reply line, CRLF included (default 4096) */
	size_t max_reply_lines;	/* default 128 */
	size_t max_reply_octets;/* default 65536 */
	unsigned t_greeting, t_helo, t_mail, t_rcpt, t_data, t_block, t_dot, t_rset,
	    t_quit;		/* seconds, RFC 5321 4.5.3.2 defaults */
	unsigned t_starttls;	/* 220 to STARTTLS and the handshake (300) */
	/* outbound TLS (RFC 3207) and AUTH (RFC 4954), SMTP only */
	bool starttls;		/* send STARTTLS when the server offers it */
	bool require_tls;	/* no STARTTLS offered (4.7.4) or refused: close */
	const char *auth_user;	/* AUTH PLAIN (LOGIN when only that is offered) */
	const char *auth_pass;	/* after TLS only; never logged; NULL: no AUTH */
};

void smtpc_params_default(struct smtpc_params *p);

enum smtpc_notify {	/* RFC 3461 NOTIFY; none set = parameter not sent */
	SMTPC_NOTIFY_NEVER = 1 << 0,
	SMTPC_NOTIFY_SUCCESS = 1 << 1,
	SMTPC_NOTIFY_FAILURE = 1 << 2,
	SMTPC_NOTIFY_DELAY = 1 << 3,
};

enum smtpc_ret { SMTPC_RET_NONE, SMTPC_RET_FULL, SMTPC_RET_HDRS };

struct smtpc_rcpt {
	const char *addr;	/* "local@domain" as canonicalised by the listener */
	unsigned notify;	/* enum smtpc_notify bits */
	const char *orcpt;	/* "rfc822;xtext" as received, or NULL */
};

struct smtpc_msg {
	const char *sender;	/* "" for the null sender <> */
	size_t size;		/* octets of the message, for SIZE= and the early check */
	bool eightbit;		/* BODY=8BITMIME: declared, or 8-bit octets in the body */
	enum smtpc_ret ret;
	const char *envid;	/* xtext as received, or NULL */
	const struct smtpc_rcpt *rcpts;
	size_t n_rcpts;		/* 1 .. SMTPC_MAX_RCPTS */
};

enum smtpc_status { SMTPC_SENT, SMTPC_DEFER, SMTPC_BOUNCE };

/* the command a reply answered, for "(in reply to X command)" */
enum smtpc_stage {
	SMTPC_STAGE_CONNECT, SMTPC_STAGE_GREETING, SMTPC_STAGE_HELO, SMTPC_STAGE_MAIL,
	SMTPC_STAGE_RCPT, SMTPC_STAGE_DATA, SMTPC_STAGE_BODY, SMTPC_STAGE_DOT,
	SMTPC_STAGE_RSET, SMTPC_STAGE_QUIT, SMTPC_STAGE_IDLE, SMTPC_STAGE_STARTTLS,
	SMTPC_STAGE_AUTH,
};

enum smtpc_event_type {
	SMTPC_EV_READY, SMTPC_EV_BODY, SMTPC_EV_RCPT, SMTPC_EV_DONE, SMTPC_EV_CLOSED,
	SMTPC_EV_STARTTLS,	/* the server said 220 to STARTTLS: start the TLS
				   handshake, then smtpc_tls_done() or smtpc_fail() */
};

#define SMTPC_TEXT_MAX 1024

struct smtpc_event {
	enum smtpc_event_type type;
	/* SMTPC_EV_RCPT */
	size_t rcpt;			/* index into smtpc_msg.rcpts */
	enum smtpc_status status;
	bool conn_failed;		/* deferred because the connection failed */
	/* SMTPC_EV_RCPT and SMTPC_EV_CLOSED */
	int code;			/* the server's reply code, 0 when generated here */
	char dsn[16];			/* enhanced status "5.1.1" */
	enum smtpc_stage stage;
	/* the server's reply flattened to one line ("550 5.1.1 <a@b>: no such user"),
	   or our own description ("lost connection with PEER while sending RCPT TO") */
	char text[SMTPC_TEXT_MAX];
	/* SMTPC_EV_CLOSED */
	bool error;			/* not a clean QUIT */
	bool handshake_ok;		/* greeting and EHLO/HELO completed at some point */
	bool loop;			/* the server greeted us with our own hostname */
};

enum smtpc_ext {
	SMTPC_EXT_PIPELINING = 1 << 0, SMTPC_EXT_SIZE = 1 << 1, SMTPC_EXT_8BITMIME = 1 << 2,
	SMTPC_EXT_ENHANCED = 1 << 3, SMTPC_EXT_DSN = 1 << 4, SMTPC_EXT_STARTTLS = 1 << 5,
	SMTPC_EXT_AUTH = 1 << 6, SMTPC_EXT_SMTPUTF8 = 1 << 7, SMTPC_EXT_CHUNKING = 1 << 8,
};

struct smtpc;

/* params are copied (strings too); the connection is established: the engine
   now waits for the greeting */
struct smtpc *smtpc_new(const struct smtpc_params *p);
void smtpc_free(struct smtpc *c);

/* octets from the server */
void smtpc_feed(struct smtpc *c, const void *data, size_t len);
/* the server closed the connection (or reading failed) */
void smtpc_feed_eof(struct smtpc *c);
/* the timer armed with smtpc_timeout() fired */
void smtpc_timeout_fired(struct smtpc *c);

/*
 * Start a transaction; only after SMTPC_EV_READY. msg and everything it points to
 * must stay valid until SMTPC_EV_DONE. Returns -1 with *error_r when the message
 * cannot be sent as given (no recipients, more than SMTPC_MAX_RCPTS, CR, LF or
 * control octets in an address, not idle); nothing is sent then.
 */
int smtpc_send(struct smtpc *c, const struct smtpc_msg *msg, const char **error_r);
/* message octets as stored (lines end in CRLF or LF); dot-stuffed, bare CR and LF
   become CRLF, lines over 998 octets are folded with CRLF SP (as Postfix does) */
void smtpc_body(struct smtpc *c, const void *data, size_t len);
/* one pass over a stored body. Returned: smtpc_body() would send these octets
   unchanged (every line ends in CRLF, the last one too; none has another CR or
   LF, none is longer than 998 octets, none starts with '.'), so the body may go
   to the server as it is (smtpc_body_verbatim), e.g. straight from its
   descriptor. *eightbit_r: an octet above 127, so MAIL says BODY=8BITMIME to a
   server that offers 8BITMIME (RFC 6152), declared by the submitter or not; to
   one that does not it goes as it is, as Exim and sendmail (pass8) send it */
bool smtpc_body_scan(const void *data, size_t len, bool *eightbit_r);
/* instead of smtpc_body(): the driver sent a body that smtpc_body_scan()
   accepted itself, after smtpc_output() and before what follows */
void smtpc_body_verbatim(struct smtpc *c);
/* the whole message was given: the final dot is sent */
void smtpc_body_end(struct smtpc *c);
/* after SMTPC_EV_READY: say goodbye */
void smtpc_quit(struct smtpc *c);

/* after SMTPC_EV_STARTTLS, the handshake completed (and the driver accepted the
   certificate): EHLO again, everything learnt before TLS forgotten (RFC 3207) */
void smtpc_tls_done(struct smtpc *c);
/* the driver ends the connection for a reason of its own (a TLS handshake or
   certificate failure): CLOSED with dsn and text, no QUIT */
void smtpc_fail(struct smtpc *c, const char *dsn, const char *text);
bool smtpc_tls(const struct smtpc *c);		/* smtpc_tls_done() was called */
bool smtpc_authenticated(const struct smtpc *c);	/* AUTH got 235 */

/* octets to send, and how many the socket took */
const char *smtpc_output(const struct smtpc *c, size_t *len_r);
void smtpc_output_consume(struct smtpc *c, size_t n);
size_t smtpc_output_pending(const struct smtpc *c);

bool smtpc_next_event(struct smtpc *c, struct smtpc_event *ev);
/* seconds of the timer for the current wait; 0 = none (idle or closed) */
unsigned smtpc_timeout(const struct smtpc *c);
unsigned smtpc_extensions(const struct smtpc *c);
/* the server's SIZE limit, 0 when none */
unsigned long long smtpc_size_limit(const struct smtpc *c);
unsigned smtpc_messages(const struct smtpc *c);	/* transactions started so far */
bool smtpc_closed(const struct smtpc *c);
const char *smtpc_stage_name(enum smtpc_stage st);	/* "RCPT TO", "end of DATA" */
/* Postfix's status text: "host PEER said: 550 5.1.1 ... (in reply to RCPT TO
   command)" or the local description */
void smtpc_describe(const struct smtpc *c, const struct smtpc_event *ev, char *buf,
    size_t len);

#endif
