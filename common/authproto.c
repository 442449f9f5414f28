/*
 * Encoding and strict decoding of the listener <-> auth process messages
 * (authproto.h has the format).
 */
#include "common/authproto.h"

#include <string.h>

#include <openssl/crypto.h>

#include "common/wire.h"

static void
header(struct wire_w *w, enum authproto_type type, uint32_t id)
{
	wire_put8(w, 'R');
	wire_put8(w, 'A');
	wire_put8(w, AUTHPROTO_VERSION);
	wire_put8(w, type);
	wire_put32(w, id);
}

static int
header_check(struct wire_r *r, enum authproto_type type, uint32_t *id, const char **error_r)
{
	unsigned m1 = wire_get8(r), m2 = wire_get8(r), v = wire_get8(r), t = wire_get8(r);
	*id = wire_get32(r);
	if (r->bad || m1 != 'R' || m2 != 'A') {
		*error_r = "not an auth protocol message";
		return -1;
	}
	if (v != AUTHPROTO_VERSION) {
		*error_r = "auth protocol version mismatch";
		return -1;
	}
	if (t != type) {
		*error_r = "unexpected auth message type";
		return -1;
	}
	return 0;
}

int
authproto_request_encode(const struct authproto_request *q, void *buf, size_t cap,
    const char **error_r)
{
	struct wire_w w = { buf, 0, cap, false };
	if (q->mech != SASL_MECH_PLAIN && q->mech != SASL_MECH_LOGIN) {
		*error_r = "no mechanism";
		return -1;
	}
	header(&w, AUTHPROTO_REQUEST, q->id);
	wire_put8(&w, q->mech == SASL_MECH_PLAIN ? 1 : 2);
	wire_put8(&w, q->secured ? 1 : 0);
	wire_putstr(&w, q->client, AUTHPROTO_IP_MAX);
	wire_putstr(&w, q->local, AUTHPROTO_IP_MAX);
	wire_putstr(&w, q->user, SASL_USER_MAX);
	wire_putstr(&w, q->password, SASL_PASS_MAX);
	if (w.over) {
		*error_r = "auth request field over its limit";
		return -1;
	}
	return (int)w.len;
}

int
authproto_request_decode(const void *buf, size_t len, struct authproto_request *q,
    const char **error_r)
{
	struct wire_r r = { buf, len, 0, false };
	memset(q, 0, sizeof(*q));
	if (len > AUTHPROTO_MSG_MAX) {
		*error_r = "auth message too long";
		return -1;
	}
	if (header_check(&r, AUTHPROTO_REQUEST, &q->id, error_r) == -1)
		return -1;
	unsigned mech = wire_get8(&r), flags = wire_get8(&r);
	wire_getstr(&r, q->client, AUTHPROTO_IP_MAX);
	wire_getstr(&r, q->local, AUTHPROTO_IP_MAX);
	wire_getstr(&r, q->user, SASL_USER_MAX);
	wire_getstr(&r, q->password, SASL_PASS_MAX);
	if (r.bad || r.off != len || (mech != 1 && mech != 2) || (flags & ~1u) != 0 ||
	    q->user[0] == '\0') {
		authproto_request_wipe(q);
		*error_r = "malformed auth request";
		return -1;
	}
	q->mech = mech == 1 ? SASL_MECH_PLAIN : SASL_MECH_LOGIN;
	q->secured = flags & 1;
	return 0;
}

int
authproto_answer_encode(const struct authproto_answer *a, void *buf, size_t cap,
    const char **error_r)
{
	struct wire_w w = { buf, 0, cap, false };
	if (a->result != AUTHPROTO_OK && a->result != AUTHPROTO_FAIL &&
	    a->result != AUTHPROTO_TEMPFAIL) {
		*error_r = "bad result";
		return -1;
	}
	header(&w, AUTHPROTO_ANSWER, a->id);
	wire_put8(&w, a->result);
	wire_put8(&w, 0);
	wire_putstr(&w, a->user, SASL_USER_MAX);
	wire_putstr(&w, a->reason, AUTHPROTO_REASON_MAX);
	wire_put16(&w, a->naddrs);
	for (const char *s = authproto_answer_next_addr(a, NULL); s != NULL;
	    s = authproto_answer_next_addr(a, s))
		wire_putstr(&w, s, AUTHPROTO_ADDR_MAX);
	if (w.over) {
		*error_r = "auth answer field over its limit";
		return -1;
	}
	return (int)w.len;
}

int
authproto_answer_decode(const void *buf, size_t len, struct authproto_answer *a,
    const char **error_r)
{
	struct wire_r r = { buf, len, 0, false };
	memset(a, 0, sizeof(*a));
	if (len > AUTHPROTO_MSG_MAX) {
		*error_r = "auth message too long";
		return -1;
	}
	if (header_check(&r, AUTHPROTO_ANSWER, &a->id, error_r) == -1)
		return -1;
	unsigned result = wire_get8(&r), reserved = wire_get8(&r);
	wire_getstr(&r, a->user, SASL_USER_MAX);
	wire_getstr(&r, a->reason, AUTHPROTO_REASON_MAX);
	size_t n = wire_get16(&r);
	if (n > AUTHPROTO_ADDRS_MAX)
		r.bad = true;
	for (size_t i = 0; i < n && !r.bad; i++) {
		char addr[AUTHPROTO_ADDR_MAX + 1];
		wire_getstr(&r, addr, AUTHPROTO_ADDR_MAX);
		if (!r.bad && (addr[0] == '\0' || authproto_answer_add_addr(a, addr) == -1))
			r.bad = true;
	}
	if (r.bad || r.off != len || result > AUTHPROTO_TEMPFAIL || reserved != 0) {
		*error_r = "malformed auth answer";
		return -1;
	}
	a->result = (enum authproto_result)result;
	return 0;
}

int
authproto_answer_add_addr(struct authproto_answer *a, const char *addr)
{
	size_t n = strlen(addr);
	if (n == 0 || n > AUTHPROTO_ADDR_MAX || a->naddrs == AUTHPROTO_ADDRS_MAX ||
	    sizeof(a->addrs) - a->addrs_len < n + 1)
		return -1;
	memcpy(a->addrs + a->addrs_len, addr, n + 1);
	a->addrs_len += n + 1;
	a->naddrs++;
	return 0;
}

const char *
authproto_answer_next_addr(const struct authproto_answer *a, const char *prev)
{
	const char *next = prev == NULL ? a->addrs : prev + strlen(prev) + 1;
	if ((size_t)(next - a->addrs) >= a->addrs_len)
		return NULL;
	return next;
}

void
authproto_request_wipe(struct authproto_request *r)
{
	OPENSSL_cleanse(r->password, sizeof(r->password));
}

const char *
authproto_result_name(enum authproto_result r)
{
	switch (r) {
	case AUTHPROTO_OK:
		return "ok";
	case AUTHPROTO_FAIL:
		return "fail";
	case AUTHPROTO_TEMPFAIL:
		return "tempfail";
	}
	return "tempfail";
}
