/*
 * auth/hashpool: password checks on worker threads, answered on the loop.
 * Results by user and password (ok with the user's addresses, fail, unknown
 * user), every job answered once, a table swapped while checks run stays alive
 * until they are done, and the queue limit.
 */
#include <check.h>
#include <ev.h>
#include <stdio.h>
#include <string.h>

#include "auth/hashpool.h"
#include "common/passwd.h"
#include "testmain.h"

#define N_JOBS 12

static int n_done;
static struct authproto_answer answers[N_JOBS + 1];
static uint64_t peers[N_JOBS + 1];

static void
done(struct hashjob *j)
{
	ck_assert_int_lt(n_done, N_JOBS + 1);
	ck_assert_str_eq(j->req.password, "");	/* wiped by the worker */
	answers[n_done] = j->ans;
	peers[n_done] = j->peer;
	n_done++;
}

static struct passwd_db *
table(const char *pw)
{
	char hash[256], text[512];
	const char *err;
	struct passwd_errors errs = { NULL, 0 };
	/* a yescrypt hash, as relayvisorctl passwd writes */
	ck_assert_int_eq(passwd_hash_new(pw, hash, sizeof(hash), &err), 0);
	snprintf(text, sizeof(text), "alice:%s:alice@example.test,@sales.example.test\n"
	    "bob:!locked\n", hash);
	struct passwd_db *db = passwd_db_parse("users", text, strlen(text), &errs);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_ptr_nonnull(db);
	(void)passwd_db_check(db, "", "", NULL);	/* as the auth process does */
	return db;
}

static void
submit(struct hashpool *hp, struct passwd_ref *ref, uint32_t id, const char *user,
    const char *pw)
{
	struct authproto_request r;
	memset(&r, 0, sizeof(r));
	r.id = id;
	r.mech = SASL_MECH_PLAIN;
	snprintf(r.user, sizeof(r.user), "%s", user);
	snprintf(r.password, sizeof(r.password), "%s", pw);
	ck_assert_int_eq(hashpool_submit(hp, 100 + id, ref, &r), 0);
	ck_assert_str_eq(r.password, "");
}

static const struct authproto_answer *
answer(uint32_t id)
{
	for (int i = 0; i < n_done; i++)
		if (answers[i].id == id)
			return &answers[i];
	ck_abort_msg("no answer %u", id);
	return NULL;
}

START_TEST(test_checks_on_workers)
{
	struct ev_loop *loop = ev_loop_new(0);
	const char *err;
	n_done = 0;
	struct hashpool *hp = hashpool_new(loop, 2, done, &err);
	ck_assert_ptr_nonnull(hp);
	struct passwd_ref *ref = passwd_ref_new(table("right"));
	for (uint32_t id = 1; id <= N_JOBS; id++)
		submit(hp, ref, id, id % 3 == 0 ? "bob" : id % 3 == 1 ? "alice" : "nobody",
		    id % 2 == 0 ? "wrong" : "right");
	/* the table is replaced while the checks run: they keep the old one */
	passwd_ref_drop(ref);
	for (int i = 0; i < 10000 && n_done < N_JOBS; i++)
		ev_run(loop, EVRUN_ONCE);
	ck_assert_int_eq(n_done, N_JOBS);
	for (uint32_t id = 1; id <= N_JOBS; id++) {
		const struct authproto_answer *a = answer(id);
		bool ok = id % 3 == 1 && id % 2 == 1;
		ck_assert_int_eq(a->result, ok ? AUTHPROTO_OK : AUTHPROTO_FAIL);
		if (ok) {
			ck_assert_str_eq(a->user, "alice");
			ck_assert_uint_eq(a->naddrs, 2);
			ck_assert_str_eq(authproto_answer_next_addr(a, NULL),
			    "alice@example.test");
		} else {
			ck_assert_str_eq(a->reason, "authentication failure");
		}
	}
	for (int i = 0; i < n_done; i++)
		ck_assert_uint_eq(peers[i], 100 + answers[i].id);
	hashpool_free(hp);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(test_queue_limit)
{
	struct ev_loop *loop = ev_loop_new(0);
	const char *err;
	n_done = 0;
	/* one worker, many jobs: past the limit a submission is refused at once;
	   freeing the pool drops what waits (the leak check sees the rest) */
	struct hashpool *hp = hashpool_new(loop, 1, done, &err);
	struct passwd_ref *ref = passwd_ref_new(table("pw"));
	struct authproto_request r;
	int refused = 0;
	for (int i = 0; i < HASHPOOL_QUEUE_MAX + 5; i++) {
		memset(&r, 0, sizeof(r));
		r.id = (uint32_t)i + 1;
		snprintf(r.user, sizeof(r.user), "nobody");
		snprintf(r.password, sizeof(r.password), "x");
		if (hashpool_submit(hp, 1, ref, &r) == -1) {
			refused++;
			ck_assert_str_eq(r.password, "");
		}
	}
	ck_assert_int_eq(refused, 5);
	hashpool_free(hp);
	passwd_ref_drop(ref);
	ev_loop_destroy(loop);
}
END_TEST

static Suite *
hashpool_suite(void)
{
	Suite *s = suite_create("auth_hashpool");
	TCase *tc = tcase_create("hashpool");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_checks_on_workers);
	tcase_add_test(tc, test_queue_limit);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(hashpool_suite)
