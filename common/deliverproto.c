/*
 * Encoding and strict decoding of the qmgr <-> delivery agent messages, the
 * packet transport with descriptor passing, and the sealed body descriptor
 * (deliverproto.h has the format).
 */
#include "common/deliverproto.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fdpass.h"
#include "common/wire.h"

static void
header(struct wire_w *w, enum deliverproto_type type, uint32_t id)
{
	wire_put8(w, 'R');
	wire_put8(w, 'D');
	wire_put8(w, DELIVERPROTO_VERSION);
	wire_put8(w, type);
	wire_put32(w, id);
}

static int
header_check(struct wire_r *r, enum deliverproto_type type, uint32_t *id,
    const char **error_r)
{
	unsigned m1 = wire_get8(r), m2 = wire_get8(r), v = wire_get8(r), t = wire_get8(r);
	*id = wire_get32(r);
	if (r->bad || m1 != 'R' || m2 != 'D') {
		*error_r = "not a delivery protocol message";
		return -1;
	}
	if (v != DELIVERPROTO_VERSION) {
		*error_r = "delivery protocol version mismatch";
		return -1;
	}
	if (t != type) {
		*error_r = "unexpected delivery message type";
		return -1;
	}
	return 0;
}

static int
finish(struct wire_w *w, const char **error_r)
{
	if (w->over) {
		*error_r = "delivery message field over its limit";
		return -1;
	}
	return (int)w->len;
}

static int
decoded(struct wire_r *r, const char **error_r)
{
	if (r->bad) {
		*error_r = "malformed delivery message";
		return -1;
	}
	if (r->off != r->len) {
		*error_r = "trailing octets after a delivery message";
		return -1;
	}
	return 0;
}

#define NOTIFY_BITS 0x0f

int
deliverproto_job_encode(const struct deliverproto_job *j, void *buf, size_t cap,
    const char **error_r)
{
	struct wire_w w = { buf, 0, cap, false };
	if (j->n_rcpts < 1 || j->n_rcpts > DELIVERPROTO_RCPTS_MAX ||
	    (unsigned)j->ret > DELIVERPROTO_RET_HDRS) {
		*error_r = "delivery job: recipient count or RET out of range";
		return -1;
	}
	header(&w, DELIVERPROTO_JOB, j->id);
	wire_putstr(&w, j->nexthop, DELIVERPROTO_NEXTHOP_MAX);
	wire_putstr(&w, j->qid, DELIVERPROTO_QID_MAX);
	wire_putstr(&w, j->sender, DELIVERPROTO_ADDR_MAX);
	wire_put64(&w, j->size);
	wire_put8(&w, j->eightbit ? 1 : 0);
	wire_put8(&w, j->ret);
	wire_putstr(&w, j->envid, DELIVERPROTO_ENVID_MAX);
	wire_put16(&w, j->n_rcpts);
	for (size_t i = 0; i < j->n_rcpts; i++) {
		const struct deliverproto_rcpt *rc = &j->rcpts[i];
		if (rc->notify & ~(unsigned)NOTIFY_BITS) {
			*error_r = "delivery job: NOTIFY out of range";
			return -1;
		}
		wire_put32(&w, rc->idx);
		wire_put8(&w, rc->notify);
		wire_putstr(&w, rc->addr, DELIVERPROTO_ADDR_MAX);
		wire_putstr(&w, rc->orcpt, DELIVERPROTO_ORCPT_MAX);
	}
	return finish(&w, error_r);
}

int
deliverproto_job_decode(const void *buf, size_t len, struct deliverproto_job *j,
    const char **error_r)
{
	struct wire_r r = { buf, len, 0, false };
	memset(j, 0, sizeof(*j));
	if (header_check(&r, DELIVERPROTO_JOB, &j->id, error_r) == -1)
		return -1;
	wire_getstr(&r, j->nexthop, DELIVERPROTO_NEXTHOP_MAX);
	wire_getstr(&r, j->qid, DELIVERPROTO_QID_MAX);
	wire_getstr(&r, j->sender, DELIVERPROTO_ADDR_MAX);
	j->size = wire_get64(&r);
	unsigned flags = wire_get8(&r);
	unsigned ret = wire_get8(&r);
	wire_getstr(&r, j->envid, DELIVERPROTO_ENVID_MAX);
	size_t n = wire_get16(&r);
	if (r.bad || flags > 1 || ret > DELIVERPROTO_RET_HDRS || n < 1 ||
	    n > DELIVERPROTO_RCPTS_MAX || j->nexthop[0] == '\0' || j->qid[0] == '\0') {
		*error_r = "malformed delivery job";
		return -1;
	}
	j->eightbit = flags & 1;
	j->ret = (enum deliverproto_ret)ret;
	j->n_rcpts = n;
	for (size_t i = 0; i < n; i++) {
		struct deliverproto_rcpt *rc = &j->rcpts[i];
		rc->idx = wire_get32(&r);
		rc->notify = wire_get8(&r);
		wire_getstr(&r, rc->addr, DELIVERPROTO_ADDR_MAX);
		wire_getstr(&r, rc->orcpt, DELIVERPROTO_ORCPT_MAX);
		if (r.bad || (rc->notify & ~(unsigned)NOTIFY_BITS) || rc->addr[0] == '\0') {
			*error_r = "malformed recipient in a delivery job";
			return -1;
		}
	}
	return decoded(&r, error_r);
}

int
deliverproto_result_encode(const struct deliverproto_result *res, void *buf, size_t cap,
    const char **error_r)
{
	struct wire_w w = { buf, 0, cap, false };
	if ((unsigned)res->status > DELIVERPROTO_BOUNCED || res->code > 599) {
		*error_r = "delivery result: status or code out of range";
		return -1;
	}
	header(&w, DELIVERPROTO_RESULT, res->id);
	wire_put32(&w, res->idx);
	wire_put8(&w, res->status);
	wire_put8(&w, (res->conn_failed ? 1 : 0) | (res->dsn_passed ? 2 : 0));
	wire_put16(&w, res->code);
	wire_putstr(&w, res->dsn, DELIVERPROTO_DSN_MAX);
	wire_putstr(&w, res->relay, DELIVERPROTO_RELAY_MAX);
	wire_putstr(&w, res->text, DELIVERPROTO_TEXT_MAX);
	wire_put32(&w, res->conn_ms);
	wire_put32(&w, res->xmit_ms);
	return finish(&w, error_r);
}

/* "X.Y.Z" as RFC 3463 has it: class 2, 4 or 5, 1-3 digits, 1-3 digits */
static bool
dsn_valid(const char *s)
{
	if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int part = 0; part < 2; part++) {
		size_t n = 0;
		while (s[n] >= '0' && s[n] <= '9')
			n++;
		if (n < 1 || n > 3)
			return false;
		s += n;
		if (part == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

static bool
printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int
deliverproto_result_decode(const void *buf, size_t len, struct deliverproto_result *res,
    const char **error_r)
{
	struct wire_r r = { buf, len, 0, false };
	memset(res, 0, sizeof(*res));
	if (header_check(&r, DELIVERPROTO_RESULT, &res->id, error_r) == -1)
		return -1;
	res->idx = wire_get32(&r);
	unsigned status = wire_get8(&r);
	unsigned flags = wire_get8(&r);
	res->code = (unsigned)wire_get16(&r);
	wire_getstr(&r, res->dsn, DELIVERPROTO_DSN_MAX);
	wire_getstr(&r, res->relay, DELIVERPROTO_RELAY_MAX);
	wire_getstr(&r, res->text, DELIVERPROTO_TEXT_MAX);
	res->conn_ms = wire_get32(&r);
	res->xmit_ms = wire_get32(&r);
	if (decoded(&r, error_r) == -1)
		return -1;
	if (status > DELIVERPROTO_BOUNCED || flags > 3 || res->code > 599 ||
	    !dsn_valid(res->dsn) || !printable(res->relay) || !printable(res->text) ||
	    res->relay[0] == '\0') {
		*error_r = "delivery result out of range";
		return -1;
	}
	/* the class of the status code agrees with the verdict */
	char want = status == DELIVERPROTO_SENT ? '2' :
	    status == DELIVERPROTO_DEFERRED ? '4' : '5';
	if (res->dsn[0] != want) {
		*error_r = "delivery result: status code class disagrees with the verdict";
		return -1;
	}
	res->status = (enum deliverproto_status)status;
	res->conn_failed = flags & 1;
	res->dsn_passed = (flags & 2) != 0;
	return 0;
}

int
deliverproto_done_encode(const struct deliverproto_done *d, void *buf, size_t cap,
    const char **error_r)
{
	struct wire_w w = { buf, 0, cap, false };
	header(&w, DELIVERPROTO_DONE, d->id);
	wire_put8(&w, (d->handshake_ok ? 1 : 0) | (d->loop ? 2 : 0));
	return finish(&w, error_r);
}

int
deliverproto_done_decode(const void *buf, size_t len, struct deliverproto_done *d,
    const char **error_r)
{
	struct wire_r r = { buf, len, 0, false };
	memset(d, 0, sizeof(*d));
	if (header_check(&r, DELIVERPROTO_DONE, &d->id, error_r) == -1)
		return -1;
	unsigned flags = wire_get8(&r);
	if (decoded(&r, error_r) == -1)
		return -1;
	if (flags > 3) {
		*error_r = "delivery done: unknown flags";
		return -1;
	}
	d->handshake_ok = flags & 1;
	d->loop = flags & 2;
	return 0;
}

enum deliverproto_type
deliverproto_type(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	if (len < 8 || p[0] != 'R' || p[1] != 'D' || p[2] != DELIVERPROTO_VERSION)
		return 0;
	if (p[3] < DELIVERPROTO_JOB || p[3] > DELIVERPROTO_DONE)
		return 0;
	return (enum deliverproto_type)p[3];
}

const char *
deliverproto_status_name(enum deliverproto_status st)
{
	switch (st) {
	case DELIVERPROTO_SENT:
		return "sent";
	case DELIVERPROTO_DEFERRED:
		return "deferred";
	case DELIVERPROTO_BOUNCED:
		return "bounced";
	}
	return "?";
}

/* ---- transport ---- */

int
deliverproto_send(int fd, const void *buf, size_t len, int passfd)
{
	return fdpass_send(fd, buf, len, passfd);
}

ssize_t
deliverproto_recv(int fd, void *buf, size_t cap, int *fd_r)
{
	return fdpass_recv(fd, buf, cap, fd_r, 0);
}

/* ---- the body descriptor ---- */

#define BODY_SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)

int
deliverproto_body_memfd(const void *data, size_t len, const char **error_r)
{
	int fd = memfd_create("relayvisor-body", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd == -1) {
		*error_r = "memfd_create failed";
		return -1;
	}
	/* pwrite: the file offset stays 0 for the reader, no lseek back */
	const char *p = data;
	size_t off = 0;
	while (off < len) {
		ssize_t n = pwrite(fd, p + off, len - off, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			*error_r = "writing the body descriptor failed";
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, BODY_SEALS) == -1) {
		*error_r = "sealing the body descriptor failed";
		close(fd);
		return -1;
	}
	return fd;
}

int
deliverproto_body_check(int fd, uint64_t size, const char **error_r)
{
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals == -1 || (seals & BODY_SEALS) != BODY_SEALS) {
		*error_r = "the body descriptor is not a sealed memfd";
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
		*error_r = "the body descriptor's size differs from the job's";
		return -1;
	}
	return 0;
}
