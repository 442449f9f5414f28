/*
 * What the spool modules share and nobody else sees: the handle, a message under
 * construction, a batch, the envelope format, and the helpers each module uses.
 * The public API and the on-disk layout are described in spool.h.
 *
 *   spool.c         environment and QIDs: prepare, open, close, sweep of tmp/
 *   spool_msg.c     building a message: envelope fields, body with spill
 *   spool_commit.c  group commit: batches, the commit thread, wake-ups
 *   spool_read.c    reading: parse, foreach, show, body, verify
 *   spool_queue.c   delivery state: per-recipient records, the new and
 *                   schedule indexes, update, delete (the queue manager's)
 */
#ifndef RELAYVISOR_SPOOL_INTERNAL_H
#define RELAYVISOR_SPOOL_INTERNAL_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/spool.h"

#include "common/fsdir.h"
#include "common/log.h"

/*
 * Envelope record, version 1: lines "key: value\n", the value being everything
 * after ": " (it may be empty, e.g. "sender: " for the null sender <>, and it
 * never holds CR or LF: such values are refused when set). Built-in lines, in
 * this order: "version: 1", "arrival: <unix seconds>", "size: <body octets>",
 * "sender: ...", one "rcpt: ..." per recipient; then the free-form attributes
 * ("client", "helo", "instance", "proto", ...). A reader ignores keys it does not
 * know, so later versions can add lines.
 *
 * Version 2 adds the DSN parameters (RFC 3461, common/dsnparam.h), as received:
 * "ret: FULL|HDRS" and "envid: <xtext>" after the sender, and after a "rcpt:"
 * line the "notify: SUCCESS,FAILURE" and "orcpt: rfc822;<xtext>" of that
 * recipient. A message without any is written as version 1, so an older reader
 * still reads it; a reader takes both versions.
 */
#define ENV_VERSION "1"
#define ENV_VERSION_DSN "2"

#define SPOOL_MAXDBS 8
#define SPOOL_DB_ENV "env"
#define SPOOL_DB_BODY "body"
#define SPOOL_DB_NEW "new"
#define SPOOL_DB_RCPT "rcpt"
#define SPOOL_DB_SCHED "sched"
#define SPOOL_FILE_MODE 0640
#define SPOOL_DIR_MODE 0750
#define SPOOL_BUF_INITIAL 4096

struct spool_committer;

struct spool {
	MDB_env *env;
	MDB_dbi dbi_env, dbi_body;
	MDB_dbi dbi_new, dbi_rcpt, dbi_sched;	/* delivery state (spool_queue.c) */
	bool has_queue;			/* false: a read-only open of a spool no
					   writer has given the queue databases yet */
	int wake_fd;			/* write end of the commit notification, or -1 */
	char *dir;
	char *tmpdir;
	int tmpfd;			/* spool/tmp, opened at spool_open(): spill files are
					   reached through it only, so a chrooted listener
					   keeps spilling (openat, unlinkat) */
	bool readonly;
	pid_t pid;			/* the process that opened it (fork check) */
	struct spool_msg *pending;	/* submitted, waiting for spool_commit() */
	struct spool_msg **pending_tail;
	size_t n_pending;
	struct spool_msg *inflight;	/* committed batch whose callbacks run now */
	bool in_callbacks;
	uint64_t commits;
	struct spool_committer *committer;	/* spool_async_start(), else NULL */
	uint64_t batch_max;		/* body bytes per commit (spool_set_batch_max) */
	bool qbatch_on;			/* spool_queue_batch(): queue writes share one
					   transaction until spool_queue_flush() */
	MDB_txn *qbatch;		/* that transaction, or NULL */
	size_t mem_over;		/* body buffers' octets past SPOOL_SPILL_THRESHOLD,
					   all messages (loop thread only) */
};

/* a batch of submitted messages on its way into one write transaction */
struct spool_batch {
	struct spool_msg *list;
	int result;			/* 0 or the errno every message gets */
	int committed;			/* messages written */
};

struct spool_attr {
	char *key, *value;
};

struct spool_msg {
	struct spool *sp;
	struct spool_msg *next;
	char qid[SPOOL_QID_MAX];
	int64_t arrival;
	char *sender;
	char **rcpts;
	unsigned *notify;		/* per recipient, DSNPARAM_NOTIFY_* (0 none) */
	char **orcpt;			/* per recipient, NULL none */
	size_t n_rcpts, cap_rcpts;
	int dsn_ret;			/* enum dsnparam_ret */
	char *envid;			/* NULL none */
	struct spool_attr *attrs;
	size_t n_attrs, cap_attrs;
	/* body: the whole of it while in memory; after a spill, the tail not yet
	   written to the file */
	unsigned char *buf;
	size_t buf_len, buf_cap;
	int fd;				/* spill file, -1 while in memory */
	char *tmppath;
	uint64_t file_len;
	uint64_t size;
	int error;			/* errno of a failed write: not committable */
	spool_done_fn *done;
	void *arg;
};

struct spool_parsed {
	char *text;			/* copy of the record, lines NUL-terminated */
	struct spool_entry e;
	const char **rcpts;
	unsigned *notify;
	const char **orcpt;
	bool have_arrival, have_size, have_sender;
};

/* spool.c */
const char *spool_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *spool_strerror(int rc);
int spool_result(const struct spool *sp, int rc, uint64_t batch_bytes);
bool spool_inherited(const struct spool *sp);
void spool_qid_new(char qid[SPOOL_QID_MAX], int64_t *arrival_r);
bool spool_qid_valid(const char *qid);
int spool_txn_begin(struct spool *sp, unsigned flags, MDB_txn **txn_r);
/* spool_msg.c */
void spool_msg_free(struct spool_msg *m);
/* spool_commit.c */
void spool_async_stop(struct spool *sp);
/* spool_read.c */
int spool_parse(const char *qid, const MDB_val *val, struct spool_parsed *p,
    const char **error_r);
void spool_parsed_free(struct spool_parsed *p);
int spool_read_begin(struct spool *sp, MDB_txn **txn_r, const char **error_r);
/* spool_queue.c: open (a writer creates, and fills "new" from "env" when the
   spool predates the queue databases); the message's "new" entry, written with its envelope and body;
   the queue's half of spool_verify */
int spool_queue_open(struct spool *sp, MDB_txn *txn);
int spool_queue_put_new(struct spool *sp, MDB_txn *txn, const char *qid);
int spool_queue_verify(struct spool *sp, MDB_txn *txn, const char **error_r);

#endif
