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

#include "common/log.h"
#include "supervisor/super.h"

#define OUT_MAX (4 * 1024 * 1024)	/* a tail -f reader that never reads */

static struct conn *conns;
static ev_io accept_w;
static bool listening;
static struct ctlconn_handlers handlers;

static void conn_peer_gone(struct conn *c);

/* ---- output ---- */

void
conn_flush(struct conn *c)
{
	struct ev_loop *loop = sv_loop(c->sv);
	while (c->outoff < c->outlen) {
		ssize_t n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			ev_io_start(loop, &c->wio);
			return;
		}
		if (n == -1) {
			if (errno != EPIPE && errno != ECONNRESET)
				log_warn("write control connection");
			conn_peer_gone(c);
			return;
		}
		c->outoff += (size_t)n;
	}
	c->outoff = c->outlen = 0;
	ev_io_stop(loop, &c->wio);
	if (c->finished)
		conn_free(c);
}

static void
conn_put(struct conn *c, const char *buf, size_t len)
{
	if (c->peer_gone)
		return;
	if (c->outlen + len > OUT_MAX)
		return;		/* a reader this far behind loses lines */
	if (c->outlen + len > c->outcap) {
		size_t cap = c->outcap ? c->outcap : 4096;
		while (cap < c->outlen + len)
			cap *= 2;
		char *p = realloc(c->out, cap);
		if (p == NULL) {
			log_warn("realloc");
			return;
		}
		c->out = p;
		c->outcap = cap;
	}
	memcpy(c->out + c->outlen, buf, len);
	c->outlen += len;
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
	struct ev_loop *loop = sv_loop(c->sv);
	if (!conn_busy(c)) {
		conn_free(c);
		return;
	}
	if (!c->peer_gone)
		log_info("control: client went away; finishing its request anyway");
	c->peer_gone = true;
	c->outlen = c->outoff = 0;
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
}

void
conn_free(struct conn *c)
{
	struct ev_loop *loop = sv_loop(c->sv);
	ev_io_stop(loop, &c->rio);
	ev_io_stop(loop, &c->wio);
	ev_timer_stop(loop, &c->timer);
	for (struct conn **pp = &conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (close(c->fd) == -1)
		log_warn("close control connection");
	free(c->targets);
	free(c->out);
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

static void
conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	struct conn *c = w->data;
	char scratch[512];
	char *buf = c->have_request ? scratch : c->in + c->inlen;
	size_t room = c->have_request ? sizeof(scratch) : sizeof(c->in) - c->inlen;
	ssize_t n = read(c->fd, buf, room);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == -1) {
		/* reset: nobody to answer; what was asked is still carried out */
		if (errno != ECONNRESET)
			log_warn("read control connection");
		conn_peer_gone(c);
		return;
	}
	if (n == 0) {
		ev_io_stop(loop, w);
		if (!c->have_request && c->inlen > 0) {
			/* the request's last line without its LF, then SHUT_WR */
			c->have_request = true;
			conn_dispatch(c, c->in, c->inlen);
		} else if (!c->have_request || c->wait == WAIT_TAIL) {
			/* nothing asked, or `tail -f` whose reader stopped */
			conn_free(c);
		}
		/* else a half-closed client: it still reads the reply */
		return;
	}
	if (c->have_request)
		return;		/* one request per connection */
	c->inlen += (size_t)n;
	char *nl = memchr(c->in, '\n', c->inlen);
	if (nl == NULL) {
		if (c->inlen == sizeof(c->in)) {
			c->have_request = true;
			conn_finish(c, CTL_EXIT_USAGE, "request line too long");
		}
		return;
	}
	c->have_request = true;
	conn_dispatch(c, c->in, (size_t)(nl - c->in) + 1);
}

static void
conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_flush(w->data);
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
	if (c == NULL) {
		log_warn("calloc");
		close(fd);
		return;
	}
	c->sv = sv;
	c->fd = fd;
	ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
	ev_init(&c->timer, conn_timer_cb);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->next = conns;
	conns = c;
	/* a refused peer still gets its request read, so that the answer is not
	   lost to a reset of a connection with unread data */
	c->denied = !peer_allowed(sv, fd);
	ev_io_start(loop, &c->rio);
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

