/*
 * Reading the spool (mailq, postcat, tests): defensive parsing of envelope
 * records (they come from disk), listing, showing, and the consistency check.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/dsnparam.h"
#include "common/log.h"
#include "common/spool.h"
#include "common/spool_internal.h"

/* --- reading ------------------------------------------------------------------ */

void
spool_parsed_free(struct spool_parsed *p)
{
	free(p->text);
	free(p->rcpts);
	free(p->notify);
	free(p->orcpt);
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

/*
 * A version 2 line of the DSN parameters (spool_internal.h): 1 taken, or 1 with
 * *error_r set when it is refused (a bad value, a repeated line, NOTIFY or ORCPT
 * before any recipient); 0 not a DSN line.
 */
static int
spool_parse_dsn(const char *qid, const char *key, const char *value,
    struct spool_parsed *p, bool *have_ret, bool *have_envid, bool *r_notify,
    bool *r_orcpt, const char **error_r)
{
	const char *reply;
	size_t vl = strlen(value);

	*error_r = NULL;
	if (strcmp(key, "ret") == 0) {
		if (*have_ret || p->e.n_rcpts > 0 || (strcmp(value, "FULL") != 0 &&
		    strcmp(value, "HDRS") != 0))
			*error_r = spool_err("%s: bad ret line", qid);
		p->e.dsn_ret = value[0] == 'F' ? DSNPARAM_RET_FULL : DSNPARAM_RET_HDRS;
		*have_ret = true;
	} else if (strcmp(key, "envid") == 0) {
		if (*have_envid || p->e.n_rcpts > 0 || vl > DSNPARAM_ENVID_MAX ||
		    !dsnparam_xtext_valid(value, vl))
			*error_r = spool_err("%s: bad envid line", qid);
		p->e.envid = value;
		*have_envid = true;
	} else if (strcmp(key, "notify") == 0) {
		unsigned n;
		if (*r_notify || p->e.n_rcpts == 0 ||
		    dsnparam_notify_parse(value, vl, &n, &reply) == -1)
			*error_r = spool_err("%s: bad notify line", qid);
		else
			p->notify[p->e.n_rcpts - 1] = n;
		*r_notify = true;
	} else if (strcmp(key, "orcpt") == 0) {
		if (*r_orcpt || p->e.n_rcpts == 0 || vl > DSNPARAM_ORCPT_MAX ||
		    !dsnparam_orcpt_valid(value, vl))
			*error_r = spool_err("%s: bad orcpt line", qid);
		else
			p->orcpt[p->e.n_rcpts - 1] = value;
		*r_orcpt = true;
	} else {
		return 0;
	}
	return 1;
}

/* parse an envelope record defensively: it came from disk */
int
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
	if ((p->rcpts = calloc(n_lines, sizeof(*p->rcpts))) == NULL ||
	    (p->notify = calloc(n_lines, sizeof(*p->notify))) == NULL ||
	    (p->orcpt = calloc(n_lines, sizeof(*p->orcpt))) == NULL) {
		*error_r = spool_err("out of memory");
		goto fail;
	}
	p->e.qid = qid;
	bool first = true, v2 = false, have_ret = false, have_envid = false;
	/* the DSN lines of the recipient read last */
	bool r_notify = false, r_orcpt = false;
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
			v2 = strcmp(key, "version") == 0 && strcmp(value, ENV_VERSION_DSN) == 0;
			if (strcmp(key, "version") != 0 || (!v2 &&
			    strcmp(value, ENV_VERSION) != 0)) {
				*error_r = spool_err("%s: unknown envelope version", qid);
				goto fail;
			}
		} else if (v2 && spool_parse_dsn(qid, key, value, p, &have_ret,
		    &have_envid, &r_notify, &r_orcpt, error_r) != 0) {
			/* a DSN line (taken, or refused: then error_r is set) */
			if (*error_r != NULL)
				goto fail;
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
		} else if (strcmp(key, "rcpt") == 0) {
			p->rcpts[p->e.n_rcpts++] = value;
			r_notify = r_orcpt = false;
		}
		line = nl + 1;
	}
	if (!p->have_arrival || !p->have_size || !p->have_sender) {
		*error_r = spool_err("%s: envelope lacks arrival, size or sender", qid);
		goto fail;
	}
	p->e.rcpts = p->rcpts;
	p->e.notify = p->notify;
	p->e.orcpt = p->orcpt;
	return 0;
fail:
	spool_parsed_free(p);
	memset(p, 0, sizeof(*p));
	return -1;
}

int
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
spool_body_with(struct spool *sp, const char *qid, spool_body_fn *fn, void *arg,
    const char **error_r)
{
	MDB_txn *txn;
	MDB_val ev, bv;

	if (spool_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int ret = -1;
	if (spool_lookup(sp, txn, qid, &ev, &bv, error_r) == 0)
		ret = fn(arg, bv.mv_data, bv.mv_size);
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
	mdb_cursor_close(cur);
	cur = NULL;
	if (spool_queue_verify(sp, txn, error_r) == -1)
		goto out;
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


int
spool_message_load(struct spool *sp, const char *qid, bool with_body,
    struct spool_message *m, const char **error_r)
{
	MDB_txn *txn;
	MDB_val ev, bv;

	memset(m, 0, sizeof(*m));
	if (spool_read_begin(sp, &txn, error_r) == -1)
		return -1;
	int ret = -1;
	struct spool_parsed *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		*error_r = spool_err("out of memory");
		goto out;
	}
	if (spool_lookup(sp, txn, qid, &ev, &bv, error_r) == -1 ||
	    spool_parse(qid, &ev, p, error_r) == -1) {
		free(p);
		goto out;
	}
	if (with_body) {
		if ((m->body = malloc(bv.mv_size + 1)) == NULL) {
			spool_parsed_free(p);
			free(p);
			*error_r = spool_err("out of memory");
			goto out;
		}
		memcpy(m->body, bv.mv_data, bv.mv_size);
		m->body[bv.mv_size] = '\0';
	}
	m->body_len = bv.mv_size;
	m->e = p->e;
	m->priv = p;
	ret = 0;
out:
	mdb_txn_abort(txn);
	return ret;
}

void
spool_message_free(struct spool_message *m)
{
	if (m->priv != NULL) {
		spool_parsed_free(m->priv);
		free(m->priv);
	}
	free(m->body);
	memset(m, 0, sizeof(*m));
}
