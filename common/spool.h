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
 *
 * On-disk layout (LMDB named databases in spool/data.mdb; keys are raw bytes):
 *
 *   env    QID -> envelope text ("key: value" lines, spool_internal.h). Written
 *          once by the listener's commit, never changed: sender, recipients in
 *          order (a recipient is named by its index here), attributes.
 *   body   QID -> the message octets. Written once, never changed.
 *   new    QID -> "" . Written in the same transaction as env and body: the
 *          messages the queue manager has not taken in yet. The only thing a
 *          listener writes besides env and body.
 *   rcpt   QID . idx (4 octets, big-endian) -> recipient record: version,
 *          state, attempts, next try, last try, owner (pid of the process that
 *          holds it in flight, 0 none), last reply (spool_queue.c has the
 *          octets). Created by the queue manager when it takes a message in,
 *          rewritten by it only.
 *   sched  next try (8 octets, big-endian unix seconds) . QID . idx -> "" . One
 *          entry per recipient waiting for a try (QUEUED or DEFERRED), so the
 *          due recipients are a cursor walk from the first key to "now".
 *
 * Who writes what: listeners append (env, body, new) through the commit
 * pipeline; relayvisor-qmgr is the only writer of delivery state (it takes "new"
 * in, updates rcpt and sched, deletes messages); delivery agents get a message's
 * body handed over and report results to the qmgr, they never open the spool
 * for writing; relayvisorctl opens it read-only.
 *
 * Life of a message: commit (env + body + new) -> intake (one rcpt record per
 * recipient, QUEUED, next try now, with its sched entry; new deleted) -> the
 * qmgr claims due recipients (INFLIGHT, owner = agent's pid, sched entry gone)
 * -> each result is an update (SENT or BOUNCED: final; DEFERRED: attempts + 1,
 * next try, sched entry back) -> once every recipient is final the qmgr deletes
 * the message (env, body, every rcpt and sched entry). At qmgr start-up,
 * spool_queue_reclaim() returns records whose owner died to QUEUED.
 *
 * Crash consistency: each step above is one LMDB write transaction, and LMDB
 * commits are atomic and durable (no MDB_NOSYNC). So after kill -9 or power
 * loss at any point a message is committed (env, body and new, or env, body and
 * all its rcpt records) or absent, a recipient's record and its sched entry
 * agree, and a message is never half removed. spool_verify() checks all of it.
 * A spool written before the queue databases existed is upgraded at the first
 * writable open: every envelope goes into "new", in the transaction that
 * creates the databases.
 *
 * Commit notification: a pipe the supervisor makes (spool_wake_pipe); every
 * listener holds the write end (inherited before its chroot, so no path in the
 * spool is needed) and writes one octet after each committed batch, never
 * blocking (spool_set_wake_fd); the queue manager watches the read end with
 * libev, drains it (spool_wake_drain) and only then takes "new" in, so a
 * commit that lands during its intake wakes it again.
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
/* a body up to this size always stays in memory (see SPOOL_MEM_MSG_MAX) */
#define SPOOL_SPILL_THRESHOLD (64 * 1024)
/* Beyond SPOOL_SPILL_THRESHOLD a body may still stay in memory, up to
   SPOOL_MEM_MSG_MAX, while the bodies a process holds past their first
   SPOOL_SPILL_THRESHOLD octets add up to at most SPOOL_MEM_BUDGET: a 100 KB
   message costs no file create, write, read and unlink, and a process's memory
   stays bounded whatever the sizes and the number of sessions. */
#define SPOOL_MEM_MSG_MAX (1024 * 1024)
#define SPOOL_MEM_BUDGET (16 * 1024 * 1024)
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
/*
 * The qmgr's handle only: its commits flush the data pages but not the meta
 * page (MDB_NOMETASYNC), half its flushes. LMDB keeps the file whole (two meta
 * pages; the pages of the last snapshot are never reused by the next commit).
 * What can go: after an OS crash or power loss (never after kill -9, the page
 * cache survives it), the qmgr's last transactions of delivery state, until the
 * next fully synced commit (any listener's) or the kernel's writeback. Their
 * recipients are then tried again: a duplicate, never a loss. What a listener
 * acknowledged with 250 keeps its full flush.
 */
int spool_relax_meta_sync(struct spool *sp, const char **error_r);
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
/* the DSN parameters of MAIL (ret: enum dsnparam_ret; envid NULL none) and of
   the recipient added last (notify: DSNPARAM_NOTIFY_* bits, orcpt NULL none);
   -1 (errno EINVAL) for a value that is not valid (dsnparam.h) or no recipient */
int spool_msg_set_dsn(struct spool_msg *m, int ret, const char *envid);
int spool_msg_set_rcpt_dsn(struct spool_msg *m, unsigned notify, const char *orcpt);
/* free-form envelope attributes: "client", "helo", "instance", "proto" ... */
int spool_msg_set_attr(struct spool_msg *m, const char *key, const char *value);
/* append body octets; -1 with *error_r on I/O error (spill file) */
int spool_msg_write(struct spool_msg *m, const void *buf, size_t len,
    const char **error_r);
/* the same without a copy: room for up to len more octets at the body's end
   (*room_r > 0 of them; NULL with *error_r as spool_msg_write fails), then
   spool_msg_wrote() says how many of them were filled */
void *spool_msg_reserve(struct spool_msg *m, size_t len, size_t *room_r,
    const char **error_r);
void spool_msg_wrote(struct spool_msg *m, size_t n);
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
	/* the DSN parameters (RFC 3461, common/dsnparam.h) as received: RET
	   (enum dsnparam_ret, 0 none), ENVID (xtext, NULL none), and per recipient
	   NOTIFY bits (0 none given) and ORCPT ("rfc822;xtext", NULL none) */
	int dsn_ret;
	const char *envid;
	const unsigned *notify;
	const char *const *orcpt;
};
typedef int spool_entry_fn(const struct spool_entry *e, void *arg);
/* in QID order; stops when fn returns non-zero */
int spool_foreach(struct spool *sp, spool_entry_fn *fn, void *arg, const char **error_r);
/* envelope (one "key: value" per line) then a blank line, then the message;
   -1 and *error_r ("no such message") when absent */
int spool_show(struct spool *sp, const char *qid, FILE *out, const char **error_r);
/* one message as the queue manager reads it: the envelope, the body's size, and
   a copy of the body when with_body (NULL otherwise); spool_message_free() ends it */
struct spool_message {
	struct spool_entry e;
	char *body;
	size_t body_len;
	void *priv;
};
int spool_message_load(struct spool *sp, const char *qid, bool with_body,
    struct spool_message *m, const char **error_r);
void spool_message_free(struct spool_message *m);
/* fn(arg, body, len) on the body where LMDB maps it, no copy: the pointer is
   valid during the call only (a read transaction); fn's result is returned, -1
   with *error_r when the message is absent */
typedef int spool_body_fn(void *arg, const void *body, size_t len);
int spool_body_with(struct spool *sp, const char *qid, spool_body_fn *fn, void *arg,
    const char **error_r);
/* the body alone into *buf (malloc'd); for tests */
int spool_body(struct spool *sp, const char *qid, char **buf, size_t *len,
    const char **error_r);

/* consistency check (every envelope parses and has a body of its size, every
   body has an envelope, and the delivery state agrees with them: see the layout
   above); *count_r = messages; -1 and *error_r on the first flaw */
int spool_verify(struct spool *sp, size_t *count_r, const char **error_r);

/* ---- commit notification (see the layout above) ---------------------------- */

/* the environment variable naming a supervised child's write end */
#define SPOOL_ENV_WAKE_FD "RELAYVISOR_SPOOL_WAKE_FD"
/* a close-on-exec, non-blocking pipe: fds[0] for the queue manager, fds[1] for
   the listeners */
int spool_wake_pipe(int fds[2], const char **error_r);
/* a listener's spool: one octet to fd after each committed batch (-1: none) */
void spool_set_wake_fd(struct spool *sp, int fd);
/* the reader: read everything there is; 1 something was there, 0 nothing,
   -1 nothing was there and every writer is gone (or an error) */
int spool_wake_drain(int fd);

/* ---- delivery state (the queue manager's; OpenSMTPD queue_envelope_*) ------ */

enum spool_rcpt_state {
	SPOOL_RCPT_QUEUED,	/* waiting for a first try (has a sched entry) */
	SPOOL_RCPT_INFLIGHT,	/* handed to a delivery agent (owner) */
	SPOOL_RCPT_DEFERRED,	/* failed for now, waiting (has a sched entry) */
	SPOOL_RCPT_SENT,	/* final: delivered */
	SPOOL_RCPT_BOUNCED,	/* final: failed for good (a DSN is owed) */
	SPOOL_RCPT_HOLD,	/* put on hold (relayvisorctl hold): no sched entry,
				   waits for release */
};
#define SPOOL_REPLY_MAX 512

struct spool_rcpt {
	char qid[SPOOL_QID_MAX];
	unsigned idx;			/* the envelope's recipient, from 0 */
	enum spool_rcpt_state state;
	unsigned attempts;
	int64_t next_try;		/* unix seconds (QUEUED, DEFERRED) */
	int64_t last_try;		/* unix seconds, 0 never */
	uint32_t owner;			/* pid holding it in flight, 0 none */
	uint32_t flags;			/* SPOOL_RCPT_F_* */
	char reply[SPOOL_REPLY_MAX];	/* last reply, "" none (no CR or LF) */
};

/* rcpt flags, durable with the record (the qmgr's DSN bookkeeping) */
#define SPOOL_RCPT_F_WARNED	(1u << 0)	/* the message's delay warning was sent */
#define SPOOL_RCPT_F_DELIVERED	(1u << 1)	/* SENT, a "delivered" success DSN owed */
#define SPOOL_RCPT_F_RELAYED	(1u << 2)	/* SENT, a "relayed" success DSN owed */
#define SPOOL_RCPT_F_BOUNCE_SENT	(1u << 3)	/* BOUNCED, already in a non-delivery
						   report (sent before the message was done) */
#define SPOOL_RCPT_F_ALL	0xfu

bool spool_rcpt_final(enum spool_rcpt_state st);
const char *spool_rcpt_state_name(enum spool_rcpt_state st);

/* take up to max new messages (0: all) in, in one write transaction: a QUEUED
   record per recipient with next try `now` and its sched entry; returns how
   many messages were taken, -1 and *error_r */
int spool_queue_intake(struct spool *sp, int64_t now, size_t max,
    const char **error_r);
/* messages waiting for intake */
int spool_queue_new_count(struct spool *sp, size_t *count_r, const char **error_r);
typedef int spool_rcpt_fn(const struct spool_rcpt *r, void *arg);
/* recipients due at `now` (sched entries up to it) in next-try order, at most
   max (0: all); fn returning non-zero stops */
int spool_queue_due(struct spool *sp, int64_t now, size_t max, spool_rcpt_fn *fn,
    void *arg, const char **error_r);
/* the earliest next try of any waiting recipient (the qmgr's timer); *when_r
   -1 when none waits */
int spool_queue_next_try(struct spool *sp, int64_t *when_r, const char **error_r);
/* one recipient's record; -1 "no such recipient" */
int spool_rcpt_get(struct spool *sp, const char *qid, unsigned idx,
    struct spool_rcpt *r, const char **error_r);
/* every recipient record of qid, in index order */
int spool_rcpt_foreach(struct spool *sp, const char *qid, spool_rcpt_fn *fn,
    void *arg, const char **error_r);
/* write r back (OpenSMTPD queue_envelope_update), the sched entry following
   its state and next try, in one write transaction; *complete_r (may be NULL):
   every recipient of the message is final now. -1 and *error_r for a record
   that does not exist or values out of range (EINVAL) */
int spool_rcpt_update(struct spool *sp, const struct spool_rcpt *r,
    bool *complete_r, const char **error_r);
/* remove a message whole: env, body, new, every rcpt and sched entry, in one
   write transaction (queue_envelope_delete); -1 "no such message" */
int spool_queue_delete(struct spool *sp, const char *qid, const char **error_r);
/* qmgr start-up: every INFLIGHT record whose owner is not alive goes back to
   QUEUED with next try `now` (alive NULL: kill(pid, 0) decides); returns how
   many */
typedef bool spool_alive_fn(uint32_t pid, void *arg);
int spool_queue_reclaim(struct spool *sp, int64_t now, spool_alive_fn *alive,
    void *arg, const char **error_r);
/* group commit for the queue manager: with batching on, the writes above share
   one write transaction (and see each other) until spool_queue_flush() commits
   it, one fsync for every claim and result of an event-loop pass. A crash before
   the flush loses the batch: claims were never durable anyway (a restart
   reclaims every INFLIGHT record), and a lost result means the recipient is
   tried again: duplicates stay bounded by what was in flight. Any other write
   transaction on the handle (spool_commit) flushes first. */
void spool_queue_batch(struct spool *sp, bool on);
/* commit the open batch, if any; -1 and *error_r when the commit failed (the
   batch is lost) */
int spool_queue_flush(struct spool *sp, const char **error_r);

#endif
