/*
 * The durable queue (DESIGN.md section 7). One LMDB environment in server.spool,
 * opened by every listener process on its own handle; LMDB serialises the writers
 * across processes and a commit is durable when mdb_txn_commit() returns (default
 * flags: no MDB_NOSYNC/NOMETASYNC; only the qmgr relaxes its own handle's meta
 * flush, spool_relax_meta_sync()). Two named databases keyed by QID:
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
#include "common/spool_internal.h"

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
/* per thread: the commit thread formats errors too */
static _Thread_local char spool_errbuf[512];

const char *
spool_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(spool_errbuf, sizeof(spool_errbuf), fmt, ap);
	va_end(ap);
	return spool_errbuf;
}

const char *
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

int
spool_result(const struct spool *sp, int rc, uint64_t batch_bytes)
{
	if (rc == MDB_MAP_FULL || spool_errno_is_full(rc))
		return ENOSPC;
	if (rc == EIO && spool_fs_full(sp, batch_bytes))
		return ENOSPC;
	return EIO;
}

/*
 * This process's pid, kept current across fork by an atfork handler: the check
 * below runs on every spool call (the qmgr made some eight getpid(2) calls per
 * message).
 */
static pid_t spool_self;

static void
spool_self_refresh(void)
{
	spool_self = getpid();
}

static void
spool_self_atfork(void)
{
	spool_self = getpid();
	if (pthread_atfork(NULL, NULL, spool_self_refresh) != 0)
		spool_self = 0;		/* unknown after a fork: ask every time */
}

static pid_t
spool_getpid(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	if (pthread_once(&once, spool_self_atfork) != 0 || spool_self == 0)
		return getpid();
	return spool_self;
}

bool
spool_inherited(const struct spool *sp)
{
	return sp->pid != spool_getpid();
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

void
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

bool
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
int
spool_txn_begin(struct spool *sp, unsigned flags, MDB_txn **txn_r)
{
	/* one writer at a time: an open queue batch (spool_queue_batch) would
	   hold the write lock this transaction waits for */
	const char *err;
	if (!(flags & MDB_RDONLY) && sp->qbatch != NULL &&
	    spool_queue_flush(sp, &err) == -1)
		log_warnx("%s", err);
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
	sp->wake_fd = -1;
	sp->pid = spool_getpid();
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
			rc = spool_queue_open(sp, txn);
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
spool_relax_meta_sync(struct spool *sp, const char **error_r)
{
	int rc = mdb_env_set_flags(sp->env, MDB_NOMETASYNC, 1);
	if (rc != 0) {
		*error_r = spool_err("spool %s: MDB_NOMETASYNC: %s", sp->dir,
		    spool_strerror(rc));
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

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (!spool_inherited(sp))
		spool_async_stop(sp);
	if (sp->qbatch != NULL)
		spool_queue_batch(sp, false);
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
