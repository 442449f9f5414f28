/*
 * common/spool_queue.c and the commit notification: intake of new messages as
 * per-recipient records, the schedule (due, next try), update, delete, reclaim
 * of dead owners, the upgrade of a spool without delivery state, the checks
 * spool_verify adds, the wake-up pipe (also under libev), and SIGKILL of a
 * forked writer at any moment leaving every message and recipient consistent.
 */
#include <errno.h>
#include <ev.h>
#include <ftw.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/spool.h"
#include "tests/unit/testmain.h"

static char test_root[64];
static char spool_dir[128];

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
	snprintf(test_root, sizeof(test_root), "/tmp/check_spool_queue.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(test_root));
	snprintf(spool_dir, sizeof(spool_dir), "%s/spool", test_root);
}

static void
teardown(void)
{
	nftw(test_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct spool *
open_spool(void)
{
	struct spool *sp = NULL;
	const char *err = NULL;

	ck_assert_msg(spool_open(spool_dir, 64 << 20, &sp, &err) == 0, "spool_open: %s",
	    err);
	return sp;
}

static void
done_cb(void *arg, int result, const char *qid)
{
	(void)qid;
	*(int *)arg = result;
}

/* commit one message with n recipients; its QID into qid */
static void
commit_msg(struct spool *sp, unsigned n, char qid[SPOOL_QID_MAX])
{
	struct spool_msg *m = spool_msg_begin(sp);
	const char *err;
	char rcpt[64];
	int result = -1;

	ck_assert_ptr_nonnull(m);
	snprintf(qid, SPOOL_QID_MAX, "%s", spool_msg_qid(m));
	ck_assert_int_eq(spool_msg_set_sender(m, "s@example.test"), 0);
	for (unsigned i = 0; i < n; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%u@remote.example", i);
		ck_assert_int_eq(spool_msg_add_rcpt(m, rcpt), 0);
	}
	ck_assert_int_eq(spool_msg_write(m, "Subject: x\r\n\r\nhi\r\n", 18, &err), 0);
	spool_msg_submit(m, done_cb, &result);
	ck_assert_int_eq(spool_commit(sp), 1);
	ck_assert_int_eq(result, 0);
}

static void
assert_verify(struct spool *sp, size_t messages)
{
	size_t n = 0;
	const char *err = NULL;

	ck_assert_msg(spool_verify(sp, &n, &err) == 0, "verify: %s", err);
	ck_assert_uint_eq(n, messages);
}

struct collect {
	struct spool_rcpt r[16];
	size_t n;
};

static int
collect_cb(const struct spool_rcpt *r, void *arg)
{
	struct collect *c = arg;

	if (c->n < 16)
		c->r[c->n++] = *r;
	return 0;
}

static size_t
count_due(struct spool *sp, int64_t now, struct collect *c)
{
	const char *err = NULL;

	memset(c, 0, sizeof(*c));
	ck_assert_msg(spool_queue_due(sp, now, 0, collect_cb, c, &err) == 0, "due: %s",
	    err);
	return c->n;
}

START_TEST(test_intake)
{
	struct spool *sp = open_spool();
	char q1[SPOOL_QID_MAX], q2[SPOOL_QID_MAX];
	const char *err = NULL;
	size_t n;
	struct spool_rcpt r;

	commit_msg(sp, 2, q1);
	commit_msg(sp, 1, q2);
	ck_assert_int_eq(spool_queue_new_count(sp, &n, &err), 0);
	ck_assert_uint_eq(n, 2);
	assert_verify(sp, 2);
	/* not taken in yet: no records */
	ck_assert_int_eq(spool_rcpt_get(sp, q1, 0, &r, &err), -1);

	ck_assert_int_eq(spool_queue_intake(sp, 1000, 0, &err), 2);
	ck_assert_int_eq(spool_queue_new_count(sp, &n, &err), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(spool_queue_intake(sp, 1000, 0, &err), 0);
	for (unsigned i = 0; i < 2; i++) {
		ck_assert_int_eq(spool_rcpt_get(sp, q1, i, &r, &err), 0);
		ck_assert_str_eq(r.qid, q1);
		ck_assert_uint_eq(r.idx, i);
		ck_assert_int_eq(r.state, SPOOL_RCPT_QUEUED);
		ck_assert_uint_eq(r.attempts, 0);
		ck_assert_int_eq(r.next_try, 1000);
		ck_assert_uint_eq(r.owner, 0);
		ck_assert_str_eq(r.reply, "");
	}
	ck_assert_int_eq(spool_rcpt_get(sp, q1, 2, &r, &err), -1);
	ck_assert_int_eq(spool_rcpt_get(sp, q2, 0, &r, &err), 0);
	assert_verify(sp, 2);
	spool_close(sp);
}
END_TEST

/* intake in bounded transactions */
START_TEST(test_intake_max)
{
	struct spool *sp = open_spool();
	char q[SPOOL_QID_MAX];
	const char *err;
	size_t n;

	for (int i = 0; i < 5; i++)
		commit_msg(sp, 1, q);
	ck_assert_int_eq(spool_queue_intake(sp, 5, 2, &err), 2);
	ck_assert_int_eq(spool_queue_new_count(sp, &n, &err), 0);
	ck_assert_uint_eq(n, 3);
	assert_verify(sp, 5);
	ck_assert_int_eq(spool_queue_intake(sp, 5, 0, &err), 3);
	assert_verify(sp, 5);
	spool_close(sp);
}
END_TEST

START_TEST(test_schedule)
{
	struct spool *sp = open_spool();
	char q1[SPOOL_QID_MAX], q2[SPOOL_QID_MAX];
	const char *err = NULL;
	struct collect c;
	int64_t when;

	ck_assert_int_eq(spool_queue_next_try(sp, &when, &err), 0);
	ck_assert_int_eq(when, -1);
	commit_msg(sp, 2, q1);
	commit_msg(sp, 1, q2);
	ck_assert_int_eq(spool_queue_intake(sp, 1000, 0, &err), 2);
	ck_assert_uint_eq(count_due(sp, 999, &c), 0);
	ck_assert_uint_eq(count_due(sp, 1000, &c), 3);

	/* q1/0 deferred to 1300, q2/0 to 1200 */
	struct spool_rcpt r = c.r[0];
	ck_assert_str_eq(r.qid, q1);
	r.state = SPOOL_RCPT_DEFERRED;
	r.attempts = 1;
	r.last_try = 1000;
	r.next_try = 1300;
	snprintf(r.reply, sizeof(r.reply), "451 4.3.0 try later");
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), 0);
	ck_assert_int_eq(spool_rcpt_get(sp, q2, 0, &r, &err), 0);
	r.state = SPOOL_RCPT_DEFERRED;
	r.next_try = 1200;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), 0);

	ck_assert_uint_eq(count_due(sp, 1000, &c), 1);
	ck_assert_str_eq(c.r[0].qid, q1);
	ck_assert_uint_eq(c.r[0].idx, 1);
	ck_assert_int_eq(spool_queue_next_try(sp, &when, &err), 0);
	ck_assert_int_eq(when, 1000);
	/* in next-try order */
	ck_assert_uint_eq(count_due(sp, 2000, &c), 3);
	ck_assert_int_eq(c.r[0].next_try, 1000);
	ck_assert_str_eq(c.r[1].qid, q2);
	ck_assert_int_eq(c.r[1].next_try, 1200);
	ck_assert_str_eq(c.r[2].qid, q1);
	ck_assert_uint_eq(c.r[2].idx, 0);
	ck_assert_uint_eq(c.r[2].attempts, 1);
	ck_assert_str_eq(c.r[2].reply, "451 4.3.0 try later");
	assert_verify(sp, 2);
	spool_close(sp);
}
END_TEST

/* hold: out of the schedule, not final; release puts it back */
START_TEST(test_hold)
{
	struct spool *sp = open_spool();
	char q1[SPOOL_QID_MAX];
	const char *err = NULL;
	struct collect c;
	int64_t when;
	bool complete = true;

	commit_msg(sp, 1, q1);
	ck_assert_int_eq(spool_queue_intake(sp, 1000, 0, &err), 1);
	struct spool_rcpt r;
	ck_assert_int_eq(spool_rcpt_get(sp, q1, 0, &r, &err), 0);
	r.state = SPOOL_RCPT_HOLD;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, &complete, &err), 0);
	ck_assert(!complete);
	ck_assert(!spool_rcpt_final(SPOOL_RCPT_HOLD));
	ck_assert_str_eq(spool_rcpt_state_name(SPOOL_RCPT_HOLD), "hold");
	ck_assert_uint_eq(count_due(sp, 99999, &c), 0);
	ck_assert_int_eq(spool_queue_next_try(sp, &when, &err), 0);
	ck_assert_int_eq(when, -1);
	assert_verify(sp, 1);
	ck_assert_int_eq(spool_rcpt_get(sp, q1, 0, &r, &err), 0);
	ck_assert_int_eq(r.state, SPOOL_RCPT_HOLD);
	r.state = SPOOL_RCPT_QUEUED;
	r.next_try = 2000;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), 0);
	ck_assert_uint_eq(count_due(sp, 2000, &c), 1);
	assert_verify(sp, 1);
	/* a state past the last one is refused */
	r.state = (enum spool_rcpt_state)(SPOOL_RCPT_HOLD + 1);
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), -1);
	spool_close(sp);
}
END_TEST

/* claim, results, completion, delete */
START_TEST(test_update_complete_delete)
{
	struct spool *sp = open_spool();
	char q[SPOOL_QID_MAX];
	const char *err = NULL;
	struct collect c;
	struct spool_rcpt r;
	bool complete = true;

	commit_msg(sp, 2, q);
	ck_assert_int_eq(spool_queue_intake(sp, 10, 0, &err), 1);
	for (unsigned i = 0; i < 2; i++) {
		ck_assert_int_eq(spool_rcpt_get(sp, q, i, &r, &err), 0);
		r.state = SPOOL_RCPT_INFLIGHT;
		r.owner = 4242;
		ck_assert_int_eq(spool_rcpt_update(sp, &r, &complete, &err), 0);
		ck_assert(!complete);
	}
	ck_assert_uint_eq(count_due(sp, 100, &c), 0);	/* in flight: not due */
	assert_verify(sp, 1);

	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), 0);
	ck_assert_uint_eq(r.owner, 4242);
	r.state = SPOOL_RCPT_SENT;
	r.owner = 0;
	snprintf(r.reply, sizeof(r.reply), "250 2.0.0 Ok");
	ck_assert_int_eq(spool_rcpt_update(sp, &r, &complete, &err), 0);
	ck_assert(!complete);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 1, &r, &err), 0);
	r.state = SPOOL_RCPT_BOUNCED;
	r.owner = 0;
	snprintf(r.reply, sizeof(r.reply), "550 5.1.1 no such user");
	ck_assert_int_eq(spool_rcpt_update(sp, &r, &complete, &err), 0);
	ck_assert(complete);
	assert_verify(sp, 1);

	ck_assert_int_eq(spool_queue_delete(sp, q, &err), 0);
	char *body;
	size_t len;
	ck_assert_int_eq(spool_body(sp, q, &body, &len, &err), -1);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), -1);
	ck_assert_int_eq(spool_queue_delete(sp, q, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "no such message"));
	assert_verify(sp, 0);
	spool_close(sp);
}
END_TEST

/* a message deleted before the qmgr took it in leaves nothing behind */
START_TEST(test_delete_new)
{
	struct spool *sp = open_spool();
	char q[SPOOL_QID_MAX], keep[SPOOL_QID_MAX];
	const char *err;
	size_t n;

	commit_msg(sp, 3, q);
	commit_msg(sp, 1, keep);
	ck_assert_int_eq(spool_queue_delete(sp, q, &err), 0);
	ck_assert_int_eq(spool_queue_new_count(sp, &n, &err), 0);
	ck_assert_uint_eq(n, 1);
	assert_verify(sp, 1);
	ck_assert_int_eq(spool_queue_intake(sp, 1, 0, &err), 1);
	assert_verify(sp, 1);
	spool_close(sp);
}
END_TEST

/* the qmgr's DSN flags (delay warning sent, success report owed, bounce sent) are durable
   with the record, and only known bits are taken */
START_TEST(test_flags_durable)
{
	struct spool *sp = open_spool();
	char q[SPOOL_QID_MAX];
	const char *err = NULL;
	struct spool_rcpt r;

	commit_msg(sp, 2, q);
	ck_assert_int_eq(spool_queue_intake(sp, 10, 0, &err), 1);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), 0);
	ck_assert_uint_eq(r.flags, 0);		/* new records: none */
	r.flags = SPOOL_RCPT_F_WARNED | SPOOL_RCPT_F_RELAYED | SPOOL_RCPT_F_BOUNCE_SENT;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), 0);
	r.flags = 1u << 7;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), -1);
	spool_close(sp);
	sp = open_spool();
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), 0);
	ck_assert_uint_eq(r.flags, SPOOL_RCPT_F_WARNED | SPOOL_RCPT_F_RELAYED |
	    SPOOL_RCPT_F_BOUNCE_SENT);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 1, &r, &err), 0);
	ck_assert_uint_eq(r.flags, 0);
	assert_verify(sp, 1);
	spool_close(sp);
}
END_TEST

START_TEST(test_update_refused)
{
	struct spool *sp = open_spool();
	char q[SPOOL_QID_MAX];
	const char *err;
	struct spool_rcpt r, bad;

	commit_msg(sp, 1, q);
	ck_assert_int_eq(spool_queue_intake(sp, 1, 0, &err), 1);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), 0);

	bad = r;
	bad.state = SPOOL_RCPT_INFLIGHT;	/* in flight without an owner */
	ck_assert_int_eq(spool_rcpt_update(sp, &bad, NULL, &err), -1);
	bad = r;
	bad.owner = 77;				/* an owner while queued */
	ck_assert_int_eq(spool_rcpt_update(sp, &bad, NULL, &err), -1);
	bad = r;
	snprintf(bad.reply, sizeof(bad.reply), "250 ok\r\nRCPT TO:<x>");
	ck_assert_int_eq(spool_rcpt_update(sp, &bad, NULL, &err), -1);
	bad = r;
	bad.state = (enum spool_rcpt_state)9;
	ck_assert_int_eq(spool_rcpt_update(sp, &bad, NULL, &err), -1);
	bad = r;
	bad.idx = 1;				/* no such recipient */
	ck_assert_int_eq(spool_rcpt_update(sp, &bad, NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "no such recipient"));
	/* nothing changed */
	struct spool_rcpt now;
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &now, &err), 0);
	ck_assert_int_eq(now.state, SPOOL_RCPT_QUEUED);
	ck_assert_uint_eq(now.owner, 0);
	assert_verify(sp, 1);
	spool_close(sp);
}
END_TEST

static bool
alive_odd(uint32_t pid, void *arg)
{
	(void)arg;
	return pid % 2 == 1;
}

START_TEST(test_reclaim)
{
	struct spool *sp = open_spool();
	char q[SPOOL_QID_MAX];
	const char *err;
	struct spool_rcpt r;
	struct collect c;

	/* a pid that is certainly dead: a child we waited for */
	pid_t dead = fork();
	ck_assert_int_ge(dead, 0);
	if (dead == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(dead, NULL, 0), dead);

	commit_msg(sp, 2, q);
	ck_assert_int_eq(spool_queue_intake(sp, 1, 0, &err), 1);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), 0);
	r.state = SPOOL_RCPT_INFLIGHT;
	r.owner = (uint32_t)dead;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), 0);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 1, &r, &err), 0);
	r.state = SPOOL_RCPT_INFLIGHT;
	r.owner = (uint32_t)getpid();
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), 0);

	ck_assert_int_eq(spool_queue_reclaim(sp, 50, NULL, NULL, &err), 1);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), 0);
	ck_assert_int_eq(r.state, SPOOL_RCPT_QUEUED);
	ck_assert_uint_eq(r.owner, 0);
	ck_assert_int_eq(r.next_try, 50);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 1, &r, &err), 0);
	ck_assert_int_eq(r.state, SPOOL_RCPT_INFLIGHT);	/* we are alive */
	ck_assert_uint_eq(count_due(sp, 50, &c), 1);
	assert_verify(sp, 1);

	/* the caller's idea of alive */
	ck_assert_int_eq(spool_queue_reclaim(sp, 60, alive_odd, NULL, &err),
	    getpid() % 2 == 1 ? 0 : 1);
	assert_verify(sp, 1);
	spool_close(sp);
}
END_TEST

/* a spool written before the delivery state existed: env and body only */
START_TEST(test_upgrade_old_spool)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi de, db;
	const char *qid = "1J1EMR5U7BO00VLG000M";
	const char *envtext = "version: 1\narrival: 1700000000\nsize: 3\nsender: a@b\n"
	    "rcpt: c@d\nrcpt: e@f\n";

	ck_assert_int_eq(mkdir(spool_dir, 0700), 0);
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
	ck_assert_int_eq(mdb_env_open(env, spool_dir, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "env", MDB_CREATE, &de), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "body", MDB_CREATE, &db), 0);
	MDB_val k = { strlen(qid), (void *)qid };
	MDB_val v = { strlen(envtext), (void *)envtext };
	MDB_val b = { 3, "hi\n" };
	ck_assert_int_eq(mdb_put(txn, de, &k, &v, 0), 0);
	ck_assert_int_eq(mdb_put(txn, db, &k, &b, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	/* read-only before any writer: no delivery state, still readable */
	struct spool *ro;
	const char *err;
	size_t n;
	ck_assert_int_eq(spool_open_readonly(spool_dir, &ro, &err), 0);
	assert_verify(ro, 1);
	ck_assert_int_eq(spool_queue_new_count(ro, &n, &err), -1);
	spool_close(ro);

	struct spool *sp = open_spool();
	ck_assert_int_eq(spool_queue_new_count(sp, &n, &err), 0);
	ck_assert_uint_eq(n, 1);
	assert_verify(sp, 1);
	ck_assert_int_eq(spool_queue_intake(sp, 1, 0, &err), 1);
	struct spool_rcpt r;
	ck_assert_int_eq(spool_rcpt_get(sp, qid, 1, &r, &err), 0);
	assert_verify(sp, 1);
	spool_close(sp);
}
END_TEST

/* spool_verify names a recipient whose schedule entry is missing, and a
   record without a message */
START_TEST(test_verify_flaws)
{
	struct spool *sp = open_spool();
	char q[SPOOL_QID_MAX];
	const char *err = NULL;
	size_t n;

	commit_msg(sp, 1, q);
	ck_assert_int_eq(spool_queue_intake(sp, 1, 0, &err), 1);
	spool_close(sp);

	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi ds, de;
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_set_mapsize(env, 64 << 20), 0);
	ck_assert_int_eq(mdb_env_open(env, spool_dir, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "sched", 0, &ds), 0);
	ck_assert_int_eq(mdb_drop(txn, ds, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);

	sp = open_spool();
	ck_assert_int_eq(spool_verify(sp, &n, &err), -1);
	ck_assert_msg(strstr(err, "not scheduled") != NULL, "%s", err);
	spool_close(sp);

	/* the envelope gone, the body too: records of nothing */
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_set_mapsize(env, 64 << 20), 0);
	ck_assert_int_eq(mdb_env_open(env, spool_dir, 0, 0600), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "env", 0, &de), 0);
	ck_assert_int_eq(mdb_drop(txn, de, 0), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, "body", 0, &de), 0);
	ck_assert_int_eq(mdb_drop(txn, de, 0), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	sp = open_spool();
	ck_assert_int_eq(spool_verify(sp, &n, &err), -1);
	ck_assert_msg(strstr(err, "no such recipient in the envelope") != NULL, "%s",
	    err);
	spool_close(sp);
}
END_TEST

START_TEST(test_wake_pipe)
{
	struct spool *sp = open_spool();
	int fds[2];
	const char *err;
	char q[SPOOL_QID_MAX];

	ck_assert_int_eq(spool_wake_pipe(fds, &err), 0);
	ck_assert_int_eq(spool_wake_drain(fds[0]), 0);
	spool_set_wake_fd(sp, fds[1]);
	commit_msg(sp, 1, q);
	commit_msg(sp, 1, q);
	ck_assert_int_eq(spool_wake_drain(fds[0]), 1);
	ck_assert_int_eq(spool_wake_drain(fds[0]), 0);
	/* a commit of nothing wakes nobody */
	ck_assert_int_eq(spool_commit(sp), 0);
	ck_assert_int_eq(spool_wake_drain(fds[0]), 0);

	/* a full pipe never blocks the listener, and still wakes the reader */
	char junk[4096];
	memset(junk, 'x', sizeof(junk));
	while (write(fds[1], junk, sizeof(junk)) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	commit_msg(sp, 1, q);
	ck_assert_int_eq(spool_wake_drain(fds[0]), 1);

	/* the last octets of writers that are gone still count, then EOF */
	int p2[2];
	ck_assert_int_eq(spool_wake_pipe(p2, &err), 0);
	ck_assert_int_eq(write(p2[1], "!", 1), 1);
	close(p2[1]);
	ck_assert_int_eq(spool_wake_drain(p2[0]), 1);
	ck_assert_int_eq(spool_wake_drain(p2[0]), -1);
	close(p2[0]);

	/* no reader at all: the commit goes on (SIGPIPE ignored, EPIPE dropped) */
	close(fds[0]);
	commit_msg(sp, 1, q);
	assert_verify(sp, 4);
	spool_close(sp);
	close(fds[1]);
}
END_TEST

static void
wake_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	*(int *)w->data = spool_wake_drain(w->fd);
	ev_break(loop, EVBREAK_ONE);
}

static void
guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ONE);
}

/* the queue manager's side: a libev watcher on the read end, woken by a
   commit in another process */
START_TEST(test_wake_libev)
{
	int fds[2];
	const char *err;

	ck_assert_int_eq(spool_wake_pipe(fds, &err), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[0]);
		struct spool *sp = open_spool();
		char q[SPOOL_QID_MAX];
		spool_set_wake_fd(sp, fds[1]);
		commit_msg(sp, 2, q);
		spool_close(sp);
		_exit(0);
	}
	close(fds[1]);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	ev_io w;
	ev_timer guard;
	int got = -2;
	ev_io_init(&w, wake_cb, fds[0], EV_READ);
	w.data = &got;
	ev_io_start(loop, &w);
	ev_timer_init(&guard, guard_cb, 30.0, 0.0);	/* a hang, not a timing */
	ev_timer_start(loop, &guard);
	ev_run(loop, 0);
	ck_assert_int_eq(got, 1);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	struct spool *sp = open_spool();
	ck_assert_int_eq(spool_queue_intake(sp, 1, 0, &err), 1);
	assert_verify(sp, 1);
	spool_close(sp);
	ev_loop_destroy(loop);
	close(fds[0]);
}
END_TEST

/*
 * kill -9 of a writer that commits messages and runs the queue manager's
 * operations on them as fast as it can: whatever moment the kill hits, the
 * spool verifies, and every message the writer reported committed is there
 * (or was deleted by it after every recipient became final).
 */
/* what another process sees of recipient idx: its state, 100 for none */
static int
committed_state(const char *qid, unsigned idx)
{
	pid_t pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		struct spool *ro;
		const char *err;
		struct spool_rcpt r;
		if (spool_open_readonly(spool_dir, &ro, &err) == -1)
			_exit(101);
		int st = spool_rcpt_get(ro, qid, idx, &r, &err) == -1 ? 100 : (int)r.state;
		_exit(st);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* batching (the qmgr's group commit): writes share one transaction that sees
   itself, others see nothing of it until the flush, and a commit of new mail
   flushes it first instead of waiting for the write lock it holds */
START_TEST(test_batch)
{
	struct spool *sp = open_spool();
	char q[SPOOL_QID_MAX], q2[SPOOL_QID_MAX];
	const char *err = NULL;
	struct spool_rcpt r;
	struct collect c;

	commit_msg(sp, 2, q);
	spool_queue_batch(sp, true);
	ck_assert_int_eq(spool_queue_intake(sp, 10, 0, &err), 1);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), 0);
	r.state = SPOOL_RCPT_INFLIGHT;
	r.owner = 4242;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), 0);
	ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), 0);
	ck_assert_int_eq(r.state, SPOOL_RCPT_INFLIGHT);
	ck_assert_uint_eq(count_due(sp, 100, &c), 1);	/* recipient 1 only */
	ck_assert_int_eq(committed_state(q, 0), 100);	/* not taken in yet */
	ck_assert_int_eq(spool_queue_flush(sp, &err), 0);
	ck_assert_int_eq(committed_state(q, 0), SPOOL_RCPT_INFLIGHT);
	ck_assert_int_eq(committed_state(q, 1), SPOOL_RCPT_QUEUED);

	/* an open batch and a listener-style commit in the same process */
	ck_assert_int_eq(spool_rcpt_get(sp, q, 1, &r, &err), 0);
	r.state = SPOOL_RCPT_INFLIGHT;
	r.owner = 4242;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), 0);
	commit_msg(sp, 1, q2);
	ck_assert_int_eq(committed_state(q, 1), SPOOL_RCPT_INFLIGHT);
	/* a refused update inside the batch leaves the batch alone */
	r.idx = 7;
	ck_assert_int_eq(spool_rcpt_update(sp, &r, NULL, &err), -1);
	ck_assert_int_eq(spool_queue_intake(sp, 11, 0, &err), 1);
	spool_queue_batch(sp, false);		/* flushes */
	ck_assert_int_eq(committed_state(q2, 0), SPOOL_RCPT_QUEUED);
	assert_verify(sp, 2);
	spool_close(sp);
}
END_TEST

/* relaxed: the handle flushes no meta page, as the qmgr's does */
static void __attribute__((noreturn))
crash_writer(int report, bool relaxed)
{
	struct spool *sp = open_spool();
	const char *err;
	char q[SPOOL_QID_MAX];
	struct spool_rcpt r;

	if (relaxed && spool_relax_meta_sync(sp, &err) == -1)
		_exit(6);

	for (unsigned i = 0;; i++) {
		struct spool_msg *m = spool_msg_begin(sp);
		snprintf(q, sizeof(q), "%s", spool_msg_qid(m));
		spool_msg_set_sender(m, "s@x");
		spool_msg_add_rcpt(m, "a@y");
		spool_msg_add_rcpt(m, "b@y");
		spool_msg_write(m, "body\r\n", 6, &err);
		spool_msg_submit(m, NULL, NULL);
		if (spool_commit(sp) != 1)
			_exit(2);
		if (write(report, q, SPOOL_QID_LEN) != SPOOL_QID_LEN)
			_exit(3);
		if (spool_queue_intake(sp, i, 0, &err) < 0)
			_exit(4);
		if (spool_rcpt_get(sp, q, 0, &r, &err) == -1)
			_exit(5);
		r.state = SPOOL_RCPT_INFLIGHT;
		r.owner = (uint32_t)getpid();
		spool_rcpt_update(sp, &r, NULL, &err);
		r.state = i % 2 ? SPOOL_RCPT_SENT : SPOOL_RCPT_DEFERRED;
		r.owner = 0;
		r.next_try = i + 300;
		spool_rcpt_update(sp, &r, NULL, &err);
		if (i % 3 == 0 && r.state == SPOOL_RCPT_SENT) {
			bool complete;
			spool_rcpt_get(sp, q, 1, &r, &err);
			r.state = SPOOL_RCPT_BOUNCED;
			spool_rcpt_update(sp, &r, &complete, &err);
			if (complete)
				spool_queue_delete(sp, q, &err);
		}
	}
}

START_TEST(test_kill9_consistent)
{
	signal(SIGPIPE, SIG_IGN);
	for (int round = 0; round < 4; round++) {
		int p[2];
		ck_assert_int_eq(pipe(p), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(p[0]);
			crash_writer(p[1], round % 2 == 1);
		}
		close(p[1]);
		/* let it get somewhere (a different number of commits each round),
		   then kill it wherever it is; odd rounds with the qmgr's relaxed
		   meta flush: kill -9 leaves the page cache, so nothing is lost */
		char qids[64][SPOOL_QID_LEN];
		int want = 5 + round * 7, got = 0;
		while (got < want && got < 64) {
			ssize_t n = read(p[0], qids[got], SPOOL_QID_LEN);
			ck_assert_int_eq(n, SPOOL_QID_LEN);
			got++;
		}
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFSIGNALED(st));
		close(p[0]);

		struct spool *sp = open_spool();
		size_t n;
		const char *err = NULL;
		ck_assert_msg(spool_verify(sp, &n, &err) == 0, "round %d: %s", round, err);
		ck_assert_uint_ge(n, 1);
		/* a message the writer saw committed is still there, unless it
		   was deleted whole (i % 6 == 3 in the writer's numbering) */
		for (int i = 0; i < got; i++) {
			char q[SPOOL_QID_MAX], *body;
			size_t len;
			memcpy(q, qids[i], SPOOL_QID_LEN);
			q[SPOOL_QID_LEN] = '\0';
			if (spool_body(sp, q, &body, &len, &err) == 0) {
				ck_assert_uint_eq(len, 6);
				free(body);
			} else {
				struct spool_rcpt r;
				ck_assert_int_eq(spool_rcpt_get(sp, q, 0, &r, &err), -1);
			}
		}
		/* the next qmgr takes over: intake and reclaim leave it consistent */
		ck_assert_int_ge(spool_queue_intake(sp, 1, 0, &err), 0);
		ck_assert_int_ge(spool_queue_reclaim(sp, 1, NULL, NULL, &err), 0);
		ck_assert_msg(spool_verify(sp, &n, &err) == 0, "round %d after: %s", round,
		    err);
		spool_close(sp);
	}
}
END_TEST

static Suite *
spool_queue_suite(void)
{
	Suite *s = suite_create("spool_queue");
	TCase *tc = tcase_create("spool_queue");

	signal(SIGPIPE, SIG_IGN);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_intake);
	tcase_add_test(tc, test_intake_max);
	tcase_add_test(tc, test_schedule);
	tcase_add_test(tc, test_update_complete_delete);
	tcase_add_test(tc, test_delete_new);
	tcase_add_test(tc, test_flags_durable);
	tcase_add_test(tc, test_update_refused);
	tcase_add_test(tc, test_reclaim);
	tcase_add_test(tc, test_upgrade_old_spool);
	tcase_add_test(tc, test_verify_flaws);
	tcase_add_test(tc, test_wake_pipe);
	tcase_add_test(tc, test_hold);
	tcase_add_test(tc, test_wake_libev);
	tcase_add_test(tc, test_kill9_consistent);
	tcase_add_test(tc, test_batch);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(spool_queue_suite)
