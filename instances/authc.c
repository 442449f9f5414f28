/*
 * The listener's client of the auth process and its failure table (authc.h).
 */
#include "instances/authc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "common/xmalloc.h"

struct authc_req {
	struct authc_req *next;
	struct authc *c;
	uint32_t id;
	authc_done_fn *fn;
	void *arg;
	ev_timer timer;
};

struct authc {
	struct ev_loop *loop;
	double timeout;
	int fd;
	ev_io w;
	uint32_t next_id;
	struct authc_req *reqs;
	ev_idle fail_w;			/* answers owed to requests made while down */
	struct authc_req *failing;
};

static void
req_unlink(struct authc_req **head, struct authc_req *r)
{
	for (struct authc_req **pp = head; *pp != NULL; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			return;
		}
}

/* answer r TEMPFAIL and free it (already unlinked) */
static void
req_tempfail(struct authc_req *r, const char *why)
{
	struct authproto_answer a;
	memset(&a, 0, sizeof(a));
	a.id = r->id;
	a.result = AUTHPROTO_TEMPFAIL;
	snprintf(a.reason, sizeof(a.reason), "%s", why);
	ev_timer_stop(r->c->loop, &r->timer);
	authc_done_fn *fn = r->fn;
	void *arg = r->arg;
	free(r);
	fn(arg, &a);
}

static void
timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct authc_req *r = w->data;
	log_warnx("auth process: no answer to request %u within %gs", r->id, r->c->timeout);
	req_unlink(&r->c->reqs, r);
	req_tempfail(r, "auth process timeout");
}

static void
disconnect(struct authc *c, const char *why)
{
	if (c->fd == -1)
		return;
	ev_io_stop(c->loop, &c->w);
	close(c->fd);
	c->fd = -1;
	while (c->reqs != NULL) {
		struct authc_req *r = c->reqs;
		c->reqs = r->next;
		req_tempfail(r, why);
	}
}

static void
read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct authc *c = w->data;
	unsigned char buf[AUTHPROTO_MSG_MAX + 1];
	struct authproto_answer *a = xcalloc(1, sizeof(*a));
	const char *err;
	ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
	if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
		free(a);
		return;
	}
	if (n <= 0) {
		log_warnx("auth process: connection lost%s%s: AUTH answers 454 until it "
		    "is back", n == 0 ? "" : ": ", n == 0 ? "" : strerror(errno));
		disconnect(c, "auth process gone");
		free(a);
		return;
	}
	if ((size_t)n > AUTHPROTO_MSG_MAX ||
	    authproto_answer_decode(buf, (size_t)n, a, &err) == -1) {
		log_warnx("auth process: bad answer (%s): ignored",
		    (size_t)n > AUTHPROTO_MSG_MAX ? "oversized" : err);
		free(a);
		return;
	}
	struct authc_req *r = c->reqs;
	while (r != NULL && r->id != a->id)
		r = r->next;
	if (r != NULL) {
		req_unlink(&c->reqs, r);
		ev_timer_stop(c->loop, &r->timer);
		authc_done_fn *fn = r->fn;
		void *arg = r->arg;
		free(r);
		fn(arg, a);
	}
	free(a);
}

/* requests made while down are answered from the loop, not inside the call */
static void
fail_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	struct authc *c = w->data;
	ev_idle_stop(loop, w);
	while (c->failing != NULL) {
		struct authc_req *r = c->failing;
		c->failing = r->next;
		req_tempfail(r, "no connection to the auth process");
	}
}

struct authc *
authc_new(struct ev_loop *loop, double timeout)
{
	struct authc *c = xcalloc(1, sizeof(*c));
	c->loop = loop;
	c->timeout = timeout;
	c->fd = -1;
	c->next_id = 1;
	ev_init(&c->w, read_cb);
	c->w.data = c;
	ev_idle_init(&c->fail_w, fail_cb);
	c->fail_w.data = c;
	return c;
}

static void
reqs_free(struct ev_loop *loop, struct authc_req *r)
{
	while (r != NULL) {
		struct authc_req *next = r->next;
		ev_timer_stop(loop, &r->timer);
		free(r);
		r = next;
	}
}

void
authc_free(struct authc *c)
{
	if (c == NULL)
		return;
	if (c->fd != -1) {
		ev_io_stop(c->loop, &c->w);
		close(c->fd);
	}
	ev_idle_stop(c->loop, &c->fail_w);
	reqs_free(c->loop, c->reqs);
	reqs_free(c->loop, c->failing);
	free(c);
}

void
authc_set_fd(struct authc *c, int fd)
{
	disconnect(c, "auth process restarted");
	c->fd = fd;
	ev_io_set(&c->w, fd, EV_READ);
	ev_io_start(c->loop, &c->w);
	log_info("connected to the auth process");
}

bool
authc_connected(const struct authc *c)
{
	return c->fd != -1;
}

uint32_t
authc_request(struct authc *c, struct authproto_request *r, authc_done_fn *fn, void *arg)
{
	unsigned char buf[AUTHPROTO_MSG_MAX];
	const char *err;
	struct authc_req *q = xcalloc(1, sizeof(*q));
	q->c = c;
	q->fn = fn;
	q->arg = arg;
	if (++c->next_id == 0)
		c->next_id = 1;
	q->id = r->id = c->next_id;
	ev_timer_init(&q->timer, timeout_cb, c->timeout, 0);
	q->timer.data = q;
	int n = c->fd == -1 ? -1 : authproto_request_encode(r, buf, sizeof(buf), &err);
	authproto_request_wipe(r);
	if (n == -1 || send(c->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
		if (c->fd != -1)
			log_warn("auth process: send request");
		OPENSSL_cleanse(buf, sizeof(buf));
		q->next = c->failing;
		c->failing = q;
		ev_idle_start(c->loop, &c->fail_w);
		return q->id;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	ev_timer_start(c->loop, &q->timer);
	q->next = c->reqs;
	c->reqs = q;
	return q->id;
}

void
authc_cancel(struct authc *c, uint32_t id)
{
	struct authc_req **heads[] = { &c->reqs, &c->failing };
	for (size_t h = 0; h < 2; h++)
		for (struct authc_req *r = *heads[h]; r != NULL; r = r->next)
			if (r->id == id) {
				req_unlink(heads[h], r);
				ev_timer_stop(c->loop, &r->timer);
				free(r);
				return;
			}
}

/* ---- failures per client address ---- */

struct authfail_slot {
	char ip[AUTHPROTO_IP_MAX + 1];
	unsigned count;
	time_t last;
};

struct authfail {
	struct authfail_slot v[AUTHFAIL_SLOTS];
};

struct authfail *
authfail_new(void)
{
	return xcalloc(1, sizeof(struct authfail));
}

void
authfail_free(struct authfail *t)
{
	free(t);
}

static size_t
slot_hash(const char *ip)
{
	size_t h = 5381;
	for (; *ip != '\0'; ip++)
		h = h * 33 + (unsigned char)*ip;
	return h % AUTHFAIL_SLOTS;
}

#define PROBE 16	/* slots looked at per address: bounded work */

/* ip's slot, or NULL; expired entries read as absent */
static struct authfail_slot *
slot_find(struct authfail *t, const char *ip, time_t now)
{
	size_t h = slot_hash(ip);
	for (size_t i = 0; i < PROBE; i++) {
		struct authfail_slot *s = &t->v[(h + i) % AUTHFAIL_SLOTS];
		if (s->count > 0 && strcmp(s->ip, ip) == 0) {
			if (now - s->last > AUTHFAIL_EXPIRE) {
				s->count = 0;
				return NULL;
			}
			return s;
		}
	}
	return NULL;
}

unsigned
authfail_record(struct authfail *t, const char *ip, time_t now)
{
	struct authfail_slot *s = slot_find(t, ip, now);
	if (s == NULL) {
		/* a free or expired slot near its place, else the oldest there */
		size_t h = slot_hash(ip);
		struct authfail_slot *old = NULL;
		for (size_t i = 0; i < PROBE; i++) {
			struct authfail_slot *c = &t->v[(h + i) % AUTHFAIL_SLOTS];
			if (c->count == 0 || now - c->last > AUTHFAIL_EXPIRE) {
				old = c;
				break;
			}
			if (old == NULL || c->last < old->last)
				old = c;
		}
		s = old;
		snprintf(s->ip, sizeof(s->ip), "%s", ip);
		s->count = 0;
	}
	if (s->count < 1000000)
		s->count++;
	s->last = now;
	return s->count;
}

unsigned
authfail_count(struct authfail *t, const char *ip, time_t now)
{
	struct authfail_slot *s = slot_find(t, ip, now);
	return s != NULL ? s->count : 0;
}

double
authfail_delay(struct authfail *t, const char *ip, time_t now)
{
	unsigned n = authfail_count(t, ip, now);
	if (n == 0)
		return 0;
	double d = 0.5;
	for (unsigned i = 1; i < n && d < AUTHFAIL_DELAY_MAX; i++)
		d *= 2;
	return d > AUTHFAIL_DELAY_MAX ? AUTHFAIL_DELAY_MAX : d;
}

void
authfail_clear(struct authfail *t, const char *ip)
{
	size_t h = slot_hash(ip);
	for (size_t i = 0; i < PROBE; i++) {
		struct authfail_slot *s = &t->v[(h + i) % AUTHFAIL_SLOTS];
		if (s->count > 0 && strcmp(s->ip, ip) == 0)
			s->count = 0;
	}
}
