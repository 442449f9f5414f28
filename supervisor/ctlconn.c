/*
 * The control server's framing (ctlconn.h). An accepted request is carried out
 * to the end whether or not its client stays: a client that half-closes its
 * socket (SHUT_WR) after the request still gets the reply, and one that goes
 * away (Ctrl-C, `timeout`) cannot leave a `restart` stopped halfway: the
 * connection lives on, its output discarded, until the operation is done. Only
 * `tail -f` ends when its client stops reading.
 */
#include "supervisor/ctlconn.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/io.h"
#include "common/log.h"
#include "supervisor/super.h"

#define OUT_MAX (4 * 1024 * 1024)	/* a tail -f reader that never reads */

static struct conn *conns;
static ev_io accept_w;
static bool listening;
static struct ctlconn_handlers handlers;

static void conn_peer_gone(struct conn *c);

/* ---- output ---- */

/* the connection failed under a write: an errno worth a log line, then gone */
static void
conn_write_failed(struct conn *c, int err)
{
	if (err != EPIPE && err != ECONNRESET)
		log_warnx("write control connection: %s", strerror(err));
	conn_peer_gone(c);
}

/* write what the socket takes now; the rest follows from the I/O layer's
   watcher (IO_LOWAT). A finished connection closes once all of it is out. */
void
conn_flush(struct conn *c)
{
	if (c->peer_gone)
		return;
	if (io_flush(c->io) == -1) {
		conn_write_failed(c, errno);
		return;
	}
	if (c->finished && io_out_pending(c->io) == 0)
		conn_free(c);
}

static void
conn_put(struct conn *c, const char *buf, size_t len)
{
	if (c->peer_gone)
		return;
	/* over OUT_MAX (a tail -f reader this far behind) the line is lost */
	if (io_write(c->io, buf, len) == -1 && errno != ENOBUFS)
		log_warn("control connection output");
}

void
conn_text(struct conn *c, const char *text)
{
	char buf[CTLPROTO_LINE_MAX + 8];
	size_t n = ctlproto_data_format(text, buf, sizeof(buf));
	conn_put(c, buf, n);
}

void
conn_line(struct conn *c, const char *fmt, ...)
{
	char text[CTLPROTO_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	conn_text(c, text);
}

void
conn_exit(struct conn *c, int code)
{
	if (code > c->exitcode)
		c->exitcode = code;
}

void
conn_finish(struct conn *c, int exitcode, const char *error)
{
	char buf[CTLPROTO_LINE_MAX];
	size_t n = ctlproto_status_format(exitcode, error, buf, sizeof(buf));
	conn_put(c, buf, n);
	c->finished = true;
	c->wait = WAIT_NONE;
	if (c->peer_gone)
		conn_free(c);
	else
		conn_flush(c);
}

/* an operation that is still under way (start, stop, restart) */
static bool
conn_busy(const struct conn *c)
{
	return c->wait == WAIT_START || c->wait == WAIT_STOP || c->wait == WAIT_RESTART ||
	    c->wait == WAIT_STATS;
}

/* the client cannot be written to any more: an operation under way goes on
   without it (its output discarded); anything else ends here */
static void
conn_peer_gone(struct conn *c)
{
	if (!conn_busy(c)) {
		conn_free(c);
		return;
	}
	if (!c->peer_gone)
		log_info("control: client went away; finishing its request anyway");
	c->peer_gone = true;
	io_out_drop(c->io, io_out_pending(c->io));
	io_set_read(c->io, false);
}

void
conn_free(struct conn *c)
{
	ev_timer_stop(sv_loop(c->sv), &c->timer);
	for (struct conn **pp = &conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	io_free(c->io);
	free(c->targets);
	free(c);
}


void
ctlconn_each(void (*fn)(struct conn *c, void *arg), void *arg)
{
	struct conn *next;
	for (struct conn *c = conns; c != NULL; c = next) {
		next = c->next;	/* c may be freed by fn */
		fn(c, arg);
	}
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	handlers.timer(w->data);
}

static void
conn_dispatch(struct conn *c, const char *line, size_t len)
{
	struct ctl_request req;
	const char *error;
	if (c->denied) {
		log_warnx("control: peer refused by the SO_PEERCRED check");
		conn_finish(c, CTL_EXIT_UNKNOWN, "permission denied");
		return;
	}
	if (ctlproto_request_parse(line, len, &req, &error) == -1) {
		conn_finish(c, CTL_EXIT_USAGE, error);
		return;
	}
	log_debug("control: %s", req.buf);
	handlers.request(c, req.argc, req.argv);
}

/* a request's line has arrived (or the client half-closed after it without
   its LF); anything it sends after that is read and dropped, so that the end
   of a `tail -f` reader is still seen */
static void
conn_input(struct conn *c)
{
	size_t len;
	const char *data = io_data(c->io, &len);
	if (c->have_request) {
		io_drop(c->io, len);
		return;
	}
	const char *nl = memchr(data, '\n', len);
	if (nl != NULL) {
		c->have_request = true;
		conn_dispatch(c, data, (size_t)(nl - data) + 1);
	} else if (len >= CTLPROTO_LINE_MAX) {
		c->have_request = true;
		conn_finish(c, CTL_EXIT_USAGE, "request line too long");
	}
}

static void
conn_io_cb(struct io *io, enum io_event ev, void *arg)
{
	struct conn *c = arg;
	size_t len;
	(void)io;
	switch (ev) {
	case IO_DATAIN:
		conn_input(c);
		break;
	case IO_EOF:
		io_data(c->io, &len);
		if (!c->have_request && len > 0) {
			/* the request's last line without its LF, then SHUT_WR */
			c->have_request = true;
			conn_dispatch(c, io_data(c->io, &len), len);
		} else if (!c->have_request || c->wait == WAIT_TAIL) {
			/* nothing asked, or `tail -f` whose reader stopped */
			conn_free(c);
		}
		/* else a half-closed client: it still reads the reply */
		break;
	case IO_LOWAT:
		if (c->finished)
			conn_free(c);
		break;
	case IO_ERROR:
		/* reset: nobody to answer; what was asked is still carried out */
		conn_write_failed(c, io_errno(c->io));
		break;
	case IO_CONNECTED:
	case IO_TIMEOUT:
	case IO_TLSREADY:	/* the control socket never starts TLS */
		break;
	}
}

/* root, our own uid, or a member of server.control_group */
static bool
peer_allowed(struct sv *sv, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == -1) {
		log_warn("getsockopt SO_PEERCRED");
		return false;
	}
	if (cr.uid == 0 || cr.uid == geteuid())
		return true;
	const char *group = sv_config(sv)->server.control_group;
	if (group == NULL)
		return false;
	struct group *gr = getgrnam(group);
	if (gr == NULL)
		return false;
	if (cr.gid == gr->gr_gid)
		return true;
	struct passwd *pw = getpwuid(cr.uid);
	if (pw == NULL)
		return false;
	gid_t groups[256];
	int ng = 256;
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &ng) == -1)
		return false;
	for (int i = 0; i < ng; i++)
		if (groups[i] == gr->gr_gid)
			return true;
	return false;
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	struct sv *sv = w->data;
	int fd = accept4(sv_control_fd(sv), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd == -1) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("accept %s", sv_control_path(sv));
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->io = io_new(loop, fd, conn_io_cb, c)) == NULL) {
		log_warn("control connection");
		free(c);
		close(fd);
		return;
	}
	io_set_limits(c->io, CTLPROTO_LINE_MAX, OUT_MAX);
	c->sv = sv;
	ev_init(&c->timer, conn_timer_cb);
	c->timer.data = c;
	c->next = conns;
	conns = c;
	/* a refused peer still gets its request read, so that the answer is not
	   lost to a reset of a connection with unread data */
	c->denied = !peer_allowed(sv, fd);
}

void
ctlconn_start(struct sv *sv, const struct ctlconn_handlers *h)
{
	handlers = *h;
	ev_io_init(&accept_w, accept_cb, sv_control_fd(sv), EV_READ);
	accept_w.data = sv;
	ev_io_start(sv_loop(sv), &accept_w);
	listening = true;
}

void
ctlconn_stop(struct sv *sv)
{
	if (!listening)
		return;
	listening = false;
	ev_io_stop(sv_loop(sv), &accept_w);
	if (close(sv_control_fd(sv)) == -1)
		log_warn("close control socket");
	sv_control_closed(sv);
	if (unlink(sv_control_path(sv)) == -1 && errno != ENOENT)
		log_warn("unlink %s", sv_control_path(sv));
}

