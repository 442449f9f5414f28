/*
 * The listener process's context: one per relayvisor-smtpd process (a
 * per-process singleton, STYLE.md 12). It owns the listening sockets and
 * their accept watchers, the list of live sessions and the per-client
 * connection counts, the spool handle and the group-commit watchers, and the
 * counters reported to the supervisor. It knows nothing of sessions beyond
 * their count: the layers are
 *
 *   main.c -> listen.c (accepts, refuses over the caps) -> session.c -> smtpd.c
 *
 * and the spool answers a session through a deferred callback, never a call
 * up. main.c builds the context and runs the loop.
 *
 * Group commit (DESIGN.md section 7): a session whose DATA completed submits
 * its message to the spool and waits. An ev_prepare watcher, which libev runs
 * once per loop pass just before it would block, calls smtpd_commit(): every
 * message submitted during that pass goes into one LMDB write transaction and
 * one flush, and only then do their sessions get "250 ... queued as". With
 * smtpd_async_commit() the transaction and its flush run on the spool's commit
 * thread while the loop goes on; messages that complete meanwhile form the next
 * batch, handed over as soon as the thread is done.
 */
#ifndef RELAYVISOR_SMTPD_H
#define RELAYVISOR_SMTPD_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/config.h"

struct session;
struct tls_ctx;
struct authc;
struct authfail;
struct spool;

struct smtpd_stats {
	uint64_t connections;	/* connections accepted from the kernel */
	uint64_t accepted;	/* messages queued */
	uint64_t relay_refused;	/* RCPTs refused by the relay policy */
	uint64_t refused;	/* connections refused (access list, limits) */
	uint64_t bytes;		/* message octets received */
};

struct smtpd_listener {
	struct smtpd *sd;
	ev_io io;
	int fd;
	char *text;		/* the listen: entry, for logs */
};

struct smtpd_client;		/* per-client connection count (smtpd.c) */

/* work to run once the current group commit has returned, so nothing runs
   inside the spool's callbacks (a session's "250 queued as"); embedded in
   its owner */
struct smtpd_deferred {
	struct smtpd_deferred *next;
	void (*fn)(void *arg);
	void *arg;
	bool queued;
};

#define SMTPD_CLIENT_BUCKETS 1024
/* room for a decoded read (session input buffer + held octets) */
#define SMTPD_INBUF 16384

struct smtpd {
	struct ev_loop *loop;
	const struct config *cfg;
	const struct instance *inst;
	const char *hostname;
	struct spool *spool;
	struct tls_ctx *tls;	/* the instance's certificate (tls:), NULL without;
				   replaced on reload (sessions in TLS keep theirs) */
	struct authc *authc;	/* the auth process (server.auth), NULL without */
	struct authfail *authfail;	/* failed AUTHs per client (authc.h) */

	struct smtpd_listener *listeners;
	size_t n_listeners;

	struct session *sessions;	/* linked and unlinked by session.c */
	unsigned n_sessions;
	struct smtpd_client *clients[SMTPD_CLIENT_BUCKETS];

	/* sessions whose message has committed (or failed), to be resumed after
	   spool_commit() returned, in the order they were answered */
	struct smtpd_deferred *deferred_head, *deferred_tail;

	ev_timer accept_pause;	/* out of fds: accept again a bit later */
	ev_prepare commit_prepare;
	ev_idle commit_idle;	/* keeps the loop from blocking while work waits */
	ev_io commit_io;	/* the spool's commit thread finished a batch */
	bool commit_async;	/* commits run on the spool's thread */

	bool stopping;
	struct smtpd_stats stats;
	char scratch[SMTPD_INBUF + 8];	/* decoded message text on its way to the spool */
};

struct smtpd *smtpd_new(struct ev_loop *loop, const struct config *cfg,
    const struct instance *inst);
void smtpd_free(struct smtpd *sd);
/* the spool messages go to (opened by main after the privilege drop) */
void smtpd_set_spool(struct smtpd *sd, struct spool *sp);
/* commit on the spool's commit thread (pipelined group commit): the loop reads
   the next batch while one is flushed; without it commits block the loop */
int smtpd_async_commit(struct smtpd *sd, const char **error_r);
/* start the group-commit watchers (listen_start starts accepting) */
void smtpd_start(struct smtpd *sd);
/* graceful stop: stop accepting and close the listening sockets; sessions
   finish; the loop is broken once none is left */
void smtpd_stop(struct smtpd *sd);
/* once per loop pass (the prepare watcher): with the commit thread, hand it
   the waiting messages if it is idle (its eventfd watcher resumes the answered
   sessions); otherwise one group commit here plus resuming the sessions it
   answered (unit tests call it to stand for a loop pass) */
void smtpd_commit(struct smtpd *sd);
/* its STATS record (common/childproto.h, childproto_smtpd_stats) */
int smtpd_stats_format(const struct smtpd *sd, char *buf, size_t len);

/* per-client connection counts (listen.c checks, session.c counts) */
unsigned smtpd_client_count(struct smtpd *sd, const char *ip);
void smtpd_client_add(struct smtpd *sd, const char *ip, int delta);
/* run fn(arg) after the current commit returned (d not queued already);
   cancel: d will not run (its owner goes away) */
void smtpd_defer(struct smtpd *sd, struct smtpd_deferred *d, void (*fn)(void *),
    void *arg);
void smtpd_defer_cancel(struct smtpd *sd, struct smtpd_deferred *d);
/* a session ended (stop: break the loop when it was the last one) */
void smtpd_session_gone(struct smtpd *sd);

#endif
