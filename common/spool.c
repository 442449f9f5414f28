/*
 * The durable queue (DESIGN.md section 7). One LMDB environment in server.spool,
 * opened by every listener process on its own handle; LMDB serialises the writers
 * across processes and a commit is durable when mdb_txn_commit() returns (default
 * flags: no MDB_NOSYNC/NOMETASYNC). Two named databases keyed by QID:
 *
 *   "env"   the envelope, "key: value\n" lines (format below)
 *   "body"  the message octets, exactly as received (after the trace header)
 *
 * Both records of a message go into one write transaction, so a crash leaves a
 * message whole or absent. Group commit: spool_msg_submit() only queues;
 * spool_commit(), called once per event-loop pass, writes every queued message in
 * one transaction (one flush) and only then runs the callbacks that send 250.
 *
 * A body stays in memory up to SPOOL_SPILL_THRESHOLD, then moves to
 * spool/tmp/<qid>.<pid> with the memory buffer kept as its write buffer, so a
 * session's memory is bounded whatever the message size. At commit the file is
 * read straight into LMDB's reserved space (MDB_RESERVE): no second copy. The
 * decimal pid in the name lets spool_open() sweep files of processes that died
 * without leaving a live process's files alone.
 *
 * No MDB_WRITEMAP: with it the file is a sparse map and a full disk surfaces as
 * SIGBUS instead of ENOSPC. The price is that a commit holds its batch's pages in
 * memory until the flush (LMDB spills beyond about 512 MiB), i.e. memory during
 * spool_commit() is about the size of the messages in the batch.
 */
#include "common/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/confine.h"
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
 */
#define ENV_VERSION "1"

#define SPOOL_MAXDBS 4
#define SPOOL_DB_ENV "env"
#define SPOOL_DB_BODY "body"
#define SPOOL_FILE_MODE 0640
#define SPOOL_DIR_MODE 0750
#define SPOOL_BUF_INITIAL 4096

struct spool {
	MDB_env *env;
	MDB_dbi dbi_env, dbi_body;
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
};

/* a batch of submitted messages on its way into one write transaction */
struct spool_batch {
	struct spool_msg *list;
	int result;			/* 0 or the errno every message gets */
	int committed;			/* messages written */
};

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

struct spool_attr {
	char *key, *value;
};

static void spool_async_stop(struct spool *sp);

struct spool_msg {
	struct spool *sp;
	struct spool_msg *next;
	char qid[SPOOL_QID_MAX];
	int64_t arrival;
	char *sender;
	char **rcpts;
	size_t n_rcpts, cap_rcpts;
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

/* per thread: the commit thread formats errors too */
static _Thread_local char spool_errbuf[512];

static const char *
spool_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(spool_errbuf, sizeof(spool_errbuf), fmt, ap);
	va_end(ap);
	return spool_errbuf;
}

static const char *
spool_strerror(int rc)
{
	return mdb_strerror(rc);	/* LMDB's codes, and errno values too */
}

/* the result a session acts on: ENOSPC (452 4.3.1) or EIO (451 4.3.0) */
bool
spool_errno_is_full(int e)
{
	return e == ENOSPC || e == EDQUOT;
}

/*
 * LMDB reports a short write as EIO ("short write, filesystem full?"): a commit
 * that fails so while the spool's filesystem has less room than the batch (plus
 * a margin for LMDB's own pages) is a full disk, which the client may retry
 * (452), not an I/O error.
 */
static bool
spool_fs_full(const struct spool *sp, uint64_t batch_bytes)
{
	struct statvfs sv;

	if (statvfs(sp->dir, &sv) == -1) {
		log_warn("statvfs %s", sp->dir);
		return false;
	}
	return (uint64_t)sv.f_bavail * sv.f_frsize < batch_bytes + (1u << 20);
}

static int
spool_result(const struct spool *sp, int rc, uint64_t batch_bytes)
{
	if (rc == MDB_MAP_FULL || spool_errno_is_full(rc))
		return ENOSPC;
	if (rc == EIO && spool_fs_full(sp, batch_bytes))
		return ENOSPC;
	return EIO;
}

static bool
spool_inherited(const struct spool *sp)
{
	return sp->pid != getpid();
}

/*
 * QID: 20 characters of the base-32 alphabet 0-9A-V, whose ASCII order is the
 * digit order, so memcmp order is numeric order:
 *   11 digits  microseconds since the epoch (55 bits, good past year 3000)
 *    5 digits  pid (25 bits; Linux pid_max is at most 2^22)
 *    4 digits  per-process counter (20 bits, wrapping)
 * Sorting by QID sorts by arrival. Within a process the time never goes back
 * (a stepped clock is held at the last value) and the counter separates QIDs of
 * one microsecond; the pid separates processes alive at the same time. A restart
 * reusing a pid while the clock has been stepped back could in theory repeat a
 * QID: the commit refuses to overwrite (MDB_NOOVERWRITE) and fails that batch.
 */
static void
spool_b32(char *out, uint64_t v, int digits)
{
	static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

	for (int i = digits - 1; i >= 0; i--) {
		out[i] = alphabet[v & 31];
		v >>= 5;
	}
}

static void
spool_qid_new(char qid[SPOOL_QID_MAX], int64_t *arrival_r)
{
	static uint64_t last_us;
	static uint32_t counter;
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1) {
		log_warn("clock_gettime");
		ts.tv_sec = time(NULL);
		ts.tv_nsec = 0;
	}
	uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	if (us < last_us)
		us = last_us;
	last_us = us;
	counter = (counter + 1) & 0xfffff;
	spool_b32(qid, us, 11);
	spool_b32(qid + 11, (uint64_t)getpid(), 5);
	spool_b32(qid + 16, counter, 4);
	qid[SPOOL_QID_LEN] = '\0';
	*arrival_r = (int64_t)(us / 1000000u);
}

static bool
spool_qid_valid(const char *qid)
{
	size_t i;

	for (i = 0; qid[i] != '\0'; i++) {
		if (i >= SPOOL_QID_LEN ||
		    !((qid[i] >= '0' && qid[i] <= '9') || (qid[i] >= 'A' && qid[i] <= 'V')))
			return false;
	}
	return i == SPOOL_QID_LEN;
}

/* mkdir -p, each created component with mode */
static int
spool_mkdirs(const char *dir, mode_t mode, const char **error_r)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
		*error_r = spool_err("spool path too long: %s", dir);
		return -1;
	}
	for (char *p = path + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(path, mode) == -1 && errno != EEXIST) {
			log_warn("mkdir %s", path);
			*error_r = spool_err("mkdir %s: %s", path, strerror(errno));
			return -1;
		}
		*p = c;
		if (c == '\0')
			break;
	}
	struct stat st;
	if (stat(dir, &st) == -1) {
		*error_r = spool_err("stat %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		*error_r = spool_err("%s: not a directory", dir);
		return -1;
	}
	return 0;
}

int
spool_prepare(const char *dir, uid_t uid, gid_t gid, const char **error_r)
{
	static char path[PATH_MAX];
	if (fsdir_ensure(dir, geteuid(), getegid(), 0700, NULL, error_r) == -1)
		return -1;
	if (snprintf(path, sizeof(path), "%s/tmp", dir) >= (int)sizeof(path)) {
		*error_r = spool_err("spool path too long: %s", dir);
		return -1;
	}
	if (fsdir_ensure(path, uid, gid, 0700, NULL, error_r) == -1)
		return -1;
	if (geteuid() != 0)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, CONFINE_EMPTY_SUBDIR);
	if (fsdir_ensure(path, 0, 0, 0555, NULL, error_r) == -1)
		return -1;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		*error_r = spool_err("open %s: %s", path, strerror(errno));
		return -1;
	}
	int r = confine_check_empty_dir(fd, path, error_r);
	close(fd);
	return r;
}

/* remove spool/tmp files whose owner process ("<qid>.<pid>") is gone */
static void
spool_sweep(int tmpfd, const char *tmpdir)
{
	int fd = dup(tmpfd);
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	if (d == NULL) {
		log_warn("opendir %s", tmpdir);
		if (fd != -1)
			close(fd);
		return;
	}
	struct dirent *de;
	while ((errno = 0, de = readdir(d)) != NULL) {
		const char *dot = strrchr(de->d_name, '.');
		if (dot == NULL || dot == de->d_name || dot[1] == '\0')
			continue;
		char *end;
		errno = 0;
		long pid = strtol(dot + 1, &end, 10);
		if (*end != '\0' || errno != 0 || pid <= 0 || pid > INT_MAX)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;	/* alive (EPERM: alive, another user's) */
		if (unlinkat(dirfd(d), de->d_name, 0) == -1)
			log_warn("unlink %s/%s", tmpdir, de->d_name);
		else
			log_info("spool: removed %s/%s of dead process %ld", tmpdir,
			    de->d_name, pid);
	}
	if (errno != 0)
		log_warn("readdir %s", tmpdir);
	closedir(d);
}

/* begin a transaction, adopting a map another process has grown */
static int
spool_txn_begin(struct spool *sp, unsigned flags, MDB_txn **txn_r)
{
	int rc = mdb_txn_begin(sp->env, NULL, flags, txn_r);
	if (rc == MDB_MAP_RESIZED) {
		rc = mdb_env_set_mapsize(sp->env, 0);
		if (rc == 0)
			rc = mdb_txn_begin(sp->env, NULL, flags, txn_r);
	}
	return rc;
}

static struct spool *
spool_new(const char *dir, bool readonly)
{
	struct spool *sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		return NULL;
	sp->dir = strdup(dir);
	if (sp->dir == NULL || asprintf(&sp->tmpdir, "%s/tmp", dir) == -1) {
		free(sp->dir);
		free(sp);
		return NULL;
	}
	sp->readonly = readonly;
	sp->tmpfd = -1;
	sp->pid = getpid();
	sp->batch_max = SPOOL_BATCH_MAX_DEFAULT;
	sp->pending_tail = &sp->pending;
	return sp;
}

static void
spool_free(struct spool *sp)
{
	if (sp->tmpfd != -1)
		close(sp->tmpfd);
	free(sp->dir);
	free(sp->tmpdir);
	free(sp);
}

static int
spool_env_open(struct spool *sp, uint64_t mapsize, const char **error_r)
{
	unsigned flags = MDB_NOTLS | (sp->readonly ? MDB_RDONLY : 0);
	int rc = mdb_env_create(&sp->env);
	if (rc != 0) {
		*error_r = spool_err("mdb_env_create: %s", spool_strerror(rc));
		return -1;
	}
	if ((rc = mdb_env_set_maxdbs(sp->env, SPOOL_MAXDBS)) != 0 ||
	    (!sp->readonly && (rc = mdb_env_set_mapsize(sp->env, mapsize)) != 0) ||
	    (rc = mdb_env_open(sp->env, sp->dir, flags, SPOOL_FILE_MODE)) != 0) {
		*error_r = spool_err("open spool %s: %s", sp->dir, spool_strerror(rc));
		mdb_env_close(sp->env);
		sp->env = NULL;
		return -1;
	}
	/* readers killed mid-transaction pin old pages until cleared */
	int dead = 0;
	if ((rc = mdb_reader_check(sp->env, &dead)) != 0)
		log_warnx("spool %s: mdb_reader_check: %s", sp->dir, spool_strerror(rc));

	MDB_txn *txn;
	rc = spool_txn_begin(sp, sp->readonly ? MDB_RDONLY : 0, &txn);
	if (rc == 0) {
		unsigned dbflags = sp->readonly ? 0 : MDB_CREATE;
		rc = mdb_dbi_open(txn, SPOOL_DB_ENV, dbflags, &sp->dbi_env);
		if (rc == 0)
			rc = mdb_dbi_open(txn, SPOOL_DB_BODY, dbflags, &sp->dbi_body);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	if (rc != 0) {
		*error_r = spool_err(rc == MDB_NOTFOUND ? "%s is not a relayvisor spool" :
		    "open spool %s: %s", sp->dir, spool_strerror(rc));
		mdb_env_close(sp->env);
		sp->env = NULL;
		return -1;
	}
	return 0;
}

int
spool_open(const char *dir, uint64_t mapsize, struct spool **sp_r,
    const char **error_r)
{
	struct spool *sp = spool_new(dir, false);
	if (sp == NULL) {
		*error_r = spool_err("out of memory");
		return -1;
	}
	if (spool_mkdirs(dir, SPOOL_DIR_MODE, error_r) == -1 ||
	    spool_mkdirs(sp->tmpdir, SPOOL_DIR_MODE, error_r) == -1 ||
	    spool_env_open(sp, mapsize != 0 ? mapsize : SPOOL_MAPSIZE_DEFAULT,
	    error_r) == -1) {
		spool_free(sp);
		return -1;
	}
	sp->tmpfd = open(sp->tmpdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sp->tmpfd == -1) {
		*error_r = spool_err("open %s: %s", sp->tmpdir, strerror(errno));
		mdb_env_close(sp->env);
		spool_free(sp);
		return -1;
	}
	/* data.mdb and lock.mdb may just have been created: make the names durable
	   along with the first commit */
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1)
		log_warn("open %s", dir);
	else {
		if (fsync(dfd) == -1)
			log_warn("fsync %s", dir);
		close(dfd);
	}
	spool_sweep(sp->tmpfd, sp->tmpdir);
	*sp_r = sp;
	return 0;
}

int
spool_open_readonly(const char *dir, struct spool **sp_r, const char **error_r)
{
	char path[PATH_MAX];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/data.mdb", dir) >= (int)sizeof(path)) {
		*error_r = spool_err("spool path too long: %s", dir);
		return -1;
	}
	if (stat(path, &st) == -1) {
		*error_r = spool_err(errno == ENOENT ? "no spool at %s (%s missing)" :
		    "no spool at %s (stat %s: %s)", dir, path, strerror(errno));
		return -1;
	}
	struct spool *sp = spool_new(dir, true);
	if (sp == NULL) {
		*error_r = spool_err("out of memory");
		return -1;
	}
	if (spool_env_open(sp, 0, error_r) == -1) {
		spool_free(sp);
		return -1;
	}
	*sp_r = sp;
	return 0;
}

static void spool_msg_free(struct spool_msg *m);

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (!spool_inherited(sp))
		spool_async_stop(sp);
	if (sp->n_pending > 0)
		log_warnx("spool: closing with %zu uncommitted messages", sp->n_pending);
	struct spool_msg *m;
	while ((m = sp->pending) != NULL) {
		sp->pending = m->next;
		spool_msg_free(m);
	}
	/* an inherited handle belongs to the parent: leave its mapping alone */
	if (sp->env != NULL && !spool_inherited(sp))
		mdb_env_close(sp->env);
	spool_free(sp);
}

/* --- building a message ------------------------------------------------------ */

struct spool_msg *
spool_msg_begin(struct spool *sp)
{
	if (sp->readonly || spool_inherited(sp)) {
		log_warnx("spool: message begun on %s handle",
		    sp->readonly ? "a read-only" : "an inherited");
		return NULL;
	}
	struct spool_msg *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->sp = sp;
	m->fd = -1;
	spool_qid_new(m->qid, &m->arrival);
	return m;
}

const char *
spool_msg_qid(const struct spool_msg *m)
{
	return m->qid;
}

static bool
spool_value_ok(const char *v)
{
	return strpbrk(v, "\r\n") == NULL;
}

int
spool_msg_set_sender(struct spool_msg *m, const char *sender)
{
	if (!spool_value_ok(sender)) {
		errno = EINVAL;
		return -1;
	}
	char *s = strdup(sender);
	if (s == NULL)
		return -1;
	free(m->sender);
	m->sender = s;
	return 0;
}

int
spool_msg_add_rcpt(struct spool_msg *m, const char *rcpt)
{
	if (!spool_value_ok(rcpt)) {
		errno = EINVAL;
		return -1;
	}
	if (m->n_rcpts == m->cap_rcpts) {
		size_t cap = m->cap_rcpts ? m->cap_rcpts * 2 : 4;
		char **v = reallocarray(m->rcpts, cap, sizeof(*v));
		if (v == NULL)
			return -1;
		m->rcpts = v;
		m->cap_rcpts = cap;
	}
	if ((m->rcpts[m->n_rcpts] = strdup(rcpt)) == NULL)
		return -1;
	m->n_rcpts++;
	return 0;
}

static bool
spool_key_builtin(const char *key)
{
	static const char *const builtin[] = {
		"version", "arrival", "size", "sender", "rcpt", "qid",
	};
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (strcmp(key, builtin[i]) == 0)
			return true;
	return false;
}

static bool
spool_key_ok(const char *key)
{
	if (*key == '\0' || spool_key_builtin(key))
		return false;
	for (const char *p = key; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '_' || *p == '-'))
			return false;
	return true;
}

int
spool_msg_set_attr(struct spool_msg *m, const char *key, const char *value)
{
	if (!spool_key_ok(key) || !spool_value_ok(value)) {
		errno = EINVAL;
		return -1;
	}
	char *v = strdup(value);
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < m->n_attrs; i++) {
		if (strcmp(m->attrs[i].key, key) == 0) {
			free(m->attrs[i].value);
			m->attrs[i].value = v;
			return 0;
		}
	}
	if (m->n_attrs == m->cap_attrs) {
		size_t cap = m->cap_attrs ? m->cap_attrs * 2 : 8;
		struct spool_attr *a = reallocarray(m->attrs, cap, sizeof(*a));
		if (a == NULL) {
			free(v);
			return -1;
		}
		m->attrs = a;
		m->cap_attrs = cap;
	}
	if ((m->attrs[m->n_attrs].key = strdup(key)) == NULL) {
		free(v);
		return -1;
	}
	m->attrs[m->n_attrs++].value = v;
	return 0;
}

static int
spool_write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* write the buffered octets to the spill file, creating it first if needed */
static int
spool_msg_flush(struct spool_msg *m, const char **error_r)
{
	if (m->fd == -1) {
		if (m->tmppath == NULL && asprintf(&m->tmppath, "%s/%s.%ld",
		    m->sp->tmpdir, m->qid, (long)getpid()) == -1) {
			m->tmppath = NULL;
			errno = ENOMEM;
			*error_r = spool_err("out of memory");
			return -1;
		}
		m->fd = openat(m->sp->tmpfd, strrchr(m->tmppath, '/') + 1,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (m->fd == -1) {
			int e = errno;
			log_warn("open %s", m->tmppath);
			*error_r = spool_err("open %s: %s", m->tmppath, strerror(e));
			free(m->tmppath);
			m->tmppath = NULL;
			errno = e;
			return -1;
		}
	}
	if (spool_write_all(m->fd, m->buf, m->buf_len) == -1) {
		int e = errno;
		log_warn("write %s", m->tmppath);
		*error_r = spool_err("write %s: %s", m->tmppath, strerror(e));
		errno = e;
		return -1;
	}
	m->file_len += m->buf_len;
	m->buf_len = 0;
	return 0;
}

int
spool_msg_write(struct spool_msg *m, const void *buf, size_t len,
    const char **error_r)
{
	const unsigned char *p = buf;

	if (m->error != 0) {
		errno = m->error;
		*error_r = spool_err("message %s: earlier write failed: %s", m->qid,
		    strerror(m->error));
		return -1;
	}
	while (len > 0) {
		if (m->buf_len == m->buf_cap) {
			if (m->buf_cap < SPOOL_SPILL_THRESHOLD) {
				size_t cap = m->buf_cap ? m->buf_cap * 2 : SPOOL_BUF_INITIAL;
				if (cap > SPOOL_SPILL_THRESHOLD)
					cap = SPOOL_SPILL_THRESHOLD;
				unsigned char *nb = realloc(m->buf, cap);
				if (nb == NULL) {
					m->error = ENOMEM;
					errno = ENOMEM;
					*error_r = spool_err("out of memory");
					return -1;
				}
				m->buf = nb;
				m->buf_cap = cap;
			} else if (spool_msg_flush(m, error_r) == -1) {
				m->error = errno;
				return -1;
			}
		}
		size_t n = m->buf_cap - m->buf_len;
		if (n > len)
			n = len;
		memcpy(m->buf + m->buf_len, p, n);
		m->buf_len += n;
		m->size += n;
		p += n;
		len -= n;
	}
	return 0;
}

uint64_t
spool_msg_size(const struct spool_msg *m)
{
	return m->size;
}

static void
spool_msg_free(struct spool_msg *m)
{
	if (m->fd != -1 && close(m->fd) == -1)
		log_warn("close %s", m->tmppath);
	if (m->tmppath != NULL && unlinkat(m->sp->tmpfd, strrchr(m->tmppath, '/') + 1,
	    0) == -1 && errno != ENOENT)
		log_warn("unlink %s", m->tmppath);
	free(m->tmppath);
	free(m->buf);
	free(m->sender);
	for (size_t i = 0; i < m->n_rcpts; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	for (size_t i = 0; i < m->n_attrs; i++) {
		free(m->attrs[i].key);
		free(m->attrs[i].value);
	}
	free(m->attrs);
	free(m);
}

void
spool_msg_abort(struct spool_msg *m)
{
	if (m != NULL)
		spool_msg_free(m);
}

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
	fprintf(fp, "version: " ENV_VERSION "\narrival: %" PRId64 "\nsize: %" PRIu64
	    "\nsender: %s\n", m->arrival, m->size, m->sender != NULL ? m->sender : "");
	for (size_t i = 0; i < m->n_rcpts; i++)
		fprintf(fp, "rcpt: %s\n", m->rcpts[i]);
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

/* run a written batch's callbacks and free its messages (loop thread) */
static int
spool_batch_finish(struct spool *sp, struct spool_batch *b)
{
	if (b->result == 0 && b->committed > 0)
		sp->commits++;
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
static void
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

/* --- reading ------------------------------------------------------------------ */

struct spool_parsed {
	char *text;			/* copy of the record, lines NUL-terminated */
	struct spool_entry e;
	const char **rcpts;
	bool have_arrival, have_size, have_sender;
};

static void
spool_parsed_free(struct spool_parsed *p)
{
	free(p->text);
	free(p->rcpts);
}

static bool
spool_parse_num(const char *s, uint64_t *v)
{
	if (*s < '0' || *s > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (*end != '\0' || errno != 0)
		return false;
	*v = n;
	return true;
}

/* parse an envelope record defensively: it came from disk */
static int
spool_parse(const char *qid, const MDB_val *val, struct spool_parsed *p,
    const char **error_r)
{
	memset(p, 0, sizeof(*p));
	const char *data = val->mv_data;
	size_t len = val->mv_size;
	if (len == 0 || data[len - 1] != '\n' || memchr(data, '\0', len) != NULL) {
		*error_r = spool_err("%s: malformed envelope", qid);
		return -1;
	}
	if ((p->text = malloc(len + 1)) == NULL) {
		*error_r = spool_err("out of memory");
		return -1;
	}
	memcpy(p->text, data, len);
	p->text[len] = '\0';
	size_t n_lines = 0;
	for (size_t i = 0; i < len; i++)
		n_lines += data[i] == '\n';
	if ((p->rcpts = calloc(n_lines, sizeof(*p->rcpts))) == NULL) {
		*error_r = spool_err("out of memory");
		goto fail;
	}
	p->e.qid = qid;
	bool first = true;
	for (char *line = p->text; *line != '\0'; first = false) {
		char *nl = strchr(line, '\n');
		*nl = '\0';
		char *sep = strstr(line, ": ");
		if (sep == NULL) {
			*error_r = spool_err("%s: malformed envelope line", qid);
			goto fail;
		}
		*sep = '\0';
		const char *key = line, *value = sep + 2;
		uint64_t num;
		if ((strcmp(key, "arrival") == 0 && p->have_arrival) ||
		    (strcmp(key, "size") == 0 && p->have_size) ||
		    (strcmp(key, "sender") == 0 && p->have_sender) ||
		    (!first && strcmp(key, "version") == 0)) {
			*error_r = spool_err("%s: repeated %s line", qid, key);
			goto fail;
		}
		if (first) {
			if (strcmp(key, "version") != 0 || strcmp(value, ENV_VERSION) != 0) {
				*error_r = spool_err("%s: unknown envelope version", qid);
				goto fail;
			}
		} else if (strcmp(key, "arrival") == 0) {
			if (!spool_parse_num(value, &num) || num > INT64_MAX) {
				*error_r = spool_err("%s: bad arrival", qid);
				goto fail;
			}
			p->e.arrival = (int64_t)num;
			p->have_arrival = true;
		} else if (strcmp(key, "size") == 0) {
			if (!spool_parse_num(value, &num)) {
				*error_r = spool_err("%s: bad size", qid);
				goto fail;
			}
			p->e.size = num;
			p->have_size = true;
		} else if (strcmp(key, "sender") == 0) {
			p->e.sender = value;
			p->have_sender = true;
		} else if (strcmp(key, "rcpt") == 0)
			p->rcpts[p->e.n_rcpts++] = value;
		line = nl + 1;
	}
	if (!p->have_arrival || !p->have_size || !p->have_sender) {
		*error_r = spool_err("%s: envelope lacks arrival, size or sender", qid);
		goto fail;
	}
	p->e.rcpts = p->rcpts;
	return 0;
fail:
	spool_parsed_free(p);
	memset(p, 0, sizeof(*p));
	return -1;
}

static int
spool_read_begin(struct spool *sp, MDB_txn **txn_r, const char **error_r)
{
	if (spool_inherited(sp)) {
		*error_r = spool_err("spool handle inherited across fork");
		return -1;
	}
	int rc = spool_txn_begin(sp, MDB_RDONLY, txn_r);
	if (rc != 0) {
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	return 0;
}

int
spool_foreach(struct spool *sp, spool_entry_fn *fn, void *arg, const char **error_r)
{
	MDB_txn *txn;
	MDB_cursor *cur;

	if (spool_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int rc = mdb_cursor_open(txn, sp->dbi_env, &cur);
	if (rc != 0) {
		mdb_txn_abort(txn);
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	MDB_val key, val;
	int ret = 0;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		char qid[SPOOL_QID_MAX];
		struct spool_parsed p;
		const char *err;
		if (key.mv_size >= sizeof(qid)) {
			log_warnx("spool %s: skipping an oversized key", sp->dir);
			continue;
		}
		memcpy(qid, key.mv_data, key.mv_size);
		qid[key.mv_size] = '\0';
		/* one bad record must not hide the rest of the queue */
		if (spool_parse(qid, &val, &p, &err) == -1) {
			log_warnx("spool %s: %s", sp->dir, err);
			continue;
		}
		int stop = fn(&p.e, arg);
		spool_parsed_free(&p);
		if (stop != 0)
			break;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		ret = -1;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return ret;
}

/* look up both records of qid in txn */
static int
spool_lookup(struct spool *sp, MDB_txn *txn, const char *qid, MDB_val *env_r,
    MDB_val *body_r, const char **error_r)
{
	if (!spool_qid_valid(qid)) {
		*error_r = spool_err("%s: no such message", qid);
		return -1;
	}
	MDB_val key = { .mv_size = strlen(qid), .mv_data = (void *)qid };
	int rc = mdb_get(txn, sp->dbi_env, &key, env_r);
	if (rc == 0)
		rc = mdb_get(txn, sp->dbi_body, &key, body_r);
	if (rc == MDB_NOTFOUND) {
		*error_r = spool_err("%s: no such message", qid);
		return -1;
	}
	if (rc != 0) {
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	return 0;
}

int
spool_show(struct spool *sp, const char *qid, FILE *out, const char **error_r)
{
	MDB_txn *txn;
	MDB_val ev, bv;
	struct spool_parsed p;

	if (spool_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int ret = -1;
	if (spool_lookup(sp, txn, qid, &ev, &bv, error_r) == -1 ||
	    spool_parse(qid, &ev, &p, error_r) == -1)
		goto out;
	spool_parsed_free(&p);
	if (fwrite(ev.mv_data, 1, ev.mv_size, out) != ev.mv_size ||
	    fputc('\n', out) == EOF ||
	    fwrite(bv.mv_data, 1, bv.mv_size, out) != bv.mv_size ||
	    fflush(out) == EOF) {
		*error_r = spool_err("write: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	mdb_txn_abort(txn);
	return ret;
}

int
spool_body(struct spool *sp, const char *qid, char **buf, size_t *len,
    const char **error_r)
{
	MDB_txn *txn;
	MDB_val ev, bv;

	if (spool_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int ret = -1;
	if (spool_lookup(sp, txn, qid, &ev, &bv, error_r) == -1)
		goto out;
	if ((*buf = malloc(bv.mv_size + 1)) == NULL) {
		*error_r = spool_err("out of memory");
		goto out;
	}
	memcpy(*buf, bv.mv_data, bv.mv_size);
	(*buf)[bv.mv_size] = '\0';
	*len = bv.mv_size;
	ret = 0;
out:
	mdb_txn_abort(txn);
	return ret;
}

int
spool_verify(struct spool *sp, size_t *count_r, const char **error_r)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val key, val, other;
	char qid[SPOOL_QID_MAX];
	size_t n_env = 0, n_body = 0;
	int rc, ret = -1;

	if (spool_read_begin(sp, &txn, error_r) == -1)
		return -1;
	/* every envelope parses and has a body of the size it states */
	if ((rc = mdb_cursor_open(txn, sp->dbi_env, &cur)) != 0)
		goto lmdb_fail;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		struct spool_parsed p;
		if (key.mv_size >= sizeof(qid)) {
			*error_r = spool_err("oversized key in envelopes");
			goto out;
		}
		memcpy(qid, key.mv_data, key.mv_size);
		qid[key.mv_size] = '\0';
		if (!spool_qid_valid(qid)) {
			*error_r = spool_err("%s: malformed QID", qid);
			goto out;
		}
		if (spool_parse(qid, &val, &p, error_r) == -1)
			goto out;
		uint64_t size = p.e.size;
		spool_parsed_free(&p);
		rc = mdb_get(txn, sp->dbi_body, &key, &other);
		if (rc == MDB_NOTFOUND) {
			*error_r = spool_err("%s: envelope without body", qid);
			goto out;
		}
		if (rc != 0)
			goto lmdb_fail;
		if (other.mv_size != size) {
			*error_r = spool_err("%s: body is %zu octets, envelope says %" PRIu64,
			    qid, other.mv_size, size);
			goto out;
		}
		n_env++;
	}
	if (rc != MDB_NOTFOUND)
		goto lmdb_fail;
	mdb_cursor_close(cur);
	cur = NULL;
	/* every body has an envelope */
	if ((rc = mdb_cursor_open(txn, sp->dbi_body, &cur)) != 0)
		goto lmdb_fail;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		rc = mdb_get(txn, sp->dbi_env, &key, &other);
		if (rc == MDB_NOTFOUND) {
			int n = key.mv_size < sizeof(qid) ? (int)key.mv_size : 0;
			*error_r = spool_err("%.*s: body without envelope", n,
			    (const char *)key.mv_data);
			goto out;
		}
		if (rc != 0)
			goto lmdb_fail;
		n_body++;
	}
	if (rc != MDB_NOTFOUND)
		goto lmdb_fail;
	if (n_body != n_env) {
		*error_r = spool_err("%zu envelopes, %zu bodies", n_env, n_body);
		goto out;
	}
	*count_r = n_env;
	ret = 0;
	goto out;
lmdb_fail:
	*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
out:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return ret;
}
