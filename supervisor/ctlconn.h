/*
 * The control server's framing (common/ctlproto.h on the wire): the unix socket,
 * the SO_PEERCRED check, one request line per connection, buffered output and
 * the closing status line. What a request means is control.c's: it hands its
 * dispatcher to ctlconn_start(). The state a verb keeps while it waits (targets,
 * what it waits for) lives in the connection, so that a client that goes away
 * cannot leave an operation halfway (conn_busy).
 *
 * The socket's bytes move through the common I/O layer (common/io.h), like the
 * SMTP session's: this file never reads or writes the socket itself.
 */
#ifndef RELAYVISOR_CTLCONN_H
#define RELAYVISOR_CTLCONN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/ctlproto.h"

struct sv;

enum wait_kind { WAIT_NONE, WAIT_START, WAIT_STOP, WAIT_RESTART, WAIT_STATS, WAIT_TAIL,
	WAIT_QUEUE };

struct target {
	char name[96];
	int phase;	/* restart: 0 stopping, 1 starting; others: 1 */
	bool done;
	char out[256];	/* its result lines, sent in target order at the end */
};

struct io;

struct conn {
	struct conn *next;
	struct sv *sv;
	struct io *io;		/* the socket, buffered (common/io.h) */
	ev_timer timer;
	bool have_request;
	bool finished;		/* status line queued: close once flushed */
	bool denied;		/* SO_PEERCRED said no: answer the request with that */
	bool peer_gone;		/* cannot be written to any more: output discarded */
	enum wait_kind wait;
	struct target *targets;
	size_t n_targets;
	char stats_only[96];	/* stats NAME */
	char tail_inst[96];
	unsigned queue_id;	/* the queue request it waits for */
	int exitcode;
};

struct ctlconn_handlers {
	/* a request, parsed into words; the peer was allowed */
	void (*request)(struct conn *c, int argc, char **argv);
	/* c->timer fired */
	void (*timer)(struct conn *c);
};

/* start accepting on sv_control_fd(sv) */
void ctlconn_start(struct sv *sv, const struct ctlconn_handlers *h);
/* close and remove the control socket (shutdown); idempotent */
void ctlconn_stop(struct sv *sv);
/* call fn for every connection; fn may free the one it is given */
void ctlconn_each(void (*fn)(struct conn *c, void *arg), void *arg);

void conn_text(struct conn *c, const char *text);
void conn_line(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* the worst exit code so far wins */
void conn_exit(struct conn *c, int code);
/* queue the status line; the connection closes once it is written */
void conn_finish(struct conn *c, int exitcode, const char *error);
void conn_flush(struct conn *c);
void conn_free(struct conn *c);

#endif
