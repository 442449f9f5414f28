/*
 * SMTP/LMTP client engine (smtpc.h): reply reader with limits first, then one state
 * machine over the connection (greeting, EHLO/HELO, idle, transaction, body, final
 * dot, RSET, QUIT), a queue of commands awaiting replies (pipelining), and an event
 * queue the driver drains. The open transaction is its own little record
 * (c->msg, per-recipient state), not extra states.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "common/log.h"
#include "common/xmalloc.h"
#include "deliver/smtpc.h"

enum smtpc_state {
	ST_GREETING, ST_EHLO, ST_HELO, ST_READY, ST_TX, ST_BODY, ST_DOT, ST_RSET,
	ST_QUIT, ST_CLOSED, ST_STARTTLS, ST_TLS, ST_AUTH,
};

static const char *const state_names[] = {
	"GREETING", "EHLO", "HELO", "READY", "TX", "BODY", "DOT", "RSET", "QUIT", "CLOSED",
	"STARTTLS", "TLS", "AUTH",
};

enum { MECH_PLAIN = 1 << 0, MECH_LOGIN = 1 << 1 };

enum smtpc_cmd { CMD_MAIL, CMD_RCPT, CMD_DATA };

struct smtpc_pending {
	enum smtpc_cmd cmd;
	size_t rcpt;
};

enum rcpt_state { R_PENDING, R_ACCEPTED, R_FINAL };

struct smtpc_buf {
	char *p;
	size_t len, cap;
};

struct smtpc {
	struct smtpc_params p;
	char *helo_name, *peer;
	char *auth_user, *auth_pass;	/* copies; the password wiped when freed */
	enum smtpc_state st;
	bool tls_on, authed;
	unsigned auth_mechs;		/* MECH_* the EHLO reply offered */
	int auth_step;			/* LOGIN: 0 sent AUTH, 1 sent the user */
	struct smtpc_buf out;	/* octets to send; out_off already taken */
	size_t out_off;
	struct smtpc_buf in;	/* the partial reply line */

	/* the reply being read */
	int rcode;		/* 0: no reply in progress */
	size_t rlines, roctets;
	char rtext[SMTPC_TEXT_MAX];
	size_t rtext_len;
	char rword[256];	/* first word of the first line (greeting hostname) */

	unsigned ext;
	unsigned long long size_limit;
	bool handshake_ok;
	unsigned messages;

	/* commands sent whose replies are outstanding, oldest first */
	struct smtpc_pending q[SMTPC_MAX_RCPTS + 2];
	size_t qhead, qlen;

	/* the open transaction */
	const struct smtpc_msg *msg;
	enum rcpt_state rs[SMTPC_MAX_RCPTS];
	size_t n_final, n_accepted, next_rcpt;
	bool mail_ok, mail_failed;
	size_t dot_expected, dot_got, dot_next;

	/* body transparency across chunks */
	bool bol, cr;
	size_t linelen;

	struct smtpc_event *ev;
	size_t ev_head, ev_len, ev_cap;
};

void
smtpc_params_default(struct smtpc_params *p)
{
	memset(p, 0, sizeof(*p));
	p->proto = SMTPC_SMTP;
	p->helo_name = "localhost";
	p->peer = "unknown";
	p->check_loop = true;
	p->max_line = 4096;
	p->max_reply_lines = 128;
	p->max_reply_octets = 65536;
	p->t_greeting = 300;
	p->t_helo = 300;
	p->t_mail = 300;
	p->t_rcpt = 300;
	p->t_data = 120;
	p->t_block = 180;
	p->t_dot = 600;
	p->t_rset = 300;
	p->t_quit = 300;
	p->t_starttls = 300;
}

static void
buf_reserve(struct smtpc_buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 512;
	while (cap < b->len + more)
		cap *= 2;
	b->p = xreallocarray(b->p, cap, 1);
	b->cap = cap;
}

static void
buf_add(struct smtpc_buf *b, const void *data, size_t len)
{
	if (len == 0)
		return;
	buf_reserve(b, len);
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void
out_printf(struct smtpc *c, const char *fmt, ...)
{
	va_list ap;
	char tmp[2048];

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		fatalx("smtpc: command too long");	/* bounded by smtpc_send's checks */
	buf_add(&c->out, tmp, (size_t)n);
}

static void
enter_state(struct smtpc *c, enum smtpc_state st)
{
	if (c->st != st)
		log_debug("smtpc %s: %s -> %s", c->peer, state_names[c->st], state_names[st]);
	c->st = st;
}

static struct smtpc_event *
ev_push(struct smtpc *c, enum smtpc_event_type type)
{
	if (c->ev_head > 0 && c->ev_head == c->ev_len)
		c->ev_head = c->ev_len = 0;
	if (c->ev_len == c->ev_cap) {
		c->ev_cap = c->ev_cap ? c->ev_cap * 2 : 8;
		c->ev = xreallocarray(c->ev, c->ev_cap, sizeof(*c->ev));
	}
	struct smtpc_event *e = &c->ev[c->ev_len++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	return e;
}

struct smtpc *
smtpc_new(const struct smtpc_params *p)
{
	struct smtpc *c = xcalloc(1, sizeof(*c));

	c->p = *p;
	/* bounded so every command fits out_printf's buffer */
	c->helo_name = xstrndup(p->helo_name ? p->helo_name : "localhost", 255);
	c->peer = xstrndup(p->peer ? p->peer : "unknown", 300);
	c->p.helo_name = c->helo_name;
	c->p.peer = c->peer;
	if (p->auth_user != NULL && p->auth_pass != NULL && p->proto == SMTPC_SMTP) {
		c->auth_user = xstrndup(p->auth_user, 255);
		c->auth_pass = xstrndup(p->auth_pass, 1023);
	}
	c->p.auth_user = c->auth_user;
	c->p.auth_pass = c->auth_pass;
	if (c->p.proto != SMTPC_SMTP)
		c->p.starttls = c->p.require_tls = false;
	if (c->p.max_line < 16)
		c->p.max_line = 16;
	if (c->p.max_reply_lines == 0)
		c->p.max_reply_lines = 1;
	c->st = ST_GREETING;
	return c;
}

void
smtpc_free(struct smtpc *c)
{
	if (c == NULL)
		return;
	free(c->helo_name);
	free(c->peer);
	free(c->auth_user);
	if (c->auth_pass != NULL) {
		explicit_bzero(c->auth_pass, strlen(c->auth_pass));
		free(c->auth_pass);
	}
	/* the output buffer held the AUTH exchange */
	if (c->out.p != NULL)
		explicit_bzero(c->out.p, c->out.cap);
	free(c->out.p);
	free(c->in.p);
	free(c->ev);
	free(c);
}

const char *
smtpc_stage_name(enum smtpc_stage st)
{
	switch (st) {
	case SMTPC_STAGE_CONNECT: return "connect";
	case SMTPC_STAGE_GREETING: return "initial greeting";
	case SMTPC_STAGE_HELO: return "EHLO";
	case SMTPC_STAGE_MAIL: return "MAIL FROM";
	case SMTPC_STAGE_RCPT: return "RCPT TO";
	case SMTPC_STAGE_DATA: return "DATA";
	case SMTPC_STAGE_BODY: return "message body";
	case SMTPC_STAGE_DOT: return "end of DATA";
	case SMTPC_STAGE_RSET: return "RSET";
	case SMTPC_STAGE_QUIT: return "QUIT";
	case SMTPC_STAGE_IDLE: return "idle";
	case SMTPC_STAGE_STARTTLS: return "STARTTLS";
	case SMTPC_STAGE_AUTH: return "AUTH";
	}
	return "?";
}

static enum smtpc_stage
cur_stage(const struct smtpc *c)
{
	switch (c->st) {
	case ST_GREETING: return SMTPC_STAGE_GREETING;
	case ST_EHLO:
	case ST_HELO: return SMTPC_STAGE_HELO;
	case ST_TX:
		if (c->qlen == 0)
			return SMTPC_STAGE_MAIL;
		switch (c->q[c->qhead].cmd) {
		case CMD_MAIL: return SMTPC_STAGE_MAIL;
		case CMD_RCPT: return SMTPC_STAGE_RCPT;
		case CMD_DATA: return SMTPC_STAGE_DATA;
		}
		return SMTPC_STAGE_MAIL;
	case ST_BODY: return SMTPC_STAGE_BODY;
	case ST_DOT: return SMTPC_STAGE_DOT;
	case ST_RSET: return SMTPC_STAGE_RSET;
	case ST_QUIT: return SMTPC_STAGE_QUIT;
	case ST_STARTTLS:
	case ST_TLS: return SMTPC_STAGE_STARTTLS;
	case ST_AUTH: return SMTPC_STAGE_AUTH;
	case ST_READY:
	case ST_CLOSED: return SMTPC_STAGE_IDLE;
	}
	return SMTPC_STAGE_IDLE;
}

/* "d.ddd.ddd" at the start of text, class equal to the reply's; else class.0.0 */
static void
dsn_from_reply(int code, const char *text, char *dsn, size_t len)
{
	const char *p = text;
	int cls = code / 100;

	if (*p - '0' == cls && p[1] == '.') {
		const char *q = p + 2;
		int n1 = 0, n2 = 0;
		while (isdigit((unsigned char)q[n1]) && n1 < 4)
			n1++;
		if (n1 >= 1 && n1 <= 3 && q[n1] == '.') {
			q += n1 + 1;
			while (isdigit((unsigned char)q[n2]) && n2 < 4)
				n2++;
			if (n2 >= 1 && n2 <= 3 && (q[n2] == ' ' || q[n2] == '\0')) {
				snprintf(dsn, len, "%.*s", (int)(q + n2 - p), p);
				return;
			}
		}
	}
	snprintf(dsn, len, "%d.0.0", cls >= 2 && cls <= 5 ? cls : 4);
}

static enum smtpc_status
status_of(int code)
{
	switch (code / 100) {
	case 2: return SMTPC_SENT;
	case 5: return SMTPC_BOUNCE;
	default: return SMTPC_DEFER;	/* 4xx, and a 3xx where none belongs */
	}
}

/* the text after "CODE " of the flattened reply */
static const char *
reply_body(const struct smtpc *c)
{
	return c->rtext_len > 4 ? c->rtext + 4 : "";
}

static void
rcpt_final(struct smtpc *c, size_t i, enum smtpc_status st, int code, const char *dsn,
    const char *text, enum smtpc_stage stage, bool conn_failed)
{
	if (c->msg == NULL || i >= c->msg->n_rcpts || c->rs[i] == R_FINAL)
		return;
	if (c->rs[i] == R_ACCEPTED)
		c->n_accepted--;
	c->rs[i] = R_FINAL;
	c->n_final++;
	struct smtpc_event *e = ev_push(c, SMTPC_EV_RCPT);
	e->rcpt = i;
	e->status = st;
	e->code = code;
	e->conn_failed = conn_failed;
	e->stage = stage;
	snprintf(e->dsn, sizeof(e->dsn), "%s", dsn);
	snprintf(e->text, sizeof(e->text), "%s", text);
}

/* the reply just read decides recipient i */
static void
rcpt_final_reply(struct smtpc *c, size_t i, enum smtpc_stage stage)
{
	char dsn[16];

	dsn_from_reply(c->rcode, reply_body(c), dsn, sizeof(dsn));
	rcpt_final(c, i, status_of(c->rcode), c->rcode, dsn, c->rtext, stage, false);
}

/* every recipient not yet final, in state `only` (or any when only < 0) */
static void
rcpts_final_reply(struct smtpc *c, int only, enum smtpc_stage stage)
{
	if (c->msg == NULL)
		return;
	for (size_t i = 0; i < c->msg->n_rcpts; i++)
		if (c->rs[i] != R_FINAL && (only < 0 || (int)c->rs[i] == only))
			rcpt_final_reply(c, i, stage);
}

/* the transaction is over: DONE, then RSET or READY */
static void
tx_finish(struct smtpc *c, bool dot_done)
{
	bool need_rset = c->mail_ok && !dot_done;

	c->msg = NULL;
	c->qlen = 0;
	ev_push(c, SMTPC_EV_DONE);
	if (need_rset) {
		out_printf(c, "RSET\r\n");
		enter_state(c, ST_RSET);
		return;
	}
	enter_state(c, ST_READY);
	ev_push(c, SMTPC_EV_READY);
}

/*
 * The connection is over. Recipients not final are deferred (conn_failed); a
 * transaction in progress gets its DONE before CLOSED. code/text describe why.
 */
static void
conn_close(struct smtpc *c, bool error, int code, const char *dsn, const char *text,
    bool loop)
{
	enum smtpc_stage stage = cur_stage(c);

	if (c->st == ST_CLOSED)
		return;
	if (c->msg != NULL) {
		char d[16];
		snprintf(d, sizeof(d), "%s", dsn);
		if (d[0] != '4')	/* whatever ended the connection, a recipient waits */
			snprintf(d, sizeof(d), "4.4.2");
		for (size_t i = 0; i < c->msg->n_rcpts; i++)
			rcpt_final(c, i, SMTPC_DEFER, code, d, text, stage, true);
		c->msg = NULL;
		ev_push(c, SMTPC_EV_DONE);
	}
	struct smtpc_event *e = ev_push(c, SMTPC_EV_CLOSED);
	e->error = error;
	e->code = code;
	e->stage = stage;
	e->handshake_ok = c->handshake_ok;
	e->loop = loop;
	snprintf(e->dsn, sizeof(e->dsn), "%s", dsn);
	snprintf(e->text, sizeof(e->text), "%s", text);
	c->qlen = 0;
	enter_state(c, ST_CLOSED);
}

/* a local reason ("lost connection with PEER while sending RCPT TO") */
static void
conn_fail_local(struct smtpc *c, const char *dsn, const char *what)
{
	char text[SMTPC_TEXT_MAX];
	const char *how;

	switch (cur_stage(c)) {
	case SMTPC_STAGE_GREETING: how = "receiving the initial server greeting"; break;
	case SMTPC_STAGE_HELO: how = "performing the EHLO handshake"; break;
	case SMTPC_STAGE_MAIL: how = "sending MAIL FROM"; break;
	case SMTPC_STAGE_RCPT: how = "sending RCPT TO"; break;
	case SMTPC_STAGE_DATA: how = "sending DATA command"; break;
	case SMTPC_STAGE_BODY: how = "sending message body"; break;
	case SMTPC_STAGE_DOT:
		how = "sending end of data -- message may be sent more than once";
		break;
	case SMTPC_STAGE_RSET: how = "sending RSET"; break;
	case SMTPC_STAGE_QUIT: how = "sending QUIT"; break;
	case SMTPC_STAGE_STARTTLS: how = "performing the TLS handshake"; break;
	case SMTPC_STAGE_AUTH: how = "authenticating"; break;
	default: how = "idle"; break;
	}
	snprintf(text, sizeof(text), "%s %s while %s", what, c->peer, how);
	conn_close(c, true, 0, dsn, text, false);
}

/* the reply ends the connection with an error (greeting refused, 421, ...) */
static void
conn_fail_reply(struct smtpc *c, bool send_quit)
{
	char dsn[16];

	dsn_from_reply(c->rcode, reply_body(c), dsn, sizeof(dsn));
	if (send_quit)
		out_printf(c, "QUIT\r\n");
	conn_close(c, true, c->rcode, dsn, c->rtext, false);
}

static void
protocol_error(struct smtpc *c, const char *why)
{
	char text[SMTPC_TEXT_MAX];

	snprintf(text, sizeof(text), "protocol error with %s: %s", c->peer, why);
	log_warnx("smtpc %s: %s", c->peer, why);
	conn_close(c, true, 0, "4.5.0", text, false);
}

static bool
ehlo_keyword(const char *line, size_t len, const char *kw, const char **arg)
{
	size_t n = strlen(kw);

	if (len < n || strncasecmp(line, kw, n) != 0)
		return false;
	if (len == n) {
		*arg = line + n;
		return true;
	}
	if (line[n] != ' ' && line[n] != '=')
		return false;
	*arg = line + n + 1;
	return true;
}

/* an extension line of the EHLO reply ("SIZE 10240000", "PIPELINING") */
static void
ehlo_line(struct smtpc *c, const char *s, size_t len)
{
	static const struct { const char *kw; unsigned bit; } exts[] = {
		{ "PIPELINING", SMTPC_EXT_PIPELINING },
		{ "8BITMIME", SMTPC_EXT_8BITMIME },
		{ "ENHANCEDSTATUSCODES", SMTPC_EXT_ENHANCED },
		{ "DSN", SMTPC_EXT_DSN },
		{ "STARTTLS", SMTPC_EXT_STARTTLS },
		{ "AUTH", SMTPC_EXT_AUTH },
		{ "SMTPUTF8", SMTPC_EXT_SMTPUTF8 },
		{ "CHUNKING", SMTPC_EXT_CHUNKING },
	};
	const char *arg;

	/* "AUTH PLAIN LOGIN", and the old "AUTH=LOGIN" some servers still send */
	if (ehlo_keyword(s, len, "AUTH", &arg)) {
		const char *end = s + len;
		c->ext |= SMTPC_EXT_AUTH;
		while (arg < end) {
			while (arg < end && *arg == ' ')
				arg++;
			const char *w = arg;
			while (arg < end && *arg != ' ')
				arg++;
			if (arg - w == 5 && strncasecmp(w, "PLAIN", 5) == 0)
				c->auth_mechs |= MECH_PLAIN;
			else if (arg - w == 5 && strncasecmp(w, "LOGIN", 5) == 0)
				c->auth_mechs |= MECH_LOGIN;
		}
		return;
	}
	if (ehlo_keyword(s, len, "SIZE", &arg)) {
		unsigned long long v = 0;
		const char *end = s + len;
		for (; arg < end && isdigit((unsigned char)*arg); arg++) {
			if (v > (~0ULL - 9) / 10) {
				v = 0;	/* absurd: treat as no limit */
				break;
			}
			v = v * 10 + (unsigned)(*arg - '0');
		}
		c->ext |= SMTPC_EXT_SIZE;
		c->size_limit = v;
		return;
	}
	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
		if (ehlo_keyword(s, len, exts[i].kw, &arg)) {
			c->ext |= exts[i].bit;
			return;
		}
}

static bool
is_self(const struct smtpc *c)
{
	return c->p.check_loop && c->p.proto == SMTPC_SMTP &&
	    c->rword[0] != '\0' && strcasecmp(c->rword, c->helo_name) == 0;
}

static void
loop_close(struct smtpc *c)
{
	char text[SMTPC_TEXT_MAX];

	snprintf(text, sizeof(text), "host %s greeted me with my own hostname %s",
	    c->peer, c->helo_name);
	out_printf(c, "QUIT\r\n");
	conn_close(c, true, c->rcode, "5.4.6", text, true);
}

static void send_rcpt(struct smtpc *c, size_t i);
static void send_mail(struct smtpc *c);

static void
q_push(struct smtpc *c, enum smtpc_cmd cmd, size_t rcpt)
{
	size_t n = sizeof(c->q) / sizeof(c->q[0]);

	if (c->qlen == n)
		fatalx("smtpc: command queue overflow");	/* bounded by SMTPC_MAX_RCPTS */
	c->q[(c->qhead + c->qlen) % n] = (struct smtpc_pending){ cmd, rcpt };
	c->qlen++;
}

static struct smtpc_pending
q_pop(struct smtpc *c)
{
	struct smtpc_pending pd = c->q[c->qhead];

	c->qhead = (c->qhead + 1) % (sizeof(c->q) / sizeof(c->q[0]));
	c->qlen--;
	return pd;
}

static void
send_data(struct smtpc *c)
{
	out_printf(c, "DATA\r\n");
	q_push(c, CMD_DATA, 0);
}

/* without PIPELINING: the command after the one just answered */
static void
tx_next_step(struct smtpc *c)
{
	if (c->next_rcpt < c->msg->n_rcpts) {
		send_rcpt(c, c->next_rcpt++);
		return;
	}
	if (c->n_accepted > 0)
		send_data(c);
	else
		tx_finish(c, false);
}

static void
start_body(struct smtpc *c)
{
	c->bol = true;
	c->cr = false;
	c->linelen = 0;
	enter_state(c, ST_BODY);
	ev_push(c, SMTPC_EV_BODY);
}

static void
enter_dot(struct smtpc *c)
{
	c->dot_expected = c->p.proto == SMTPC_LMTP ? c->n_accepted : 1;
	c->dot_got = 0;
	c->dot_next = 0;
	enter_state(c, ST_DOT);
	if (c->dot_expected == 0)
		tx_finish(c, true);
}

/* a reply to the oldest outstanding command of the transaction */
static void
tx_reply(struct smtpc *c)
{
	bool pipelined = (c->ext & SMTPC_EXT_PIPELINING) != 0;

	if (c->qlen == 0) {
		protocol_error(c, "reply without a command");
		return;
	}
	struct smtpc_pending pd = q_pop(c);
	int cls = c->rcode / 100;

	switch (pd.cmd) {
	case CMD_MAIL:
		if (cls == 2) {
			c->mail_ok = true;
			if (!pipelined)
				tx_next_step(c);
			return;
		}
		c->mail_failed = true;
		rcpts_final_reply(c, -1, SMTPC_STAGE_MAIL);
		if (!pipelined)
			tx_finish(c, false);
		return;
	case CMD_RCPT:
		if (!c->mail_failed && c->rs[pd.rcpt] == R_PENDING) {
			if (cls == 2) {
				c->rs[pd.rcpt] = R_ACCEPTED;
				c->n_accepted++;
			} else {
				rcpt_final_reply(c, pd.rcpt, SMTPC_STAGE_RCPT);
			}
		}
		if (!pipelined)
			tx_next_step(c);
		return;
	case CMD_DATA:
		if (c->rcode == 354) {
			if (c->n_accepted == 0) {
				/* pipelined DATA accepted with nobody to deliver to */
				out_printf(c, ".\r\n");
				enter_dot(c);
				return;
			}
			start_body(c);
			return;
		}
		rcpts_final_reply(c, R_ACCEPTED, SMTPC_STAGE_DATA);
		tx_finish(c, false);
		return;
	}
}

static void
dot_reply(struct smtpc *c)
{
	if (c->p.proto == SMTPC_SMTP) {
		rcpts_final_reply(c, R_ACCEPTED, SMTPC_STAGE_DOT);
		tx_finish(c, true);
		return;
	}
	/* LMTP: one reply per accepted recipient, in RCPT order */
	while (c->msg != NULL && c->dot_next < c->msg->n_rcpts &&
	    c->rs[c->dot_next] != R_ACCEPTED)
		c->dot_next++;
	if (c->msg != NULL && c->dot_next < c->msg->n_rcpts)
		rcpt_final_reply(c, c->dot_next++, SMTPC_STAGE_DOT);
	if (++c->dot_got >= c->dot_expected)
		tx_finish(c, true);
}

/* RFC 4648 base64 of len octets into out (room for 4 * ((len + 2) / 3) + 1) */
static void
b64_encode(const unsigned char *in, size_t len, char *out)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? tab[v & 63] : '=';
	}
	out[o] = '\0';
}

/* one AUTH line with a base64 argument; the buffers wiped afterwards */
static void
auth_send(struct smtpc *c, const char *prefix, const void *data, size_t len)
{
	char b64[((SMTPC_AUTH_MAX + 2) / 3) * 4 + 1];

	b64_encode(data, len, b64);
	out_printf(c, "%s%s\r\n", prefix, b64);
	explicit_bzero(b64, sizeof(b64));
}

/* the connection ends for want of TLS or AUTH; a QUIT goes first */
static void
helo_fail(struct smtpc *c, const char *dsn, const char *fmt, ...)
{
	char text[SMTPC_TEXT_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	out_printf(c, "QUIT\r\n");
	conn_close(c, true, 0, dsn, text, false);
}

/* EHLO (or HELO) answered: STARTTLS, AUTH, or ready for mail */
static void
helo_done(struct smtpc *c)
{
	if (!c->tls_on && c->p.starttls && (c->ext & SMTPC_EXT_STARTTLS)) {
		out_printf(c, "STARTTLS\r\n");
		enter_state(c, ST_STARTTLS);
		return;
	}
	if (!c->tls_on && (c->p.require_tls || c->auth_user != NULL)) {
		helo_fail(c, "4.7.4", "TLS is required, but was not offered by host %s",
		    c->peer);
		return;
	}
	if (c->auth_user != NULL && !c->authed) {
		if (!(c->ext & SMTPC_EXT_AUTH)) {
			/* Postfix goes on unauthenticated; the server decides */
			log_warnx("smtpc %s: AUTH not offered, sending without "
			    "authentication", c->peer);
		} else if (c->auth_mechs & MECH_PLAIN) {
			unsigned char ir[SMTPC_AUTH_MAX];
			size_t ul = strlen(c->auth_user), pl = strlen(c->auth_pass);
			ir[0] = '\0';
			memcpy(ir + 1, c->auth_user, ul);
			ir[1 + ul] = '\0';
			memcpy(ir + 2 + ul, c->auth_pass, pl);
			auth_send(c, "AUTH PLAIN ", ir, ul + pl + 2);
			explicit_bzero(ir, sizeof(ir));
			c->auth_step = 0;
			enter_state(c, ST_AUTH);
			return;
		} else if (c->auth_mechs & MECH_LOGIN) {
			out_printf(c, "AUTH LOGIN\r\n");
			c->auth_step = 0;
			enter_state(c, ST_AUTH);
			return;
		} else {
			helo_fail(c, "4.7.0", "SASL authentication failed; cannot "
			    "authenticate to server %s: no mechanism available", c->peer);
			return;
		}
	}
	enter_state(c, ST_READY);
	ev_push(c, SMTPC_EV_READY);
}

static void
starttls_reply(struct smtpc *c)
{
	if (c->rcode == 220) {
		enter_state(c, ST_TLS);
		ev_push(c, SMTPC_EV_STARTTLS);
		return;
	}
	if (c->p.require_tls || c->auth_user != NULL) {
		char dsn[16];
		dsn_from_reply(c->rcode, reply_body(c), dsn, sizeof(dsn));
		dsn[0] = '4';	/* another try may find TLS working */
		helo_fail(c, dsn, "TLS is required, but host %s refused to start TLS: %s",
		    c->peer, reply_body(c));
		return;
	}
	/* opportunistic: on in clear, as Postfix does */
	enter_state(c, ST_READY);
	ev_push(c, SMTPC_EV_READY);
}

static void
auth_reply(struct smtpc *c)
{
	if (c->rcode / 100 == 2) {
		c->authed = true;
		enter_state(c, ST_READY);
		ev_push(c, SMTPC_EV_READY);
		return;
	}
	if (c->rcode == 334 && !(c->auth_mechs & MECH_PLAIN) && c->auth_step < 2) {
		const char *v = c->auth_step == 0 ? c->auth_user : c->auth_pass;
		auth_send(c, "", v, strlen(v));
		c->auth_step++;
		return;
	}
	char dsn[16];
	if (c->rcode == 334) {
		/* a challenge where none belongs: cancel (RFC 4954 "*") */
		out_printf(c, "*\r\n");
		snprintf(dsn, sizeof(dsn), "4.7.0");
	} else {
		dsn_from_reply(c->rcode, reply_body(c), dsn, sizeof(dsn));
		dsn[0] = '4';	/* the administrator fixes the password; mail waits */
	}
	helo_fail(c, dsn, "SASL authentication failed; server %s said: %s", c->peer,
	    c->rtext);
}

/* a complete reply: c->rcode, c->rtext */
static void
reply_done(struct smtpc *c)
{
	int cls = c->rcode / 100;

	if (c->rcode == 421 && c->st != ST_QUIT) {
		conn_fail_reply(c, false);
		return;
	}
	switch (c->st) {
	case ST_GREETING:
		if (cls != 2) {
			conn_fail_reply(c, true);
			return;
		}
		if (is_self(c)) {
			loop_close(c);
			return;
		}
		out_printf(c, "%s %s\r\n", c->p.proto == SMTPC_LMTP ? "LHLO" : "EHLO",
		    c->helo_name);
		enter_state(c, ST_EHLO);
		return;
	case ST_EHLO:
		if (cls == 5 && c->p.proto == SMTPC_SMTP) {
			c->ext = 0;
			c->size_limit = 0;
			c->auth_mechs = 0;
			out_printf(c, "HELO %s\r\n", c->helo_name);
			enter_state(c, ST_HELO);
			return;
		}
		/* FALLTHROUGH */
	case ST_HELO:
		if (cls != 2) {
			if (c->st == ST_EHLO)
				c->ext = 0;
			conn_fail_reply(c, true);
			return;
		}
		if (is_self(c)) {
			loop_close(c);
			return;
		}
		if (c->st == ST_HELO) {
			c->ext = 0;
			c->auth_mechs = 0;
		}
		c->handshake_ok = true;
		helo_done(c);
		return;
	case ST_STARTTLS:
		starttls_reply(c);
		return;
	case ST_TLS:
		protocol_error(c, "reply during the TLS handshake");
		return;
	case ST_AUTH:
		auth_reply(c);
		return;
	case ST_TX:
		tx_reply(c);
		return;
	case ST_BODY:
		/* the server spoke before the final dot: take it as the verdict on the
		   message and do not reuse this connection */
		rcpts_final_reply(c, R_ACCEPTED, SMTPC_STAGE_DOT);
		conn_fail_reply(c, false);
		return;
	case ST_DOT:
		dot_reply(c);
		return;
	case ST_RSET:
		if (cls != 2) {
			conn_fail_reply(c, true);
			return;
		}
		enter_state(c, ST_READY);
		ev_push(c, SMTPC_EV_READY);
		return;
	case ST_QUIT:
		conn_close(c, false, c->rcode, "2.0.0", c->rtext, false);
		return;
	case ST_READY:
		protocol_error(c, "unexpected reply while idle");
		return;
	case ST_CLOSED:
		return;
	}
}

/* one reply line, CR LF removed; limits already applied to its length */
static void
reply_line(struct smtpc *c, const char *s, size_t len)
{
	if (len < 3 || s[0] < '2' || s[0] > '5' || !isdigit((unsigned char)s[1]) ||
	    !isdigit((unsigned char)s[2]) || (len > 3 && s[3] != ' ' && s[3] != '-')) {
		protocol_error(c, "malformed reply line");
		return;
	}
	int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	bool more = len > 3 && s[3] == '-';
	const char *text = len > 4 ? s + 4 : "";
	size_t tlen = len > 4 ? len - 4 : 0;

	if (c->rcode == 0) {
		c->rcode = code;
		c->rlines = 0;
		c->roctets = 0;
		c->rtext_len = (size_t)snprintf(c->rtext, sizeof(c->rtext), "%d", code);
		size_t w = 0;
		while (w < tlen && w + 1 < sizeof(c->rword) && text[w] != ' ')
			w++;
		memcpy(c->rword, text, w);
		c->rword[w] = '\0';
		if (c->st == ST_EHLO) {
			c->ext = 0;
			c->size_limit = 0;
			c->auth_mechs = 0;
		}
	} else if (code != c->rcode) {
		protocol_error(c, "reply code changed within a multi-line reply");
		return;
	} else if (c->st == ST_EHLO) {
		ehlo_line(c, text, tlen);
	}
	if (++c->rlines > c->p.max_reply_lines) {
		protocol_error(c, "too many reply lines");
		return;
	}
	if ((c->roctets += len + 2) > c->p.max_reply_octets) {
		protocol_error(c, "reply too long");
		return;
	}
	/* flattened text: printable ASCII only, lines joined by one space */
	if (tlen > 0 && c->rtext_len + 2 < sizeof(c->rtext)) {
		c->rtext[c->rtext_len++] = ' ';
		for (size_t i = 0; i < tlen && c->rtext_len + 1 < sizeof(c->rtext); i++) {
			unsigned char ch = (unsigned char)text[i];
			c->rtext[c->rtext_len++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
		c->rtext[c->rtext_len] = '\0';
	}
	if (more)
		return;
	reply_done(c);
	c->rcode = 0;
}

void
smtpc_feed(struct smtpc *c, const void *data, size_t len)
{
	const char *p = data, *end = p + len;

	while (p < end && c->st != ST_CLOSED) {
		if (c->st == ST_TLS) {
			/* sent in clear after the 220: never taken as the server's words
			   (CVE-2011-0411, the client side) */
			protocol_error(c, "octets after the 220 reply to STARTTLS");
			return;
		}
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		/* limits first: the line so far, CRLF included, fits max_line */
		if (c->in.len + n + (nl != NULL ? 1 : 0) > c->p.max_line) {
			protocol_error(c, "reply line too long");
			return;
		}
		buf_add(&c->in, p, n);
		if (nl == NULL)
			return;
		p = nl + 1;
		size_t l = c->in.len;
		if (l > 0 && c->in.p[l - 1] == '\r')
			l--;
		c->in.len = 0;
		reply_line(c, c->in.p, l);
	}
}

void
smtpc_feed_eof(struct smtpc *c)
{
	if (c->st == ST_CLOSED)
		return;
	if (c->st == ST_QUIT) {
		conn_close(c, false, 0, "2.0.0", "connection closed after QUIT", false);
		return;
	}
	conn_fail_local(c, "4.4.2", "lost connection with");
}

void
smtpc_timeout_fired(struct smtpc *c)
{
	if (c->st == ST_CLOSED || smtpc_timeout(c) == 0)
		return;
	conn_fail_local(c, "4.4.2", "conversation timed out with");
}

/* no CR, LF, NUL or other control octets; bounded length */
static bool
clean_text(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || n >= max)
			return false;
	return true;
}

/* RFC 3461 xtext: "+" HEX HEX or any of 33..126 but '+' and '=' */
static bool
xtext_valid(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '+') {
			if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
			    !isxdigit((unsigned char)s[i + 2]))
				return false;
			i += 2;
		} else if (ch < 33 || ch > 126 || ch == '=') {
			return false;
		}
	}
	return true;
}

/* ORCPT: addr-type ";" xtext */
static bool
orcpt_valid(const char *s)
{
	const char *semi = strchr(s, ';');

	if (semi == NULL || semi == s)
		return false;
	for (const char *p = s; p < semi; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
	return xtext_valid(semi + 1, 500);
}

static void
send_mail(struct smtpc *c)
{
	const struct smtpc_msg *m = c->msg;
	char params[256] = "";
	size_t n = 0;

	if (c->ext & SMTPC_EXT_SIZE)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " SIZE=%zu", m->size);
	if (m->eightbit && (c->ext & SMTPC_EXT_8BITMIME))
		n += (size_t)snprintf(params + n, sizeof(params) - n, " BODY=8BITMIME");
	if (c->ext & SMTPC_EXT_DSN) {
		if (m->ret != SMTPC_RET_NONE)
			n += (size_t)snprintf(params + n, sizeof(params) - n, " RET=%s",
			    m->ret == SMTPC_RET_FULL ? "FULL" : "HDRS");
		if (m->envid != NULL && xtext_valid(m->envid, 100))
			snprintf(params + n, sizeof(params) - n, " ENVID=%s", m->envid);
	}
	out_printf(c, "MAIL FROM:<%s>%s\r\n", m->sender, params);
	q_push(c, CMD_MAIL, 0);
}

static void
send_rcpt(struct smtpc *c, size_t i)
{
	const struct smtpc_rcpt *r = &c->msg->rcpts[i];
	char params[600] = "";
	size_t n = 0;

	if ((c->ext & SMTPC_EXT_DSN) && r->notify != 0) {
		if (r->notify & SMTPC_NOTIFY_NEVER) {
			n += (size_t)snprintf(params, sizeof(params), " NOTIFY=NEVER");
		} else {
			const char *sep = " NOTIFY=";
			static const struct { unsigned bit; const char *name; } nt[] = {
				{ SMTPC_NOTIFY_SUCCESS, "SUCCESS" },
				{ SMTPC_NOTIFY_FAILURE, "FAILURE" },
				{ SMTPC_NOTIFY_DELAY, "DELAY" },
			};
			for (size_t k = 0; k < 3; k++)
				if (r->notify & nt[k].bit) {
					n += (size_t)snprintf(params + n, sizeof(params) - n,
					    "%s%s", sep, nt[k].name);
					sep = ",";
				}
		}
	}
	if ((c->ext & SMTPC_EXT_DSN) && r->orcpt != NULL && orcpt_valid(r->orcpt))
		snprintf(params + n, sizeof(params) - n, " ORCPT=%s", r->orcpt);
	out_printf(c, "RCPT TO:<%s>%s\r\n", r->addr, params);
	q_push(c, CMD_RCPT, i);
}

int
smtpc_send(struct smtpc *c, const struct smtpc_msg *m, const char **error_r)
{
	if (c->st != ST_READY) {
		*error_r = "connection is not idle";
		return -1;
	}
	if (m->n_rcpts == 0 || m->n_rcpts > SMTPC_MAX_RCPTS) {
		*error_r = "1 to 50 recipients per transaction";
		return -1;
	}
	if (m->sender == NULL || !clean_text(m->sender, 256)) {
		*error_r = "bad sender address";
		return -1;
	}
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (m->rcpts[i].addr == NULL || m->rcpts[i].addr[0] == '\0' ||
		    !clean_text(m->rcpts[i].addr, 256)) {
			*error_r = "bad recipient address";
			return -1;
		}
	c->msg = m;
	memset(c->rs, 0, sizeof(c->rs));
	c->n_final = c->n_accepted = 0;
	c->next_rcpt = 0;
	c->mail_ok = c->mail_failed = false;
	c->qlen = 0;
	c->messages++;
	enter_state(c, ST_TX);

	if ((c->ext & SMTPC_EXT_SIZE) && c->size_limit > 0 && m->size > c->size_limit) {
		char text[SMTPC_TEXT_MAX];
		snprintf(text, sizeof(text),
		    "message size %zu exceeds size limit %llu of server %s",
		    m->size, c->size_limit, c->peer);
		for (size_t i = 0; i < m->n_rcpts; i++)
			rcpt_final(c, i, SMTPC_BOUNCE, 0, "5.3.4", text, SMTPC_STAGE_MAIL,
			    false);
		tx_finish(c, false);
		return 0;
	}
	send_mail(c);
	if (c->ext & SMTPC_EXT_PIPELINING) {
		for (size_t i = 0; i < m->n_rcpts; i++)
			send_rcpt(c, i);
		c->next_rcpt = m->n_rcpts;
		send_data(c);
	}
	return 0;
}

/* RFC 5322 §2.1.1: longer lines are folded */
#define SMTPC_LINE_MAX 998

/* one octet of the body, every case: line ends, folding, dot-stuffing */
static char *
body_octet(struct smtpc *c, char *o, unsigned char ch)
{
	if (c->cr) {
		c->cr = false;
		*o++ = '\r', *o++ = '\n';
		c->bol = true, c->linelen = 0;
		if (ch == '\n')
			return o;
	}
	if (ch == '\r') {
		c->cr = true;
		return o;
	}
	if (ch == '\n') {
		*o++ = '\r', *o++ = '\n';
		c->bol = true, c->linelen = 0;
		return o;
	}
	if (c->linelen >= SMTPC_LINE_MAX) {
		*o++ = '\r', *o++ = '\n', *o++ = ' ';
		c->linelen = 1;
		c->bol = false;
	}
	if (c->bol && ch == '.')
		*o++ = '.';
	*o++ = (char)ch;
	c->linelen++;
	c->bol = false;
	return o;
}

/*
 * The body goes out line by line: a line that needs no repair (no CR but the
 * one before its LF, short enough not to be folded) is copied whole, with its
 * dot stuffed; anything else goes through body_octet. Both give the same octets
 * (the unit test compares them on random bodies); the copy is what keeps a
 * 100 KB message from costing a branch per octet.
 */
void
smtpc_body(struct smtpc *c, const void *data, size_t len)
{
	const unsigned char *s = data, *end = s + len;

	if (c->st != ST_BODY)
		return;
	/* worst case: every octet a line of its own starting with '.' */
	buf_reserve(&c->out, 3 * len + 8);
	char *o = c->out.p + c->out.len;
	while (s < end) {
		const unsigned char *nl = memchr(s, '\n', (size_t)(end - s));
		const unsigned char *stop = nl != NULL ? nl + 1 : end;
		/* the line's text: without its LF and a CR right before it */
		size_t text = (size_t)((nl != NULL ? nl : end) - s);
		if (nl != NULL && text > 0 && nl[-1] == '\r')
			text--;
		if (c->cr || c->linelen + text > SMTPC_LINE_MAX ||
		    memchr(s, '\r', text) != NULL) {
			while (s < stop)
				o = body_octet(c, o, *s++);
			continue;
		}
		if (text > 0) {
			if (c->bol && s[0] == '.')
				*o++ = '.';
			memcpy(o, s, text);
			o += text;
			c->linelen += text;
			c->bol = false;
		}
		if (nl != NULL) {
			*o++ = '\r', *o++ = '\n';
			c->bol = true, c->linelen = 0;
		}
		s = stop;
	}
	c->out.len = (size_t)(o - c->out.p);
}

/*
 * The octet at p is a CR or an LF: is it part of a wire-ready body (see
 * smtpc_body_scan)? *line is where the current line starts.
 */
static inline bool
wire_ready_at(const unsigned char *s, size_t len, size_t p, size_t *line)
{
	if (s[p] == '\r')
		return p + 1 < len && s[p + 1] == '\n';
	/* LF: after its CR, ending a line short enough, not before a dot */
	if (p == 0 || s[p - 1] != '\r' || p - 1 - *line > SMTPC_LINE_MAX)
		return false;
	*line = p + 1;
	return p + 1 == len || s[p + 1] != '.';
}

/*
 * One pass over the stored body, no copy, for two answers. Returned: the
 * condition under which smtpc_body() would emit exactly its input (no dot to
 * stuff, no line end to repair, no line to fold); the agent then sends the
 * body from its sealed memfd without touching it (io_write_file), and a body
 * that fails here takes smtpc_body(). *eightbit_r: an octet above 127 (MAIL
 * then says BODY=8BITMIME). Only CR, LF and the high bit need a look; SSE2
 * (every x86-64) finds them 16 octets at a time, cheaper than a memchr per
 * line (a 100 KB message has some 1300 lines). The pass ends once both
 * answers are known.
 */
bool
smtpc_body_scan(const void *data, size_t len, bool *eightbit_r)
{
	const unsigned char *s = data;
	size_t line = 0, i = 0;
	bool ready = len == 0 || (s[0] != '.' && s[len - 1] == '\n');
	bool eight = false;

#ifdef __SSE2__
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	for (; i + 16 <= len && (ready || !eight); i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		if (_mm_movemask_epi8(v) != 0)
			eight = true;
		if (!ready)
			continue;
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
		    _mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
		for (; m != 0 && ready; m &= m - 1)
			ready = wire_ready_at(s, len, i + (size_t)__builtin_ctz(m), &line);
	}
#endif
	for (; i < len && (ready || !eight); i++) {
		if (s[i] & 0x80)
			eight = true;
		if (ready && (s[i] == '\r' || s[i] == '\n'))
			ready = wire_ready_at(s, len, i, &line);
	}
	*eightbit_r = eight;
	return ready;
}

void
smtpc_body_verbatim(struct smtpc *c)
{
	if (c->st != ST_BODY)
		return;
	/* a wire-ready body ends with CRLF (or is empty): at a line's start */
	c->cr = false;
	c->bol = true;
	c->linelen = 0;
}

void
smtpc_body_end(struct smtpc *c)
{
	if (c->st != ST_BODY)
		return;
	if (c->cr || !c->bol)
		out_printf(c, "\r\n");
	c->cr = false;
	out_printf(c, ".\r\n");
	enter_dot(c);
}

void
smtpc_quit(struct smtpc *c)
{
	if (c->st == ST_CLOSED || c->st == ST_QUIT || c->msg != NULL)
		return;
	out_printf(c, "QUIT\r\n");
	enter_state(c, ST_QUIT);
}

const char *
smtpc_output(const struct smtpc *c, size_t *len_r)
{
	*len_r = c->out.len - c->out_off;
	return c->out.p != NULL ? c->out.p + c->out_off : "";
}

void
smtpc_output_consume(struct smtpc *c, size_t n)
{
	if (n > c->out.len - c->out_off)
		n = c->out.len - c->out_off;
	c->out_off += n;
	if (c->out_off == c->out.len) {
		c->out.len = c->out_off = 0;
	} else if (c->out_off > 65536 && c->out_off > c->out.len / 2) {
		memmove(c->out.p, c->out.p + c->out_off, c->out.len - c->out_off);
		c->out.len -= c->out_off;
		c->out_off = 0;
	}
}

size_t
smtpc_output_pending(const struct smtpc *c)
{
	return c->out.len - c->out_off;
}

bool
smtpc_next_event(struct smtpc *c, struct smtpc_event *ev)
{
	if (c->ev_head == c->ev_len)
		return false;
	*ev = c->ev[c->ev_head++];
	return true;
}

unsigned
smtpc_timeout(const struct smtpc *c)
{
	switch (c->st) {
	case ST_GREETING: return c->p.t_greeting;
	case ST_EHLO:
	case ST_HELO: return c->p.t_helo;
	case ST_TX:
		switch (cur_stage(c)) {
		case SMTPC_STAGE_RCPT: return c->p.t_rcpt;
		case SMTPC_STAGE_DATA: return c->p.t_data;
		default: return c->p.t_mail;
		}
	case ST_BODY: return c->p.t_block;
	case ST_DOT: return c->p.t_dot;
	case ST_RSET: return c->p.t_rset;
	case ST_QUIT: return c->p.t_quit;
	case ST_STARTTLS:
	case ST_TLS: return c->p.t_starttls;
	case ST_AUTH: return c->p.t_helo;
	case ST_READY:
	case ST_CLOSED: return 0;
	}
	return 0;
}

unsigned
smtpc_extensions(const struct smtpc *c)
{
	return c->ext;
}

unsigned long long
smtpc_size_limit(const struct smtpc *c)
{
	return c->size_limit;
}

unsigned
smtpc_messages(const struct smtpc *c)
{
	return c->messages;
}

void
smtpc_tls_done(struct smtpc *c)
{
	if (c->st != ST_TLS)
		return;
	c->tls_on = true;
	c->ext = 0;
	c->size_limit = 0;
	c->auth_mechs = 0;
	out_printf(c, "EHLO %s\r\n", c->helo_name);
	enter_state(c, ST_EHLO);
}

void
smtpc_fail(struct smtpc *c, const char *dsn, const char *text)
{
	conn_close(c, true, 0, dsn, text, false);
}

bool
smtpc_tls(const struct smtpc *c)
{
	return c->tls_on;
}

bool
smtpc_authenticated(const struct smtpc *c)
{
	return c->authed;
}

bool
smtpc_closed(const struct smtpc *c)
{
	return c->st == ST_CLOSED;
}

void
smtpc_describe(const struct smtpc *c, const struct smtpc_event *ev, char *buf,
    size_t len)
{
	if (ev->code == 0)
		snprintf(buf, len, "%s", ev->text);
	else if (ev->stage == SMTPC_STAGE_GREETING)
		snprintf(buf, len, "host %s refused to talk to me: %s", c->peer, ev->text);
	else
		snprintf(buf, len, "host %s said: %s (in reply to %s command)", c->peer,
		    ev->text, smtpc_stage_name(ev->stage));
}
