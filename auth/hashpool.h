/*
 * Password checks off the auth process's event loop: a few worker threads run
 * crypt(3) (yescrypt costs tens of milliseconds) on queued requests, and the
 * loop is woken (ev_async) to send the answers. So a burst of AUTHs uses every
 * core, and the loop keeps serving the supervisor and new requests meanwhile.
 *
 * The password table a job was queued with stays alive until the job is done
 * (a reference, taken and dropped on the loop's thread only), so a reload
 * swaps tables under running checks safely. Workers only read a table.
 */
#ifndef RELAYVISOR_AUTH_HASHPOOL_H
#define RELAYVISOR_AUTH_HASHPOOL_H

#include <ev.h>
#include <stdint.h>

#include "common/authproto.h"

#define HASHPOOL_THREADS_MAX 4
#define HASHPOOL_QUEUE_MAX 1024		/* more waiting: TEMPFAIL at once */

struct passwd_db;

/* a password table shared by the jobs queued with it */
struct passwd_ref {
	struct passwd_db *db;
	unsigned refs;
};

struct hashjob {
	struct hashjob *next;
	uint64_t peer;			/* the owner's tag for who asked */
	struct passwd_ref *ref;
	struct authproto_request req;
	struct authproto_answer ans;	/* filled by a worker */
};

struct hashpool;

typedef void hashpool_done_fn(struct hashjob *j);

/* nthreads workers (1..HASHPOOL_THREADS_MAX); done runs on the loop's thread
   for every finished job, which it must not free (hashpool does) */
struct hashpool *hashpool_new(struct ev_loop *loop, unsigned nthreads,
    hashpool_done_fn *done, const char **error_r);
/* queue a check of r against ref's table (a reference is taken); -1 when the
   queue is full. The request's password is wiped in r. */
int hashpool_submit(struct hashpool *hp, uint64_t peer, struct passwd_ref *ref,
    struct authproto_request *r);
/* stop the workers, drop what is queued */
void hashpool_free(struct hashpool *hp);

struct passwd_ref *passwd_ref_new(struct passwd_db *db);
void passwd_ref_drop(struct passwd_ref *ref);

#endif
