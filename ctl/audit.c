/*
 * relayvisorctl audit [NAME...] [--json] [--source IP] [--internet NAME]...
 *
 * Asks relayvisord for the simulated audit of its live configuration (records of
 * profiles/audit.h), then plays the relay-trick corpus over real SMTP to every
 * listen address of each instance (MAIL, RCPT, RSET; never DATA, so nothing is
 * queued) and compares every reply with what the simulation predicts for this
 * host's source address. A listener with a certificate is spoken to over TLS
 * (STARTTLS, or implicit TLS from the first octet) as a real client would,
 * since require_tls refuses MAIL in clear. Prints a report (or --json) and exits 0 when nothing is
 * wrong, 1 when an instance relays for strangers, a live reply differs from the
 * simulation or an Internet-facing instance fails Mailtraq's checklist, 2 on bad
 * arguments, 4 when relayvisord cannot be reached or a name is unknown.
 */
#include "ctl/audit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/ctlproto.h"
#include "common/net.h"
#include "common/xmalloc.h"

#define MAX_FIELDS 16
#define SMTP_TIMEOUT 10	/* seconds a listener may take for one reply */
#define SHOW_RELAYED 10	/* relayed cases named in the text report */

/* one record of the supervisor's reply: TAB-separated fields */
struct rec {
	int nf;
	char *f[MAX_FIELDS];
	char *buf;
};

struct recs {
	struct rec *v;
	size_t n;
};

struct diff {
	char listen[128], name[96], command[700], expected[700], actual[700];
};

/* the live replay against one listen address */
struct live {
	char listen[128], source[64], error[256];
	bool reached;		/* connected and greeted */
	bool failed;		/* an error that leaves the listener unverified */
	unsigned cases, commands, relayed;
	struct diff *diffs;
	size_t n_diffs;
};

struct inst {
	struct recs r;		/* instance, listen, stranger, ... records */
	struct live *live;
	size_t n_live;
};

struct audit {
	struct inst *v;
	size_t n;
};

static void
recs_add(struct recs *rs, const char *line)
{
	rs->v = xreallocarray(rs->v, rs->n + 1, sizeof(*rs->v));
	struct rec *r = &rs->v[rs->n++];
	memset(r, 0, sizeof(*r));
	r->buf = xstrdup(line);
	char *p = r->buf;
	for (;;) {
		if (r->nf < MAX_FIELDS)
			r->f[r->nf++] = p;
		char *tab = strchr(p, '\t');
		if (tab == NULL)
			break;
		*tab = '\0';
		p = tab + 1;
	}
}

static void
recs_free(struct recs *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		free(rs->v[i].buf);
	free(rs->v);
	rs->v = NULL;
	rs->n = 0;
}

static const char *
fld(const struct rec *r, int i)
{
	return i < r->nf ? r->f[i] : "";
}

static bool
is(const struct rec *r, const char *tag)
{
	return strcmp(fld(r, 0), tag) == 0;
}

static unsigned
num(const struct rec *r, int i)
{
	return (unsigned)strtoul(fld(r, i), NULL, 10);
}

/* ---- the control socket ---- */

/* One request; data lines into rs, other output (errors) to ctx->out. Returns the
   status line's exit code. */
static int
request(struct ctl_ctx *ctx, int argc, char **argv, struct recs *rs)
{
	int failed;
	int fd = ctl_request_send(ctx, argc, argv, &failed);
	if (fd == -1)
		return failed;
	FILE *fp = fdopen(fd, "r");
	if (fp == NULL) {
		close(fd);
		fprintf(ctx->out, "Error: %s\n", strerror(errno));
		return CTL_EXIT_ERROR;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int code = -1;
	while (code == -1 && (n = getline(&line, &cap, fp)) != -1) {
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		struct ctl_reply_line r;
		ctlproto_reply_parse(line, &r);
		switch (r.kind) {
		case CTL_LINE_DATA:
			if (strstr(r.text, ": ERROR (") != NULL)
				fprintf(ctx->out, "%s\n", r.text);
			else
				recs_add(rs, r.text);
			break;
		default:
			code = ctl_reply_status(ctx, &r, line);
			break;
		}
	}
	if (code == -1) {
		fprintf(ctx->out, "ERROR: relayvisord closed the connection without an "
		    "answer\n");
		code = CTL_EXIT_ERROR;
	}
	free(line);
	fclose(fp);
	return code;
}

/* ---- SMTP, blocking, one reply at a time ---- */

/* a fresh session every this many commands: 40 cases' RSETs stay well under
   the listener's junk-command limit of 100 */
#define AUDIT_SESSION_COMMANDS 120

enum smtp_tls { SMTP_TLS_NONE, SMTP_TLS_STARTTLS, SMTP_TLS_IMPLICIT };

struct smtp {
	int fd;
	enum smtp_tls tls;	/* how this listener wants to be spoken to */
	SSL_CTX *ssl_ctx;
	SSL *ssl;		/* non-NULL once TLS is on */
	char buf[8192];
	size_t have;
	unsigned errors;	/* 4xx/5xx replies in this session */
	unsigned commands;	/* sent in this session */
	char helo[600];
};

static int
smtp_send(struct smtp *s, const char *line)
{
	char buf[1100];
	int len = snprintf(buf, sizeof(buf), "%s\r\n", line);
	s->commands++;
	for (int off = 0; off < len; ) {
		ssize_t n;
		if (s->ssl != NULL) {
			n = SSL_write(s->ssl, buf + off, len - off);
		} else {
			n = send(s->fd, buf + off, (size_t)(len - off), MSG_NOSIGNAL);
			if (n == -1 && errno == EINTR)
				continue;
		}
		if (n <= 0)
			return -1;
		off += (int)n;
	}
	return 0;
}

/* bytes from the connection: through TLS once it is on */
static ssize_t
smtp_recv(struct smtp *s, char *buf, size_t len)
{
	if (s->ssl != NULL) {
		int n = SSL_read(s->ssl, buf, (int)len);
		return n > 0 ? n : -1;
	}
	for (;;) {
		ssize_t n = recv(s->fd, buf, len, 0);
		if (n == -1 && errno == EINTR)
			continue;
		return n;
	}
}

/* the last line of one (possibly multi-line) reply, without CRLF */
static int
smtp_reply(struct smtp *s, char *out, size_t len)
{
	for (;;) {
		char *nl = memchr(s->buf, '\n', s->have);
		if (nl != NULL) {
			size_t l = (size_t)(nl - s->buf);
			size_t copy = l > 0 && s->buf[l - 1] == '\r' ? l - 1 : l;
			snprintf(out, len, "%.*s", (int)copy, s->buf);
			memmove(s->buf, nl + 1, s->have - l - 1);
			s->have -= l + 1;
			if (copy >= 4 && out[3] == '-')
				continue;	/* continuation line */
			if (out[0] == '4' || out[0] == '5')
				s->errors++;
			return 0;
		}
		if (s->have == sizeof(s->buf))
			return -1;
		ssize_t n = smtp_recv(s, s->buf + s->have, sizeof(s->buf) - s->have);
		if (n <= 0)
			return -1;
		s->have += (size_t)n;
	}
}

static int
smtp_cmd(struct smtp *s, const char *line, char *out, size_t len)
{
	if (smtp_send(s, line) == -1)
		return -1;
	return smtp_reply(s, out, len);
}

/* drop the connection without a word (and TLS with it) */
static void
smtp_drop(struct smtp *s)
{
	if (s->ssl != NULL)
		SSL_free(s->ssl);
	if (s->ssl_ctx != NULL)
		SSL_CTX_free(s->ssl_ctx);
	s->ssl = NULL;
	s->ssl_ctx = NULL;
	if (s->fd != -1)
		close(s->fd);
	s->fd = -1;
}

static void
smtp_close(struct smtp *s)
{
	if (s->fd != -1) {
		char r[512];
		if (smtp_send(s, "QUIT") == 0)
			smtp_reply(s, r, sizeof(r));
	}
	smtp_drop(s);
}

/*
 * The TLS handshake, blocking (the socket's timeouts bound it). The certificate
 * is not verified: the audit asks whether the listener relays, and it talks to
 * the address relayvisord itself listens on; a self-signed certificate (the
 * shipped one) must not stop it.
 */
static int
smtp_tls_start(struct smtp *s, char *err, size_t elen)
{
	s->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (s->ssl_ctx == NULL ||
	    !SSL_CTX_set_min_proto_version(s->ssl_ctx, TLS1_2_VERSION) ||
	    (s->ssl = SSL_new(s->ssl_ctx)) == NULL || !SSL_set_fd(s->ssl, s->fd)) {
		const char *why = ERR_reason_error_string(ERR_get_error());
		snprintf(err, elen, "TLS: %s", why != NULL ? why : "out of memory");
		return -1;
	}
	SSL_set_verify(s->ssl, SSL_VERIFY_NONE, NULL);
	if (SSL_connect(s->ssl) != 1) {
		const char *why = ERR_reason_error_string(ERR_get_error());
		snprintf(err, elen, "TLS handshake failed: %s", why != NULL ? why :
		    errno != 0 ? strerror(errno) : "connection closed");
		SSL_free(s->ssl);
		s->ssl = NULL;
		return -1;
	}
	return 0;
}

/* connect from source (NULL: the kernel's choice) and read the greeting */
static int
smtp_open(struct smtp *s, const char *ip, unsigned port, const char *source,
    enum smtp_tls tls, char *greeting, size_t glen, char *err, size_t elen)
{
	struct sockaddr_storage ss, src;
	socklen_t sl, srcl;
	const char *to = ip;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->tls = tls;
	/* a wildcard listener is reached on loopback */
	if (strcmp(ip, "0.0.0.0") == 0)
		to = "127.0.0.1";
	else if (strcmp(ip, "::") == 0)
		to = "::1";
	if (net_sockaddr_parse(to, (uint16_t)port, &ss, &sl) == -1) {
		snprintf(err, elen, "bad address %s", ip);
		return -1;
	}
	if (source != NULL && (net_sockaddr_parse(source, 0, &src, &srcl) == -1 ||
	    src.ss_family != ss.ss_family)) {
		snprintf(err, elen, "--source %s is not of the listener's address family",
		    source);
		return -1;
	}
	s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd == -1) {
		snprintf(err, elen, "socket: %s", strerror(errno));
		return -1;
	}
	struct timeval tv = { .tv_sec = SMTP_TIMEOUT };
	setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (source != NULL && bind(s->fd, (struct sockaddr *)&src, srcl) == -1) {
		snprintf(err, elen, "bind %s: %s", source, strerror(errno));
		close(s->fd);
		s->fd = -1;
		return -1;
	}
	if (connect(s->fd, (struct sockaddr *)&ss, sl) == -1) {
		snprintf(err, elen, "connect %s port %u: %s", to, port, strerror(errno));
		close(s->fd);
		s->fd = -1;
		return -1;
	}
	if (tls == SMTP_TLS_IMPLICIT && smtp_tls_start(s, err, elen) == -1) {
		smtp_drop(s);
		return -1;
	}
	if (smtp_reply(s, greeting, glen) == -1) {
		snprintf(err, elen, "no greeting from %s port %u", to, port);
		smtp_drop(s);
		return -1;
	}
	if (tls == SMTP_TLS_STARTTLS && strncmp(greeting, "220", 3) == 0) {
		/* EHLO, STARTTLS, handshake: then the session is back to before
		   EHLO (RFC 3207), and each case says its own EHLO */
		char reply[600];
		if (smtp_cmd(s, "EHLO client.example", reply, sizeof(reply)) == -1 ||
		    smtp_cmd(s, "STARTTLS", reply, sizeof(reply)) == -1) {
			snprintf(err, elen, "%s port %u closed the connection before "
			    "STARTTLS", to, port);
			smtp_drop(s);
			return -1;
		}
		if (strncmp(reply, "220", 3) != 0) {
			snprintf(err, elen, "STARTTLS refused by %s port %u: %.120s", to,
			    port, reply);
			smtp_drop(s);
			return -1;
		}
		if (smtp_tls_start(s, err, elen) == -1) {
			smtp_drop(s);
			return -1;
		}
	}
	s->errors = 0;	/* the greeting is no error of ours */
	s->commands = 0;
	return 0;
}

static void
add_diff(struct live *lv, const char *name, const char *command, const char *expected,
    const char *actual)
{
	lv->diffs = xreallocarray(lv->diffs, lv->n_diffs + 1, sizeof(*lv->diffs));
	struct diff *d = &lv->diffs[lv->n_diffs++];
	snprintf(d->listen, sizeof(d->listen), "%s", lv->listen);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->command, sizeof(d->command), "%s", command);
	snprintf(d->expected, sizeof(d->expected), "%s", expected);
	snprintf(d->actual, sizeof(d->actual), "%s", actual);
}

static void
live_fail(struct live *lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
live_fail(struct live *lv, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(lv->error, sizeof(lv->error), fmt, ap);
	va_end(ap);
	lv->failed = true;
}

/* the source address this host uses towards the listener */
static bool
local_ip(int fd, char *ip, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		return false;
	if (ss.ss_family == AF_INET)
		return inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip,
		    (socklen_t)len) != NULL;
	return inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip,
	    (socklen_t)len) != NULL;
}

/* Play the corpus to one listen address of instance name. */
static void
live_replay(struct ctl_ctx *ctx, const char *name, const struct rec *listen,
    const char *source, enum smtp_tls tls, struct live *lv)
{
	struct smtp s;
	char greeting[600], err[256], reply[700], cmd[700];
	struct recs ex = { 0 };

	memset(lv, 0, sizeof(*lv));
	snprintf(lv->listen, sizeof(lv->listen), "%s", fld(listen, 1));
	if (smtp_open(&s, fld(listen, 2), num(listen, 3), source, tls, greeting,
	    sizeof(greeting), err, sizeof(err)) == -1) {
		snprintf(lv->error, sizeof(lv->error), "%s", err);
		/* a listener that is not running relays for nobody; anything else
		   leaves it unverified */
		lv->failed = strstr(err, "Connection refused") == NULL;
		return;
	}
	lv->reached = true;
	if (!local_ip(s.fd, lv->source, sizeof(lv->source))) {
		live_fail(lv, "getsockname: %s", strerror(errno));
		smtp_close(&s);
		return;
	}
	char *argv[] = { "audit-expect", (char *)name, lv->source };
	if (request(ctx, 3, argv, &ex) != 0) {
		live_fail(lv, "relayvisord gave no expectations for %s", lv->source);
		smtp_close(&s);
		recs_free(&ex);
		return;
	}
	unsigned max_errors = 20;
	const char *want_greeting = "220";
	for (size_t i = 0; i < ex.n; i++) {
		if (is(&ex.v[i], "greeting"))
			want_greeting = fld(&ex.v[i], 1);
		else if (is(&ex.v[i], "errors"))
			max_errors = num(&ex.v[i], 1);
	}
	if (strncmp(greeting, want_greeting, strlen(want_greeting)) != 0) {
		add_diff(lv, "greeting", "(connect)", want_greeting, greeting);
		smtp_close(&s);
		recs_free(&ex);
		return;
	}
	if (strcmp(want_greeting, "220") != 0) {
		/* refused at connect, as predicted: no case can be played */
		smtp_drop(&s);
		recs_free(&ex);
		return;
	}
	for (size_t i = 0; i < ex.n; i++) {
		const struct rec *c = &ex.v[i];
		if (!is(c, "case"))
			continue;
		const char *cname = fld(c, 1), *helo = fld(c, 2);
		/* each case costs at most two errors; stay below max_errors, and
		   below the listener's junk-command limit (100 RSETs a session) */
		if (s.fd != -1 && (s.errors + 2 >= max_errors ||
		    s.commands >= AUDIT_SESSION_COMMANDS)) {
			smtp_close(&s);
		}
		if (s.fd == -1) {
			if (smtp_open(&s, fld(listen, 2), num(listen, 3), source, tls,
			    greeting, sizeof(greeting), err, sizeof(err)) == -1) {
				live_fail(lv, "%s", err);
				break;
			}
			if (strncmp(greeting, "220", 3) != 0) {
				add_diff(lv, cname, "(connect)", "220", greeting);
				smtp_drop(&s);
				break;
			}
		}
		if (strcmp(s.helo, helo) != 0) {
			snprintf(cmd, sizeof(cmd), "EHLO %s", helo);
			if (smtp_cmd(&s, cmd, reply, sizeof(reply)) == -1)
				goto lost;
			lv->commands++;
			if (strncmp(reply, "250", 3) != 0) {
				add_diff(lv, cname, cmd, "250", reply);
				s.helo[0] = '\0';
				continue;
			}
			snprintf(s.helo, sizeof(s.helo), "%s", helo);
		}
		lv->cases++;
		snprintf(cmd, sizeof(cmd), "MAIL FROM:%s", fld(c, 3));
		if (smtp_cmd(&s, cmd, reply, sizeof(reply)) == -1)
			goto lost;
		lv->commands++;
		if (strcmp(reply, fld(c, 5)) != 0)
			add_diff(lv, cname, cmd, fld(c, 5), reply);
		bool mail_ok = strncmp(reply, "250", 3) == 0;
		if (mail_ok && strncmp(fld(c, 5), "250", 3) == 0) {
			snprintf(cmd, sizeof(cmd), "RCPT TO:%s", fld(c, 4));
			if (smtp_cmd(&s, cmd, reply, sizeof(reply)) == -1)
				goto lost;
			lv->commands++;
			if (strcmp(reply, fld(c, 6)) != 0)
				add_diff(lv, cname, cmd, fld(c, 6), reply);
			if (strncmp(reply, "250", 3) == 0 && num(c, 7))
				lv->relayed++;
		}
		if (mail_ok) {
			if (smtp_cmd(&s, "RSET", reply, sizeof(reply)) == -1)
				goto lost;
			lv->commands++;
			if (strncmp(reply, "250", 3) != 0)
				add_diff(lv, cname, "RSET", "250", reply);
		}
		continue;
lost:
		live_fail(lv, "%s closed the connection during case %s", lv->listen, cname);
		smtp_drop(&s);
		break;
	}
	smtp_close(&s);
	recs_free(&ex);
}

/* ---- the report ---- */

static void
json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

struct totals {
	unsigned open, acknowledged, differences, live_failures, checklist_failures,
	    exposure;
};

/* per-instance facts derived from the records */
struct facts {
	const struct rec *head;
	unsigned evaluated, relayed, lan_relayed;
	bool checklist_ok;
	unsigned diffs;
	bool live_failed;
};

static void
facts_of(const struct inst *in, struct facts *f)
{
	memset(f, 0, sizeof(*f));
	f->checklist_ok = true;
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (is(r, "instance"))
			f->head = r;
		else if (is(r, "stranger")) {
			f->evaluated += num(r, 4);
			f->relayed += num(r, 5);
		} else if (is(r, "lan"))
			f->lan_relayed += num(r, 6);
		else if (is(r, "check") && num(r, 2) == 0)
			f->checklist_ok = false;
	}
	for (size_t i = 0; i < in->n_live; i++) {
		f->diffs += (unsigned)in->live[i].n_diffs;
		f->live_failed = f->live_failed || in->live[i].failed;
	}
}

/* one instance's share of the summary line and the exit code */
static void
totals_add(struct totals *t, const struct inst *in, const struct facts *f)
{
	const struct rec *h = f->head;
	if (f->relayed > 0) {
		t->open++;
		if (num(h, 4))
			t->acknowledged++;
	}
	t->differences += f->diffs;
	t->live_failures += f->live_failed;
	if (num(h, 3) && !f->checklist_ok)	/* an Internet-facing instance */
		t->checklist_failures++;
	for (size_t i = 0; i < in->r.n; i++)
		t->exposure += is(&in->r.v[i], "exposure");
}

static void
text_instance(FILE *out, const struct inst *in, struct totals *t)
{
	struct facts f;
	facts_of(in, &f);
	const struct rec *h = f.head;
	char listens[512] = "";
	for (size_t i = 0; i < in->r.n; i++)
		if (is(&in->r.v[i], "listen"))
			snprintf(listens + strlen(listens), sizeof(listens) - strlen(listens),
			    "%s%s", listens[0] ? "," : "", fld(&in->r.v[i], 1));
	char lan[1024] = "";
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (is(r, "lan"))
			snprintf(lan + strlen(lan), sizeof(lan) - strlen(lan),
			    "%s%s %u/%u relayed", lan[0] ? ", " : "", fld(r, 1), num(r, 6),
			    num(r, 5));
	}
	fprintf(out, "%s  %s  strangers: %s %u/%u relayed  LAN: %s  (profile %s)%s\n",
	    fld(h, 1), listens, f.relayed == 0 ? "refused" : "OPEN RELAY", f.relayed,
	    f.evaluated, lan[0] ? lan : "none", fld(h, 2),
	    f.relayed > 0 && num(h, 4) ? "  acknowledged (open_relay: i-understand)" : "");
	fprintf(out, "  strangers:");
	const char *sep = " ";
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "stranger"))
			continue;
		fprintf(out, "%s%s%s %u/%u", sep, fld(r, 1), num(r, 3) ? "" :
		    " (refused at connect)", num(r, 5), num(r, 4));
		sep = ", ";
	}
	fprintf(out, " relayed\n");
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (is(r, "relays"))
			fprintf(out, "  relays for: %s\n", fld(r, 1));
		if (!is(r, "authenticated"))
			continue;
		fprintf(out, "  authenticated: %s %u/%u relayed (predicted: the live replay "
		    "has no credentials)%s\n", fld(r, 1), num(r, 5), num(r, 4),
		    num(r, 7) ? "" : "; AUTH is not offered here (no tls, or no server.auth), so no "
		    "client is ever authenticated");
	}
	unsigned shown = 0;
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "relayed"))
			continue;
		if (shown++ < SHOW_RELAYED)
			fprintf(out, "    relayed for %s: %s  EHLO %s  MAIL FROM:%s  RCPT TO:%s\n",
			    fld(r, 1), fld(r, 2), fld(r, 3), fld(r, 4), fld(r, 5));
	}
	if (shown > SHOW_RELAYED)
		fprintf(out, "    ... and %u more (--json lists them all)\n",
		    shown - SHOW_RELAYED);
	for (size_t i = 0; i < in->n_live; i++) {
		const struct live *lv = &in->live[i];
		if (!lv->reached)
			fprintf(out, "  live %s: not checked: %s\n", lv->listen, lv->error);
		else if (lv->cases == 0 && lv->n_diffs == 0 && !lv->failed)
			fprintf(out, "  live from %s to %s: refused at connect, as simulated\n",
			    lv->source, lv->listen);
		else
			fprintf(out, "  live from %s to %s: %u cases, %u commands, %u "
			    "relayed, %zu difference%s%s%s\n", lv->source, lv->listen,
			    lv->cases, lv->commands, lv->relayed, lv->n_diffs,
			    lv->n_diffs == 1 ? "" : "s", lv->failed ? "; ERROR: " : "",
			    lv->failed ? lv->error : "");
		for (size_t j = 0; j < lv->n_diffs; j++) {
			const struct diff *d = &lv->diffs[j];
			fprintf(out, "    DIFFERENCE %s: %s\n      expected: %s\n      "
			    "actual:   %s\n", d->name, d->command, d->expected, d->actual);
		}
	}
	for (size_t i = 0; i < in->r.n; i++)
		if (is(&in->r.v[i], "exposure"))
			fprintf(out, "  WARNING: %s\n", fld(&in->r.v[i], 1));
	bool internet = num(h, 3);
	fprintf(out, "  checklist (Mailtraq)%s:\n", internet ?
	    ", Internet-facing: every item must pass" : "");
	unsigned last_step = 0;
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "check"))
			continue;
		unsigned step = num(r, 1);
		fprintf(out, "    %-7s %s %s: %s  [%s]\n", step != last_step ?
		    (step == 1 ? "Step 1" : "Step 2") : "", num(r, 2) ? "\u2713" : "\u2717",
		    fld(r, 3), fld(r, 4), fld(r, 5));
		last_step = step;
	}
	fprintf(out, "  who may relay:%-38s %-22s %s\n", "", "to local", "to remote");
	static const char *const senders[] = { "from local", "from non-local",
	    "from null <>" };
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "matrix"))
			continue;
		for (int s = 0; s < 3; s++) {
			char client[160];
			snprintf(client, sizeof(client), "%s (%s)", fld(r, 1), fld(r, 2));
			fprintf(out, "    %-33s %-15s %-22s %s\n", s == 0 ? client : "",
			    senders[s], fld(r, 3 + s * 2), fld(r, 4 + s * 2));
		}
	}
	totals_add(t, in, &f);
}

static void
json_instance(FILE *out, const struct inst *in, struct totals *t)
{
	struct facts f;
	facts_of(in, &f);
	const struct rec *h = f.head;
	bool internet = num(h, 3);
	fputs("{\"name\":", out);
	json_str(out, fld(h, 1));
	fputs(",\"profile\":", out);
	json_str(out, fld(h, 2));
	fprintf(out, ",\"internet\":%s,\"acknowledged\":%s,\"access\":",
	    internet ? "true" : "false", num(h, 4) ? "true" : "false");
	json_str(out, fld(h, 5));
	fprintf(out, ",\"cases\":%u,\"verdict\":\"%s\",\"strangers_evaluated\":%u,"
	    "\"strangers_relayed\":%u,\"listen\":[", num(h, 6),
	    f.relayed > 0 ? "open-relay" : "refused", f.evaluated, f.relayed);
	const char *sep = "";
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "listen"))
			continue;
		fprintf(out, "%s{\"address\":", sep);
		json_str(out, fld(r, 1));
		fputs(",\"ip\":", out);
		json_str(out, fld(r, 2));
		fprintf(out, ",\"port\":%u,\"scope\":", num(r, 3));
		json_str(out, fld(r, 4));
		fputc('}', out);
		sep = ",";
	}
	fputs("],\"strangers\":[", out);
	sep = "";
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "stranger"))
			continue;
		fprintf(out, "%s{\"client\":", sep);
		json_str(out, fld(r, 1));
		fprintf(out, ",\"in_lan\":%s,\"allowed\":%s,\"evaluated\":%u,\"relayed\":%u,"
		    "\"local\":%u,\"relayed_cases\":[", num(r, 2) ? "true" : "false",
		    num(r, 3) ? "true" : "false", num(r, 4), num(r, 5), num(r, 6));
		const char *sep2 = "";
		for (size_t j = 0; j < in->r.n; j++) {
			const struct rec *x = &in->r.v[j];
			if (!is(x, "relayed") || strcmp(fld(x, 1), fld(r, 1)) != 0)
				continue;
			fprintf(out, "%s{\"case\":", sep2);
			json_str(out, fld(x, 2));
			fputs(",\"helo\":", out);
			json_str(out, fld(x, 3));
			fputs(",\"mail\":", out);
			json_str(out, fld(x, 4));
			fputs(",\"rcpt\":", out);
			json_str(out, fld(x, 5));
			fputc('}', out);
			sep2 = ",";
		}
		fputs("]}", out);
		sep = ",";
	}
	fputs("],\"lan\":[", out);
	sep = "";
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "lan"))
			continue;
		fprintf(out, "%s{\"entry\":", sep);
		json_str(out, fld(r, 1));
		fputs(",\"client\":", out);
		json_str(out, fld(r, 2));
		fprintf(out, ",\"allowed\":%s,\"evaluated\":%u,\"relayed\":%u,\"local\":%u,"
		    "\"overwide\":%s}", num(r, 4) ? "true" : "false", num(r, 5), num(r, 6),
		    num(r, 7), num(r, 8) ? "true" : "false");
		sep = ",";
	}
	fputs("]", out);
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (is(r, "relays")) {
			fputs(",\"relays_for\":", out);
			json_str(out, fld(r, 1));
		}
		if (!is(r, "authenticated"))
			continue;
		fputs(",\"authenticated\":{\"client\":", out);
		json_str(out, fld(r, 1));
		fprintf(out, ",\"allowed\":%s,\"evaluated\":%u,\"relayed\":%u,\"local\":%u,"
		    "\"auth_offered\":%s,\"predicted\":true}", num(r, 3) ? "true" : "false",
		    num(r, 4), num(r, 5), num(r, 6), num(r, 7) ? "true" : "false");
	}
	fputs(",\"exposure\":[", out);
	sep = "";
	for (size_t i = 0; i < in->r.n; i++) {
		if (!is(&in->r.v[i], "exposure"))
			continue;
		fputs(sep, out);
		json_str(out, fld(&in->r.v[i], 1));
		sep = ",";
	}
	fprintf(out, "],\"checklist\":{\"required\":%s,\"passed\":%s,\"items\":[",
	    internet ? "true" : "false", f.checklist_ok ? "true" : "false");
	sep = "";
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "check"))
			continue;
		fprintf(out, "%s{\"step\":%u,\"ok\":%s,\"setting\":", sep, num(r, 1),
		    num(r, 2) ? "true" : "false");
		json_str(out, fld(r, 3));
		fputs(",\"value\":", out);
		json_str(out, fld(r, 4));
		fputs(",\"key\":", out);
		json_str(out, fld(r, 5));
		fputc('}', out);
		sep = ",";
	}
	fputs("]},\"matrix\":[", out);
	sep = "";
	static const char *const senders[] = { "local", "non-local", "null" };
	static const char *const rcpts[] = { "local", "remote" };
	for (size_t i = 0; i < in->r.n; i++) {
		const struct rec *r = &in->r.v[i];
		if (!is(r, "matrix"))
			continue;
		for (int s = 0; s < 3; s++) {
			for (int k = 0; k < 2; k++) {
				const char *cell = fld(r, 3 + s * 2 + k);
				fprintf(out, "%s{\"client\":", sep);
				json_str(out, fld(r, 1));
				fputs(",\"ip\":", out);
				json_str(out, fld(r, 2));
				fprintf(out, ",\"sender\":\"%s\",\"recipient\":\"%s\","
				    "\"accept\":%s,\"reply\":", senders[s], rcpts[k],
				    strcmp(cell, "accept") == 0 ? "true" : "false");
				json_str(out, cell);
				fputc('}', out);
				sep = ",";
			}
		}
	}
	fputs("],\"live\":[", out);
	for (size_t i = 0; i < in->n_live; i++) {
		const struct live *lv = &in->live[i];
		fprintf(out, "%s{\"listen\":", i ? "," : "");
		json_str(out, lv->listen);
		fputs(",\"source\":", out);
		json_str(out, lv->source);
		fprintf(out, ",\"reached\":%s,\"failed\":%s,\"error\":",
		    lv->reached ? "true" : "false", lv->failed ? "true" : "false");
		if (lv->error[0] != '\0')
			json_str(out, lv->error);
		else
			fputs("null", out);
		fprintf(out, ",\"cases\":%u,\"commands\":%u,\"relayed\":%u,\"differences\":[",
		    lv->cases, lv->commands, lv->relayed);
		for (size_t j = 0; j < lv->n_diffs; j++) {
			const struct diff *d = &lv->diffs[j];
			fprintf(out, "%s{\"case\":", j ? "," : "");
			json_str(out, d->name);
			fputs(",\"command\":", out);
			json_str(out, d->command);
			fputs(",\"expected\":", out);
			json_str(out, d->expected);
			fputs(",\"actual\":", out);
			json_str(out, d->actual);
			fputc('}', out);
		}
		fputs("]}", out);
	}
	fputs("]}", out);
	totals_add(t, in, &f);
}

static int
usage(struct ctl_ctx *ctx)
{
	fprintf(ctx->out, "Error: audit [NAME...] [--json] [--source IP] "
	    "[--internet NAME]...\n");
	return CTL_EXIT_USAGE;
}

int
ctl_audit(struct ctl_ctx *ctx, int argc, char **argv)
{
	bool json = false;
	const char *source = NULL;
	char *req[CTLPROTO_ARGS_MAX];
	int nreq = 0;
	struct sockaddr_storage ss;
	socklen_t sl;

	req[nreq++] = "audit";
	for (int i = 1; i < argc; i++) {
		if (nreq + 2 >= CTLPROTO_ARGS_MAX)
			return usage(ctx);
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--source") == 0 && i + 1 < argc) {
			source = argv[++i];
			if (net_sockaddr_parse(source, 0, &ss, &sl) == -1) {
				fprintf(ctx->out, "Error: --source wants an IPv4 or IPv6 "
				    "address\n");
				return CTL_EXIT_USAGE;
			}
		} else if (strcmp(argv[i], "--internet") == 0 && i + 1 < argc) {
			req[nreq++] = argv[i];
			req[nreq++] = argv[++i];
		} else if (argv[i][0] == '-') {
			return usage(ctx);
		} else {
			req[nreq++] = argv[i];
		}
	}

	struct recs all = { 0 };
	int code = request(ctx, nreq, req, &all);
	if (code != 0) {
		recs_free(&all);
		return code;
	}
	/* split the records per instance; each block ends with "end" */
	struct audit a = { 0 };
	for (size_t i = 0; i < all.n; i++) {
		const struct rec *r = &all.v[i];
		if (is(r, "instance")) {
			a.v = xreallocarray(a.v, a.n + 1, sizeof(*a.v));
			memset(&a.v[a.n++], 0, sizeof(*a.v));
		}
		if (a.n == 0 || is(r, "end"))
			continue;
		char line[CTLPROTO_LINE_MAX];
		size_t off = 0;
		for (int k = 0; k < r->nf; k++)
			off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s",
			    k ? "\t" : "", r->f[k]);
		recs_add(&a.v[a.n - 1].r, line);
	}
	recs_free(&all);

	/* the live part: every listen address of every instance */
	for (size_t i = 0; i < a.n; i++) {
		struct inst *in = &a.v[i];
		const char *name = fld(&in->r.v[0], 1);
		enum smtp_tls tls = SMTP_TLS_NONE;
		for (size_t j = 0; j < in->r.n; j++) {
			if (is(&in->r.v[j], "tls"))
				tls = strcmp(fld(&in->r.v[j], 1), "implicit") == 0 ?
				    SMTP_TLS_IMPLICIT : strcmp(fld(&in->r.v[j], 1),
				    "starttls") == 0 ? SMTP_TLS_STARTTLS : SMTP_TLS_NONE;
		}
		for (size_t j = 0; j < in->r.n; j++) {
			if (!is(&in->r.v[j], "listen"))
				continue;
			in->live = xreallocarray(in->live, in->n_live + 1, sizeof(*in->live));
			live_replay(ctx, name, &in->r.v[j], source, tls,
			    &in->live[in->n_live++]);
		}
	}

	struct totals t = { 0 };
	if (json) {
		fputs("{\"schema\":1,\"instances\":[", ctx->out);
		for (size_t i = 0; i < a.n; i++) {
			if (i)
				fputc(',', ctx->out);
			json_instance(ctx->out, &a.v[i], &t);
		}
	} else {
		for (size_t i = 0; i < a.n; i++) {
			if (i)
				fputc('\n', ctx->out);
			text_instance(ctx->out, &a.v[i], &t);
		}
	}
	code = t.open > 0 || t.differences > 0 || t.live_failures > 0 ||
	    t.checklist_failures > 0 ? CTL_EXIT_ERROR : 0;
	if (json) {
		fprintf(ctx->out, "],\"summary\":{\"instances\":%zu,\"open_to_strangers\":%u,"
		    "\"acknowledged\":%u,\"live_differences\":%u,\"live_failures\":%u,"
		    "\"checklist_failures\":%u,\"exposure_warnings\":%u},\"exit\":%d}\n",
		    a.n, t.open, t.acknowledged, t.differences, t.live_failures,
		    t.checklist_failures, t.exposure, code);
	} else {
		fprintf(ctx->out, "\naudit: %zu instance%s: %u relaying for strangers%s, "
		    "%u live difference%s, %u live error%s, %u Internet-facing checklist "
		    "failure%s, %u exposure warning%s: %s\n", a.n, a.n == 1 ? "" : "s",
		    t.open, t.acknowledged ? " (acknowledged "
		    "ones included)" : "", t.differences, t.differences == 1 ? "" : "s",
		    t.live_failures, t.live_failures == 1 ? "" : "s",
		    t.checklist_failures, t.checklist_failures == 1 ? "" : "s",
		    t.exposure, t.exposure == 1 ? "" : "s", code == 0 ? "OK" : "FAILED");
	}
	for (size_t i = 0; i < a.n; i++) {
		recs_free(&a.v[i].r);
		for (size_t j = 0; j < a.v[i].n_live; j++)
			free(a.v[i].live[j].diffs);
		free(a.v[i].live);
	}
	free(a.v);
	return code;
}
