/*
 * The listener process's context: one per relayvisor-smtpd process (a
 * per-process singleton, STYLE.md 12). It owns the listening sockets and
 * their accept watchers, the list of live sessions and the per-client
 * connection counts, the spool handle and the group-commit watchers, and the
 * counters reported to the supervisor. session.c and smtpd.c both work on it;
 * main.c only builds it and runs the loop.
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

#define SMTPD_CLIENT_BUCKETS 1024
/* room for a decoded read (session input buffer + held octets) */
#define SMTPD_INBUF 16384

struct smtpd {
	struct ev_loop *loop;
	const struct config *cfg;
	const struct instance *inst;
	const char *hostname;
	struct spool *spool;

	struct smtpd_listener *listeners;
	size_t n_listeners;

	struct session *sessions;	/* linked and unlinked by session.c */
	unsigned n_sessions;
	struct smtpd_client *clients[SMTPD_CLIENT_BUCKETS];

	/* sessions whose message has committed (or failed), to be resumed after
	   spool_commit() returned, so no session runs inside the spool */
	struct session *resume_head, *resume_tail;

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
/* serve a listening socket (made non-blocking here) */
int smtpd_add_listener(struct smtpd *sd, int fd, const char *text,
    const char **error_r);
/* commit on the spool's commit thread (pipelined group commit): the loop reads
   the next batch while one is flushed; without it commits block the loop */
int smtpd_async_commit(struct smtpd *sd, const char **error_r);
/* start accepting and the group-commit watchers */
void smtpd_start(struct smtpd *sd);
/* graceful stop: close the listening sockets; sessions finish; the loop is
   broken once none is left */
void smtpd_stop(struct smtpd *sd);
/* once per loop pass (the prepare watcher): with the commit thread, hand it
   the waiting messages if it is idle (its eventfd watcher resumes the answered
   sessions); otherwise one group commit here plus resuming the sessions it
   answered (unit tests call it to stand for a loop pass) */
void smtpd_commit(struct smtpd *sd);
/* its STATS record (common/childproto.h, childproto_smtpd_stats) */
int smtpd_stats_format(const struct smtpd *sd, char *buf, size_t len);

/* for session.c */
unsigned smtpd_client_count(struct smtpd *sd, const char *ip);
void smtpd_client_add(struct smtpd *sd, const char *ip, int delta);
/* a session ended (stop: break the loop when it was the last one) */
void smtpd_session_gone(struct smtpd *sd);

#endif
