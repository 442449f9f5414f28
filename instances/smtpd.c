/*
 * The listener process's context: the per-client connection table, the group
 * commit and the deferred work it releases, the graceful stop, the counters.
 * Accepting connections is listen.c's.
 */
#include "instances/smtpd.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/childproto.h"
#include "common/log.h"
#include "common/spool.h"
#include "common/tls.h"

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

void
smtpd_defer(struct smtpd *sd, struct smtpd_deferred *d, void (*fn)(void *), void *arg)
{
	if (d->queued)
		return;
	d->fn = fn;
	d->arg = arg;
	d->next = NULL;
	d->queued = true;
	if (sd->deferred_tail != NULL)
		sd->deferred_tail->next = d;
	else
		sd->deferred_head = d;
	sd->deferred_tail = d;
}

void
smtpd_defer_cancel(struct smtpd *sd, struct smtpd_deferred *d)
{
	if (!d->queued)
		return;
	struct smtpd_deferred **pp = &sd->deferred_head, *prev = NULL;
	while (*pp != NULL && *pp != d) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp == d) {
		*pp = d->next;
		if (sd->deferred_tail == d)
			sd->deferred_tail = prev;
	}
	d->next = NULL;
	d->queued = false;
}

/* the sessions a commit answered run only now, outside the spool's callbacks */
static void
smtpd_resume_answered(struct smtpd *sd)
{
	struct smtpd_deferred *d;

	while ((d = sd->deferred_head) != NULL) {
		sd->deferred_head = d->next;
		if (sd->deferred_head == NULL)
			sd->deferred_tail = NULL;
		d->next = NULL;
		d->queued = false;
		d->fn(d->arg);
	}
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
	return sd;
}

void
smtpd_set_spool(struct smtpd *sd, struct spool *sp)
{
	sd->spool = sp;
}

void
smtpd_start(struct smtpd *sd)
{
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
	tls_ctx_unref(sd->tls);
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
