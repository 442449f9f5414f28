/*
 * The buffered non-blocking connection of common/io.h: two buffers, three
 * watchers (readable, writable, inactivity) and one callback. io_fill() and
 * io_drain() are the engine: the only two functions that move octets between
 * the socket and the buffers, and the place TLS goes (see io.h).
 */
#include "common/io.h"
#include "common/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

/* an output buffer larger than this is released once it drains */
#define IO_OUT_KEEP 4096
/* ciphertext moved between the socket and the TLS engine per call */
#define IO_TLS_CHUNK 16384

struct io {
	struct ev_loop *loop;
	int fd;
	io_cb *cb;
	void *arg;
	ev_io rd, wr;
	ev_timer timer;
	double timeout;

	char *in;			/* allocated while it holds octets */
	size_t in_off, in_len, in_max;
	char *out;
	size_t out_off, out_len, out_cap, out_max, lowat;
	/* a file segment (io_write_file) sent with sendfile(2) after the
	   output buffer's octets before file_at and before those after it */
	int file_fd;			/* our dup, -1: none */
	off_t file_off;
	size_t file_left, file_at;

	bool read_on;
	bool eof;
	bool failed;
	bool connecting;
	bool shut_wanted, shut;
	int err;

	/* TLS (io_start_tls): the engine, ciphertext taken from it and not yet
	   sent, the clear octets still to send before it, and whether it may
	   hold plaintext the full input buffer had no room for */
	struct tls_conn *tls;
	char *cout;
	size_t cout_off, cout_len;
	size_t plain_left;
	bool tls_more;
	bool sock_eof;			/* the socket said EOF; the engine may still
					   hold plaintext, so IO_EOF waits for it */
	char tls_err[256];
};

/* the connection whose callback runs now; io_free() clears it so the caller
   of the callback knows not to touch a freed connection */
static struct io *io_frame;

static void io_reload(struct io *io);
static bool io_tls_out_waiting(const struct io *io);

/* true when io is still alive afterwards */
static bool
io_fire(struct io *io, enum io_event ev)
{
	struct io *saved = io_frame;

	io_frame = io;
	io->cb(io, ev, io->arg);
	bool alive = io_frame == io;
	io_frame = saved;
	if (alive)
		io_reload(io);
	return alive;
}

static void
io_activity(struct io *io)
{
	if (io->timeout > 0 && io->loop != NULL)
		ev_timer_again(io->loop, &io->timer);
}

/* octets of the output buffer (memory, what out_max bounds) */
static size_t
buf_pending(const struct io *io)
{
	return io->out_len - io->out_off;
}

/* everything still to send: the buffer and the file segment */
static size_t
out_pending(const struct io *io)
{
	return buf_pending(io) + io->file_left;
}

static void
io_file_end(struct io *io)
{
	if (io->file_fd != -1)
		close(io->file_fd);
	io->file_fd = -1;
	io->file_left = 0;
}

static void
io_fail(struct io *io, int err)
{
	io->failed = true;
	io->err = err;
}

/* engine, inbound: socket -> input buffer. >0 octets, 0 end of file, -1 errno */
static ssize_t
io_fill(struct io *io)
{
	if (io->in == NULL && (io->in = malloc(io->in_max)) == NULL)
		return -1;
	if (io->in_off > 0) {
		memmove(io->in, io->in + io->in_off, io->in_len - io->in_off);
		io->in_len -= io->in_off;
		io->in_off = 0;
	}
	ssize_t n = read(io->fd, io->in + io->in_len, io->in_max - io->in_len);
	if (n > 0)
		io->in_len += (size_t)n;
	return n;
}

static bool
tls_established(const struct io *io)
{
	return io->tls != NULL && tls_conn_established(io->tls);
}

static void
io_tls_fail(struct io *io)
{
	snprintf(io->tls_err, sizeof(io->tls_err), "%s", tls_conn_error(io->tls));
	io_fail(io, EPROTO);
}

/* ciphertext the engine produced -> socket. 0 all sent, 1 would block, -1 errno */
static int
io_tls_send(struct io *io)
{
	for (;;) {
		if (io->cout_off == io->cout_len) {
			io->cout_off = io->cout_len = 0;
			if (tls_conn_pending(io->tls) == 0) {
				free(io->cout);	/* idle connections hold no buffer */
				io->cout = NULL;
				return 0;
			}
			if (io->cout == NULL && (io->cout = malloc(IO_TLS_CHUNK)) == NULL)
				return -1;
			io->cout_len = tls_conn_take(io->tls, io->cout, IO_TLS_CHUNK);
			continue;
		}
		ssize_t n = send(io->fd, io->cout + io->cout_off,
		    io->cout_len - io->cout_off, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			return -1;
		}
		io->cout_off += (size_t)n;
		io_activity(io);
	}
}

/* TLS outbound: the output buffer through the engine to the socket */
static int
io_tls_drain(struct io *io)
{
	for (int spins = 0; spins < 1024; spins++) {
		int r = io_tls_send(io);
		if (r == -1)
			return -1;
		if (r == 1 || !tls_conn_established(io->tls) || out_pending(io) == 0)
			return 0;
		ssize_t n = tls_conn_write(io->tls, io->out + io->out_off,
		    out_pending(io));
		if (n > 0) {
			io->out_off += (size_t)n;
			continue;
		}
		if (n == TLS_WANT_WRITE || n == TLS_WANT_READ)
			continue;
		io_tls_fail(io);
		errno = EPROTO;
		return -1;
	}
	return 0;
}

/* engine, outbound: output buffer -> socket. 0 drained or would block, -1 errno */
static int
io_drain(struct io *io)
{
	while (out_pending(io) > 0 || io->tls != NULL) {
		if (io->file_left > 0 && io->out_off == io->file_at) {
			/* never with TLS: io_write_file refuses it */
			ssize_t n = sendfile(io->fd, io->file_fd, &io->file_off,
			    io->file_left);
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return 0;
				return -1;
			}
			if (n == 0) {	/* the file is shorter than it was said to be */
				errno = EIO;
				return -1;
			}
			io->file_left -= (size_t)n;
			if (io->file_left == 0)
				io_file_end(io);
			io_activity(io);
			continue;
		}
		size_t len = (io->file_left > 0 ? io->file_at : io->out_len) - io->out_off;
		if (io->tls != NULL && io->plain_left == 0)
			return io_tls_drain(io);
		if (io->tls != NULL && len > io->plain_left)
			len = io->plain_left;	/* the clear part before TLS */
		ssize_t n = send(io->fd, io->out + io->out_off, len,
		    MSG_NOSIGNAL);
		if (n == -1 && errno == ENOTSOCK)
			n = write(io->fd, io->out + io->out_off, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		io->out_off += (size_t)n;
		if (io->tls != NULL)
			io->plain_left -= (size_t)n;
		io_activity(io);
	}
	return 0;
}

static void
io_out_settle(struct io *io)
{
	if (out_pending(io) > 0)
		return;
	io->out_off = io->out_len = io->file_at = 0;
	if (io->out_cap > IO_OUT_KEEP) {
		free(io->out);
		io->out = NULL;
		io->out_cap = 0;
	}
	if (io->shut_wanted && !io->shut && io->fd >= 0 && !io->failed &&
	    !io_tls_out_waiting(io)) {
		io->shut = true;
		if (shutdown(io->fd, SHUT_WR) == -1 && errno != ENOTCONN)
			io_fail(io, errno);
	}
}

static bool
io_tls_out_waiting(const struct io *io)
{
	return io->tls != NULL && (io->cout_off < io->cout_len ||
	    tls_conn_pending(io->tls) > 0);
}

static void
io_reload(struct io *io)
{
	if (io->fd < 0 || io->loop == NULL)
		return;
	bool room = io->in_len - io->in_off < io->in_max;
	bool want_read = io->read_on && !io->eof && !io->failed && !io->connecting &&
	    room;
	bool want_write = !io->failed && (io->connecting || io_tls_out_waiting(io) ||
	    (out_pending(io) > 0 && (io->tls == NULL || io->plain_left > 0 ||
	    tls_established(io))));

	/* plaintext may wait inside the engine with no octet coming on the socket
	   to tell us: read it once the input buffer has room again (fed after the
	   watcher is set, since stopping a watcher clears its pending events) */
	bool feed = io->tls != NULL && want_read && io->tls_more;
	if (io->tls != NULL && (io->sock_eof || tls_conn_feed_room(io->tls) == 0))
		want_read = false;

	if (want_read && !ev_is_active(&io->rd))
		ev_io_start(io->loop, &io->rd);
	else if (!want_read && ev_is_active(&io->rd))
		ev_io_stop(io->loop, &io->rd);
	if (want_write && !ev_is_active(&io->wr))
		ev_io_start(io->loop, &io->wr);
	else if (!want_write && ev_is_active(&io->wr))
		ev_io_stop(io->loop, &io->wr);
	if (io->failed && ev_is_active(&io->timer))
		ev_timer_stop(io->loop, &io->timer);
	if (feed && !ev_is_pending(&io->rd))
		ev_feed_event(io->loop, &io->rd, EV_READ);
}

/* plaintext from the engine into the input buffer: octets moved, -1 failed */
static ssize_t
io_tls_pull(struct io *io, bool *closed)
{
	size_t total = 0;

	if (io->in == NULL && (io->in = malloc(io->in_max)) == NULL)
		return -1;
	if (io->in_off > 0) {
		memmove(io->in, io->in + io->in_off, io->in_len - io->in_off);
		io->in_len -= io->in_off;
		io->in_off = 0;
	}
	io->tls_more = false;
	while (io->in_len < io->in_max) {
		ssize_t n = tls_conn_read(io->tls, io->in + io->in_len,
		    io->in_max - io->in_len);
		if (n > 0) {
			io->in_len += (size_t)n;
			total += (size_t)n;
			continue;
		}
		if (n == TLS_CLOSED)
			*closed = true;
		else if (n == TLS_ERROR) {
			io_tls_fail(io);
			return -1;
		}
		break;
	}
	if (io->in_len == io->in_max)
		io->tls_more = true;
	if (io->in_len == 0) {
		free(io->in);
		io->in = NULL;
	}
	return (ssize_t)total;
}

static void
io_tls_read(struct io *io)
{
	char buf[IO_TLS_CHUNK];
	bool eof = false, closed = false;

	size_t room = tls_conn_feed_room(io->tls);
	if (room > sizeof(buf))
		room = sizeof(buf);
	if (room > 0 && !io->eof && !io->sock_eof) {
		ssize_t n = read(io->fd, buf, room);
		if (n > 0) {
			tls_conn_feed(io->tls, buf, (size_t)n);
			io_activity(io);
		} else if (n == 0) {
			io->sock_eof = true;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			io_fail(io, errno);
			io_fire(io, IO_ERROR);
			return;
		}
	}
	bool ready = false;
	if (!tls_conn_established(io->tls)) {
		int r = tls_conn_handshake(io->tls);
		if (r == TLS_ERROR) {
			io_tls_fail(io);
			(void)io_tls_send(io);	/* the alert, if it goes at once */
			io_fire(io, IO_ERROR);
			return;
		}
		ready = r == TLS_DONE;
	}
	if (io_tls_send(io) == -1) {
		io_fail(io, errno);
		io_fire(io, IO_ERROR);
		return;
	}
	if (ready && !io_fire(io, IO_TLSREADY))
		return;
	if (io->failed)
		return;
	ssize_t got = 0;
	if (tls_conn_established(io->tls) && io->read_on) {
		got = io_tls_pull(io, &closed);
		/* a TLS 1.3 server sends its session tickets with the first read */
		if (got >= 0 && io_tls_send(io) == -1) {
			io_fail(io, errno);
			got = -1;
		}
	}
	if (got == -1) {
		if (!io->failed)
			io_fail(io, errno);
		io_fire(io, IO_ERROR);
		return;
	}
	/* the end, once the engine holds no more plaintext for us */
	eof = io->sock_eof && !io->tls_more && !io->eof;
	if (got > 0 && !io_fire(io, IO_DATAIN))
		return;
	if (eof || (closed && !io->eof)) {
		io->eof = true;
		io_fire(io, IO_EOF);
		return;
	}
	io_reload(io);
}

static void
io_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct io *io = w->data;

	(void)loop;
	(void)revents;
	if (io->tls != NULL) {
		io_tls_read(io);
		return;
	}
	ssize_t n = io_fill(io);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		io_fail(io, errno);
		io_fire(io, IO_ERROR);
	} else if (n == 0) {
		io->eof = true;
		if (io->in_len == io->in_off)
			io_discard_input(io);	/* release the buffer */
		io_fire(io, IO_EOF);
	} else {
		io_activity(io);
		io_fire(io, IO_DATAIN);
	}
}

static void
io_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct io *io = w->data;

	(void)loop;
	(void)revents;
	if (io->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		io->connecting = false;
		if (err != 0) {
			io_fail(io, err);
			io_fire(io, IO_ERROR);
		} else {
			io_activity(io);
			io_fire(io, IO_CONNECTED);
		}
		return;
	}
	size_t before = out_pending(io);
	if (io_drain(io) == -1) {
		io_fail(io, errno);
		io_fire(io, IO_ERROR);
		return;
	}
	size_t after = out_pending(io);
	io_out_settle(io);
	if (io->failed) {
		io_fire(io, IO_ERROR);
		return;
	}
	if (after != before && after <= io->lowat)
		io_fire(io, IO_LOWAT);
	else
		io_reload(io);
}

static void
io_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct io *io = w->data;

	(void)revents;
	ev_timer_stop(loop, w);		/* the protocol re-arms it if it goes on */
	io_fire(io, IO_TIMEOUT);
}

struct io *
io_new(struct ev_loop *loop, int fd, io_cb *cb, void *arg)
{
	struct io *io = calloc(1, sizeof(*io));

	if (io == NULL)
		return NULL;
	if (fd >= 0) {
		int fl = fcntl(fd, F_GETFL);
		if (fl == -1 || ((fl & O_NONBLOCK) == 0 &&
		    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)) {
			free(io);
			return NULL;
		}
		/*
		 * Output leaves in whole replies, one write per loop pass, so Nagle
		 * only delays: after a handshake's last flight (TLS 1.3 session
		 * tickets), the next reply waited for the peer's delayed ACK, which
		 * halved STARTTLS sessions per second in bench/smtp.sh. Not a TCP
		 * socket (unix, pipe): nothing to do.
		 */
		int one = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	io->loop = loop;
	io->fd = fd;
	io->cb = cb;
	io->arg = arg;
	io->in_max = IO_IN_MAX_DEFAULT;
	io->out_max = IO_OUT_MAX_DEFAULT;
	io->file_fd = -1;
	io->read_on = true;
	ev_io_init(&io->rd, io_read_cb, fd, EV_READ);
	ev_io_init(&io->wr, io_write_cb, fd, EV_WRITE);
	ev_init(&io->timer, io_timer_cb);
	io->rd.data = io->wr.data = io->timer.data = io;
	io_reload(io);
	return io;
}

void
io_free(struct io *io)
{
	static char scratch[16384];

	if (io == NULL)
		return;
	if (io_frame == io)
		io_frame = NULL;
	if (io->fd >= 0) {
		if (io->loop != NULL) {
			ev_io_stop(io->loop, &io->rd);
			ev_io_stop(io->loop, &io->wr);
			ev_timer_stop(io->loop, &io->timer);
		}
		/* unread input makes close() send a RST, which can destroy our last
		   reply (421, 521) before the peer reads it: drain what is there */
		for (int i = 0; i < 4; i++)
			if (recv(io->fd, scratch, sizeof(scratch), MSG_DONTWAIT) <= 0)
				break;
		if (io->tls != NULL && !io->failed && tls_conn_established(io->tls)) {
			/* our close_notify, if the socket takes it now */
			tls_conn_close(io->tls);
			(void)io_tls_send(io);
		}
		close(io->fd);
	}
	io_file_end(io);
	tls_conn_free(io->tls);
	free(io->cout);
	free(io->in);
	free(io->out);
	free(io);
}

int
io_fd(const struct io *io)
{
	return io->fd;
}

const char *
io_event_name(enum io_event ev)
{
	static const char *const names[] = {
		[IO_CONNECTED] = "IO_CONNECTED", [IO_DATAIN] = "IO_DATAIN",
		[IO_LOWAT] = "IO_LOWAT", [IO_EOF] = "IO_EOF",
		[IO_TIMEOUT] = "IO_TIMEOUT", [IO_ERROR] = "IO_ERROR",
		[IO_TLSREADY] = "IO_TLSREADY",
	};

	if ((unsigned)ev >= sizeof(names) / sizeof(names[0]))
		return "IO_?";
	return names[ev];
}

void
io_set_limits(struct io *io, size_t in_max, size_t out_max)
{
	/* the input buffer is allocated at in_max: only change it while empty */
	if (in_max > 0 && io->in == NULL)
		io->in_max = in_max;
	if (out_max > 0)
		io->out_max = out_max;
	io_reload(io);
}

void
io_set_lowat(struct io *io, size_t lowat)
{
	io->lowat = lowat;
}

void
io_set_timeout(struct io *io, double secs)
{
	io->timeout = secs;
	if (io->loop == NULL || io->fd < 0)
		return;
	if (secs > 0 && !io->failed) {
		io->timer.repeat = secs;
		ev_timer_again(io->loop, &io->timer);
	} else {
		ev_timer_stop(io->loop, &io->timer);
	}
}

void
io_set_read(struct io *io, bool on)
{
	io->read_on = on;
	io_reload(io);
}

int
io_connect(struct io *io, const struct sockaddr *sa, socklen_t salen)
{
	if (io->fd < 0) {
		errno = EBADF;
		return -1;
	}
	if (connect(io->fd, sa, salen) == -1 && errno != EINPROGRESS)
		return -1;
	/* IO_CONNECTED comes from the watcher, also when connect() completed at
	   once: the protocol is never called back from inside its own call */
	io->connecting = true;
	io_reload(io);
	return 0;
}

const char *
io_data(const struct io *io, size_t *len)
{
	*len = io->in_len - io->in_off;
	return io->in != NULL ? io->in + io->in_off : "";
}

size_t
io_datalen(const struct io *io)
{
	return io->in_len - io->in_off;
}

void
io_drop(struct io *io, size_t n)
{
	size_t have = io->in_len - io->in_off;

	io->in_off += n < have ? n : have;
	if (io->in_off == io->in_len) {
		/* idle connections hold no input buffer */
		free(io->in);
		io->in = NULL;
		io->in_off = io->in_len = 0;
	}
	io_reload(io);
}

size_t
io_discard_input(struct io *io)
{
	size_t n = io->in_len - io->in_off;

	io_drop(io, n);
	return n;
}

bool
io_eof(const struct io *io)
{
	return io->eof;
}

size_t
io_feed(struct io *io, const void *buf, size_t len)
{
	if (io->eof || io->failed)
		return 0;
	if (io->in == NULL && (io->in = malloc(io->in_max)) == NULL)
		return 0;
	if (io->in_off > 0) {
		memmove(io->in, io->in + io->in_off, io->in_len - io->in_off);
		io->in_len -= io->in_off;
		io->in_off = 0;
	}
	size_t room = io->in_max - io->in_len;
	size_t n = len < room ? len : room;
	memcpy(io->in + io->in_len, buf, n);
	io->in_len += n;
	if (io->in_len == 0) {
		free(io->in);
		io->in = NULL;
	}
	return n;
}

void
io_feed_eof(struct io *io)
{
	io->eof = true;
	io_reload(io);
}

int
io_write(struct io *io, const void *buf, size_t len)
{
	if (io->failed) {
		errno = io->err;
		return -1;
	}
	if (len > io->out_max || buf_pending(io) > io->out_max - len) {
		errno = ENOBUFS;
		return -1;
	}
	if (io->out_off > 0 && io->out_off == io->out_len) {
		io->file_at -= io->out_off;	/* a pending segment stays first */
		io->out_off = io->out_len = 0;
	}
	if (io->out_len + len > io->out_cap) {
		if (io->out_off > 0) {
			memmove(io->out, io->out + io->out_off, buf_pending(io));
			io->out_len -= io->out_off;
			io->file_at -= io->out_off;
			io->out_off = 0;
		}
		size_t cap = io->out_cap ? io->out_cap : 512;
		while (cap < io->out_len + len)
			cap *= 2;
		if (cap != io->out_cap) {
			char *n = realloc(io->out, cap);
			if (n == NULL)
				return -1;
			io->out = n;
			io->out_cap = cap;
		}
	}
	memcpy(io->out + io->out_len, buf, len);
	io->out_len += len;
	io_reload(io);
	return 0;
}

int
io_write_file(struct io *io, int fd, off_t off, size_t len)
{
	if (io->failed) {
		errno = io->err;
		return -1;
	}
	if (io->fd < 0 || io->tls != NULL || io->file_left > 0) {
		errno = ENOTSUP;
		return -1;
	}
	if (len == 0)
		return 0;
	/* our own descriptor: the caller may close its one at any time */
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd == -1)
		return -1;
	io->file_fd = dfd;
	io->file_off = off;
	io->file_left = len;
	io->file_at = io->out_len;
	io_reload(io);
	return 0;
}

int
io_printf(struct io *io, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(buf))
		return io_write(io, buf, (size_t)n);
	char *big = malloc((size_t)n + 1);
	if (big == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int r = io_write(io, big, (size_t)n);
	free(big);
	return r;
}

size_t
io_out_pending(const struct io *io)
{
	return out_pending(io);
}

const char *
io_out_data(const struct io *io, size_t *len)
{
	*len = buf_pending(io);	/* fd -1 never has a file segment */
	return io->out != NULL ? io->out + io->out_off : "";
}

void
io_out_drop(struct io *io, size_t n)
{
	size_t have = buf_pending(io);

	io->out_off += n < have ? n : have;
	io_out_settle(io);
	io_reload(io);
}

int
io_flush(struct io *io)
{
	if (io->failed) {
		errno = io->err;
		return -1;
	}
	if (io->fd < 0 || io->connecting)
		return 0;
	if (io_drain(io) == -1) {
		io_fail(io, errno);
		io_reload(io);
		errno = io->err;
		return -1;
	}
	io_out_settle(io);
	io_reload(io);
	if (io->failed) {
		errno = io->err;
		return -1;
	}
	return 0;
}

void
io_shutdown(struct io *io)
{
	io->shut_wanted = true;
	if (io->fd >= 0 && !io->connecting)
		io_out_settle(io);
	io_reload(io);
}

int
io_errno(const struct io *io)
{
	return io->err;
}

static int
io_tls_begin(struct io *io, struct tls_ctx *ctx, bool client, const char *servername,
    struct tls_session *session)
{
	const char *error;

	if (io->fd < 0 || io->tls != NULL || io->in_len > io->in_off || io->failed ||
	    io->file_left > 0) {
		errno = EINVAL;
		return -1;
	}
	io->tls = client ? tls_conn_client(ctx, servername, &error) :
	    tls_conn_server(ctx, &error);
	if (io->tls == NULL) {
		snprintf(io->tls_err, sizeof(io->tls_err), "%s", error);
		errno = ENOMEM;
		return -1;
	}
	io->plain_left = out_pending(io);
	/* a session the server no longer takes is only a full handshake */
	if (client && session != NULL)
		(void)tls_conn_set_session(io->tls, session);
	if (client && tls_conn_handshake(io->tls) == TLS_ERROR) {
		/* the ClientHello is queued now; the watcher sends it */
		io_tls_fail(io);
		tls_conn_free(io->tls);
		io->tls = NULL;
		io->failed = false;
		errno = EPROTO;
		return -1;
	}
	io_reload(io);
	return 0;
}

int
io_start_tls(struct io *io, struct tls_ctx *ctx)
{
	return io_tls_begin(io, ctx, false, NULL, NULL);
}

int
io_start_tls_client(struct io *io, struct tls_ctx *ctx, const char *servername)
{
	return io_tls_begin(io, ctx, true, servername, NULL);
}

int
io_start_tls_client_resume(struct io *io, struct tls_ctx *ctx, const char *servername,
    struct tls_session *s)
{
	return io_tls_begin(io, ctx, true, servername, s);
}

struct tls_session *
io_tls_session(const struct io *io)
{
	return tls_established(io) ? tls_conn_session(io->tls) : NULL;
}

bool
io_tls_reused(const struct io *io)
{
	return tls_established(io) && tls_conn_reused(io->tls);
}

bool
io_tls_active(const struct io *io)
{
	return tls_established(io);
}

void
io_tls_describe(const struct io *io, char *buf, size_t len)
{
	if (!tls_established(io)) {
		snprintf(buf, len, "no TLS");
		return;
	}
	tls_conn_describe(io->tls, buf, len);
}

int
io_tls_peer_trust(const struct io *io)
{
	return tls_established(io) ? (int)tls_conn_peer_trust(io->tls) :
	    (int)TLS_PEER_ANONYMOUS;
}

const char *
io_tls_error(const struct io *io)
{
	return io->tls_err[0] != '\0' ? io->tls_err : "no TLS error";
}
