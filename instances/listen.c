/*
 * Accepting connections (model: Postfix's smtpd accept path under master's
 * limits): the listening sockets of the instance, the caps checked before any
 * session exists (max_connections, max_per_client: 421 4.7.0 and a Postfix
 * warning line), a pause when the process runs out of descriptors (the kernel
 * backlog holds the clients meanwhile). Above the session in the layers:
 * main.c -> listen.c -> session.c -> smtpd.c.
 */
#include "instances/listen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/io.h"
#include "common/log.h"
#include "instances/session.h"
#include "instances/smtpd.h"

/* connections taken from the kernel per accept callback, so one busy socket
   cannot starve the sessions */
#define LISTEN_ACCEPT_BATCH 64

/* refuse a connection before any session exists for it */
static void
listen_refuse(struct smtpd *sd, int fd, const char *client, const char *reply)
{
	struct io *io = io_new(NULL, fd, NULL, NULL);

	sd->stats.refused++;
	if (io == NULL) {
		close(fd);
	} else {
		if (io_printf(io, "%s\r\n", reply) == -1 || io_flush(io) == -1)
			log_debug("write to %s: %s", client, strerror(errno));
		io_free(io);
	}
	log_info("disconnect from %s commands=0/0", client);
}

static void
listen_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct smtpd_listener *l = w->data;
	struct smtpd *sd = l->sd;

	(void)revents;
	for (int i = 0; i < LISTEN_ACCEPT_BATCH && !sd->stopping; i++) {
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sslen,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			log_warn("accept on %s", l->text);
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* the backlog holds the clients until fds are free */
				for (size_t j = 0; j < sd->n_listeners; j++)
					ev_io_stop(loop, &sd->listeners[j].io);
				ev_timer_set(&sd->accept_pause, 1.0, 0.0);
				ev_timer_start(loop, &sd->accept_pause);
			}
			return;
		}
		sd->stats.connections++;
		char ip[64], client[80], reply[200];
		session_client_name((struct sockaddr *)&ss, ip, sizeof(ip), client,
		    sizeof(client));
		if (sd->n_sessions >= sd->inst->max_connections) {
			log_info("connect from %s", client);
			log_warnx("Connection limit exceeded: %u connections, refusing %s"
			    " for service %s", sd->n_sessions, client, sd->inst->name);
			listen_refuse(sd, fd, client, "421 4.7.0 Too many connections");
			continue;
		}
		unsigned n = smtpd_client_count(sd, ip);
		if (n >= sd->inst->max_per_client) {
			log_info("connect from %s", client);
			log_warnx("Connection concurrency limit exceeded: %u from %s for"
			    " service %s", n + 1, client, sd->inst->name);
			snprintf(reply, sizeof(reply),
			    "421 4.7.0 Too many connections from %s", ip);
			listen_refuse(sd, fd, client, reply);
			continue;
		}
		struct session *s = session_new(sd, fd, (struct sockaddr *)&ss, sslen);
		if (s == NULL) {
			listen_refuse(sd, fd, client, "421 4.3.0 Error: out of memory");
			continue;
		}
		session_start(s);
	}
}

static void
listen_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtpd *sd = w->data;

	(void)revents;
	if (sd->stopping)
		return;
	for (size_t j = 0; j < sd->n_listeners; j++)
		ev_io_start(loop, &sd->listeners[j].io);
}

int
listen_add(struct smtpd *sd, int fd, const char *text, const char **error_r)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1) {
		*error_r = "fcntl O_NONBLOCK";
		return -1;
	}
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		*error_r = "fcntl FD_CLOEXEC";
		return -1;
	}
	struct smtpd_listener *v = realloc(sd->listeners,
	    (sd->n_listeners + 1) * sizeof(*v));
	if (v == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	/* watchers hold pointers into the array: (re)initialise them all */
	sd->listeners = v;
	struct smtpd_listener *l = &v[sd->n_listeners++];
	l->fd = fd;
	l->text = strdup(text != NULL ? text : "?");
	for (size_t i = 0; i < sd->n_listeners; i++) {
		v[i].sd = sd;
		ev_io_init(&v[i].io, listen_accept_cb, v[i].fd, EV_READ);
		v[i].io.data = &v[i];
	}
	return 0;
}

void
listen_start(struct smtpd *sd)
{
	ev_init(&sd->accept_pause, listen_pause_cb);
	sd->accept_pause.data = sd;
	for (size_t i = 0; i < sd->n_listeners; i++)
		ev_io_start(sd->loop, &sd->listeners[i].io);
}
