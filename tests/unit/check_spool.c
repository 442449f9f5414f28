/*
 * common/spool.c: group commit (many messages, one transaction), byte-exact
 * bodies, spilling large bodies to spool/tmp and sweeping dead processes' files,
 * QIDs across processes, SIGKILL at any moment leaving messages whole or absent,
 * a full map reported as ENOSPC, the read side (foreach, show, verify) and the
 * fork rule. Every test works in its own mkdtemp directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/dsnparam.h"
#include "common/spool.h"
#include "tests/unit/testmain.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char test_root[64];
static char spool_dir[128];
static char tmp_dir[160];

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
setup(void)
{
	snprintf(test_root, sizeof(test_root), "/tmp/check_spool.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(test_root));
	/* two levels that do not exist yet: spool_open creates them */
	snprintf(spool_dir, sizeof(spool_dir), "%s/var/spool", test_root);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tmp", spool_dir);
}

static void
teardown(void)
{
	nftw(test_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct spool *
open_spool(uint64_t mapsize)
{
	struct spool *sp = NULL;
	const char *err = NULL;

	ck_assert_msg(spool_open(spool_dir, mapsize, &sp, &err) == 0, "spool_open: %s",
	    err);
	return sp;
}

static size_t
count_dir(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	struct dirent *de;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static uint64_t
hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* deterministic bytes (all 256 values, CR, LF, NUL included) */
static void
fill_body(unsigned char *buf, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		buf[i] = (unsigned char)(seed >> 56);
	}
}

/* a body defined by its QID, so a reader can check it without being told */
static size_t
qid_body_len(const char *qid, size_t max)
{
	return (size_t)(hash_str(qid) % max);
}

static void
write_body(struct spool_msg *m, size_t len, uint64_t seed)
{
	unsigned char chunk[4096];
	const char *err = NULL;
	size_t done = 0;
	uint64_t s = seed;

	/* chunks that do not line up with the spill threshold */
	while (done < len) {
		size_t n = len - done < 3001 ? len - done : 3001;
		fill_body(chunk, n, s++);
		ck_assert_msg(spool_msg_write(m, chunk, n, &err) == 0, "write: %s", err);
		done += n;
	}
}

static unsigned char *
expected_body(size_t len, uint64_t seed)
{
	unsigned char *b = malloc(len ? len : 1);
	size_t done = 0;
	uint64_t s = seed;

	ck_assert_ptr_nonnull(b);
	while (done < len) {
		size_t n = len - done < 3001 ? len - done : 3001;
		fill_body(b + done, n, s++);
		done += n;
	}
	return b;
}

static void
check_body(struct spool *sp, const char *qid, size_t len, uint64_t seed)
{
	char *buf = NULL;
	size_t blen = 0;
	const char *err = NULL;

	ck_assert_msg(spool_body(sp, qid, &buf, &blen, &err) == 0, "body %s: %s", qid,
	    err);
	ck_assert_uint_eq(blen, len);
	unsigned char *want = expected_body(len, seed);
	ck_assert_msg(memcmp(buf, want, len) == 0, "%s: body differs", qid);
	free(want);
	free(buf);
}

static size_t
verify_count(struct spool *sp)
{
	size_t n = 0;
	const char *err = NULL;

	ck_assert_msg(spool_verify(sp, &n, &err) == 0, "verify: %s", err);
	return n;
}

struct done_rec {
	int calls;
	int result;
	char qid[SPOOL_QID_MAX];
};

static void
rec_done(void *arg, int result, const char *qid)
{
	struct done_rec *r = arg;

	r->calls++;
	r->result = result;
	snprintf(r->qid, sizeof(r->qid), "%s", qid);
}

/* --- group commit --------------------------------------------------------- */

static const struct {
	size_t n;		/* messages finishing in one loop pass */
	size_t body;		/* body size of each */
} batches[] = {
	{ 1, 10 }, { 2, 0 }, { 20, 1000 }, { 50, 5000 },
	{ 8, SPOOL_SPILL_THRESHOLD + 1 }, { 3, 300 * 1024 },
};

struct seen {
	size_t n;
	char last[SPOOL_QID_MAX];
	bool ordered;
	char (*qids)[SPOOL_QID_MAX];
	size_t max;
	const char **senders;
};

static int
collect(const struct spool_entry *e, void *arg)
{
	struct seen *s = arg;

	if (s->n > 0 && strcmp(s->last, e->qid) >= 0)
		s->ordered = false;
	snprintf(s->last, sizeof(s->last), "%s", e->qid);
	if (s->qids != NULL && s->n < s->max)
		snprintf(s->qids[s->n], SPOOL_QID_MAX, "%s", e->qid);
	s->n++;
	return 0;
}

START_TEST(test_batch_one_commit)
{
	size_t n = batches[_i].n, len = batches[_i].body;
	struct spool *sp = open_spool(0);
	struct done_rec *recs = calloc(n, sizeof(*recs));
	char (*qids)[SPOOL_QID_MAX] = calloc(n, SPOOL_QID_MAX);

	for (size_t i = 0; i < n; i++) {
		struct spool_msg *m = spool_msg_begin(sp);
		char addr[64];
		ck_assert_ptr_nonnull(m);
		snprintf(qids[i], SPOOL_QID_MAX, "%s", spool_msg_qid(m));
		snprintf(addr, sizeof(addr), "sender%zu@example.test", i);
		ck_assert_int_eq(spool_msg_set_sender(m, addr), 0);
		for (size_t r = 0; r <= i % 3; r++) {
			snprintf(addr, sizeof(addr), "rcpt%zu.%zu@remote.example", i, r);
			ck_assert_int_eq(spool_msg_add_rcpt(m, addr), 0);
		}
		ck_assert_int_eq(spool_msg_set_attr(m, "client", "unknown[127.0.0.1]"), 0);
		ck_assert_int_eq(spool_msg_set_attr(m, "instance", "lan"), 0);
		write_body(m, len, i);
		ck_assert_uint_eq(spool_msg_size(m), len);
		spool_msg_submit(m, rec_done, &recs[i]);
	}
	ck_assert_uint_eq(spool_pending(sp), n);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(recs[i].calls, 0);	/* no 250 before the commit */

	uint64_t before = spool_commit_count(sp);
	ck_assert_int_eq(spool_commit(sp), (int)n);
	ck_assert_uint_eq(spool_commit_count(sp), before + 1);
	ck_assert_uint_eq(spool_pending(sp), 0);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(recs[i].calls, 1);
		ck_assert_int_eq(recs[i].result, 0);
		ck_assert_str_eq(recs[i].qid, qids[i]);
		check_body(sp, qids[i], len, i);
	}
	/* nothing pending: no transaction at all */
	ck_assert_int_eq(spool_commit(sp), 0);
	ck_assert_uint_eq(spool_commit_count(sp), before + 1);
	spool_close(sp);

	/* another handle, read-only, sees them all in QID (= arrival) order */
	const char *err = NULL;
	ck_assert_int_eq(spool_open_readonly(spool_dir, &sp, &err), 0);
	struct seen s = { .ordered = true };
	ck_assert_int_eq(spool_foreach(sp, collect, &s, &err), 0);
	ck_assert_uint_eq(s.n, n);
	ck_assert(s.ordered);
	ck_assert_uint_eq(verify_count(sp), n);
	for (size_t i = 0; i < n; i++)
		check_body(sp, qids[i], len, i);
	ck_assert_ptr_null(spool_msg_begin(sp));	/* read-only: no writing */
	spool_close(sp);
	free(recs);
	free(qids);
}
END_TEST

static int
check_envelope(const struct spool_entry *e, void *arg)
{
	int *n = arg;
	char want[64];
	size_t i = (size_t)(*n)++;

	snprintf(want, sizeof(want), "sender%zu@example.test", i);
	ck_assert_str_eq(e->sender, want);
	ck_assert_uint_eq(e->n_rcpts, i % 3 + 1);
	for (size_t r = 0; r < e->n_rcpts; r++) {
		snprintf(want, sizeof(want), "rcpt%zu.%zu@remote.example", i, r);
		ck_assert_str_eq(e->rcpts[r], want);
	}
	ck_assert_uint_eq(e->size, 100 + i);
	/* the spool reads CLOCK_REALTIME; time() may read the coarse clock, a
	   tick behind it across a second boundary */
	struct timespec now;
	ck_assert_int_eq(clock_gettime(CLOCK_REALTIME, &now), 0);
	ck_assert(e->arrival >= now.tv_sec - 60 && e->arrival <= now.tv_sec);
	return i == 2;	/* stop after the third */
}

START_TEST(test_foreach_envelope)
{
	struct spool *sp = open_spool(0);
	const char *err = NULL;

	for (size_t i = 0; i < 5; i++) {
		struct spool_msg *m = spool_msg_begin(sp);
		char addr[64];
		snprintf(addr, sizeof(addr), "sender%zu@example.test", i);
		ck_assert_int_eq(spool_msg_set_sender(m, addr), 0);
		for (size_t r = 0; r <= i % 3; r++) {
			snprintf(addr, sizeof(addr), "rcpt%zu.%zu@remote.example", i, r);
			ck_assert_int_eq(spool_msg_add_rcpt(m, addr), 0);
		}
		write_body(m, 100 + i, i);
		spool_msg_submit(m, NULL, NULL);
	}
	ck_assert_int_eq(spool_commit(sp), 5);
	int seen = 0;
	ck_assert_int_eq(spool_foreach(sp, check_envelope, &seen, &err), 0);
	ck_assert_int_eq(seen, 3);
	spool_close(sp);
}
END_TEST

/* --- show ----------------------------------------------------------------- */

static int
get_arrival(const struct spool_entry *e, void *arg)
{
	*(int64_t *)arg = e->arrival;
	return 0;
}

START_TEST(test_show_exact)
{
	static const char body[] = "Received: from x\r\nSubject: t\r\n\r\nbare\rCR\nLF\0NUL\r\n";
	struct spool *sp = open_spool(0);
	struct spool_msg *m = spool_msg_begin(sp);
	const char *err = NULL;

	ck_assert_int_eq(spool_msg_set_sender(m, ""), 0);	/* null sender <> */
	ck_assert_int_eq(spool_msg_add_rcpt(m, "a@b.example"), 0);
	ck_assert_int_eq(spool_msg_add_rcpt(m, "\"x y: z\"@c.example"), 0);
	ck_assert_int_eq(spool_msg_set_attr(m, "client", "unknown[127.0.0.1]"), 0);
	ck_assert_int_eq(spool_msg_set_attr(m, "helo", "old"), 0);
	ck_assert_int_eq(spool_msg_set_attr(m, "helo", "h.example"), 0);	/* replaces */
	ck_assert_int_eq(spool_msg_write(m, body, sizeof(body) - 1, &err), 0);
	char qid[SPOOL_QID_MAX];
	snprintf(qid, sizeof(qid), "%s", spool_msg_qid(m));
	spool_msg_submit(m, NULL, NULL);
	ck_assert_int_eq(spool_commit(sp), 1);

	int64_t arrival = 0;
	ck_assert_int_eq(spool_foreach(sp, get_arrival, &arrival, &err), 0);
	char *want = NULL, *got = NULL;
	size_t wlen = 0, glen = 0;
	FILE *fp = open_memstream(&want, &wlen);
	fprintf(fp, "version: 1\narrival: %lld\nsize: %zu\nsender: \nrcpt: a@b.example\n"
	    "rcpt: \"x y: z\"@c.example\nclient: unknown[127.0.0.1]\nhelo: h.example\n\n",
	    (long long)arrival, sizeof(body) - 1);
	fwrite(body, 1, sizeof(body) - 1, fp);
	fclose(fp);
	fp = open_memstream(&got, &glen);
	ck_assert_msg(spool_show(sp, qid, fp, &err) == 0, "show: %s", err);
	fclose(fp);
	ck_assert_uint_eq(glen, wlen);
	ck_assert(memcmp(got, want, wlen) == 0);
	free(want);
	free(got);
	spool_close(sp);
}
END_TEST

/* RFC 3461 parameters go into the envelope (version 2) and come back */
START_TEST(test_dsn_envelope)
{
	struct spool *sp = open_spool(0);
	const char *err = NULL;
	char qid[2][SPOOL_QID_MAX];

	struct spool_msg *m = spool_msg_begin(sp);
	snprintf(qid[0], sizeof(qid[0]), "%s", spool_msg_qid(m));
	ck_assert_int_eq(spool_msg_set_sender(m, "s@example.test"), 0);
	ck_assert_int_eq(spool_msg_set_dsn(m, DSNPARAM_RET_HDRS, "QID+2B1"), 0);
	ck_assert_int_eq(spool_msg_add_rcpt(m, "a@remote.example"), 0);
	ck_assert_int_eq(spool_msg_set_rcpt_dsn(m, DSNPARAM_NOTIFY_SUCCESS |
	    DSNPARAM_NOTIFY_FAILURE, "rfc822;A+40remote.example"), 0);
	ck_assert_int_eq(spool_msg_add_rcpt(m, "b@remote.example"), 0);
	ck_assert_int_eq(spool_msg_add_rcpt(m, "c@remote.example"), 0);
	ck_assert_int_eq(spool_msg_set_rcpt_dsn(m, DSNPARAM_NOTIFY_NEVER, NULL), 0);
	/* refused: invalid values, never half stored */
	ck_assert_int_eq(spool_msg_set_dsn(m, 7, NULL), -1);
	ck_assert_int_eq(spool_msg_set_dsn(m, DSNPARAM_RET_FULL, "a=b"), -1);
	ck_assert_int_eq(spool_msg_set_rcpt_dsn(m, DSNPARAM_NOTIFY_NEVER |
	    DSNPARAM_NOTIFY_DELAY, NULL), -1);
	ck_assert_int_eq(spool_msg_set_rcpt_dsn(m, 0, "x400;a"), -1);
	write_body(m, 10, 1);
	spool_msg_submit(m, NULL, NULL);
	/* without DSN parameters: still version 1, readable by older readers */
	m = spool_msg_begin(sp);
	snprintf(qid[1], sizeof(qid[1]), "%s", spool_msg_qid(m));
	ck_assert_int_eq(spool_msg_set_sender(m, "s@example.test"), 0);
	ck_assert_int_eq(spool_msg_add_rcpt(m, "a@remote.example"), 0);
	write_body(m, 10, 1);
	spool_msg_submit(m, NULL, NULL);
	ck_assert_int_eq(spool_commit(sp), 2);

	struct spool_message sm;
	ck_assert_msg(spool_message_load(sp, qid[0], false, &sm, &err) == 0, "%s", err);
	ck_assert_int_eq(sm.e.dsn_ret, DSNPARAM_RET_HDRS);
	ck_assert_str_eq(sm.e.envid, "QID+2B1");
	ck_assert_uint_eq(sm.e.n_rcpts, 3);
	ck_assert_uint_eq(sm.e.notify[0], DSNPARAM_NOTIFY_SUCCESS | DSNPARAM_NOTIFY_FAILURE);
	ck_assert_str_eq(sm.e.orcpt[0], "rfc822;A+40remote.example");
	ck_assert_uint_eq(sm.e.notify[1], 0);
	ck_assert_ptr_null(sm.e.orcpt[1]);
	ck_assert_uint_eq(sm.e.notify[2], DSNPARAM_NOTIFY_NEVER);
	ck_assert_ptr_null(sm.e.orcpt[2]);
	spool_message_free(&sm);
	ck_assert_msg(spool_message_load(sp, qid[1], false, &sm, &err) == 0, "%s", err);
	ck_assert_int_eq(sm.e.dsn_ret, DSNPARAM_RET_NONE);
	ck_assert_ptr_null(sm.e.envid);
	ck_assert_uint_eq(sm.e.notify[0], 0);
	ck_assert_ptr_null(sm.e.orcpt[0]);
	spool_message_free(&sm);

	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);
	ck_assert_int_eq(spool_show(sp, qid[0], fp, &err), 0);
	fclose(fp);
	ck_assert_msg(strncmp(out, "version: 2\n", 11) == 0, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "\nsender: s@example.test\nret: HDRS\n"
	    "envid: QID+2B1\nrcpt: a@remote.example\nnotify: SUCCESS,FAILURE\n"
	    "orcpt: rfc822;A+40remote.example\nrcpt: b@remote.example\n"
	    "rcpt: c@remote.example\nnotify: NEVER\n"));
	free(out);
	out = NULL;
	fp = open_memstream(&out, &len);
	ck_assert_int_eq(spool_show(sp, qid[1], fp, &err), 0);
	fclose(fp);
	ck_assert_msg(strncmp(out, "version: 1\n", 11) == 0, "%s", out);
	free(out);
	size_t n;
	ck_assert_msg(spool_verify(sp, &n, &err) == 0, "%s", err);
	ck_assert_uint_eq(n, 2);
	spool_close(sp);
}
END_TEST

static const char *const unknown_qids[] = {
	"00000000000000000000",		/* well-formed, absent */
	"ZZZZZZZZZZZZZZZZZZZZ",		/* outside the alphabet */
	"0000",				/* too short */
	"000000000000000000000000000000000000000",	/* too long */
	"../../etc/passwd", "",
};

START_TEST(test_show_unknown)
{
	struct spool *sp = open_spool(0);
	const char *err = NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = fopen("/dev/null", "w");

	ck_assert_int_eq(spool_show(sp, unknown_qids[_i], fp, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "no such message"));
	err = NULL;
	ck_assert_int_eq(spool_body(sp, unknown_qids[_i], &buf, &len, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "no such message"));
	fclose(fp);
	spool_close(sp);
}
END_TEST

START_TEST(test_readonly_missing)
{
	struct spool *sp = NULL;
	const char *err = NULL;

	ck_assert_int_eq(spool_open_readonly(spool_dir, &sp, &err), -1);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_nonnull(strstr(err, "no spool at"));
	ck_assert_ptr_nonnull(strstr(err, spool_dir));
	/* a directory without a spool in it is no spool either */
	err = NULL;
	ck_assert_int_eq(spool_open_readonly(test_root, &sp, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "no spool at"));
}
END_TEST

/* --- envelope values ------------------------------------------------------- */

static const struct {
	const char *what;	/* "sender", "rcpt" or an attribute key */
	const char *value;
	int ok;
} values[] = {
	{ "sender", "a@b.example", 0 },
	{ "sender", "", 0 },
	{ "sender", "a@b\n.example", -1 },
	{ "sender", "a@b\r", -1 },
	{ "rcpt", "\"quoted local\"@x.example", 0 },
	{ "rcpt", "x@y\nrcpt: evil@z", -1 },
	{ "client", "unknown[192.0.2.7]", 0 },
	{ "proto", "ESMTP", 0 },
	{ "x-trace_1", "", 0 },
	{ "helo", "a\nb", -1 },
	{ "Client", "x", -1 },
	{ "rcpt:", "x", -1 },
	{ "a b", "x", -1 },
	{ "", "x", -1 },
	{ "version", "2", -1 },
	{ "size", "1", -1 },
	{ "arrival", "1", -1 },
};

START_TEST(test_values)
{
	struct spool *sp = open_spool(0);
	struct spool_msg *m = spool_msg_begin(sp);
	int r;

	if (strcmp(values[_i].what, "sender") == 0)
		r = spool_msg_set_sender(m, values[_i].value);
	else if (strcmp(values[_i].what, "rcpt") == 0)
		r = spool_msg_add_rcpt(m, values[_i].value);
	else
		r = spool_msg_set_attr(m, values[_i].what, values[_i].value);
	ck_assert_int_eq(r, values[_i].ok);
	/* whatever was accepted round-trips; nothing injects a line */
	spool_msg_submit(m, NULL, NULL);
	ck_assert_int_eq(spool_commit(sp), 1);
	ck_assert_uint_eq(verify_count(sp), 1);
	spool_close(sp);
}
END_TEST

/* --- spill ----------------------------------------------------------------- */

START_TEST(test_spill_large)
{
	size_t len = 5 * 1024 * 1024;
	struct spool *sp = open_spool(0);
	struct mallinfo2 before = mallinfo2();
	struct spool_msg *m = spool_msg_begin(sp);
	struct done_rec rec = { 0 };
	char path[256];
	struct stat st;

	write_body(m, SPOOL_SPILL_THRESHOLD - 1, 7);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);	/* small: still in memory */
	spool_msg_abort(m);

	m = spool_msg_begin(sp);
	write_body(m, len, 42);
	struct mallinfo2 after = mallinfo2();
	/* memory stays bounded by the threshold, not the message */
	ck_assert_msg(after.uordblks < before.uordblks + 4 * SPOOL_SPILL_THRESHOLD,
	    "heap grew by %zu", after.uordblks - before.uordblks);
	ck_assert_uint_eq(count_dir(tmp_dir), 1);
	snprintf(path, sizeof(path), "%s/%s.%ld", tmp_dir, spool_msg_qid(m),
	    (long)getpid());
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert(st.st_size >= (off_t)(len - SPOOL_SPILL_THRESHOLD));
	ck_assert_uint_eq(spool_msg_size(m), len);

	spool_msg_submit(m, rec_done, &rec);
	ck_assert_uint_eq(count_dir(tmp_dir), 1);	/* until committed */
	ck_assert_int_eq(spool_commit(sp), 1);
	ck_assert_int_eq(rec.calls, 1);
	ck_assert_int_eq(rec.result, 0);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);
	check_body(sp, rec.qid, len, 42);
	ck_assert_uint_eq(verify_count(sp), 1);
	spool_close(sp);
}
END_TEST

/*
 * A body past SPOOL_SPILL_THRESHOLD stays in memory (no file to create, write,
 * read back and unlink) while the process's budget lasts; once the bodies held
 * use it up, the next large one spills, and an ended message gives its share
 * back.
 */
START_TEST(test_mem_budget)
{
	struct spool *sp = open_spool(0);
	enum { N = 20 };
	struct spool_msg *big[N];
	const size_t per = SPOOL_MEM_MSG_MAX - SPOOL_SPILL_THRESHOLD;
	const size_t fit = SPOOL_MEM_BUDGET / per;
	struct done_rec rec = { 0 };

	ck_assert_uint_lt(fit, N);
	struct spool_msg *m = spool_msg_begin(sp);
	write_body(m, 100 * 1024, 3);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);	/* 100 KB: no spill file */
	spool_msg_abort(m);

	for (size_t i = 0; i < N; i++) {
		big[i] = spool_msg_begin(sp);
		write_body(big[i], SPOOL_MEM_MSG_MAX, 10 + i);
		ck_assert_uint_eq(count_dir(tmp_dir), i < fit ? 0 : i + 1 - fit);
	}
	/* the budget is spent (what is left is less than 200 KB needs) */
	m = spool_msg_begin(sp);
	write_body(m, 200 * 1024, 4);
	ck_assert_uint_eq(count_dir(tmp_dir), N - fit + 1);
	spool_msg_abort(m);
	/* a message over SPOOL_MEM_MSG_MAX spills whatever the budget */
	for (size_t i = 0; i < N; i++)
		spool_msg_abort(big[i]);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);
	m = spool_msg_begin(sp);
	write_body(m, SPOOL_MEM_MSG_MAX + 1, 5);
	ck_assert_uint_eq(count_dir(tmp_dir), 1);
	spool_msg_abort(m);

	/* ended messages gave the budget back: 100 KB stays in memory, commits */
	m = spool_msg_begin(sp);
	ck_assert_int_eq(spool_msg_set_sender(m, "a@b.example"), 0);
	ck_assert_int_eq(spool_msg_add_rcpt(m, "c@d.example"), 0);
	write_body(m, 100 * 1024, 6);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);
	spool_msg_submit(m, rec_done, &rec);
	ck_assert_int_eq(spool_commit(sp), 1);
	ck_assert_int_eq(rec.result, 0);
	check_body(sp, rec.qid, 100 * 1024, 6);
	spool_close(sp);
}
END_TEST

struct body_seen {
	size_t len;
	uint64_t seed;
	int calls;
};

static int
body_seen_cb(void *arg, const void *body, size_t len)
{
	struct body_seen *b = arg;
	unsigned char *want = expected_body(b->len, b->seed);
	b->calls++;
	ck_assert_uint_eq(len, b->len);
	ck_assert(memcmp(body, want, len) == 0);
	free(want);
	return 7;
}

/* the qmgr's way to the body: the map itself, and the size without a copy */
START_TEST(test_body_with)
{
	struct spool *sp = open_spool(0);
	struct spool_msg *m = spool_msg_begin(sp);
	struct done_rec rec = { 0 };
	const char *err = NULL;

	ck_assert_int_eq(spool_msg_set_sender(m, "a@b.example"), 0);
	ck_assert_int_eq(spool_msg_add_rcpt(m, "c@d.example"), 0);
	write_body(m, 100 * 1024 + 17, 9);
	spool_msg_submit(m, rec_done, &rec);
	ck_assert_int_eq(spool_commit(sp), 1);

	struct body_seen b = { 100 * 1024 + 17, 9, 0 };
	ck_assert_int_eq(spool_body_with(sp, rec.qid, body_seen_cb, &b, &err), 7);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_int_eq(spool_body_with(sp, "0000000000000000000A", body_seen_cb, &b, &err),
	    -1);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_ptr_nonnull(err);

	struct spool_message sm;
	ck_assert_int_eq(spool_message_load(sp, rec.qid, false, &sm, &err), 0);
	ck_assert_ptr_null(sm.body);
	ck_assert_uint_eq(sm.body_len, 100 * 1024 + 17);
	spool_message_free(&sm);
	spool_close(sp);
}
END_TEST

START_TEST(test_abort_leaves_nothing)
{
	struct spool *sp = open_spool(0);
	struct spool_msg *m = spool_msg_begin(sp);

	ck_assert_int_eq(spool_msg_set_sender(m, "a@b.example"), 0);
	ck_assert_int_eq(spool_msg_add_rcpt(m, "c@d.example"), 0);
	write_body(m, SPOOL_MEM_MSG_MAX + 1, 1);
	ck_assert_uint_eq(count_dir(tmp_dir), 1);
	spool_msg_abort(m);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);
	ck_assert_uint_eq(spool_pending(sp), 0);
	ck_assert_int_eq(spool_commit(sp), 0);
	ck_assert_uint_eq(spool_commit_count(sp), 0);
	ck_assert_uint_eq(verify_count(sp), 0);
	spool_close(sp);
}
END_TEST

START_TEST(test_sweep_dead_only)
{
	struct spool *sp = open_spool(0);	/* creates the directories */
	spool_close(sp);

	pid_t dead = fork();
	ck_assert_int_ne(dead, -1);
	if (dead == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(dead, NULL, 0), dead);

	char p_dead[256], p_live[256], p_other[256], p_parent[256];
	snprintf(p_dead, sizeof(p_dead), "%s/0000000000000000000A.%ld", tmp_dir,
	    (long)dead);
	snprintf(p_live, sizeof(p_live), "%s/0000000000000000000B.%ld", tmp_dir,
	    (long)getpid());
	snprintf(p_parent, sizeof(p_parent), "%s/0000000000000000000C.%ld", tmp_dir,
	    (long)getppid());
	snprintf(p_other, sizeof(p_other), "%s/README", tmp_dir);
	const char *paths[] = { p_dead, p_live, p_parent, p_other };
	for (size_t i = 0; i < N(paths); i++) {
		int fd = open(paths[i], O_CREAT | O_WRONLY, 0600);
		ck_assert_int_ne(fd, -1);
		close(fd);
	}
	sp = open_spool(0);
	ck_assert_int_eq(access(p_dead, F_OK), -1);
	ck_assert_int_eq(access(p_live, F_OK), 0);
	ck_assert_int_eq(access(p_parent, F_OK), 0);
	ck_assert_int_eq(access(p_other, F_OK), 0);
	spool_close(sp);
}
END_TEST

/* --- callbacks --------------------------------------------------------------- */

START_TEST(test_cancel_callback)
{
	struct spool *sp = open_spool(0);
	struct done_rec a = { 0 }, b = { 0 };
	char qb[SPOOL_QID_MAX];

	struct spool_msg *m = spool_msg_begin(sp);
	write_body(m, 10, 1);
	spool_msg_submit(m, rec_done, &a);
	m = spool_msg_begin(sp);
	snprintf(qb, sizeof(qb), "%s", spool_msg_qid(m));
	write_body(m, 20, 2);
	spool_msg_submit(m, rec_done, &b);
	spool_cancel_callback(sp, &b);		/* b's session went away */
	ck_assert_int_eq(spool_commit(sp), 2);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(b.calls, 0);
	check_body(sp, qb, 20, 2);		/* still committed */
	spool_close(sp);
}
END_TEST

struct chain {
	struct spool *sp;
	int calls;
	struct done_rec peer;	/* cancelled from the first callback */
	struct done_rec next;	/* submitted from the first callback */
	int nested;
};

static void
chain_done(void *arg, int result, const char *qid)
{
	struct chain *c = arg;

	(void)qid;
	ck_assert_int_eq(result, 0);
	c->calls++;
	spool_cancel_callback(c->sp, &c->peer);
	struct spool_msg *m = spool_msg_begin(c->sp);
	ck_assert_ptr_nonnull(m);
	write_body(m, 5, 5);
	spool_msg_submit(m, rec_done, &c->next);
	c->nested = spool_commit(c->sp);	/* does nothing from a callback */
}

START_TEST(test_callback_submits)
{
	struct spool *sp = open_spool(0);
	struct chain c = { .sp = sp };

	struct spool_msg *m = spool_msg_begin(sp);
	spool_msg_submit(m, chain_done, &c);
	m = spool_msg_begin(sp);
	spool_msg_submit(m, rec_done, &c.peer);
	ck_assert_int_eq(spool_commit(sp), 2);
	ck_assert_int_eq(c.calls, 1);
	ck_assert_int_eq(c.nested, 0);
	ck_assert_int_eq(c.peer.calls, 0);	/* cancelled while in flight */
	ck_assert_int_eq(c.next.calls, 0);
	ck_assert_uint_eq(spool_pending(sp), 1);
	ck_assert_int_eq(spool_commit(sp), 1);
	ck_assert_int_eq(c.next.calls, 1);
	ck_assert_int_eq(c.next.result, 0);
	ck_assert_uint_eq(spool_commit_count(sp), 2);
	ck_assert_uint_eq(verify_count(sp), 3);
	spool_close(sp);
}
END_TEST

/* --- map full ---------------------------------------------------------------- */

START_TEST(test_map_full)
{
	struct spool *sp = open_spool(1024 * 1024);
	enum { PER_BATCH = 3, BODY = 40 * 1024, MAXMSG = 300 };
	char (*ok)[SPOOL_QID_MAX] = calloc(MAXMSG, SPOOL_QID_MAX);
	size_t n_ok = 0;
	bool full = false;

	for (int round = 0; round < MAXMSG / PER_BATCH && !full; round++) {
		struct done_rec recs[PER_BATCH] = { { 0 } };
		for (int i = 0; i < PER_BATCH; i++) {
			struct spool_msg *m = spool_msg_begin(sp);
			write_body(m, BODY, (uint64_t)(round * PER_BATCH + i));
			spool_msg_submit(m, rec_done, &recs[i]);
		}
		int r = spool_commit(sp);
		for (int i = 0; i < PER_BATCH; i++)
			ck_assert_int_eq(recs[i].calls, 1);
		if (r == -1) {
			full = true;
			char *buf;
			size_t len;
			const char *err;
			for (int i = 0; i < PER_BATCH; i++) {
				ck_assert_int_eq(recs[i].result, ENOSPC);
				/* none of the failed batch is there */
				ck_assert_int_eq(spool_body(sp, recs[i].qid, &buf, &len,
				    &err), -1);
			}
		} else {
			ck_assert_int_eq(r, PER_BATCH);
			for (int i = 0; i < PER_BATCH; i++) {
				ck_assert_int_eq(recs[i].result, 0);
				snprintf(ok[n_ok++], SPOOL_QID_MAX, "%s", recs[i].qid);
			}
		}
	}
	ck_assert_msg(full, "1 MiB map never filled");
	ck_assert_uint_gt(n_ok, 0);
	ck_assert_uint_eq(spool_commit_count(sp), n_ok / PER_BATCH);
	ck_assert_uint_eq(verify_count(sp), n_ok);
	for (size_t i = 0; i < n_ok; i++)
		check_body(sp, ok[i], BODY, i);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);
	spool_close(sp);
	free(ok);
}
END_TEST

/* a failed spill write costs that message only, not its batch */
START_TEST(test_write_error_own_message)
{
	struct spool *sp = open_spool(0);
	struct done_rec a = { 0 }, b = { 0 };
	unsigned char chunk[64 * 1024];
	const char *err = NULL;
	int r = 0;

	/* the spill file may not grow past 512 KiB: write(2) fails with EFBIG */
	ck_assert(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
	struct rlimit rl = { 512 * 1024, 512 * 1024 };
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);

	struct spool_msg *ma = spool_msg_begin(sp);
	write_body(ma, 1000, 1);
	struct spool_msg *mb = spool_msg_begin(sp);
	char qb[SPOOL_QID_MAX];
	snprintf(qb, sizeof(qb), "%s", spool_msg_qid(mb));
	memset(chunk, 'x', sizeof(chunk));
	for (int i = 0; i < 32 && r == 0; i++)
		r = spool_msg_write(mb, chunk, sizeof(chunk), &err);
	ck_assert_int_eq(r, -1);
	ck_assert_ptr_nonnull(strstr(err, tmp_dir));
	/* later writes keep failing: the body has a hole */
	ck_assert_int_eq(spool_msg_write(mb, "y", 1, &err), -1);
	spool_msg_submit(ma, rec_done, &a);
	spool_msg_submit(mb, rec_done, &b);
	ck_assert_int_eq(spool_commit(sp), 1);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(a.result, 0);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_int_eq(b.result, EIO);
	char *buf;
	size_t len;
	ck_assert_int_eq(spool_body(sp, qb, &buf, &len, &err), -1);
	ck_assert_uint_eq(verify_count(sp), 1);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);
	spool_close(sp);
}
END_TEST

/* records a reader must refuse (written behind the spool's back) */
static const struct {
	const char *env;
	size_t env_len;		/* 0: strlen */
} corrupt[] = {
	{ "", 0 },
	{ "version: 3\narrival: 1\nsize: 3\nsender: \n", 0 },
	/* version 2: the DSN lines, each checked as the listener checks them */
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nnotify: NEVER\nrcpt: a@b\n", 0 },
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nrcpt: a@b\nnotify: NEVER,DELAY\n", 0 },
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nrcpt: a@b\nnotify: SOMETIMES\n", 0 },
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nrcpt: a@b\nnotify: DELAY\nnotify: DELAY\n", 0 },
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nrcpt: a@b\norcpt: x400;a\n", 0 },
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nrcpt: a@b\norcpt: rfc822;a+4\n", 0 },
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nret: SOME\n", 0 },
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nret: FULL\nret: HDRS\n", 0 },
	{ "version: 2\narrival: 1\nsize: 3\nsender: \nenvid: a=b\n", 0 },
	{ "arrival: 1\nversion: 1\nsize: 3\nsender: \n", 0 },
	{ "version: 1\narrival: 1\nsender: \n", 0 },
	{ "version: 1\narrival: 1\nsize: -3\nsender: \n", 0 },
	{ "version: 1\narrival: 1\nsize: 3x\nsender: \n", 0 },
	{ "version: 1\narrival: 99999999999999999999999\nsize: 3\nsender: \n", 0 },
	{ "version: 1\narrival: 1\nsize: 3\nsender: ", 0 },
	{ "version: 1\narrival: 1\nsize: 3\nsender: \ngarbage\n", 0 },
	{ "version: 1\narrival: 1\nsize: 3\nsender: a\0b\n", 42 },
	{ "version: 1\narrival: 1\nsize: 3\nsize: 4\nsender: \n", 0 },
	{ "version: 1\narrival: 1\nsize: 3\nsender: \nsender: x\n", 0 },
	{ "version: 1\narrival: 1\nsize: 4\nsender: \n", 0 },	/* size != body */
};

START_TEST(test_corrupt_record)
{
	static const char bad_qid[] = "00000000000000000001";
	struct spool *sp = open_spool(0);
	struct spool_msg *m = spool_msg_begin(sp);
	char good[SPOOL_QID_MAX];

	snprintf(good, sizeof(good), "%s", spool_msg_qid(m));
	write_body(m, 10, 1);
	spool_msg_submit(m, NULL, NULL);
	ck_assert_int_eq(spool_commit(sp), 1);
	spool_close(sp);

	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi de, db;
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
	ck_assert_int_eq(mdb_env_open(env, spool_dir, 0, 0640), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "env", 0, &de), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "body", 0, &db), 0);
	MDB_val k = { strlen(bad_qid), (void *)bad_qid };
	MDB_val v = { corrupt[_i].env_len ? corrupt[_i].env_len : strlen(corrupt[_i].env),
	    (void *)corrupt[_i].env };
	MDB_val b = { 3, (void *)"abc" };
	ck_assert_int_eq(mdb_put(txn, de, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_put(txn, db, &k, &b, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	const char *err = NULL;
	ck_assert_int_eq(spool_open_readonly(spool_dir, &sp, &err), 0);
	size_t n;
	ck_assert_int_eq(spool_verify(sp, &n, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, bad_qid));
	struct seen s = { .ordered = true };
	ck_assert_int_eq(spool_foreach(sp, collect, &s, &err), 0);
	ck_assert_uint_eq(s.n, _i == N(corrupt) - 1 ? 2 : 1);	/* the bad one skipped */
	FILE *fp = fopen("/dev/null", "w");
	if (_i != N(corrupt) - 1)
		ck_assert_int_eq(spool_show(sp, bad_qid, fp, &err), -1);
	ck_assert_int_eq(spool_show(sp, good, fp, &err), 0);
	fclose(fp);
	spool_close(sp);
}
END_TEST

/* --- processes -------------------------------------------------------------- */

enum { QIDS_PER_CHILD = 20000 };

static void
qid_child(const char *out)
{
	struct spool *sp;
	const char *err;
	FILE *fp = fopen(out, "w");

	if (fp == NULL || spool_open(spool_dir, 0, &sp, &err) == -1)
		_exit(2);
	for (int i = 0; i < QIDS_PER_CHILD; i++) {
		struct spool_msg *m = spool_msg_begin(sp);
		if (m == NULL)
			_exit(3);
		fprintf(fp, "%s\n", spool_msg_qid(m));
		spool_msg_abort(m);
	}
	spool_close(sp);
	_exit(fclose(fp) == 0 ? 0 : 4);
}

static int
cmp_qid(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool
qid_wellformed(const char *q)
{
	if (strlen(q) != SPOOL_QID_LEN)
		return false;
	for (; *q != '\0'; q++)
		if (!((*q >= '0' && *q <= '9') || (*q >= 'A' && *q <= 'V')))
			return false;
	return true;
}

START_TEST(test_qid_unique_across_processes)
{
	struct spool *sp = open_spool(0);
	struct spool_msg *m = spool_msg_begin(sp);
	char first[SPOOL_QID_MAX], last[SPOOL_QID_MAX], files[2][256];
	pid_t pids[2];

	snprintf(first, sizeof(first), "%s", spool_msg_qid(m));
	spool_msg_abort(m);
	for (int c = 0; c < 2; c++) {
		snprintf(files[c], sizeof(files[c]), "%s/qids.%d", test_root, c);
		pids[c] = fork();
		ck_assert_int_ne(pids[c], -1);
		if (pids[c] == 0)
			qid_child(files[c]);
	}
	for (int c = 0; c < 2; c++) {
		int st;
		ck_assert_int_eq(waitpid(pids[c], &st, 0), pids[c]);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	m = spool_msg_begin(sp);
	snprintf(last, sizeof(last), "%s", spool_msg_qid(m));
	spool_msg_abort(m);
	ck_assert_str_lt(first, last);

	char (*all)[SPOOL_QID_MAX] = calloc(2 * QIDS_PER_CHILD, SPOOL_QID_MAX);
	size_t n = 0;
	for (int c = 0; c < 2; c++) {
		FILE *fp = fopen(files[c], "r");
		char line[64], prev[SPOOL_QID_MAX] = "";
		ck_assert_ptr_nonnull(fp);
		while (fgets(line, sizeof(line), fp) != NULL) {
			line[strcspn(line, "\n")] = '\0';
			ck_assert_msg(qid_wellformed(line), "bad QID %s", line);
			/* one process's QIDs sort in the order they were made */
			ck_assert_str_lt(prev, line);
			ck_assert_str_lt(first, line);
			ck_assert_str_lt(line, last);
			memcpy(prev, line, SPOOL_QID_LEN + 1);
			memcpy(all[n++], line, SPOOL_QID_LEN + 1);
		}
		fclose(fp);
	}
	ck_assert_uint_eq(n, 2 * QIDS_PER_CHILD);
	qsort(all, n, SPOOL_QID_MAX, cmp_qid);
	for (size_t i = 1; i < n; i++)
		ck_assert_msg(strcmp(all[i - 1], all[i]) != 0, "duplicate QID %s", all[i]);
	free(all);
	spool_close(sp);
}
END_TEST

static void
commit_child(int rounds, int per_round)
{
	struct spool *sp;
	const char *err;

	if (spool_open(spool_dir, 0, &sp, &err) == -1)
		_exit(2);
	for (int r = 0; r < rounds; r++) {
		struct done_rec recs[16] = { { 0 } };
		for (int i = 0; i < per_round; i++) {
			struct spool_msg *m = spool_msg_begin(sp);
			unsigned char b[1000];
			fill_body(b, sizeof(b), (uint64_t)i);
			if (m == NULL || spool_msg_write(m, b, sizeof(b), &err) == -1)
				_exit(3);
			spool_msg_submit(m, rec_done, &recs[i]);
		}
		if (spool_commit(sp) != per_round)
			_exit(4);
		for (int i = 0; i < per_round; i++)
			if (recs[i].calls != 1 || recs[i].result != 0)
				_exit(5);
	}
	_exit(spool_commit_count(sp) == (uint64_t)rounds ? 0 : 6);
}

START_TEST(test_processes_share_spool)
{
	enum { PROCS = 3, ROUNDS = 10, PER = 10 };
	struct spool *sp = open_spool(0);
	pid_t pids[PROCS];

	for (int c = 0; c < PROCS; c++) {
		pids[c] = fork();
		ck_assert_int_ne(pids[c], -1);
		if (pids[c] == 0)
			commit_child(ROUNDS, PER);
	}
	for (int c = 0; c < PROCS; c++) {
		int st;
		ck_assert_int_eq(waitpid(pids[c], &st, 0), pids[c]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	}
	ck_assert_uint_eq(verify_count(sp), PROCS * ROUNDS * PER);
	spool_close(sp);
}
END_TEST

START_TEST(test_inherited_handle)
{
	struct spool *sp = open_spool(0);
	pid_t pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		/* the parent's handle is not ours: refused, and closing it in the
		   child must not disturb the parent */
		const char *err = NULL;
		char *buf;
		size_t len;
		int bad = spool_msg_begin(sp) != NULL ||
		    spool_body(sp, "00000000000000000000", &buf, &len, &err) != -1 ||
		    err == NULL || strstr(err, "fork") == NULL;
		spool_close(sp);
		_exit(bad);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	struct spool_msg *m = spool_msg_begin(sp);
	write_body(m, 100, 3);
	spool_msg_submit(m, NULL, NULL);
	ck_assert_int_eq(spool_commit(sp), 1);
	ck_assert_uint_eq(verify_count(sp), 1);
	spool_close(sp);
}
END_TEST

/* --- kill -9 ----------------------------------------------------------------- */

enum { KILL_MAX_BODY = 150 * 1024 };

struct report {
	int fd;
};

static void
report_done(void *arg, int result, const char *qid)
{
	struct report *r = arg;
	char line[SPOOL_QID_MAX + 1];

	if (result != 0)
		_exit(5);
	/* one write of 21 bytes: atomic on a pipe */
	int n = snprintf(line, sizeof(line), "%s\n", qid);
	if (write(r->fd, line, (size_t)n) != n)
		_exit(6);
}

static void
kill_child(int fd, unsigned seed)
{
	struct spool *sp;
	const char *err;
	struct report rep = { fd };

	srand(seed);
	if (spool_open(spool_dir, 0, &sp, &err) == -1)
		_exit(2);
	for (;;) {
		int k = 1 + rand() % 5;
		for (int i = 0; i < k; i++) {
			struct spool_msg *m = spool_msg_begin(sp);
			if (m == NULL)
				_exit(3);
			spool_msg_set_sender(m, "s@example.test");
			spool_msg_add_rcpt(m, "r@remote.example");
			const char *q = spool_msg_qid(m);
			write_body(m, qid_body_len(q, KILL_MAX_BODY), hash_str(q));
			spool_msg_submit(m, report_done, &rep);
		}
		if (spool_commit(sp) != k)
			_exit(4);
	}
}

/* a peer listener: holds the spool open, commits one message when told */
static void
holder_child(int ready_fd, int go_fd)
{
	struct spool *sp;
	const char *err;
	struct done_rec rec = { 0 };
	char c;

	if (spool_open(spool_dir, 0, &sp, &err) == -1 || write(ready_fd, "r", 1) != 1)
		_exit(2);
	if (read(go_fd, &c, 1) != 1)
		_exit(3);
	struct spool_msg *m = spool_msg_begin(sp);
	write_body(m, 10, 10);
	spool_msg_submit(m, rec_done, &rec);
	_exit(spool_commit(sp) == 1 && rec.calls == 1 && rec.result == 0 ? 0 : 4);
}

START_TEST(test_kill9_whole_or_absent)
{
	int pfd[2], ready[2], go[2];
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid() ^ (unsigned)_i;
	char c;

	srand(seed);
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid_t holder = fork();
	ck_assert_int_ne(holder, -1);
	if (holder == 0) {
		/* EOF on go if the test dies first: no orphan left waiting */
		close(go[1]);
		close(ready[0]);
		holder_child(ready[1], go[0]);
	}
	ck_assert_int_eq(read(ready[0], &c, 1), 1);

	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		close(pfd[0]);
		close(go[1]);
		kill_child(pfd[1], seed);
	}
	close(pfd[1]);

	size_t cap = 4096, n = 0, target = 3 + (size_t)rand() % 40;
	char (*qids)[SPOOL_QID_MAX] = calloc(cap, SPOOL_QID_MAX);
	char line[64];
	FILE *fp = fdopen(pfd[0], "r");
	bool killed = false;
	while (fgets(line, sizeof(line), fp) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		ck_assert_uint_lt(n, cap);
		ck_assert_msg(qid_wellformed(line), "bad report %s", line);
		memcpy(qids[n++], line, SPOOL_QID_LEN + 1);
		if (!killed && n >= target) {
			/* somewhere inside the next batch: a body, a put, the commit */
			struct timespec ts = { 0, (long)(rand() % 5000) * 1000 };
			nanosleep(&ts, NULL);
			ck_assert_int_eq(kill(pid, SIGKILL), 0);
			killed = true;
		}
	}
	fclose(fp);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
	    "child ended otherwise (status %d, seed %u)", st, seed);

	/* a fresh open sweeps the dead child's spill files */
	struct spool *sp = open_spool(0);
	ck_assert_uint_eq(count_dir(tmp_dir), 0);
	size_t total = verify_count(sp);	/* no envelope without body or back */
	ck_assert_uint_ge(total, n);
	for (size_t i = 0; i < n; i++)
		check_body(sp, qids[i], qid_body_len(qids[i], KILL_MAX_BODY),
		    hash_str(qids[i]));
	/* and whatever else got committed is just as whole */
	struct seen s = { .ordered = true, .qids = calloc(total, SPOOL_QID_MAX),
	    .max = total };
	const char *err;
	ck_assert_int_eq(spool_foreach(sp, collect, &s, &err), 0);
	ck_assert_uint_eq(s.n, total);
	for (size_t i = 0; i < total; i++)
		check_body(sp, s.qids[i], qid_body_len(s.qids[i], KILL_MAX_BODY),
		    hash_str(s.qids[i]));
	free(s.qids);
	free(qids);

	/* the killed writer may have held LMDB's write lock: neither this new
	   handle nor the listener that stayed up is wedged */
	struct done_rec rec = { 0 };
	struct spool_msg *m = spool_msg_begin(sp);
	write_body(m, 10, 11);
	spool_msg_submit(m, rec_done, &rec);
	ck_assert_int_eq(spool_commit(sp), 1);
	ck_assert_int_eq(rec.result, 0);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(holder, &st, 0), holder);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "peer status %d", st);
	ck_assert_uint_eq(verify_count(sp), total + 2);
	spool_close(sp);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
}
END_TEST

/* a commit holds its batch in memory: the batch stops at the byte limit (one
   message always goes, however large), the rest waits for the next commit */
START_TEST(test_batch_byte_limit)
{
	struct spool *sp = open_spool(0);
	struct done_rec rec[6];

	memset(rec, 0, sizeof(rec));
	spool_set_batch_max(sp, 10000);
	static const size_t sizes[] = { 4000, 4000, 4000, 25000, 100, 100 };
	for (int i = 0; i < 6; i++) {
		struct spool_msg *m = spool_msg_begin(sp);
		write_body(m, sizes[i], (uint64_t)i);
		spool_msg_submit(m, rec_done, &rec[i]);
	}
	ck_assert_int_eq(spool_commit(sp), 2);		/* 8000; a third would be 12000 */
	ck_assert_uint_eq(spool_pending(sp), 4);
	ck_assert_int_eq(spool_commit(sp), 1);		/* 4000; with 25000 over */
	ck_assert_int_eq(spool_commit(sp), 1);		/* 25000 alone */
	ck_assert_int_eq(spool_commit(sp), 2);
	ck_assert_uint_eq(spool_pending(sp), 0);
	ck_assert_uint_eq(spool_commit_count(sp), 4);
	for (int i = 0; i < 6; i++) {
		ck_assert_int_eq(rec[i].calls, 1);
		check_body(sp, rec[i].qid, sizes[i], (uint64_t)i);
	}
	spool_close(sp);
}
END_TEST

/* --- pipelined group commit (the commit thread) ------------------------------- */

/* wait until the commit thread says a batch is done, then finish it */
static int
async_finish(struct spool *sp)
{
	struct pollfd pfd = { .fd = spool_async_fd(sp), .events = POLLIN };

	ck_assert_int_ge(pfd.fd, 0);
	ck_assert_int_eq(poll(&pfd, 1, 10000), 1);
	return spool_commit_finish(sp);
}

START_TEST(test_async_pipelined)
{
	struct spool *sp = open_spool(0);
	struct done_rec rec[8];
	const char *err = NULL;

	memset(rec, 0, sizeof(rec));
	ck_assert_msg(spool_async_start(sp, &err) == 0, "async: %s", err);
	ck_assert(!spool_commit_begin(sp));		/* nothing waits */
	for (int i = 0; i < 5; i++) {
		struct spool_msg *m = spool_msg_begin(sp);
		write_body(m, 100 + (size_t)i, (uint64_t)i);
		spool_msg_submit(m, rec_done, &rec[i]);
	}
	ck_assert(spool_commit_begin(sp));
	/* messages finishing while the batch is flushed wait for the next one */
	for (int i = 5; i < 8; i++) {
		struct spool_msg *m = spool_msg_begin(sp);
		write_body(m, 100 + (size_t)i, (uint64_t)i);
		spool_msg_submit(m, rec_done, &rec[i]);
	}
	ck_assert(!spool_commit_begin(sp));		/* one batch at a time */
	ck_assert_int_eq(spool_commit(sp), -1);		/* no synchronous commit now */
	ck_assert_int_eq(async_finish(sp), 5);
	ck_assert_uint_eq(spool_commit_count(sp), 1);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(rec[i].calls, i < 5 ? 1 : 0);
	ck_assert_uint_eq(spool_pending(sp), 3);
	ck_assert(spool_commit_begin(sp));
	ck_assert_int_eq(async_finish(sp), 3);
	ck_assert_uint_eq(spool_commit_count(sp), 2);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(rec[i].calls, 1);
		ck_assert_int_eq(rec[i].result, 0);
		check_body(sp, rec[i].qid, 100 + (size_t)i, (uint64_t)i);
	}
	ck_assert_uint_eq(verify_count(sp), 8);
	spool_close(sp);
}
END_TEST

/* a session that dies while its message is being flushed: the message is
   still committed, its callback never runs */
START_TEST(test_async_cancel_inflight)
{
	struct spool *sp = open_spool(0);
	struct done_rec a = { 0 }, b = { 0 };
	const char *err = NULL;

	ck_assert(spool_async_start(sp, &err) == 0);
	struct spool_msg *m = spool_msg_begin(sp);
	write_body(m, 10, 1);
	spool_msg_submit(m, rec_done, &a);
	m = spool_msg_begin(sp);
	write_body(m, 20, 2);
	spool_msg_submit(m, rec_done, &b);
	ck_assert(spool_commit_begin(sp));
	spool_cancel_callback(sp, &a);
	ck_assert_int_eq(async_finish(sp), 2);
	ck_assert_int_eq(a.calls, 0);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_uint_eq(verify_count(sp), 2);
	spool_close(sp);
}
END_TEST

/* closing while a batch is in flight waits for it: committed whole, no callback */
START_TEST(test_async_close_inflight)
{
	struct spool *sp = open_spool(0);
	struct done_rec a = { 0 };
	const char *err = NULL;

	ck_assert(spool_async_start(sp, &err) == 0);
	struct spool_msg *m = spool_msg_begin(sp);
	write_body(m, SPOOL_SPILL_THRESHOLD * 3, 7);
	spool_msg_submit(m, rec_done, &a);
	ck_assert(spool_commit_begin(sp));
	spool_close(sp);
	ck_assert_int_eq(a.calls, 0);
	sp = open_spool(0);
	ck_assert_uint_eq(verify_count(sp), 1);
	spool_close(sp);
}
END_TEST

static Suite *
spool_suite(void)
{
	Suite *s = suite_create("spool");
	TCase *tc = tcase_create("spool");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_batch_one_commit, 0, N(batches));
	tcase_add_test(tc, test_foreach_envelope);
	tcase_add_test(tc, test_show_exact);
	tcase_add_test(tc, test_dsn_envelope);
	tcase_add_loop_test(tc, test_show_unknown, 0, N(unknown_qids));
	tcase_add_test(tc, test_readonly_missing);
	tcase_add_loop_test(tc, test_values, 0, N(values));
	tcase_add_test(tc, test_spill_large);
	tcase_add_test(tc, test_abort_leaves_nothing);
	tcase_add_test(tc, test_mem_budget);
	tcase_add_test(tc, test_body_with);
	tcase_add_test(tc, test_sweep_dead_only);
	tcase_add_test(tc, test_cancel_callback);
	tcase_add_test(tc, test_callback_submits);
	tcase_add_test(tc, test_map_full);
	tcase_add_test(tc, test_write_error_own_message);
	tcase_add_loop_test(tc, test_corrupt_record, 0, N(corrupt));
	tcase_add_test(tc, test_qid_unique_across_processes);
	tcase_add_test(tc, test_processes_share_spool);
	tcase_add_test(tc, test_inherited_handle);
	tcase_add_loop_test(tc, test_kill9_whole_or_absent, 0, 4);
	tcase_add_test(tc, test_batch_byte_limit);
	tcase_add_test(tc, test_async_pipelined);
	tcase_add_test(tc, test_async_cancel_inflight);
	tcase_add_test(tc, test_async_close_inflight);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(spool_suite)
