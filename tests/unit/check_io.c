/*
 * common/io.c on socketpairs and loopback TCP: reading and the input limit,
 * writing, low water and the output limit, half-close, errors, the inactivity
 * timeout, connect, discarding input (STARTTLS), the fd -1 memory pipe, a
 * callback that frees its connection, TLS started on a connection (clear
 * octets before it, a handshake, bulk data both ways through small buffers),
 * and a file segment (io_write_file) in its place among buffered output.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/io.h"
#include "common/tls.h"
#include "tests/unit/testmain.h"
#include "tests/unit/tlscerts.h"

struct rec {
	enum io_event ev[64];
	int n;
	size_t seen;		/* octets taken on IO_DATAIN */
	bool take;		/* take the input on IO_DATAIN */
	bool free_on_event;
	struct io *io;
};

static void
rec_cb(struct io *io, enum io_event ev, void *arg)
{
	struct rec *r = arg;

	if (r->n < 64)
		r->ev[r->n++] = ev;
	if (ev == IO_DATAIN && r->take) {
		r->seen += io_datalen(io);
		io_drop(io, io_datalen(io));
	}
	if (r->free_on_event) {
		io_free(io);
		r->io = NULL;
	}
}

static bool
rec_has(const struct rec *r, enum io_event ev)
{
	for (int i = 0; i < r->n; i++)
		if (r->ev[i] == ev)
			return true;
	return false;
}

static void
guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	*(bool *)w->data = true;
}

/* run the loop until ev was recorded (fails after 10 s: a hang, not a timing) */
static void
run_until(struct ev_loop *loop, struct rec *r, enum io_event ev)
{
	bool expired = false;
	ev_timer guard;

	ev_timer_init(&guard, guard_cb, 10.0, 0.0);
	guard.data = &expired;
	ev_timer_start(loop, &guard);
	while (!rec_has(r, ev) && !expired)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &guard);
	ck_assert_msg(rec_has(r, ev), "no %s", io_event_name(ev));
}

static void
pair(int sv[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

START_TEST(test_read_and_write)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];
	char buf[64];

	pair(sv);
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	ck_assert_ptr_nonnull(io);
	ck_assert_int_eq(write(sv[1], "HELO x\r\n", 8), 8);
	run_until(loop, &r, IO_DATAIN);
	size_t len;
	const char *p = io_data(io, &len);
	ck_assert_uint_eq(len, 8);
	ck_assert(memcmp(p, "HELO x\r\n", 8) == 0);
	io_drop(io, 6);
	ck_assert_uint_eq(io_datalen(io), 2);
	io_drop(io, 2);
	ck_assert_uint_eq(io_datalen(io), 0);

	ck_assert_int_eq(io_printf(io, "250 %s\r\n", "ok"), 0);
	ck_assert_uint_eq(io_out_pending(io), 8);
	ck_assert_int_eq(io_flush(io), 0);
	ck_assert_uint_eq(io_out_pending(io), 0);
	ck_assert_int_eq(read(sv[1], buf, sizeof(buf)), 8);
	ck_assert(memcmp(buf, "250 ok\r\n", 8) == 0);
	io_free(io);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

/* the input buffer never holds more than in_max; reading goes on once the
   protocol takes octets */
START_TEST(test_input_limit)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];
	char big[5000];

	pair(sv);
	memset(big, 'a', sizeof(big));
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	io_set_limits(io, 1024, 0);
	ck_assert_int_eq(write(sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
	run_until(loop, &r, IO_DATAIN);
	/* more loop passes while the buffer is full read nothing more */
	for (int i = 0; i < 5; i++)
		ev_run(loop, EVRUN_NOWAIT);
	ck_assert_uint_eq(io_datalen(io), 1024);
	size_t total = 0;
	while (total < sizeof(big)) {
		size_t n = io_datalen(io);
		ck_assert_uint_le(n, 1024);
		total += n;
		io_drop(io, n);
		if (total < sizeof(big)) {
			r.n = 0;
			run_until(loop, &r, IO_DATAIN);
		}
	}
	ck_assert_uint_eq(total, sizeof(big));
	io_free(io);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

/* output the socket cannot take now waits in the buffer; IO_LOWAT says when
   it is gone; io_write refuses to grow past out_max */
START_TEST(test_output_lowat_and_limit)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];
	static char chunk[65536];

	pair(sv);
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	io_set_limits(io, 0, 4 * sizeof(chunk));
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(io_write(io, chunk, sizeof(chunk)), 0);
	errno = 0;
	ck_assert_int_eq(io_write(io, "x", 1), -1);
	ck_assert_int_eq(errno, ENOBUFS);
	ck_assert_int_eq(io_flush(io), 0);
	ck_assert_uint_gt(io_out_pending(io), 0);	/* the peer reads nothing yet */

	size_t got = 0;
	char buf[8192];
	while (!rec_has(&r, IO_LOWAT)) {
		ssize_t n = read(sv[1], buf, sizeof(buf));
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
		ev_run(loop, EVRUN_NOWAIT);
	}
	ck_assert_uint_eq(io_out_pending(io), 0);
	ck_assert_int_eq(r.ev[r.n - 1], IO_LOWAT);
	while (got < 4 * sizeof(chunk)) {
		ssize_t n = read(sv[1], buf, sizeof(buf));
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	ck_assert_uint_eq(got, 4 * sizeof(chunk));
	io_free(io);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

/* the peer's shutdown(SHUT_WR): buffered input stays readable, replies still
   reach the peer; our io_shutdown ends our side once output is flushed */
START_TEST(test_half_close)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];
	char buf[64];

	pair(sv);
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	ck_assert_int_eq(write(sv[1], "QUIT\r\n", 6), 6);
	ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
	run_until(loop, &r, IO_EOF);
	ck_assert(io_eof(io));
	ck_assert_uint_eq(io_datalen(io), 6);
	ck_assert_int_eq(io_write(io, "221 bye\r\n", 9), 0);
	io_shutdown(io);
	ck_assert_int_eq(io_flush(io), 0);
	ck_assert_int_eq(read(sv[1], buf, sizeof(buf)), 9);
	ck_assert_int_eq(read(sv[1], buf, sizeof(buf)), 0);	/* our FIN */
	io_free(io);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_write_error)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];

	pair(sv);
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	close(sv[1]);
	ck_assert_int_eq(io_write(io, "250 ok\r\n", 8), 0);
	errno = 0;
	ck_assert_int_eq(io_flush(io), -1);
	ck_assert_int_eq(errno, EPIPE);
	ck_assert_int_eq(io_errno(io), EPIPE);
	ck_assert_int_eq(r.n, 0);		/* no callback from our own call */
	ck_assert_int_eq(io_write(io, "x", 1), -1);
	io_free(io);
	ev_loop_destroy(loop);
}
END_TEST

/* a failure found by the watcher is an IO_ERROR event */
START_TEST(test_error_event)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];
	static char chunk[65536];

	pair(sv);
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(io_write(io, chunk, sizeof(chunk)), 0);
	ck_assert_int_eq(io_flush(io), 0);
	ck_assert_uint_gt(io_out_pending(io), 0);
	close(sv[1]);
	run_until(loop, &r, IO_ERROR);
	ck_assert(io_errno(io) == EPIPE || io_errno(io) == ECONNRESET);
	io_free(io);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_timeout)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];

	pair(sv);
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	io_set_timeout(io, 0.05);
	run_until(loop, &r, IO_TIMEOUT);
	ck_assert_int_eq(r.n, 1);
	io_free(io);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_connect)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(l, 4), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);

	struct io *io = io_new(loop, socket(AF_INET, SOCK_STREAM, 0), rec_cb, &r);
	ck_assert_int_eq(io_connect(io, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(r.n, 0);
	run_until(loop, &r, IO_CONNECTED);
	int c = accept(l, NULL, NULL);
	ck_assert_int_ge(c, 0);
	ck_assert_int_eq(io_write(io, "EHLO a\r\n", 8), 0);
	ck_assert_int_eq(io_flush(io), 0);
	char buf[16];
	ck_assert_int_eq(read(c, buf, sizeof(buf)), 8);
	io_free(io);
	close(c);

	/* nothing listens there any more: ECONNREFUSED as an event */
	close(l);
	struct rec r2 = { 0 };
	io = io_new(loop, socket(AF_INET, SOCK_STREAM, 0), rec_cb, &r2);
	if (io_connect(io, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
		run_until(loop, &r2, IO_ERROR);
		ck_assert_int_eq(io_errno(io), ECONNREFUSED);
	} else {
		ck_assert_int_eq(errno, ECONNREFUSED);
	}
	io_free(io);
	ev_loop_destroy(loop);
}
END_TEST

static int
nodelay(int fd)
{
	int v = -1;
	socklen_t len = sizeof(v);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
	return v;
}

/* whole replies leave in one write: Nagle is off on TCP connections, both the
   ones we connect and the ones we accept (a reply after a small TLS record
   otherwise waits for the peer's delayed ACK) */
START_TEST(test_tcp_nodelay)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 }, r2 = { 0 };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(l, 4), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(nodelay(fd), 0);
	struct io *io = io_new(loop, fd, rec_cb, &r);
	ck_assert_int_ne(nodelay(fd), 0);
	ck_assert_int_eq(io_connect(io, (struct sockaddr *)&sin, sizeof(sin)), 0);
	run_until(loop, &r, IO_CONNECTED);
	int c = accept(l, NULL, NULL);
	ck_assert_int_ge(c, 0);
	ck_assert_int_eq(nodelay(c), 0);
	struct io *acc = io_new(loop, c, rec_cb, &r2);
	ck_assert_int_ne(nodelay(c), 0);
	io_free(acc);
	io_free(io);
	close(l);
	/* not TCP: the option does not apply and io_new still works */
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	io = io_new(loop, sv[0], rec_cb, &r);
	ck_assert_ptr_nonnull(io);
	io_free(io);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

/* STARTTLS: what was pipelined after the command is dropped, what comes
   later is read */
START_TEST(test_discard_input)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];

	pair(sv);
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	const char *inj = "STARTTLS\r\nMAIL FROM:<evil@x>\r\n";
	ck_assert_int_eq(write(sv[1], inj, strlen(inj)), (ssize_t)strlen(inj));
	run_until(loop, &r, IO_DATAIN);
	io_drop(io, 10);
	ck_assert_uint_eq(io_discard_input(io), strlen(inj) - 10);
	ck_assert_uint_eq(io_datalen(io), 0);
	r.n = 0;
	ck_assert_int_eq(write(sv[1], "\x16\x03\x01", 3), 3);
	run_until(loop, &r, IO_DATAIN);
	size_t len;
	const char *p = io_data(io, &len);
	ck_assert_uint_eq(len, 3);
	ck_assert(memcmp(p, "\x16\x03\x01", 3) == 0);
	io_free(io);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_memory_pipe)
{
	struct rec r = { 0 };
	struct io *io = io_new(NULL, -1, rec_cb, &r);
	size_t len;

	io_set_limits(io, 8, 0);
	ck_assert_uint_eq(io_feed(io, "0123456789", 10), 8);
	ck_assert_uint_eq(io_datalen(io), 8);
	io_drop(io, 3);
	ck_assert_uint_eq(io_feed(io, "89", 2), 2);
	const char *p = io_data(io, &len);
	ck_assert_uint_eq(len, 7);
	ck_assert(memcmp(p, "3456789", 7) == 0);
	ck_assert_int_eq(io_write(io, "220 hi\r\n", 8), 0);
	ck_assert_int_eq(io_flush(io), 0);
	p = io_out_data(io, &len);
	ck_assert_uint_eq(len, 8);	/* nothing is written anywhere */
	ck_assert(memcmp(p, "220 hi\r\n", 8) == 0);
	io_out_drop(io, len);
	ck_assert_uint_eq(io_out_pending(io), 0);
	ck_assert(!io_eof(io));
	io_feed_eof(io);
	ck_assert(io_eof(io));
	ck_assert_uint_eq(io_feed(io, "x", 1), 0);
	ck_assert_int_eq(r.n, 0);
	io_free(io);
}
END_TEST

/* a protocol that frees its connection inside the callback */
START_TEST(test_free_in_callback)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { .free_on_event = true };
	int sv[2];
	char buf[8];

	pair(sv);
	r.io = io_new(loop, sv[0], rec_cb, &r);
	ck_assert_int_eq(write(sv[1], "QUIT\r\n", 6), 6);
	run_until(loop, &r, IO_DATAIN);
	ck_assert_ptr_null(r.io);
	ev_run(loop, EVRUN_NOWAIT);
	ck_assert_int_eq(r.n, 1);
	ck_assert_int_eq(read(sv[1], buf, sizeof(buf)), 0);	/* closed */
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

/* input the protocol does not take keeps reading paused */
START_TEST(test_read_pause)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { .take = true };
	int sv[2];

	pair(sv);
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	io_set_read(io, false);
	ck_assert_int_eq(write(sv[1], "NOOP\r\n", 6), 6);
	for (int i = 0; i < 5; i++)
		ev_run(loop, EVRUN_NOWAIT);
	ck_assert_int_eq(r.n, 0);
	io_set_read(io, true);
	run_until(loop, &r, IO_DATAIN);
	ck_assert_uint_eq(r.seen, 6);
	io_free(io);
	close(sv[1]);
	ev_loop_destroy(loop);
}
END_TEST

/* a file segment goes out in its place: after what was buffered before it,
   before what was written after, also when the buffer is compacted or reset
   while the segment waits (a peer that reads slowly); the caller's descriptor
   may be closed at once; a second segment, a memory pipe and TLS are refused */
START_TEST(test_write_file)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct rec r = { 0 };
	int sv[2];
	static unsigned char body[300000], tail[1000], got[sizeof(body) + 2000];

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (unsigned char)(i * 7 + i / 251);
	memset(tail, 'T', sizeof(tail));
	int mfd = memfd_create("t", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(write(mfd, body, sizeof(body)), (ssize_t)sizeof(body));

	pair(sv);
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	struct io *io = io_new(loop, sv[0], rec_cb, &r);
	ck_assert_int_eq(io_write(io, "HEAD", 4), 0);
	ck_assert_int_eq(io_write_file(io, mfd, 10, sizeof(body) - 10), 0);
	close(mfd);
	errno = 0;
	ck_assert_int_eq(io_write_file(io, sv[0], 0, 1), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	ck_assert_int_eq(io_write(io, "MID", 3), 0);
	ck_assert_uint_eq(io_out_pending(io), 4 + sizeof(body) - 10 + 3);
	ck_assert_int_eq(io_flush(io), 0);
	ck_assert_uint_gt(io_out_pending(io), 3);	/* the peer reads nothing yet */
	/* HEAD is gone: this write compacts the buffer under the waiting segment */
	ck_assert_int_eq(io_write(io, tail, sizeof(tail)), 0);

	size_t want = 4 + sizeof(body) - 10 + 3 + sizeof(tail), n = 0;
	while (n < want) {
		ssize_t k = read(sv[1], got + n, sizeof(got) - n);
		ck_assert_int_gt(k, 0);
		n += (size_t)k;
		ev_run(loop, EVRUN_NOWAIT);
	}
	ck_assert_uint_eq(n, want);
	ck_assert_uint_eq(io_out_pending(io), 0);
	ck_assert(memcmp(got, "HEAD", 4) == 0);
	ck_assert(memcmp(got + 4, body + 10, sizeof(body) - 10) == 0);
	ck_assert(memcmp(got + 4 + sizeof(body) - 10, "MID", 3) == 0);
	ck_assert(memcmp(got + 4 + sizeof(body) - 10 + 3, tail, sizeof(tail)) == 0);

	/* once sent, the next segment is taken; a reset buffer keeps it first */
	mfd = memfd_create("t", MFD_CLOEXEC);
	ck_assert_int_eq(write(mfd, "BODY", 4), 4);
	ck_assert_int_eq(io_write_file(io, mfd, 0, 4), 0);
	ck_assert_int_eq(io_write(io, ".\r\n", 3), 0);
	close(mfd);
	ck_assert_int_eq(io_flush(io), 0);
	ck_assert_int_eq(read(sv[1], got, sizeof(got)), 7);
	ck_assert(memcmp(got, "BODY.\r\n", 7) == 0);
	io_free(io);
	close(sv[1]);

	struct io *mem = io_new(NULL, -1, rec_cb, &r);
	errno = 0;
	ck_assert_int_eq(io_write_file(mem, 0, 0, 1), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	io_free(mem);
	ev_loop_destroy(loop);
}
END_TEST


/* a peer of the TLS test: checks the octets it takes against the pattern */
struct tlspeer {
	struct rec r;
	size_t got;
	bool bad;
};

static void
tlspeer_cb(struct io *io, enum io_event ev, void *arg)
{
	struct tlspeer *p = arg;

	if (p->r.n < 64 && (p->r.n == 0 || p->r.ev[p->r.n - 1] != ev))
		p->r.ev[p->r.n++] = ev;
	if (ev != IO_DATAIN)
		return;
	size_t len;
	const char *d = io_data(io, &len);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)d[i] != (unsigned char)((p->got + i) % 251))
			p->bad = true;
	p->got += len;
	io_drop(io, len);
}

static void
run_until_got(struct ev_loop *loop, struct tlspeer *p, size_t want)
{
	bool expired = false;
	ev_timer guard;

	ev_timer_init(&guard, guard_cb, 10.0, 0.0);
	guard.data = &expired;
	ev_timer_start(loop, &guard);
	while (p->got < want && !expired && !rec_has(&p->r, IO_ERROR))
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &guard);
	ck_assert_uint_eq(p->got, want);
	ck_assert(!p->bad);
}

static void
write_pattern(struct io *io, size_t n)
{
	char buf[4096];
	for (size_t off = 0; off < n; off += sizeof(buf)) {
		size_t k = n - off < sizeof(buf) ? n - off : sizeof(buf);
		for (size_t i = 0; i < k; i++)
			buf[i] = (char)((off + i) % 251);
		ck_assert_int_eq(io_write(io, buf, k), 0);
	}
	ck_assert_int_eq(io_flush(io), 0);
}

/* STARTTLS as the session does it: a reply in clear, then TLS; 200 KB each way
   through a 1 KB input buffer (plaintext waiting inside the engine while the
   buffer is full must still arrive) */
START_TEST(test_tls)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct testcert ca = testcert_make("Test CA", NULL);
	struct testcert leaf = testcert_make("mx.test.example", &ca);
	size_t pem_len;
	char *pem = testcert_pem(&leaf, &ca, true, &pem_len);
	struct tls_ctx *sctx, *cctx;
	const char *err;
	struct tlspeer srv = { 0 }, cli = { 0 };
	int sv[2];

	ck_assert_int_eq(tls_server_ctx_new(pem, pem_len, &sctx, &err), 0);
	ck_assert_int_eq(tls_client_ctx_new(TLS_CLIENT_MAY, NULL, &cctx, &err), 0);
	pair(sv);
	struct io *s = io_new(loop, sv[0], tlspeer_cb, &srv);
	struct io *c = io_new(loop, sv[1], rec_cb, &cli.r);
	cli.r.take = false;
	io_set_limits(s, 1024, 0);
	io_set_limits(c, 1024, 0);

	/* input pending: TLS cannot start (it came in clear) */
	ck_assert_int_eq(io_write(c, "STARTTLS\r\nNOOP\r\n", 16), 0);
	ck_assert_int_eq(io_flush(c), 0);
	run_until(loop, &srv.r, IO_DATAIN);
	ck_assert_uint_eq(srv.got, 16);		/* taken (and pattern-checked) */
	srv.bad = false;
	srv.got = 0;

	/* the reply goes in clear, everything after through TLS */
	ck_assert_int_eq(io_write(s, "220 go\r\n", 8), 0);
	ck_assert_int_eq(io_start_tls(s, sctx), 0);
	ck_assert(!io_tls_active(s));
	run_until(loop, &cli.r, IO_DATAIN);
	size_t len;
	const char *d = io_data(c, &len);
	ck_assert_uint_eq(len, 8);
	ck_assert(memcmp(d, "220 go\r\n", 8) == 0);
	io_discard_input(c);
	cli.r.n = 0;
	/* the client goes on with the pattern-checking callback */
	int cfd = dup(sv[1]);
	ck_assert_int_ge(cfd, 0);
	io_free(c);
	c = io_new(loop, cfd, tlspeer_cb, &cli);
	io_set_limits(c, 1024, 0);
	ck_assert_int_eq(io_start_tls_client(c, cctx, "mx.test.example"), 0);
	run_until(loop, &srv.r, IO_TLSREADY);
	run_until(loop, &cli.r, IO_TLSREADY);
	ck_assert(io_tls_active(s) && io_tls_active(c));
	errno = 0;	/* a file segment would bypass the engine: refused */
	ck_assert_int_eq(io_write_file(c, cfd, 0, 1), -1);
	ck_assert_int_eq(errno, ENOTSUP);
	char desc[160];
	io_tls_describe(s, desc, sizeof(desc));
	ck_assert_msg(strncmp(desc, "TLSv1.", 6) == 0 && strstr(desc, " with cipher ")
	    != NULL, "%s", desc);

	write_pattern(c, 200 * 1024);
	run_until_got(loop, &srv, 200 * 1024);
	write_pattern(s, 200 * 1024);
	run_until_got(loop, &cli, 200 * 1024);
	ck_assert(!rec_has(&srv.r, IO_ERROR) && !rec_has(&cli.r, IO_ERROR));

	/* a peer that closes: the other sees the end */
	io_free(c);
	run_until(loop, &srv.r, IO_EOF);
	io_free(s);
	tls_ctx_unref(sctx);
	tls_ctx_unref(cctx);
	tls_pem_free(pem, pem_len);
	testcert_free(&leaf);
	testcert_free(&ca);
	ev_loop_destroy(loop);
}
END_TEST

/* the client sends 100 KB and closes while the server's protocol is not
   taking input: once it takes again, every octet the engine still holds comes
   before IO_EOF (nothing is lost with the socket's end of file) */
START_TEST(test_tls_eof_after_buffered)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct testcert leaf = testcert_make("mx.test.example", NULL);
	size_t pem_len;
	char *pem = testcert_pem(&leaf, NULL, true, &pem_len);
	struct tls_ctx *sctx, *cctx;
	const char *err;
	struct tlspeer srv = { 0 }, cli = { 0 };
	int sv[2];

	ck_assert_int_eq(tls_server_ctx_new(pem, pem_len, &sctx, &err), 0);
	ck_assert_int_eq(tls_client_ctx_new(TLS_CLIENT_MAY, NULL, &cctx, &err), 0);
	pair(sv);
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	struct io *s = io_new(loop, sv[0], tlspeer_cb, &srv);
	struct io *c = io_new(loop, sv[1], tlspeer_cb, &cli);
	io_set_limits(s, 1024, 0);
	ck_assert_int_eq(io_start_tls(s, sctx), 0);
	ck_assert_int_eq(io_start_tls_client(c, cctx, NULL), 0);
	run_until(loop, &srv.r, IO_TLSREADY);
	run_until(loop, &cli.r, IO_TLSREADY);

	/* the server's protocol pauses; the client sends everything and closes */
	io_set_read(s, false);
	write_pattern(c, 100 * 1024);
	for (int i = 0; i < 200 && io_out_pending(c) > 0; i++)
		ev_run(loop, EVRUN_NOWAIT);
	ck_assert_uint_eq(io_out_pending(c), 0);
	for (int i = 0; i < 50; i++)
		ev_run(loop, EVRUN_NOWAIT);	/* the engine's last records go out */
	io_free(c);
	io_set_read(s, true);
	run_until(loop, &srv.r, IO_EOF);
	ck_assert_uint_eq(srv.got, 100 * 1024);
	ck_assert(!srv.bad);

	io_free(s);
	tls_ctx_unref(sctx);
	tls_ctx_unref(cctx);
	tls_pem_free(pem, pem_len);
	testcert_free(&leaf);
	ev_loop_destroy(loop);
}
END_TEST

/* garbage instead of a ClientHello: IO_ERROR with EPROTO and a reason */
START_TEST(test_tls_garbage)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct testcert leaf = testcert_make("mx.test.example", NULL);
	size_t pem_len;
	char *pem = testcert_pem(&leaf, NULL, true, &pem_len);
	struct tls_ctx *sctx;
	const char *err;
	struct rec r = { .take = true };
	int sv[2];

	ck_assert_int_eq(tls_server_ctx_new(pem, pem_len, &sctx, &err), 0);
	pair(sv);
	struct io *s = io_new(loop, sv[0], rec_cb, &r);
	ck_assert_int_eq(io_start_tls(s, sctx), 0);
	ck_assert_int_eq(write(sv[1], "EHLO x\r\nMAIL FROM:<a@b>\r\n", 24), 24);
	run_until(loop, &r, IO_ERROR);
	ck_assert_int_eq(io_errno(s), EPROTO);
	ck_assert_str_ne(io_tls_error(s), "no TLS error");
	ck_assert(!rec_has(&r, IO_DATAIN));
	io_free(s);
	close(sv[1]);
	tls_ctx_unref(sctx);
	tls_pem_free(pem, pem_len);
	testcert_free(&leaf);
	ev_loop_destroy(loop);
}
END_TEST

static Suite *
io_suite(void)
{
	Suite *s = suite_create("io");
	TCase *tc = tcase_create("io");

	signal(SIGPIPE, SIG_IGN);
	tcase_add_test(tc, test_read_and_write);
	tcase_add_test(tc, test_input_limit);
	tcase_add_test(tc, test_output_lowat_and_limit);
	tcase_add_test(tc, test_half_close);
	tcase_add_test(tc, test_write_error);
	tcase_add_test(tc, test_error_event);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_connect);
	tcase_add_test(tc, test_tcp_nodelay);
	tcase_add_test(tc, test_discard_input);
	tcase_add_test(tc, test_memory_pipe);
	tcase_add_test(tc, test_free_in_callback);
	tcase_add_test(tc, test_read_pause);
	tcase_add_test(tc, test_write_file);
	tcase_add_test(tc, test_tls);
	tcase_add_test(tc, test_tls_garbage);
	tcase_add_test(tc, test_tls_eof_after_buffered);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(io_suite)
