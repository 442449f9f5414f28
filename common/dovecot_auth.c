/*
 * Dovecot auth-client protocol, client side (dovecot_auth.h): line assembly with
 * a limit, the handshake, AUTH lines, and OK/FAIL/CONT matched to requests by id.
 */
#include "common/dovecot_auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/xmalloc.h"

struct request {
	unsigned id;
	bool sent;
	char user[SASL_USER_MAX + 1];
	char *line;		/* the AUTH line, while not yet sent (holds the password) */
};

struct dovecot_auth {
	unsigned long pid;
	bool version_ok, done, plain, failed;
	unsigned next_id;
	struct request *req;
	size_t nreq;
	struct dovecot_auth_reply *rep;
	size_t nrep, rep_head;
	char *out;
	size_t outlen, outcap;
	char in[DOVECOT_AUTH_LINE_MAX + 1];
	size_t inlen;
};

static void
out_add(struct dovecot_auth *da, const char *s, size_t n)
{
	if (da->outlen + n > da->outcap) {
		size_t cap = da->outcap ? da->outcap : 1024;
		while (cap < da->outlen + n)
			cap *= 2;
		da->out = xreallocarray(da->out, cap, 1);
		da->outcap = cap;
	}
	memcpy(da->out + da->outlen, s, n);
	da->outlen += n;
}

static void
handshake_start(struct dovecot_auth *da)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "VERSION\t1\t2\nCPID\t%lu\n", da->pid);
	out_add(da, line, (size_t)n);
}

struct dovecot_auth *
dovecot_auth_new(unsigned long pid)
{
	struct dovecot_auth *da = xcalloc(1, sizeof(*da));
	da->pid = pid;
	da->next_id = 1;
	handshake_start(da);
	return da;
}

static void
req_forget(struct dovecot_auth *da, size_t i)
{
	if (da->req[i].line != NULL) {
		OPENSSL_cleanse(da->req[i].line, strlen(da->req[i].line));
		free(da->req[i].line);
	}
	da->req[i] = da->req[--da->nreq];
}

void
dovecot_auth_free(struct dovecot_auth *da)
{
	if (da == NULL)
		return;
	while (da->nreq > 0)
		req_forget(da, 0);
	free(da->req);
	free(da->rep);
	if (da->out != NULL)
		OPENSSL_cleanse(da->out, da->outcap);
	free(da->out);
	free(da);
}

size_t
dovecot_auth_output(const struct dovecot_auth *da, const char **data)
{
	*data = da->out;
	return da->outlen;
}

void
dovecot_auth_consume(struct dovecot_auth *da, size_t n)
{
	if (n > da->outlen)
		n = da->outlen;
	memmove(da->out, da->out + n, da->outlen - n);
	/* what was sent held passwords: wipe the tail that moved down */
	OPENSSL_cleanse(da->out + da->outlen - n, n);
	da->outlen -= n;
}

bool
dovecot_auth_ready(const struct dovecot_auth *da)
{
	return da->done && da->plain && !da->failed;
}

size_t
dovecot_auth_outstanding(const struct dovecot_auth *da)
{
	return da->nreq;
}

static void
reply_add(struct dovecot_auth *da, unsigned id, enum dovecot_auth_result result,
    const char *user, const char *reason)
{
	if (da->rep_head > 0 && da->rep_head == da->nrep)
		da->rep_head = da->nrep = 0;
	da->rep = xreallocarray(da->rep, da->nrep + 1, sizeof(*da->rep));
	struct dovecot_auth_reply *r = &da->rep[da->nrep++];
	memset(r, 0, sizeof(*r));
	r->id = id;
	r->result = result;
	snprintf(r->user, sizeof(r->user), "%s", user);
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

bool
dovecot_auth_next_reply(struct dovecot_auth *da, struct dovecot_auth_reply *r)
{
	if (da->rep_head == da->nrep)
		return false;
	*r = da->rep[da->rep_head++];
	return true;
}

static ssize_t
req_find(const struct dovecot_auth *da, unsigned id)
{
	for (size_t i = 0; i < da->nreq; i++)
		if (da->req[i].id == id)
			return (ssize_t)i;
	return -1;
}

void
dovecot_auth_cancel(struct dovecot_auth *da, unsigned id)
{
	ssize_t i = req_find(da, id);
	if (i >= 0)
		req_forget(da, (size_t)i);
}

static void
req_send(struct dovecot_auth *da, struct request *q)
{
	out_add(da, q->line, strlen(q->line));
	OPENSSL_cleanse(q->line, strlen(q->line));
	free(q->line);
	q->line = NULL;
	q->sent = true;
}

/* an IP for lip=/rip=: what an address's text form may hold, nothing else */
static bool
ip_ok(const char *s)
{
	if (strlen(s) > 63)
		return false;
	for (; *s; s++)
		if (!strchr("0123456789abcdefABCDEF:.%", *s))
			return false;
	return true;
}

unsigned
dovecot_auth_request(struct dovecot_auth *da, const struct dovecot_auth_params *p,
    const char **error_r)
{
	size_t ul = strlen(p->user), pl = strlen(p->password);
	const char *service = p->service != NULL ? p->service : "smtp";
	if (da->failed) {
		*error_r = "the Dovecot auth connection failed";
		return 0;
	}
	if (da->nreq >= DOVECOT_AUTH_REQUESTS_MAX) {
		*error_r = "too many Dovecot auth requests outstanding";
		return 0;
	}
	if (ul == 0 || ul > SASL_USER_MAX || pl == 0 || pl > SASL_PASS_MAX) {
		*error_r = "user or password empty or too long";
		return 0;
	}
	if ((p->local_ip != NULL && !ip_ok(p->local_ip)) ||
	    (p->remote_ip != NULL && !ip_ok(p->remote_ip)) ||
	    strcspn(service, "\t\n\r") != strlen(service) || strlen(service) > 32) {
		*error_r = "bad address or service for Dovecot";
		return 0;
	}
	if (da->outlen > DOVECOT_AUTH_OUT_MAX) {
		*error_r = "Dovecot auth output buffer full";
		return 0;
	}
	/* "\0user\0password" in base64 */
	unsigned char plain[SASL_USER_MAX + SASL_PASS_MAX + 2];
	char b64[((sizeof(plain) + 2) / 3) * 4 + 1];
	plain[0] = '\0';
	memcpy(plain + 1, p->user, ul);
	plain[ul + 1] = '\0';
	memcpy(plain + ul + 2, p->password, pl);
	sasl_b64_encode(plain, ul + pl + 2, b64, sizeof(b64));
	OPENSSL_cleanse(plain, sizeof(plain));

	unsigned id = da->next_id;
	da->next_id = da->next_id >= 0x7fffffff ? 1 : da->next_id + 1;
	da->req = xreallocarray(da->req, da->nreq + 1, sizeof(*da->req));
	struct request *q = &da->req[da->nreq++];
	memset(q, 0, sizeof(*q));
	q->id = id;
	memcpy(q->user, p->user, ul + 1);
	q->line = xasprintf("AUTH\t%u\tPLAIN\tservice=%s\tnologin%s%s%s%s%s\tresp=%s\n", id,
	    service, p->local_ip ? "\tlip=" : "", p->local_ip ? p->local_ip : "",
	    p->remote_ip ? "\trip=" : "", p->remote_ip ? p->remote_ip : "",
	    p->secured ? "\tsecured" : "", b64);
	OPENSSL_cleanse(b64, sizeof(b64));
	if (dovecot_auth_ready(da))
		req_send(da, q);
	return id;
}

/* Dovecot's tab-escaping: \001 then '1', 't', 'r', 'n'; then control characters
   become '?' so the text can go to a log line */
static void
unescape(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	for (; *in && n + 1 < cap; in++) {
		char c = *in;
		if (c == '\001' && in[1] != '\0') {
			in++;
			c = *in == 't' ? '\t' : *in == 'r' ? '\r' : *in == 'n' ? '\n' :
			    *in == '1' ? '\001' : '?';
		}
		out[n++] = (unsigned char)c < 0x20 || c == 0x7f ? '?' : c;
	}
	out[n] = '\0';
}

static void
all_tempfail(struct dovecot_auth *da, const char *reason)
{
	while (da->nreq > 0) {
		reply_add(da, da->req[0].id, DOVECOT_AUTH_TEMPFAIL, da->req[0].user, reason);
		req_forget(da, 0);
	}
}

/* one complete server line (NUL-terminated, no LF) */
static int
line(struct dovecot_auth *da, char *s, const char **error_r)
{
	char *f[32];
	int nf = 0;
	for (char *p = s; nf < 32;) {
		f[nf++] = p;
		p = strchr(p, '\t');
		if (p == NULL)
			break;
		*p++ = '\0';
	}
	if (!da->done) {
		if (strcmp(f[0], "VERSION") == 0) {
			if (nf < 3 || strcmp(f[1], "1") != 0) {
				*error_r = "Dovecot auth protocol: unsupported major version";
				return -1;
			}
			da->version_ok = true;
		} else if (!da->version_ok) {
			*error_r = "Dovecot auth protocol: no VERSION line first";
			return -1;
		} else if (strcmp(f[0], "MECH") == 0) {
			if (nf >= 2 && strcmp(f[1], "PLAIN") == 0)
				da->plain = true;
		} else if (strcmp(f[0], "DONE") == 0) {
			da->done = true;
			if (!da->plain) {
				all_tempfail(da, "Dovecot offers no PLAIN mechanism");
				*error_r = "Dovecot auth: no PLAIN mechanism offered "
				    "(auth_mechanisms = plain login)";
				return -1;
			}
			for (size_t i = 0; i < da->nreq; i++)
				if (!da->req[i].sent)
					req_send(da, &da->req[i]);
		}
		/* SPID, CUID, COOKIE and future lines: nothing to do */
		return 0;
	}
	bool ok = strcmp(f[0], "OK") == 0, fail = strcmp(f[0], "FAIL") == 0,
	    cont = strcmp(f[0], "CONT") == 0;
	if (!ok && !fail && !cont)
		return 0;	/* other server notices */
	char *end;
	errno = 0;
	unsigned long id = nf >= 2 ? strtoul(f[1], &end, 10) : 0;
	if (nf < 2 || f[1][0] < '0' || f[1][0] > '9' || *end != '\0' || errno != 0 ||
	    id == 0 || id > 0x7fffffff) {
		*error_r = "Dovecot auth protocol: reply without a valid id";
		return -1;
	}
	ssize_t i = req_find(da, (unsigned)id);
	if (i < 0 || !da->req[i].sent)
		return 0;	/* cancelled, or never ours: ignored */
	struct request *q = &da->req[i];
	char user[SASL_USER_MAX + 1], reason[256] = "";
	snprintf(user, sizeof(user), "%s", q->user);
	bool temp = false;
	for (int k = 2; k < nf; k++) {
		if (strncmp(f[k], "user=", 5) == 0 && f[k][5] != '\0')
			unescape(f[k] + 5, user, sizeof(user));
		else if (strncmp(f[k], "reason=", 7) == 0)
			unescape(f[k] + 7, reason, sizeof(reason));
		else if (strcmp(f[k], "temp") == 0)
			temp = true;
	}
	enum dovecot_auth_result r = ok ? DOVECOT_AUTH_OK :
	    fail && !temp ? DOVECOT_AUTH_FAIL : DOVECOT_AUTH_TEMPFAIL;
	if (cont)
		snprintf(reason, sizeof(reason), "Dovecot asked for another round (CONT)");
	reply_add(da, q->id, r, user, reason);
	req_forget(da, (size_t)i);
	return 0;
}

int
dovecot_auth_feed(struct dovecot_auth *da, const void *buf, size_t len,
    const char **error_r)
{
	const char *p = buf;
	if (da->failed) {
		*error_r = "the Dovecot auth connection failed";
		return -1;
	}
	while (len > 0) {
		const char *nl = memchr(p, '\n', len);
		size_t n = nl != NULL ? (size_t)(nl - p) : len;
		if (da->inlen + n > DOVECOT_AUTH_LINE_MAX) {
			*error_r = "Dovecot auth protocol: line too long";
			goto fail;
		}
		memcpy(da->in + da->inlen, p, n);
		da->inlen += n;
		if (nl == NULL)
			break;
		p += n + 1;
		len -= n + 1;
		da->in[da->inlen] = '\0';
		if (memchr(da->in, '\0', da->inlen) != NULL) {
			*error_r = "Dovecot auth protocol: NUL in a line";
			goto fail;
		}
		da->inlen = 0;
		if (line(da, da->in, error_r) == -1)
			goto fail;
	}
	return 0;
fail:
	da->failed = true;
	all_tempfail(da, *error_r);
	return -1;
}

void
dovecot_auth_disconnected(struct dovecot_auth *da)
{
	all_tempfail(da, "Dovecot auth connection lost");
	da->version_ok = da->done = da->plain = da->failed = false;
	da->inlen = 0;
	if (da->out != NULL)
		OPENSSL_cleanse(da->out, da->outcap);
	da->outlen = 0;
	handshake_start(da);
}
