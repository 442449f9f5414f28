/*
 * The commit pipeline: submitted messages go into one write transaction and one
 * flush per batch (group commit), on the caller's thread (spool_commit) or on a
 * commit thread while the event loop goes on (spool_async_start); callbacks run
 * on the loop thread once the batch is durable; a committed batch wakes the
 * queue manager through the notification pipe (spool_set_wake_fd).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/dsnparam.h"
#include "common/log.h"
#include "common/spool.h"
#include "common/spool_internal.h"

/*
 * The commit thread (spool_async_start). The loop thread hands it one batch at a
 * time (spool_commit_begin) and goes on serving while the batch is written and
 * flushed; the thread then writes to an eventfd and the loop thread runs the
 * batch's callbacks (spool_commit_finish). Only the batch's messages and the LMDB
 * environment are touched by the thread; everything else stays on the loop thread.
 */
struct spool_committer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int efd;
	bool busy;			/* loop thread: a batch was handed over */
	bool job_ready, job_done, stop;	/* under mu */
	struct spool_batch job;
};

/* --- group commit ------------------------------------------------------------ */

void
spool_msg_submit(struct spool_msg *m, spool_done_fn *done, void *arg)
{
	struct spool *sp = m->sp;

	m->done = done;
	m->arg = arg;
	m->next = NULL;
	*sp->pending_tail = m;
	sp->pending_tail = &m->next;
	sp->n_pending++;
}

void
spool_cancel_callback(struct spool *sp, void *arg)
{
	for (struct spool_msg *m = sp->pending; m != NULL; m = m->next)
		if (m->arg == arg)
			m->done = NULL;
	for (struct spool_msg *m = sp->inflight; m != NULL; m = m->next)
		if (m->arg == arg)
			m->done = NULL;
	/* the commit thread reads these messages but never their callbacks */
	if (sp->committer != NULL)
		for (struct spool_msg *m = sp->committer->job.list; m != NULL; m = m->next)
			if (m->arg == arg)
				m->done = NULL;
}

size_t
spool_pending(const struct spool *sp)
{
	return sp->n_pending;
}

uint64_t
spool_commit_count(const struct spool *sp)
{
	return sp->commits;
}

static char *
spool_envelope(const struct spool_msg *m, size_t *len_r)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	if (fp == NULL)
		return NULL;
	bool dsn = m->dsn_ret != DSNPARAM_RET_NONE || m->envid != NULL;
	for (size_t i = 0; i < m->n_rcpts; i++)
		dsn |= m->notify[i] != 0 || m->orcpt[i] != NULL;
	fprintf(fp, "version: %s\narrival: %" PRId64 "\nsize: %" PRIu64
	    "\nsender: %s\n", dsn ? ENV_VERSION_DSN : ENV_VERSION, m->arrival, m->size,
	    m->sender != NULL ? m->sender : "");
	if (m->dsn_ret != DSNPARAM_RET_NONE)
		fprintf(fp, "ret: %s\n", m->dsn_ret == DSNPARAM_RET_FULL ? "FULL" : "HDRS");
	if (m->envid != NULL)
		fprintf(fp, "envid: %s\n", m->envid);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		fprintf(fp, "rcpt: %s\n", m->rcpts[i]);
		if (m->notify[i] != 0) {
			char nt[64];
			dsnparam_notify_format(m->notify[i], nt, sizeof(nt));
			fprintf(fp, "notify: %s\n", nt);
		}
		if (m->orcpt[i] != NULL)
			fprintf(fp, "orcpt: %s\n", m->orcpt[i]);
	}
	for (size_t i = 0; i < m->n_attrs; i++)
		fprintf(fp, "%s: %s\n", m->attrs[i].key, m->attrs[i].value);
	if (ferror(fp)) {
		fclose(fp);
		free(text);
		return NULL;
	}
	if (fclose(fp) != 0) {
		free(text);
		return NULL;
	}
	*len_r = len;
	return text;
}

/* put one message's envelope and body into txn; an LMDB code or errno */
static int
spool_put(struct spool *sp, MDB_txn *txn, struct spool_msg *m)
{
	size_t elen;
	char *etext = spool_envelope(m, &elen);
	if (etext == NULL)
		return ENOMEM;
	MDB_val key = { .mv_size = strlen(m->qid), .mv_data = m->qid };
	MDB_val val = { .mv_size = elen, .mv_data = etext };
	int rc = mdb_put(txn, sp->dbi_env, &key, &val, MDB_NOOVERWRITE);
	free(etext);
	if (rc != 0) {
		log_warnx("spool: put envelope %s: %s", m->qid, spool_strerror(rc));
		return rc;
	}
	val.mv_size = (size_t)m->size;
	val.mv_data = NULL;
	rc = mdb_put(txn, sp->dbi_body, &key, &val, MDB_NOOVERWRITE | MDB_RESERVE);
	if (rc != 0) {
		log_warnx("spool: put body %s: %s", m->qid, spool_strerror(rc));
		return rc;
	}
	if ((rc = spool_queue_put_new(sp, txn, m->qid)) != 0)
		return rc;
	unsigned char *dst = val.mv_data;
	uint64_t off = 0;
	while (off < m->file_len) {
		ssize_t n = pread(m->fd, dst + off, (size_t)(m->file_len - off), (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n == -1 ? errno : EIO;
			log_warn("read %s", m->tmppath);
			return e;
		}
		off += (uint64_t)n;
	}
	if (m->buf_len > 0)
		memcpy(dst + off, m->buf, m->buf_len);
	return 0;
}

/*
 * The next batch: pending messages in submission order up to batch_max body bytes
 * (at least one), since a commit holds its batch's pages in memory until the
 * flush. The rest stays pending for the next commit.
 */
static struct spool_msg *
spool_take_pending(struct spool *sp)
{
	struct spool_msg *list = sp->pending, **tail = &sp->pending, *m;
	uint64_t bytes = 0;

	while ((m = *tail) != NULL) {
		uint64_t sz = m->error == 0 ? spool_msg_size(m) : 0;
		if (tail != &sp->pending && bytes + sz > sp->batch_max)
			break;
		bytes += sz;
		sp->n_pending--;
		tail = &m->next;
	}
	sp->pending = *tail;
	*tail = NULL;
	if (sp->pending == NULL)
		sp->pending_tail = &sp->pending;
	return list;
}

void
spool_set_batch_max(struct spool *sp, uint64_t bytes)
{
	sp->batch_max = bytes > 0 ? bytes : SPOOL_BATCH_MAX_DEFAULT;
}

/*
 * Write a batch in one transaction with one commit (one flush). No callbacks and
 * no state of sp but the LMDB environment, so the commit thread may run it.
 */
static void
spool_batch_write(struct spool *sp, struct spool_batch *b)
{
	size_t writable = 0;
	uint64_t batch_bytes = 0;

	b->result = b->committed = 0;
	for (struct spool_msg *m = b->list; m != NULL; m = m->next)
		if (m->error == 0) {
			writable++;
			batch_bytes += spool_msg_size(m);
		}
	if (writable == 0)
		return;
	if (sp->readonly || spool_inherited(sp)) {
		log_warnx("spool: commit on %s handle",
		    sp->readonly ? "a read-only" : "an inherited");
		b->result = EIO;
		return;
	}
	MDB_txn *txn;
	int rc = spool_txn_begin(sp, 0, &txn);
	if (rc != 0)
		log_warnx("spool %s: begin: %s", sp->dir, spool_strerror(rc));
	for (struct spool_msg *m = b->list; rc == 0 && m != NULL; m = m->next) {
		if (m->error != 0)
			continue;
		if ((rc = spool_put(sp, txn, m)) != 0)
			mdb_txn_abort(txn);
		else
			b->committed++;
	}
	if (rc == 0 && (rc = mdb_txn_commit(txn)) != 0)
		log_warnx("spool %s: commit: %s", sp->dir, spool_strerror(rc));
	if (rc != 0) {
		b->result = spool_result(sp, rc, batch_bytes);
		b->committed = 0;
		if (rc == MDB_MAP_FULL) {
			/* space pinned by dead readers can be reused next time */
			int dead = 0;
			mdb_reader_check(sp->env, &dead);
		}
	}
}

/*
 * One octet down the notification pipe, never blocking: a full pipe already
 * holds a wake-up the reader has not drained (it drains before it scans "new",
 * so nothing is lost), and a pipe without a reader (EPIPE, SIGPIPE ignored)
 * means there is no queue manager to wake.
 */
static void
spool_wake(struct spool *sp)
{
	static const char one = '!';

	if (sp->wake_fd < 0)
		return;
	while (write(sp->wake_fd, &one, 1) == -1) {
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EPIPE)
			log_warn("spool: commit notification");
		break;
	}
}

void
spool_set_wake_fd(struct spool *sp, int fd)
{
	sp->wake_fd = fd;
}

int
spool_wake_pipe(int fds[2], const char **error_r)
{
	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == -1) {
		*error_r = spool_err("pipe: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int
spool_wake_drain(int fd)
{
	char buf[512];
	int got = 0;

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n > 0) {
			got = 1;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return got;
		/* every writer is gone (or an error): say so once what they
		   wrote has been reported */
		return got ? 1 : -1;
	}
}

/* run a written batch's callbacks and free its messages (loop thread) */
static int
spool_batch_finish(struct spool *sp, struct spool_batch *b)
{
	if (b->result == 0 && b->committed > 0) {
		sp->commits++;
		spool_wake(sp);		/* the queue manager has new messages */
	}
	/* callbacks may submit again or cancel others: work off a detached list */
	sp->inflight = b->list;
	b->list = NULL;
	sp->in_callbacks = true;
	struct spool_msg *m;
	while ((m = sp->inflight) != NULL) {
		sp->inflight = m->next;
		int r = m->error != 0 ? spool_result(sp, m->error, spool_msg_size(m)) :
		    b->result;
		if (m->done != NULL)
			m->done(m->arg, r, m->qid);
		spool_msg_free(m);
	}
	sp->in_callbacks = false;
	return b->result != 0 ? -1 : b->committed;
}

int
spool_commit(struct spool *sp)
{
	if (sp->in_callbacks || sp->pending == NULL)
		return 0;
	if (sp->committer != NULL) {
		log_warnx("spool: synchronous commit while the commit thread runs");
		return -1;
	}
	struct spool_batch b = { .list = spool_take_pending(sp) };
	spool_batch_write(sp, &b);
	return spool_batch_finish(sp, &b);
}

static void *
spool_committer_main(void *arg)
{
	struct spool *sp = arg;
	struct spool_committer *c = sp->committer;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->job_ready && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (!c->job_ready)
			break;
		c->job_ready = false;
		pthread_mutex_unlock(&c->mu);
		spool_batch_write(sp, &c->job);
		pthread_mutex_lock(&c->mu);
		c->job_done = true;
		uint64_t one = 1;
		if (write(c->efd, &one, sizeof(one)) != sizeof(one))
			log_warn("spool: commit thread: write eventfd");
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int
spool_async_start(struct spool *sp, const char **error_r)
{
	struct spool_committer *c;
	sigset_t all, old;
	int rc;

	if (sp->committer != NULL)
		return 0;
	if (sp->readonly || spool_inherited(sp)) {
		*error_r = spool_err("spool: no commit thread on this handle");
		return -1;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		*error_r = spool_err("spool: out of memory");
		return -1;
	}
	if ((c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1) {
		*error_r = spool_err("spool: eventfd: %s", strerror(errno));
		free(c);
		return -1;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	sp->committer = c;
	/* signals stay with the loop thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&c->thread, NULL, spool_committer_main, sp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		*error_r = spool_err("spool: pthread_create: %s", strerror(rc));
		sp->committer = NULL;
		close(c->efd);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
		free(c);
		return -1;
	}
	return 0;
}

int
spool_async_fd(const struct spool *sp)
{
	return sp->committer != NULL ? sp->committer->efd : -1;
}

bool
spool_commit_begin(struct spool *sp)
{
	struct spool_committer *c = sp->committer;

	if (c == NULL || c->busy || sp->in_callbacks || sp->pending == NULL)
		return false;
	c->busy = true;
	pthread_mutex_lock(&c->mu);
	c->job.list = spool_take_pending(sp);
	c->job_ready = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return true;
}

int
spool_commit_finish(struct spool *sp)
{
	struct spool_committer *c = sp->committer;
	uint64_t n;
	bool done;

	if (c == NULL)
		return 0;
	while (read(c->efd, &n, sizeof(n)) == sizeof(n))
		;
	pthread_mutex_lock(&c->mu);
	done = c->job_done;
	c->job_done = false;
	pthread_mutex_unlock(&c->mu);
	if (!done)
		return 0;
	c->busy = false;
	struct spool_batch b = c->job;
	c->job.list = NULL;
	return spool_batch_finish(sp, &b);
}

/* stop the commit thread; a batch it was writing is finished (committed or not)
   but its callbacks are not run: their sessions are gone */
void
spool_async_stop(struct spool *sp)
{
	struct spool_committer *c = sp->committer;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	struct spool_msg *m;
	while ((m = c->job.list) != NULL) {
		c->job.list = m->next;
		spool_msg_free(m);
	}
	close(c->efd);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	sp->committer = NULL;
}
