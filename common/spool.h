/*
 * The durable queue: one LMDB environment under server.spool, shared by every
 * listener process, holding envelopes and bodies keyed by QID. A message is either
 * committed whole or absent. Group commit: listeners submit finished messages; the
 * waiting ones go into one write transaction and one flush, and only then are the
 * callbacks (which send "250 2.0.0 Ok: queued as QID") run. The commit runs either
 * in the caller (spool_commit) or pipelined on a commit thread (spool_async_start)
 * while the caller's event loop goes on.
 *
 * Bodies being received stay in memory up to a threshold, then spill to a
 * temporary file under spool/tmp (swept of dead processes' files at open).
 */
#ifndef RELAYVISOR_SPOOL_H
#define RELAYVISOR_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define SPOOL_QID_MAX 32
/* QIDs are this many characters of [0-9A-V] (see spool.c for the layout) */
#define SPOOL_QID_LEN 20
/* a body larger than this leaves memory for a file under spool/tmp */
#define SPOOL_SPILL_THRESHOLD (64 * 1024)
/* LMDB map size when spool_open() is given 0 (sparse: costs address space only) */
#define SPOOL_MAPSIZE_DEFAULT ((uint64_t)4 << 30)

/*
 * Error strings (*error_r) stay valid until the next spool call in this process.
 * A spool handle belongs to the process that opened it: a forked child must open
 * its own (LMDB forbids using an environment across fork()); calls on an inherited
 * handle fail, and spool_close() in such a child only frees memory. Nor may a
 * process open the same spool twice at once (LMDB's fcntl locks are per process).
 */

struct spool;
struct spool_msg;

/*
 * The spool's directories for listeners that run as uid:gid, created or checked
 * (fsdir.h): dir owned by the caller, mode 0700 (root opens the LMDB files in it
 * before a listener drops privileges, so the listener must not be able to plant
 * anything there); dir/tmp owned by uid:gid, 0700 (spill files, written after the
 * drop through a descriptor); and, when the caller is root, dir/empty, root's,
 * 0555 and empty: the listeners' chroot.
 */
int spool_prepare(const char *dir, uid_t uid, gid_t gid, const char **error_r);
/* creates dir and dir/tmp when missing; mapsize 0 = default */
int spool_open(const char *dir, uint64_t mapsize, struct spool **sp_r,
    const char **error_r);
/* read-only open for relayvisorctl queue; fails when no spool exists */
int spool_open_readonly(const char *dir, struct spool **sp_r, const char **error_r);
void spool_close(struct spool *sp);

/* a new transaction with a fresh QID (unique across processes and restarts,
   sorting by arrival); NULL only when out of memory or on a read-only or
   inherited handle */
struct spool_msg *spool_msg_begin(struct spool *sp);
const char *spool_msg_qid(const struct spool_msg *m);
/* these three return -1 (errno EINVAL) for a value holding CR or LF, or for an
   attribute key that is not [a-z0-9_-]+ or names a built-in envelope line */
int spool_msg_set_sender(struct spool_msg *m, const char *sender);
int spool_msg_add_rcpt(struct spool_msg *m, const char *rcpt);
/* free-form envelope attributes: "client", "helo", "instance", "proto" ... */
int spool_msg_set_attr(struct spool_msg *m, const char *key, const char *value);
/* append body octets; -1 with *error_r on I/O error (spill file) */
int spool_msg_write(struct spool_msg *m, const void *buf, size_t len,
    const char **error_r);
uint64_t spool_msg_size(const struct spool_msg *m);
/* discard a message that was not submitted (removes its spill file) */
void spool_msg_abort(struct spool_msg *m);

/*
 * result: 0 committed; otherwise an errno value: ENOSPC (disk or map full: reply
 * 452 4.3.1), EIO or other (451 4.3.0). Called from spool_commit().
 */
typedef void spool_done_fn(void *arg, int result, const char *qid);
/* the errno of a failed spool_msg_write or commit means "storage full" (452 4.3.1,
   the client may retry), not a fault (451 4.3.0) */
bool spool_errno_is_full(int e);
/* hand the message to the next group commit; takes ownership of m. A message
   whose spool_msg_write() failed is not written; its callback gets the error. */
void spool_msg_submit(struct spool_msg *m, spool_done_fn *done, void *arg);
/* forget a submitted message's callback (its session died); the message is
   still committed */
void spool_cancel_callback(struct spool *sp, void *arg);
size_t spool_pending(const struct spool *sp);
/* body bytes one commit takes at most (at least one message always goes); a
   commit holds its batch in memory until the flush. 0: the default */
#define SPOOL_BATCH_MAX_DEFAULT (64ull << 20)
void spool_set_batch_max(struct spool *sp, uint64_t bytes);
/* commit the submitted messages in one write transaction (all of them, unless
   they exceed the batch limit: the rest stays pending), then run their
   callbacks; returns how many were committed, -1 on failure (callbacks told).
   Callbacks may begin and submit messages (they wait for the next call) but
   must not close the spool; spool_commit() called from a callback does nothing.
   spool_close() drops still-pending messages without calling their callbacks. */
int spool_commit(struct spool *sp);
/*
 * Pipelined group commit, for an event loop: a commit thread writes and flushes
 * one batch while the loop goes on reading the next. spool_commit_begin() hands
 * it everything submitted so far (false when it is busy or nothing waits);
 * when spool_async_fd() becomes readable, spool_commit_finish() runs that
 * batch's callbacks on the calling thread and returns what spool_commit() would.
 * spool_commit() is refused while the thread runs; spool_close() stops it.
 */
int spool_async_start(struct spool *sp, const char **error_r);
int spool_async_fd(const struct spool *sp);
bool spool_commit_begin(struct spool *sp);
int spool_commit_finish(struct spool *sp);
/* number of write transactions committed by this handle (tests, stats) */
uint64_t spool_commit_count(const struct spool *sp);

/* reading, as mailq/postcat */
struct spool_entry {
	const char *qid;
	int64_t arrival;	/* unix time, seconds */
	uint64_t size;		/* body octets */
	const char *sender;
	const char *const *rcpts;
	size_t n_rcpts;
};
typedef int spool_entry_fn(const struct spool_entry *e, void *arg);
/* in QID order; stops when fn returns non-zero */
int spool_foreach(struct spool *sp, spool_entry_fn *fn, void *arg, const char **error_r);
/* envelope (one "key: value" per line) then a blank line, then the message;
   -1 and *error_r ("no such message") when absent */
int spool_show(struct spool *sp, const char *qid, FILE *out, const char **error_r);
/* the body alone into *buf (malloc'd); for tests */
int spool_body(struct spool *sp, const char *qid, char **buf, size_t *len,
    const char **error_r);

/* consistency check (every envelope parses and has a body of its size, every
   body has an envelope); *count_r = messages; -1 and *error_r on the first flaw */
int spool_verify(struct spool *sp, size_t *count_r, const char **error_r);

#endif
