/*
 * Delivery state: the "new", "rcpt" and "sched" databases of spool.h's layout,
 * written by the queue manager alone (listeners only add "new" entries, in
 * their commit). Every operation is one LMDB transaction, which is what keeps a
 * recipient's record and its schedule entry in step across any crash.
 *
 * A recipient record is, in host byte order (LMDB files are not portable
 * between architectures anyway):
 *
 *   0  u8   version (1)         8  i64  next try (unix seconds)
 *   1  u8   state               16 i64  last try (unix seconds, 0 never)
 *   2  u16  reply length        24 u32  owner (pid in flight, 0 none)
 *   4  u32  attempts            28 u32  flags (SPOOL_RCPT_F_*; 0 in records
 *                                        written before there were any)
 *   32      reply octets (no CR, LF or NUL), at most SPOOL_REPLY_MAX - 1
 */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/spool.h"
#include "common/spool_internal.h"

#define RCPT_VERSION 1
#define RCPT_HDR 32
#define RCPT_KEY (SPOOL_QID_LEN + 4)
#define SCHED_KEY (8 + RCPT_KEY)

struct rcpt_rec {
	uint8_t version;
	uint8_t state;
	uint16_t reply_len;
	uint32_t attempts;
	int64_t next_try;
	int64_t last_try;
	uint32_t owner;
	uint32_t flags;
};
_Static_assert(sizeof(struct rcpt_rec) == RCPT_HDR, "recipient record header");

bool
spool_rcpt_final(enum spool_rcpt_state st)
{
	return st == SPOOL_RCPT_SENT || st == SPOOL_RCPT_BOUNCED;
}

static bool
rcpt_waiting(enum spool_rcpt_state st)
{
	return st == SPOOL_RCPT_QUEUED || st == SPOOL_RCPT_DEFERRED;
}

const char *
spool_rcpt_state_name(enum spool_rcpt_state st)
{
	static const char *const names[] = {
		[SPOOL_RCPT_QUEUED] = "queued", [SPOOL_RCPT_INFLIGHT] = "inflight",
		[SPOOL_RCPT_DEFERRED] = "deferred", [SPOOL_RCPT_SENT] = "sent",
		[SPOOL_RCPT_BOUNCED] = "bounced", [SPOOL_RCPT_HOLD] = "hold",
	};

	if ((unsigned)st >= sizeof(names) / sizeof(names[0]))
		return "?";
	return names[st];
}

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void
rcpt_key(unsigned char key[RCPT_KEY], const char *qid, unsigned idx)
{
	memcpy(key, qid, SPOOL_QID_LEN);
	put_be(key + SPOOL_QID_LEN, idx, 4);
}

static void
sched_key(unsigned char key[SCHED_KEY], int64_t when, const char *qid, unsigned idx)
{
	put_be(key, when < 0 ? 0 : (uint64_t)when, 8);
	rcpt_key(key + 8, qid, idx);
}

/* a record from disk: -1 when it is not one we wrote */
static int
rcpt_decode(const MDB_val *key, const MDB_val *val, struct spool_rcpt *r)
{
	struct rcpt_rec h;

	if (key->mv_size != RCPT_KEY || val->mv_size < RCPT_HDR)
		return -1;
	memcpy(&h, val->mv_data, RCPT_HDR);
	if (h.version != RCPT_VERSION || h.state > SPOOL_RCPT_HOLD ||
	    (h.flags & ~SPOOL_RCPT_F_ALL) != 0 ||
	    h.reply_len != val->mv_size - RCPT_HDR || h.reply_len >= SPOOL_REPLY_MAX)
		return -1;
	memset(r, 0, sizeof(*r));
	memcpy(r->qid, key->mv_data, SPOOL_QID_LEN);
	r->qid[SPOOL_QID_LEN] = '\0';
	if (!spool_qid_valid(r->qid))
		return -1;
	r->idx = (unsigned)get_be((const unsigned char *)key->mv_data + SPOOL_QID_LEN, 4);
	r->state = h.state;
	r->attempts = h.attempts;
	r->next_try = h.next_try;
	r->last_try = h.last_try;
	r->owner = h.owner;
	r->flags = h.flags;
	memcpy(r->reply, (const char *)val->mv_data + RCPT_HDR, h.reply_len);
	r->reply[h.reply_len] = '\0';
	if (strpbrk(r->reply, "\r\n") != NULL || strlen(r->reply) != h.reply_len)
		return -1;
	return 0;
}

static int
rcpt_put(struct spool *sp, MDB_txn *txn, const struct spool_rcpt *r)
{
	unsigned char key[RCPT_KEY], buf[RCPT_HDR + SPOOL_REPLY_MAX];
	size_t rlen = strlen(r->reply);
	struct rcpt_rec h = {
		.version = RCPT_VERSION, .state = (uint8_t)r->state,
		.reply_len = (uint16_t)rlen, .attempts = r->attempts,
		.next_try = r->next_try, .last_try = r->last_try, .owner = r->owner,
		.flags = r->flags,
	};

	rcpt_key(key, r->qid, r->idx);
	memcpy(buf, &h, RCPT_HDR);
	memcpy(buf + RCPT_HDR, r->reply, rlen);
	MDB_val k = { .mv_size = RCPT_KEY, .mv_data = key };
	MDB_val v = { .mv_size = RCPT_HDR + rlen, .mv_data = buf };
	return mdb_put(txn, sp->dbi_rcpt, &k, &v, 0);
}

static int
sched_put(struct spool *sp, MDB_txn *txn, const struct spool_rcpt *r)
{
	unsigned char key[SCHED_KEY];

	sched_key(key, r->next_try, r->qid, r->idx);
	MDB_val k = { .mv_size = SCHED_KEY, .mv_data = key };
	MDB_val v = { .mv_size = 0, .mv_data = key };
	return mdb_put(txn, sp->dbi_sched, &k, &v, 0);
}

static int
sched_del(struct spool *sp, MDB_txn *txn, const struct spool_rcpt *r)
{
	unsigned char key[SCHED_KEY];

	sched_key(key, r->next_try, r->qid, r->idx);
	MDB_val k = { .mv_size = SCHED_KEY, .mv_data = key };
	int rc = mdb_del(txn, sp->dbi_sched, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int
spool_queue_open(struct spool *sp, MDB_txn *txn)
{
	if (sp->readonly) {
		/* a spool no writer has opened since the queue databases came */
		int rc = mdb_dbi_open(txn, SPOOL_DB_NEW, 0, &sp->dbi_new);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc == 0)
			rc = mdb_dbi_open(txn, SPOOL_DB_RCPT, 0, &sp->dbi_rcpt);
		if (rc == 0)
			rc = mdb_dbi_open(txn, SPOOL_DB_SCHED, 0, &sp->dbi_sched);
		sp->has_queue = rc == 0;
		return rc;
	}
	bool upgrade = false;
	int rc = mdb_dbi_open(txn, SPOOL_DB_NEW, 0, &sp->dbi_new);
	if (rc == MDB_NOTFOUND) {
		upgrade = true;
		rc = mdb_dbi_open(txn, SPOOL_DB_NEW, MDB_CREATE, &sp->dbi_new);
	}
	if (rc == 0)
		rc = mdb_dbi_open(txn, SPOOL_DB_RCPT, MDB_CREATE, &sp->dbi_rcpt);
	if (rc == 0)
		rc = mdb_dbi_open(txn, SPOOL_DB_SCHED, MDB_CREATE, &sp->dbi_sched);
	if (rc != 0 || !upgrade)
		goto out;
	/* messages committed before the queue databases existed: all new */
	MDB_cursor *cur;
	MDB_val k, v, empty = { 0, NULL };
	size_t n = 0;
	if ((rc = mdb_cursor_open(txn, sp->dbi_env, &cur)) != 0)
		goto out;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if ((rc = mdb_put(txn, sp->dbi_new, &k, &empty, 0)) != 0)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc == 0 && n > 0)
		log_info("spool %s: %zu messages from before the delivery state are new",
		    sp->dir, n);
out:
	sp->has_queue = rc == 0;
	return rc;
}

int
spool_queue_put_new(struct spool *sp, MDB_txn *txn, const char *qid)
{
	MDB_val k = { .mv_size = strlen(qid), .mv_data = (void *)qid };
	MDB_val v = { 0, NULL };
	int rc = mdb_put(txn, sp->dbi_new, &k, &v, MDB_NOOVERWRITE);

	if (rc != 0)
		log_warnx("spool: put new %s: %s", qid, spool_strerror(rc));
	return rc;
}

/* a write transaction for the queue manager's operations */
static int
queue_write_begin(struct spool *sp, MDB_txn **txn_r, const char **error_r)
{
	if (sp->readonly || spool_inherited(sp) || !sp->has_queue) {
		*error_r = spool_err("spool: delivery state is not writable on this handle");
		return -1;
	}
	if (sp->qbatch != NULL) {
		*txn_r = sp->qbatch;
		return 0;
	}
	int rc = spool_txn_begin(sp, 0, txn_r);
	if (rc == 0 && sp->qbatch_on)
		sp->qbatch = *txn_r;
	if (rc != 0) {
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	return 0;
}

static int
queue_read_begin(struct spool *sp, MDB_txn **txn_r, const char **error_r)
{
	if (!sp->has_queue) {
		*error_r = spool_err("spool %s has no delivery state yet", sp->dir);
		return -1;
	}
	if (sp->qbatch != NULL) {
		/* the open batch sees its own writes */
		*txn_r = sp->qbatch;
		return 0;
	}
	return spool_read_begin(sp, txn_r, error_r);
}

/* ends a read (or a write that wrote nothing): the open batch stays open */
static void
queue_read_end(struct spool *sp, MDB_txn *txn)
{
	if (txn != sp->qbatch)
		mdb_txn_abort(txn);
}

static int
queue_commit(struct spool *sp, MDB_txn *txn, int rc, const char **error_r)
{
	if (txn != NULL && txn == sp->qbatch) {
		if (rc == 0)
			return 0;	/* spool_queue_flush() commits */
		/* a failed write leaves the transaction unusable: the whole batch
		   is lost, as a crash before its commit would lose it */
		mdb_txn_abort(txn);
		sp->qbatch = NULL;
		log_warnx("spool %s: queue batch aborted: %s", sp->dir,
		    spool_strerror(rc));
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	if (rc == 0 && (rc = mdb_txn_commit(txn)) == 0)
		return 0;
	if (rc != 0 && txn != NULL)
		mdb_txn_abort(txn);
	*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
	return -1;
}

static bool
qid_key(const MDB_val *k, char qid[SPOOL_QID_MAX])
{
	if (k->mv_size != SPOOL_QID_LEN)
		return false;
	memcpy(qid, k->mv_data, SPOOL_QID_LEN);
	qid[SPOOL_QID_LEN] = '\0';
	return spool_qid_valid(qid);
}

/* the recipients of an envelope: -1 when it is missing or does not parse */
static int
env_rcpts(struct spool *sp, MDB_txn *txn, const char *qid, size_t *n_r)
{
	MDB_val k = { .mv_size = SPOOL_QID_LEN, .mv_data = (void *)qid }, v;
	struct spool_parsed p;
	const char *err;

	if (mdb_get(txn, sp->dbi_env, &k, &v) != 0)
		return -1;
	if (spool_parse(qid, &v, &p, &err) == -1)
		return -1;
	*n_r = p.e.n_rcpts;
	spool_parsed_free(&p);
	return 0;
}

/* delete every record of qid in txn (and their sched entries) */
static int
queue_remove(struct spool *sp, MDB_txn *txn, const char *qid)
{
	unsigned char start[RCPT_KEY];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	rcpt_key(start, qid, 0);
	if ((rc = mdb_cursor_open(txn, sp->dbi_rcpt, &cur)) != 0)
		return rc;
	k.mv_size = RCPT_KEY;
	k.mv_data = start;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != RCPT_KEY || memcmp(k.mv_data, qid, SPOOL_QID_LEN) != 0)
			break;
		struct spool_rcpt r;
		if (rcpt_decode(&k, &v, &r) == 0 && rcpt_waiting(r.state) &&
		    (rc = sched_del(sp, txn, &r)) != 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	k.mv_size = SPOOL_QID_LEN;
	k.mv_data = (void *)qid;
	MDB_dbi dbis[] = { sp->dbi_new, sp->dbi_env, sp->dbi_body };
	for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++)
		if ((rc = mdb_del(txn, dbis[i], &k, NULL)) != 0 && rc != MDB_NOTFOUND)
			return rc;
	return 0;
}

int
spool_queue_intake(struct spool *sp, int64_t now, size_t max, const char **error_r)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, taken = 0;

	if (queue_write_begin(sp, &txn, error_r) == -1)
		return -1;
	if ((rc = mdb_cursor_open(txn, sp->dbi_new, &cur)) != 0)
		return queue_commit(sp, txn, rc, error_r);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) {
		if (max > 0 && (size_t)taken >= max)
			break;
		char qid[SPOOL_QID_MAX];
		size_t n;
		if (!qid_key(&k, qid) || env_rcpts(sp, txn, qid, &n) == -1) {
			/* nothing a qmgr could deliver: drop the entry, keep the
			   message for spool_verify and the administrator */
			log_warnx("spool %s: new entry without a readable envelope dropped",
			    sp->dir);
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				break;
			continue;
		}
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		for (size_t i = 0; rc == 0 && i < n; i++) {
			struct spool_rcpt r = {
				.idx = (unsigned)i, .state = SPOOL_RCPT_QUEUED,
				.next_try = now,
			};
			memcpy(r.qid, qid, sizeof(r.qid));
			if ((rc = rcpt_put(sp, txn, &r)) == 0)
				rc = sched_put(sp, txn, &r);
		}
		if (rc == 0 && n == 0) {
			log_warnx("%s: no recipients: removed", qid);
			rc = queue_remove(sp, txn, qid);
		}
		if (rc != 0)
			break;
		taken++;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (queue_commit(sp, txn, rc, error_r) == -1)
		return -1;
	return taken;
}

int
spool_queue_new_count(struct spool *sp, size_t *count_r, const char **error_r)
{
	MDB_txn *txn;
	MDB_stat st;

	if (queue_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int rc = mdb_stat(txn, sp->dbi_new, &st);
	queue_read_end(sp, txn);
	if (rc != 0) {
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	*count_r = st.ms_entries;
	return 0;
}

static int
rcpt_lookup(struct spool *sp, MDB_txn *txn, const char *qid, unsigned idx,
    struct spool_rcpt *r)
{
	unsigned char key[RCPT_KEY];
	MDB_val k = { .mv_size = RCPT_KEY, .mv_data = key }, v;

	if (!spool_qid_valid(qid))
		return MDB_NOTFOUND;
	rcpt_key(key, qid, idx);
	int rc = mdb_get(txn, sp->dbi_rcpt, &k, &v);
	if (rc == 0 && rcpt_decode(&k, &v, r) == -1)
		rc = MDB_CORRUPTED;
	return rc;
}

int
spool_queue_due(struct spool *sp, int64_t now, size_t max, spool_rcpt_fn *fn,
    void *arg, const char **error_r)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t n = 0;

	if (queue_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int rc = mdb_cursor_open(txn, sp->dbi_sched, &cur);
	if (rc != 0) {
		queue_read_end(sp, txn);
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != SCHED_KEY)
			continue;
		const unsigned char *p = k.mv_data;
		if ((int64_t)get_be(p, 8) > now || (max > 0 && n >= max))
			break;
		char qid[SPOOL_QID_MAX];
		memcpy(qid, p + 8, SPOOL_QID_LEN);
		qid[SPOOL_QID_LEN] = '\0';
		struct spool_rcpt r;
		if (rcpt_lookup(sp, txn, qid, (unsigned)get_be(p + 8 + SPOOL_QID_LEN, 4),
		    &r) != 0)
			continue;	/* spool_verify names such a flaw */
		n++;
		if (fn(&r, arg) != 0)
			break;
	}
	mdb_cursor_close(cur);
	queue_read_end(sp, txn);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	return 0;
}

int
spool_queue_next_try(struct spool *sp, int64_t *when_r, const char **error_r)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;

	if (queue_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int rc = mdb_cursor_open(txn, sp->dbi_sched, &cur);
	if (rc == 0) {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		mdb_cursor_close(cur);
	}
	queue_read_end(sp, txn);
	if (rc == MDB_NOTFOUND) {
		*when_r = -1;
		return 0;
	}
	if (rc != 0 || k.mv_size != SCHED_KEY) {
		*error_r = spool_err("spool %s: %s", sp->dir,
		    rc != 0 ? spool_strerror(rc) : "malformed schedule key");
		return -1;
	}
	*when_r = (int64_t)get_be(k.mv_data, 8);
	return 0;
}

int
spool_rcpt_get(struct spool *sp, const char *qid, unsigned idx, struct spool_rcpt *r,
    const char **error_r)
{
	MDB_txn *txn;

	if (queue_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int rc = rcpt_lookup(sp, txn, qid, idx, r);
	queue_read_end(sp, txn);
	if (rc == MDB_NOTFOUND) {
		*error_r = spool_err("%s: no such recipient %u", qid, idx);
		return -1;
	}
	if (rc != 0) {
		*error_r = spool_err("%s: recipient %u: %s", qid, idx, spool_strerror(rc));
		return -1;
	}
	return 0;
}

int
spool_rcpt_foreach(struct spool *sp, const char *qid, spool_rcpt_fn *fn, void *arg,
    const char **error_r)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	unsigned char start[RCPT_KEY];
	MDB_val k = { .mv_size = RCPT_KEY, .mv_data = start }, v;

	if (!spool_qid_valid(qid)) {
		*error_r = spool_err("%s: no such message", qid);
		return -1;
	}
	if (queue_read_begin(sp, &txn, error_r) == -1)
		return -1;
	rcpt_key(start, qid, 0);
	int rc = mdb_cursor_open(txn, sp->dbi_rcpt, &cur), ret = 0;
	if (rc != 0) {
		queue_read_end(sp, txn);
		*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
		return -1;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct spool_rcpt r;
		if (k.mv_size != RCPT_KEY || memcmp(k.mv_data, qid, SPOOL_QID_LEN) != 0)
			break;
		if (rcpt_decode(&k, &v, &r) == -1) {
			*error_r = spool_err("%s: malformed recipient record", qid);
			ret = -1;
			break;
		}
		if (fn(&r, arg) != 0)
			break;
	}
	mdb_cursor_close(cur);
	queue_read_end(sp, txn);
	return ret;
}

/* every recipient of qid final? (in txn) */
static int
queue_all_final(struct spool *sp, MDB_txn *txn, const char *qid, bool *final_r)
{
	unsigned char start[RCPT_KEY];
	MDB_val k = { .mv_size = RCPT_KEY, .mv_data = start }, v;
	MDB_cursor *cur;

	rcpt_key(start, qid, 0);
	int rc = mdb_cursor_open(txn, sp->dbi_rcpt, &cur);
	if (rc != 0)
		return rc;
	*final_r = true;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct spool_rcpt r;
		if (k.mv_size != RCPT_KEY || memcmp(k.mv_data, qid, SPOOL_QID_LEN) != 0)
			break;
		if (rcpt_decode(&k, &v, &r) == -1 || !spool_rcpt_final(r.state)) {
			*final_r = false;
			break;
		}
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc == 0 ? 0 : rc;
}

int
spool_rcpt_update(struct spool *sp, const struct spool_rcpt *r, bool *complete_r,
    const char **error_r)
{
	MDB_txn *txn;
	struct spool_rcpt old;

	if ((unsigned)r->state > SPOOL_RCPT_HOLD ||
	    strnlen(r->reply, SPOOL_REPLY_MAX) >= SPOOL_REPLY_MAX ||
	    strpbrk(r->reply, "\r\n") != NULL || r->next_try < 0 ||
	    (r->flags & ~SPOOL_RCPT_F_ALL) != 0 ||
	    (r->state == SPOOL_RCPT_INFLIGHT) != (r->owner != 0)) {
		errno = EINVAL;
		*error_r = spool_err("%s: recipient %u: invalid record", r->qid, r->idx);
		return -1;
	}
	if (queue_write_begin(sp, &txn, error_r) == -1)
		return -1;
	int rc = rcpt_lookup(sp, txn, r->qid, r->idx, &old);
	if (rc == MDB_NOTFOUND) {
		queue_read_end(sp, txn);
		*error_r = spool_err("%s: no such recipient %u", r->qid, r->idx);
		return -1;
	}
	if (rc == 0 && rcpt_waiting(old.state))
		rc = sched_del(sp, txn, &old);
	if (rc == 0)
		rc = rcpt_put(sp, txn, r);
	if (rc == 0 && rcpt_waiting(r->state))
		rc = sched_put(sp, txn, r);
	bool complete = false;
	if (rc == 0 && spool_rcpt_final(r->state))
		rc = queue_all_final(sp, txn, r->qid, &complete);
	if (queue_commit(sp, txn, rc, error_r) == -1)
		return -1;
	if (complete_r != NULL)
		*complete_r = complete;
	return 0;
}

int
spool_queue_delete(struct spool *sp, const char *qid, const char **error_r)
{
	MDB_txn *txn;
	MDB_val k = { .mv_size = strlen(qid), .mv_data = (void *)qid }, v;

	if (!spool_qid_valid(qid)) {
		*error_r = spool_err("%s: no such message", qid);
		return -1;
	}
	if (queue_write_begin(sp, &txn, error_r) == -1)
		return -1;
	int rc = mdb_get(txn, sp->dbi_env, &k, &v);
	if (rc == MDB_NOTFOUND) {
		queue_read_end(sp, txn);
		*error_r = spool_err("%s: no such message", qid);
		return -1;
	}
	if (rc == 0)
		rc = queue_remove(sp, txn, qid);
	return queue_commit(sp, txn, rc, error_r);
}

static bool
queue_pid_alive(uint32_t pid, void *arg)
{
	(void)arg;
	return pid != 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH);
}

int
spool_queue_reclaim(struct spool *sp, int64_t now, spool_alive_fn *alive, void *arg,
    const char **error_r)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int n = 0;

	if (alive == NULL)
		alive = queue_pid_alive;
	if (queue_write_begin(sp, &txn, error_r) == -1)
		return -1;
	int rc = mdb_cursor_open(txn, sp->dbi_rcpt, &cur);
	if (rc != 0)
		return queue_commit(sp, txn, rc, error_r);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct spool_rcpt r;
		if (rcpt_decode(&k, &v, &r) == -1 || r.state != SPOOL_RCPT_INFLIGHT ||
		    alive(r.owner, arg))
			continue;
		r.state = SPOOL_RCPT_QUEUED;
		r.owner = 0;
		r.next_try = now;
		/* rewriting the current key's value does not move the cursor */
		if ((rc = rcpt_put(sp, txn, &r)) != 0 || (rc = sched_put(sp, txn, &r)) != 0)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (queue_commit(sp, txn, rc, error_r) == -1)
		return -1;
	return n;
}

/*
 * The delivery state agrees with the messages: every "new" entry names an
 * envelope that has no recipient records yet; every other envelope has one
 * record per recipient; every record belongs to an envelope and decodes; a
 * waiting record has exactly its sched entry and every sched entry its record.
 */
int
spool_queue_verify(struct spool *sp, MDB_txn *txn, const char **error_r)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v, other;
	char qid[SPOOL_QID_MAX];
	size_t n_waiting = 0, n_sched = 0;
	int rc;

	if (!sp->has_queue)
		return 0;
	/* envelopes: new, or all their records present */
	if ((rc = mdb_cursor_open(txn, sp->dbi_env, &cur)) != 0)
		goto lmdb_fail;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		size_t n;
		if (!qid_key(&k, qid) || env_rcpts(sp, txn, qid, &n) == -1)
			continue;	/* spool_verify's first pass names these */
		bool is_new = mdb_get(txn, sp->dbi_new, &k, &other) == 0;
		for (size_t i = 0; i < n; i++) {
			struct spool_rcpt r;
			int lr = rcpt_lookup(sp, txn, qid, (unsigned)i, &r);
			if (is_new && lr != MDB_NOTFOUND) {
				*error_r = spool_err("%s: new, yet has recipient records", qid);
				goto fail;
			}
			if (!is_new && lr != 0) {
				*error_r = spool_err("%s: recipient %zu: %s", qid, i,
				    lr == MDB_NOTFOUND ? "no record" : "malformed record");
				goto fail;
			}
		}
	}
	if (rc != MDB_NOTFOUND)
		goto lmdb_fail;
	mdb_cursor_close(cur);
	cur = NULL;
	/* records: belong to a message, decode, waiting ones scheduled */
	if ((rc = mdb_cursor_open(txn, sp->dbi_rcpt, &cur)) != 0)
		goto lmdb_fail;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct spool_rcpt r;
		size_t n;
		if (rcpt_decode(&k, &v, &r) == -1) {
			*error_r = spool_err("malformed recipient record");
			goto fail;
		}
		if (env_rcpts(sp, txn, r.qid, &n) == -1 || r.idx >= n) {
			*error_r = spool_err("%s: recipient %u: no such recipient in the "
			    "envelope", r.qid, r.idx);
			goto fail;
		}
		if (!rcpt_waiting(r.state))
			continue;
		unsigned char key[SCHED_KEY];
		sched_key(key, r.next_try, r.qid, r.idx);
		MDB_val sk = { .mv_size = SCHED_KEY, .mv_data = key };
		if (mdb_get(txn, sp->dbi_sched, &sk, &other) != 0) {
			*error_r = spool_err("%s: recipient %u: %s but not scheduled", r.qid,
			    r.idx, spool_rcpt_state_name(r.state));
			goto fail;
		}
		n_waiting++;
	}
	if (rc != MDB_NOTFOUND)
		goto lmdb_fail;
	mdb_cursor_close(cur);
	cur = NULL;
	/* sched: only entries of waiting records (each found above once) */
	MDB_stat st;
	if ((rc = mdb_stat(txn, sp->dbi_sched, &st)) != 0)
		goto lmdb_fail;
	n_sched = st.ms_entries;
	if (n_sched != n_waiting) {
		*error_r = spool_err("%zu schedule entries for %zu waiting recipients",
		    n_sched, n_waiting);
		return -1;
	}
	return 0;
lmdb_fail:
	*error_r = spool_err("spool %s: %s", sp->dir, spool_strerror(rc));
fail:
	if (cur != NULL)
		mdb_cursor_close(cur);
	return -1;
}

void
spool_queue_batch(struct spool *sp, bool on)
{
	const char *err;
	if (!on && spool_queue_flush(sp, &err) == -1)
		log_warnx("%s", err);
	sp->qbatch_on = on;
}

int
spool_queue_flush(struct spool *sp, const char **error_r)
{
	MDB_txn *txn = sp->qbatch;
	if (txn == NULL)
		return 0;
	sp->qbatch = NULL;
	int rc = mdb_txn_commit(txn);
	if (rc != 0) {
		*error_r = spool_err("spool %s: queue batch: %s", sp->dir,
		    spool_strerror(rc));
		return -1;
	}
	return 0;
}
