/*
 * SMTP AUTH PLAIN and LOGIN exchanges (sasl.h). Replies follow Postfix's wording
 * where Postfix has one, with RFC 4954's codes.
 */
#include "common/sasl.h"

#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

enum {
	ST_IDLE,
	ST_PLAIN_RESPONSE,	/* sent "334 ", waiting for the PLAIN message */
	ST_LOGIN_USER,		/* sent "334 VXNlcm5hbWU6" */
	ST_LOGIN_PASSWORD,	/* sent "334 UGFzc3dvcmQ6" */
	ST_DONE,
};

#define R_SYNTAX	"501 5.5.4 Syntax: AUTH mechanism"
#define R_MECH		"504 5.5.4 Unsupported authentication mechanism"
#define R_DECODE	"501 5.5.2 Cannot decode response"
#define R_ABORT		"501 5.7.0 Authentication aborted"
#define R_TOOLONG	"500 5.5.6 Authentication exchange line is too long"
#define R_PLAIN		"501 5.5.2 Invalid PLAIN response"
#define R_CREDENTIALS	"535 5.7.8 Error: authentication failed: bad credentials"
#define R_AUTHZID	"535 5.7.8 Error: authentication failed: authorization identity differs from the user"
#define R_STATE		"503 5.5.1 Error: no authentication in progress"

void
sasl_init(struct sasl *s)
{
	memset(s, 0, sizeof(*s));
}

void
sasl_reset(struct sasl *s)
{
	OPENSSL_cleanse(s->password, sizeof(s->password));
	OPENSSL_cleanse(s->user, sizeof(s->user));
	OPENSSL_cleanse(s->authzid, sizeof(s->authzid));
	s->mech = SASL_MECH_NONE;
	s->state = ST_IDLE;
	s->reply = NULL;
}

static enum sasl_status
fail(struct sasl *s, const char *reply)
{
	OPENSSL_cleanse(s->password, sizeof(s->password));
	s->state = ST_DONE;
	s->reply = reply;
	return SASL_ERROR;
}

static enum sasl_status
cont(struct sasl *s, int state, const char *reply)
{
	s->state = state;
	s->reply = reply;
	return SASL_CONTINUE;
}

static bool
b64_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int
sasl_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap,
    size_t *outlen)
{
	if (len % 4 != 0 || len / 4 * 3 > cap || len > (size_t)1 << 30)
		return -1;
	size_t pad = 0;
	if (len > 0 && in[len - 1] == '=')
		pad = len > 1 && in[len - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < len - pad; i++)
		if (!b64_char((unsigned char)in[i]))
			return -1;
	if (len == 0) {
		*outlen = 0;
		return 0;
	}
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n < pad)
		return -1;
	*outlen = (size_t)n - pad;
	return 0;
}

size_t
sasl_b64_encode(const void *in, size_t len, char *out, size_t cap)
{
	if (cap < (len + 2) / 3 * 4 + 1) {
		if (cap > 0)
			out[0] = '\0';
		return 0;
	}
	return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* a user name we can log and look up: no NUL, no control characters */
static bool
name_ok(const unsigned char *p, size_t len)
{
	if (len == 0 || len > SASL_USER_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return true;
}

/* decode a response line; "*" cancels; errors set the reply */
static int
decode_line(struct sasl *s, const char *line, size_t len, unsigned char *out,
    size_t cap, size_t *outlen, enum sasl_status *st)
{
	if (len > SASL_LINE_MAX) {
		*st = fail(s, R_TOOLONG);
		return -1;
	}
	if (len == 1 && line[0] == '*') {
		*st = fail(s, R_ABORT);
		return -1;
	}
	if (sasl_b64_decode(line, len, out, cap, outlen) == -1) {
		*st = fail(s, R_DECODE);
		return -1;
	}
	return 0;
}

/* RFC 4616: [authzid] NUL authcid NUL passwd, none containing NUL */
static enum sasl_status
plain_message(struct sasl *s, const char *line, size_t len)
{
	unsigned char buf[SASL_LINE_MAX];
	size_t n;
	enum sasl_status st;
	if (decode_line(s, line, len, buf, sizeof(buf), &n, &st) == -1)
		return st;
	unsigned char *nul1 = memchr(buf, '\0', n);
	unsigned char *nul2 = nul1 != NULL ?
	    memchr(nul1 + 1, '\0', n - (size_t)(nul1 + 1 - buf)) : NULL;
	if (nul2 == NULL || memchr(nul2 + 1, '\0', n - (size_t)(nul2 + 1 - buf)) != NULL) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return fail(s, R_PLAIN);
	}
	size_t zlen = (size_t)(nul1 - buf);
	size_t ulen = (size_t)(nul2 - nul1 - 1);
	size_t plen = n - (size_t)(nul2 + 1 - buf);
	if ((zlen > 0 && !name_ok(buf, zlen)) || !name_ok(nul1 + 1, ulen) ||
	    plen == 0 || plen > SASL_PASS_MAX) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return fail(s, R_PLAIN);
	}
	memcpy(s->authzid, buf, zlen);
	s->authzid[zlen] = '\0';
	memcpy(s->user, nul1 + 1, ulen);
	s->user[ulen] = '\0';
	memcpy(s->password, nul2 + 1, plen);
	s->password[plen] = '\0';
	OPENSSL_cleanse(buf, sizeof(buf));
	/* no proxy authorisation: an authzid must name the user itself */
	if (zlen > 0 && strcmp(s->authzid, s->user) != 0)
		return fail(s, R_AUTHZID);
	s->state = ST_DONE;
	s->reply = NULL;
	return SASL_CHECK;
}

static enum sasl_status
login_user(struct sasl *s, const char *line, size_t len)
{
	unsigned char buf[SASL_LINE_MAX];
	size_t n;
	enum sasl_status st;
	if (decode_line(s, line, len, buf, sizeof(buf), &n, &st) == -1)
		return st;
	if (!name_ok(buf, n))
		return fail(s, R_CREDENTIALS);
	memcpy(s->user, buf, n);
	s->user[n] = '\0';
	return cont(s, ST_LOGIN_PASSWORD, "334 UGFzc3dvcmQ6");
}

static enum sasl_status
login_password(struct sasl *s, const char *line, size_t len)
{
	unsigned char buf[SASL_LINE_MAX];
	size_t n;
	enum sasl_status st;
	if (decode_line(s, line, len, buf, sizeof(buf), &n, &st) == -1)
		return st;
	if (n == 0 || n > SASL_PASS_MAX || memchr(buf, '\0', n) != NULL) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return fail(s, R_CREDENTIALS);
	}
	memcpy(s->password, buf, n);
	s->password[n] = '\0';
	OPENSSL_cleanse(buf, sizeof(buf));
	s->state = ST_DONE;
	s->reply = NULL;
	return SASL_CHECK;
}

enum sasl_status
sasl_start(struct sasl *s, const char *args, size_t len)
{
	sasl_reset(s);
	if (len > SASL_LINE_MAX + 32)
		return fail(s, R_TOOLONG);
	size_t m = 0;
	while (m < len && args[m] != ' ')
		m++;
	if (m == 0)
		return fail(s, R_SYNTAX);
	const char *ir = NULL;
	size_t irlen = 0;
	if (m < len) {
		ir = args + m + 1;
		irlen = len - m - 1;
		/* exactly one space, and the response is one word */
		if (irlen == 0 || memchr(ir, ' ', irlen) != NULL)
			return fail(s, R_SYNTAX);
	}
	if (m == 5 && strncasecmp(args, "PLAIN", 5) == 0)
		s->mech = SASL_MECH_PLAIN;
	else if (m == 5 && strncasecmp(args, "LOGIN", 5) == 0)
		s->mech = SASL_MECH_LOGIN;
	else
		return fail(s, R_MECH);
	/* RFC 4954: "=" is an empty initial response */
	bool empty_ir = ir != NULL && irlen == 1 && ir[0] == '=';
	if (s->mech == SASL_MECH_PLAIN) {
		if (ir == NULL || empty_ir)
			return cont(s, ST_PLAIN_RESPONSE, "334 ");
		return plain_message(s, ir, irlen);
	}
	if (ir == NULL || empty_ir)
		return cont(s, ST_LOGIN_USER, "334 VXNlcm5hbWU6");
	return login_user(s, ir, irlen);
}

enum sasl_status
sasl_feed(struct sasl *s, const char *line, size_t len)
{
	switch (s->state) {
	case ST_PLAIN_RESPONSE:
		return plain_message(s, line, len);
	case ST_LOGIN_USER:
		return login_user(s, line, len);
	case ST_LOGIN_PASSWORD:
		return login_password(s, line, len);
	default:
		return fail(s, R_STATE);
	}
}

const char *
sasl_reply(const struct sasl *s)
{
	return s->reply != NULL ? s->reply : "";
}

const char *
sasl_user(const struct sasl *s)
{
	return s->user;
}

const char *
sasl_password(const struct sasl *s)
{
	return s->password;
}

enum sasl_mech
sasl_mech(const struct sasl *s)
{
	return s->mech;
}

const char *
sasl_mech_name(enum sasl_mech m)
{
	switch (m) {
	case SASL_MECH_PLAIN:
		return "PLAIN";
	case SASL_MECH_LOGIN:
		return "LOGIN";
	case SASL_MECH_NONE:
		break;
	}
	return "NONE";
}
