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

struct wbuf {
	unsigned char *p;
	size_t len, cap;
	bool over;
};

struct rbuf {
	const unsigned char *p;
	size_t len, off;
	bool bad;
};

static void
put(struct wbuf *w, const void *v, size_t n)
{
	if (w->over || w->cap - w->len < n) {
		w->over = true;
		return;
	}
	memcpy(w->p + w->len, v, n);
	w->len += n;
}

static void
put8(struct wbuf *w, unsigned v)
{
	unsigned char c = (unsigned char)v;
	put(w, &c, 1);
}

static void
put16(struct wbuf *w, size_t v)
{
	unsigned char b[2] = { (unsigned char)(v >> 8), (unsigned char)v };
	put(w, b, 2);
}

static void
put32(struct wbuf *w, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
	    (unsigned char)(v >> 8), (unsigned char)v };
	put(w, b, 4);
}

static void
put64(struct wbuf *w, uint64_t v)
{
	put32(w, (uint32_t)(v >> 32));
	put32(w, (uint32_t)v);
}

static void
putstr(struct wbuf *w, const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n > max) {
		w->over = true;
		return;
	}
	put16(w, n);
	put(w, s, n);
}

static unsigned
get8(struct rbuf *r)
{
	if (r->bad || r->len - r->off < 1) {
		r->bad = true;
		return 0;
	}
	return r->p[r->off++];
}

static size_t
get16(struct rbuf *r)
{
	size_t hi = get8(r);
	return hi << 8 | get8(r);
}

static uint32_t
get32(struct rbuf *r)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | get8(r);
	return v;
}

static uint64_t
get64(struct rbuf *r)
{
	uint64_t hi = get32(r);
	return hi << 32 | get32(r);
}

/* a string into out[max + 1]: within max, no NUL */
static void
getstr(struct rbuf *r, char *out, size_t max)
{
	size_t n = get16(r);
	if (r->bad || n > max || r->len - r->off < n || memchr(r->p + r->off, '\0', n)) {
		r->bad = true;
		out[0] = '\0';
		return;
	}
	memcpy(out, r->p + r->off, n);
	out[n] = '\0';
	r->off += n;
}

static void
header(struct wbuf *w, enum deliverproto_type type, uint32_t id)
{
	put8(w, 'R');
	put8(w, 'D');
	put8(w, DELIVERPROTO_VERSION);
	put8(w, type);
	put32(w, id);
}

static int
header_check(struct rbuf *r, enum deliverproto_type type, uint32_t *id,
    const char **error_r)
{
	unsigned m1 = get8(r), m2 = get8(r), v = get8(r), t = get8(r);
	*id = get32(r);
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
finish(struct wbuf *w, const char **error_r)
{
	if (w->over) {
		*error_r = "delivery message field over its limit";
		return -1;
	}
	return (int)w->len;
}

static int
decoded(struct rbuf *r, const char **error_r)
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
	struct wbuf w = { buf, 0, cap, false };
	if (j->n_rcpts < 1 || j->n_rcpts > DELIVERPROTO_RCPTS_MAX ||
	    (unsigned)j->ret > DELIVERPROTO_RET_HDRS) {
		*error_r = "delivery job: recipient count or RET out of range";
		return -1;
	}
	header(&w, DELIVERPROTO_JOB, j->id);
	putstr(&w, j->nexthop, DELIVERPROTO_NEXTHOP_MAX);
	putstr(&w, j->qid, DELIVERPROTO_QID_MAX);
	putstr(&w, j->sender, DELIVERPROTO_ADDR_MAX);
	put64(&w, j->size);
	put8(&w, j->eightbit ? 1 : 0);
	put8(&w, j->ret);
	putstr(&w, j->envid, DELIVERPROTO_ENVID_MAX);
	put16(&w, j->n_rcpts);
	for (size_t i = 0; i < j->n_rcpts; i++) {
		const struct deliverproto_rcpt *rc = &j->rcpts[i];
		if (rc->notify & ~(unsigned)NOTIFY_BITS) {
			*error_r = "delivery job: NOTIFY out of range";
			return -1;
		}
		put32(&w, rc->idx);
		put8(&w, rc->notify);
		putstr(&w, rc->addr, DELIVERPROTO_ADDR_MAX);
		putstr(&w, rc->orcpt, DELIVERPROTO_ORCPT_MAX);
	}
	return finish(&w, error_r);
}

int
deliverproto_job_decode(const void *buf, size_t len, struct deliverproto_job *j,
    const char **error_r)
{
	struct rbuf r = { buf, len, 0, false };
	memset(j, 0, sizeof(*j));
	if (header_check(&r, DELIVERPROTO_JOB, &j->id, error_r) == -1)
		return -1;
	getstr(&r, j->nexthop, DELIVERPROTO_NEXTHOP_MAX);
	getstr(&r, j->qid, DELIVERPROTO_QID_MAX);
	getstr(&r, j->sender, DELIVERPROTO_ADDR_MAX);
	j->size = get64(&r);
	unsigned flags = get8(&r);
	unsigned ret = get8(&r);
	getstr(&r, j->envid, DELIVERPROTO_ENVID_MAX);
	size_t n = get16(&r);
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
		rc->idx = get32(&r);
		rc->notify = get8(&r);
		getstr(&r, rc->addr, DELIVERPROTO_ADDR_MAX);
		getstr(&r, rc->orcpt, DELIVERPROTO_ORCPT_MAX);
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
	struct wbuf w = { buf, 0, cap, false };
	if ((unsigned)res->status > DELIVERPROTO_BOUNCED || res->code > 599) {
		*error_r = "delivery result: status or code out of range";
		return -1;
	}
	header(&w, DELIVERPROTO_RESULT, res->id);
	put32(&w, res->idx);
	put8(&w, res->status);
	put8(&w, res->conn_failed ? 1 : 0);
	put16(&w, res->code);
	putstr(&w, res->dsn, DELIVERPROTO_DSN_MAX);
	putstr(&w, res->relay, DELIVERPROTO_RELAY_MAX);
	putstr(&w, res->text, DELIVERPROTO_TEXT_MAX);
	put32(&w, res->conn_ms);
	put32(&w, res->xmit_ms);
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
	struct rbuf r = { buf, len, 0, false };
	memset(res, 0, sizeof(*res));
	if (header_check(&r, DELIVERPROTO_RESULT, &res->id, error_r) == -1)
		return -1;
	res->idx = get32(&r);
	unsigned status = get8(&r);
	unsigned flags = get8(&r);
	res->code = (unsigned)get16(&r);
	getstr(&r, res->dsn, DELIVERPROTO_DSN_MAX);
	getstr(&r, res->relay, DELIVERPROTO_RELAY_MAX);
	getstr(&r, res->text, DELIVERPROTO_TEXT_MAX);
	res->conn_ms = get32(&r);
	res->xmit_ms = get32(&r);
	if (decoded(&r, error_r) == -1)
		return -1;
	if (status > DELIVERPROTO_BOUNCED || flags > 1 || res->code > 599 ||
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
	return 0;
}

int
deliverproto_done_encode(const struct deliverproto_done *d, void *buf, size_t cap,
    const char **error_r)
{
	struct wbuf w = { buf, 0, cap, false };
	header(&w, DELIVERPROTO_DONE, d->id);
	put8(&w, (d->handshake_ok ? 1 : 0) | (d->loop ? 2 : 0));
	return finish(&w, error_r);
}

int
deliverproto_done_decode(const void *buf, size_t len, struct deliverproto_done *d,
    const char **error_r)
{
	struct rbuf r = { buf, len, 0, false };
	memset(d, 0, sizeof(*d));
	if (header_check(&r, DELIVERPROTO_DONE, &d->id, error_r) == -1)
		return -1;
	unsigned flags = get8(&r);
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
	struct iovec iov = { (void *)buf, len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (passfd != -1) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &passfd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if ((size_t)n != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

ssize_t
deliverproto_recv(int fd, void *buf, size_t cap, int *fd_r)
{
	struct iovec iov = { buf, cap };
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
	    .msg_controllen = sizeof(u.buf) };
	*fd_r = -1;
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	int got = 0, fds[8];
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && got < 8; i++)
			memcpy(&fds[got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	int err = 0;
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		err = EMSGSIZE;
	else if (got > 1)
		err = EPROTO;
	if (err != 0) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		errno = err;
		return -1;
	}
	if (got == 1)
		*fd_r = fds[0];
	return n;
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
	const char *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t n = write(fd, p, left);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			*error_r = "writing the body descriptor failed";
			close(fd);
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, BODY_SEALS) == -1 || lseek(fd, 0, SEEK_SET) != 0) {
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
