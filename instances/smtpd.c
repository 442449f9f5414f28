/*
 * The listener process: accepting connections under the instance's caps,
 * the per-client connection table, the group commit, the graceful stop.
 */
#include "instances/smtpd.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/childproto.h"
#include "common/log.h"
#include "common/spool.h"
#include "instances/session.h"
#include "common/net.h"

/* connections taken from the kernel per accept callback, so one busy socket
   cannot starve the sessions */
#define SMTPD_ACCEPT_BATCH 64

struct smtpd_client {
	struct smtpd_client *next;
	unsigned n;
	char ip[64];
};

static unsigned
client_hash(const char *ip)
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	for (; *ip != '\0'; ip++)
		h = (h ^ (unsigned char)*ip) * 16777619u;
	return h % SMTPD_CLIENT_BUCKETS;
}

unsigned
smtpd_client_count(struct smtpd *sd, const char *ip)
{
	for (struct smtpd_client *c = sd->clients[client_hash(ip)]; c != NULL; c = c->next)
		if (strcmp(c->ip, ip) == 0)
			return c->n;
	return 0;
}

void
smtpd_client_add(struct smtpd *sd, const char *ip, int delta)
{
	struct smtpd_client **pp = &sd->clients[client_hash(ip)], *c;

	for (; (c = *pp) != NULL; pp = &c->next)
		if (strcmp(c->ip, ip) == 0)
			break;
	if (c == NULL) {
		if (delta <= 0 || (c = calloc(1, sizeof(*c))) == NULL)
			return;
		snprintf(c->ip, sizeof(c->ip), "%s", ip);
		c->next = sd->clients[client_hash(ip)];
		sd->clients[client_hash(ip)] = c;
		pp = &sd->clients[client_hash(ip)];
	}
	if (delta < 0 && c->n < (unsigned)-delta)
		c->n = 0;
	else
		c->n = (unsigned)((int)c->n + delta);
	if (c->n == 0) {
		*pp = c->next;
		free(c);
	}
}

static void
smtpd_commit_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	smtpd_commit(w->data);
}

static void
smtpd_commit_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	ev_idle_stop(loop, w);
	smtpd_commit(w->data);
}

/* the sessions a commit answered run only now, outside the spool's callbacks */
static void
smtpd_resume_answered(struct smtpd *sd)
{
	struct session *s;

	while ((s = session_resume_pop(sd)) != NULL)
		session_resume(s);
}

static void
smtpd_commit_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct smtpd *sd = w->data;

	(void)loop;
	(void)revents;
	if (spool_commit_finish(sd->spool) == -1)
		log_warnx("spool commit failed");
	smtpd_resume_answered(sd);
	/* what completed during that flush is the next batch: hand it over now */
	spool_commit_begin(sd->spool);
}

int
smtpd_async_commit(struct smtpd *sd, const char **error_r)
{
	if (spool_async_start(sd->spool, error_r) == -1)
		return -1;
	ev_io_init(&sd->commit_io, smtpd_commit_io_cb, spool_async_fd(sd->spool), EV_READ);
	sd->commit_io.data = sd;
	sd->commit_async = true;
	return 0;
}

void
smtpd_commit(struct smtpd *sd)
{
	if (sd->commit_async) {
		spool_commit_begin(sd->spool);
		return;
	}
	if (sd->spool != NULL && spool_pending(sd->spool) > 0 &&
	    spool_commit(sd->spool) == -1)
		log_warnx("spool commit failed");
	smtpd_resume_answered(sd);
	/* a resumed session may have finished a pipelined message already: make
	   the loop come round again without blocking */
	if (sd->spool != NULL && spool_pending(sd->spool) > 0 && sd->loop != NULL &&
	    !ev_is_active(&sd->commit_idle))
		ev_idle_start(sd->loop, &sd->commit_idle);
}

/* refuse a connection before any session exists for it */
static void
smtpd_refuse(struct smtpd *sd, int fd, const char *client, const char *reply)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s\r\n", reply);

	sd->stats.refused++;
	if (write(fd, buf, (size_t)n) == -1 && errno != EAGAIN)
		log_debug("write to %s: %s", client, strerror(errno));
	if (close(fd) == -1)
		log_warn("close %s", client);
	log_info("disconnect from %s commands=0/0", client);
}

static void
smtpd_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct smtpd_listener *l = w->data;
	struct smtpd *sd = l->sd;

	(void)revents;
	for (int i = 0; i < SMTPD_ACCEPT_BATCH && !sd->stopping; i++) {
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
		if (net_sockaddr_ntop((struct sockaddr *)&ss, ip, sizeof(ip)) == NULL)
			snprintf(ip, sizeof(ip), "unknown");
		snprintf(client, sizeof(client), "unknown[%s]", ip);
		if (sd->n_sessions >= sd->inst->max_connections) {
			log_info("connect from %s", client);
			log_warnx("Connection limit exceeded: %u connections, refusing %s"
			    " for service %s", sd->n_sessions, client, sd->inst->name);
			smtpd_refuse(sd, fd, client, "421 4.7.0 Too many connections");
			continue;
		}
		unsigned n = smtpd_client_count(sd, ip);
		if (n >= sd->inst->max_per_client) {
			log_info("connect from %s", client);
			log_warnx("Connection concurrency limit exceeded: %u from %s for"
			    " service %s", n + 1, client, sd->inst->name);
			snprintf(reply, sizeof(reply),
			    "421 4.7.0 Too many connections from %s", ip);
			smtpd_refuse(sd, fd, client, reply);
			continue;
		}
		struct session *s = session_new(sd, fd, (struct sockaddr *)&ss, sslen);
		if (s == NULL) {
			smtpd_refuse(sd, fd, client, "421 4.3.0 Error: out of memory");
			continue;
		}
		session_start(s);
	}
}

static void
smtpd_accept_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct smtpd *sd = w->data;

	(void)revents;
	if (sd->stopping)
		return;
	for (size_t j = 0; j < sd->n_listeners; j++)
		ev_io_start(loop, &sd->listeners[j].io);
}

struct smtpd *
smtpd_new(struct ev_loop *loop, const struct config *cfg, const struct instance *inst)
{
	struct smtpd *sd = calloc(1, sizeof(*sd));

	if (sd == NULL)
		return NULL;
	sd->loop = loop;
	sd->cfg = cfg;
	sd->inst = inst;
	sd->hostname = cfg->server.hostname != NULL ? cfg->server.hostname : "localhost";
	ev_prepare_init(&sd->commit_prepare, smtpd_commit_prepare_cb);
	sd->commit_prepare.data = sd;
	ev_idle_init(&sd->commit_idle, smtpd_commit_idle_cb);
	sd->commit_idle.data = sd;
	ev_init(&sd->accept_pause, smtpd_accept_pause_cb);
	sd->accept_pause.data = sd;
	return sd;
}

void
smtpd_set_spool(struct smtpd *sd, struct spool *sp)
{
	sd->spool = sp;
}

int
smtpd_add_listener(struct smtpd *sd, int fd, const char *text, const char **error_r)
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
		ev_io_init(&v[i].io, smtpd_accept_cb, v[i].fd, EV_READ);
		v[i].io.data = &v[i];
	}
	return 0;
}

void
smtpd_start(struct smtpd *sd)
{
	for (size_t i = 0; i < sd->n_listeners; i++)
		ev_io_start(sd->loop, &sd->listeners[i].io);
	ev_prepare_start(sd->loop, &sd->commit_prepare);
	if (sd->commit_async)
		ev_io_start(sd->loop, &sd->commit_io);
}

void
smtpd_stop(struct smtpd *sd)
{
	if (sd->stopping)
		return;
	sd->stopping = true;
	ev_timer_stop(sd->loop, &sd->accept_pause);
	/* new clients wait in the backlog of the socket the next process takes */
	for (size_t i = 0; i < sd->n_listeners; i++) {
		ev_io_stop(sd->loop, &sd->listeners[i].io);
		if (sd->listeners[i].fd >= 0 && close(sd->listeners[i].fd) == -1)
			log_warn("close %s", sd->listeners[i].text);
		sd->listeners[i].fd = -1;
	}
	log_info("stopping: %u sessions open", sd->n_sessions);
	smtpd_session_gone(sd);
}

void
smtpd_session_gone(struct smtpd *sd)
{
	if (sd->stopping && sd->n_sessions == 0 && sd->loop != NULL)
		ev_break(sd->loop, EVBREAK_ALL);
}

int
smtpd_stats_format(const struct smtpd *sd, char *buf, size_t len)
{
	struct childproto_stats s = { .v = {
		[SMTPD_STAT_CONNECTIONS] = sd->stats.connections,
		[SMTPD_STAT_ACTIVE] = sd->n_sessions,
		[SMTPD_STAT_ACCEPTED] = sd->stats.accepted,
		[SMTPD_STAT_RELAY_REFUSED] = sd->stats.relay_refused,
		[SMTPD_STAT_REFUSED] = sd->stats.refused,
		[SMTPD_STAT_BYTES] = sd->stats.bytes,
	} };
	return childproto_stats_format(buf, len, &childproto_smtpd_stats, &s);
}

void
smtpd_free(struct smtpd *sd)
{
	if (sd == NULL)
		return;
	for (size_t i = 0; i < sd->n_listeners; i++) {
		if (sd->loop != NULL)
			ev_io_stop(sd->loop, &sd->listeners[i].io);
		if (sd->listeners[i].fd >= 0)
			close(sd->listeners[i].fd);
		free(sd->listeners[i].text);
	}
	free(sd->listeners);
	if (sd->loop != NULL) {
		ev_prepare_stop(sd->loop, &sd->commit_prepare);
		ev_idle_stop(sd->loop, &sd->commit_idle);
		if (sd->commit_async)
			ev_io_stop(sd->loop, &sd->commit_io);
		ev_timer_stop(sd->loop, &sd->accept_pause);
	}
	for (size_t i = 0; i < SMTPD_CLIENT_BUCKETS; i++) {
		struct smtpd_client *c = sd->clients[i], *n;
		for (; c != NULL; c = n) {
			n = c->next;
			free(c);
		}
	}
	free(sd);
}
