/*
 * Worker threads for password checks (hashpool.h).
 */
#include "auth/hashpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/log.h"
#include "common/passwd.h"
#include "common/xmalloc.h"

struct hashpool {
	struct ev_loop *loop;
	ev_async async;
	hashpool_done_fn *done;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct hashjob *todo, **todo_tail;
	struct hashjob *fin, **fin_tail;
	size_t queued;
	bool stop;
	pthread_t th[HASHPOOL_THREADS_MAX];
	unsigned n;
};

struct passwd_ref *
passwd_ref_new(struct passwd_db *db)
{
	struct passwd_ref *r = xcalloc(1, sizeof(*r));
	r->db = db;
	r->refs = 1;
	return r;
}

void
passwd_ref_drop(struct passwd_ref *ref)
{
	if (ref == NULL || --ref->refs > 0)
		return;
	passwd_db_free(ref->db);
	free(ref);
}

/* the check itself, on a worker */
static void
job_run(struct hashjob *j)
{
	const struct passwd_entry *e = NULL;
	struct authproto_answer *a = &j->ans;
	memset(a, 0, sizeof(*a));
	a->id = j->req.id;
	enum passwd_result res = passwd_db_check(j->ref->db, j->req.user, j->req.password,
	    &e);
	authproto_request_wipe(&j->req);
	if (res == PASSWD_TEMPFAIL) {
		a->result = AUTHPROTO_TEMPFAIL;
		snprintf(a->user, sizeof(a->user), "%s", j->req.user);
		snprintf(a->reason, sizeof(a->reason), "crypt failed");
		return;
	}
	if (res != PASSWD_OK || e == NULL) {
		a->result = AUTHPROTO_FAIL;
		snprintf(a->user, sizeof(a->user), "%s", j->req.user);
		snprintf(a->reason, sizeof(a->reason), "authentication failure");
		return;
	}
	a->result = AUTHPROTO_OK;
	snprintf(a->user, sizeof(a->user), "%s", e->user);
	for (size_t i = 0; i < e->naddrs; i++)
		if (authproto_answer_add_addr(a, e->addrs[i]) == -1)
			break;	/* the rest are not allowed senders (the file's limit
				   and the answer's agree: passwd.h, authproto.h) */
}

static void *
worker(void *arg)
{
	struct hashpool *hp = arg;
	pthread_mutex_lock(&hp->mu);
	for (;;) {
		while (!hp->stop && hp->todo == NULL)
			pthread_cond_wait(&hp->cv, &hp->mu);
		if (hp->stop)
			break;
		struct hashjob *j = hp->todo;
		hp->todo = j->next;
		if (hp->todo == NULL)
			hp->todo_tail = &hp->todo;
		pthread_mutex_unlock(&hp->mu);
		job_run(j);
		pthread_mutex_lock(&hp->mu);
		j->next = NULL;
		*hp->fin_tail = j;
		hp->fin_tail = &j->next;
		ev_async_send(hp->loop, &hp->async);
	}
	pthread_mutex_unlock(&hp->mu);
	return NULL;
}

static void
async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	struct hashpool *hp = w->data;
	pthread_mutex_lock(&hp->mu);
	struct hashjob *list = hp->fin;
	hp->fin = NULL;
	hp->fin_tail = &hp->fin;
	pthread_mutex_unlock(&hp->mu);
	while (list != NULL) {
		struct hashjob *j = list;
		list = j->next;
		hp->queued--;
		hp->done(j);
		passwd_ref_drop(j->ref);
		OPENSSL_cleanse(j, sizeof(*j));
		free(j);
	}
}

struct hashpool *
hashpool_new(struct ev_loop *loop, unsigned nthreads, hashpool_done_fn *done,
    const char **error_r)
{
	struct hashpool *hp = xcalloc(1, sizeof(*hp));
	hp->loop = loop;
	hp->done = done;
	hp->todo_tail = &hp->todo;
	hp->fin_tail = &hp->fin;
	pthread_mutex_init(&hp->mu, NULL);
	pthread_cond_init(&hp->cv, NULL);
	ev_async_init(&hp->async, async_cb);
	hp->async.data = hp;
	ev_async_start(loop, &hp->async);
	if (nthreads < 1)
		nthreads = 1;
	if (nthreads > HASHPOOL_THREADS_MAX)
		nthreads = HASHPOOL_THREADS_MAX;
	for (; hp->n < nthreads; hp->n++)
		if (pthread_create(&hp->th[hp->n], NULL, worker, hp) != 0) {
			*error_r = "pthread_create";
			hashpool_free(hp);
			return NULL;
		}
	return hp;
}

int
hashpool_submit(struct hashpool *hp, uint64_t peer, struct passwd_ref *ref,
    struct authproto_request *r)
{
	if (hp->queued >= HASHPOOL_QUEUE_MAX) {
		authproto_request_wipe(r);
		return -1;
	}
	struct hashjob *j = xcalloc(1, sizeof(*j));
	j->peer = peer;
	j->ref = ref;
	ref->refs++;
	j->req = *r;
	authproto_request_wipe(r);
	hp->queued++;
	pthread_mutex_lock(&hp->mu);
	*hp->todo_tail = j;
	hp->todo_tail = &j->next;
	pthread_cond_signal(&hp->cv);
	pthread_mutex_unlock(&hp->mu);
	return 0;
}

static void
jobs_free(struct hashjob *j)
{
	while (j != NULL) {
		struct hashjob *next = j->next;
		passwd_ref_drop(j->ref);
		OPENSSL_cleanse(j, sizeof(*j));
		free(j);
		j = next;
	}
}

void
hashpool_free(struct hashpool *hp)
{
	if (hp == NULL)
		return;
	pthread_mutex_lock(&hp->mu);
	hp->stop = true;
	pthread_cond_broadcast(&hp->cv);
	pthread_mutex_unlock(&hp->mu);
	for (unsigned i = 0; i < hp->n; i++)
		pthread_join(hp->th[i], NULL);
	ev_async_stop(hp->loop, &hp->async);
	jobs_free(hp->todo);
	jobs_free(hp->fin);
	pthread_mutex_destroy(&hp->mu);
	pthread_cond_destroy(&hp->cv);
	free(hp);
}
