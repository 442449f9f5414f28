/*
 * The RFC 3461 parameter parser (common/dsnparam.c): MAIL's RET and ENVID,
 * RCPT's NOTIFY and ORCPT, each accepted value and each refusal with its exact
 * reply; limits before syntax; xtext; the NOTIFY text the spool stores.
 */
#include <check.h>
#include <string.h>

#include "common/dsnparam.h"
#include "tests/unit/testmain.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
	const char *params[3];		/* one MAIL's parameters, NULL ends */
	int result;			/* of the last one */
	const char *reply;		/* when refused */
	enum dsnparam_ret ret;
	const char *envid;		/* NULL none */
} mail_cases[] = {
	{ { "RET=FULL" }, 1, NULL, DSNPARAM_RET_FULL, NULL },
	{ { "ret=hdrs" }, 1, NULL, DSNPARAM_RET_HDRS, NULL },
	{ { "RET=HDRS", "ENVID=QQ+2B1" }, 1, NULL, DSNPARAM_RET_HDRS, "QQ+2B1" },
	{ { "ENVID=@LONG@" }, 1, NULL, DSNPARAM_RET_NONE, "@LONG@" },
	{ { "SIZE=10" }, 0, NULL, DSNPARAM_RET_NONE, NULL },
	{ { "RETX=FULL" }, 0, NULL, DSNPARAM_RET_NONE, NULL },
	{ { "RET=FULL", "RET=FULL" }, -1, "501 5.5.4 Duplicate RET parameter", 0, NULL },
	{ { "RET=" }, -1, "501 5.5.4 Bad RET parameter syntax", 0, NULL },
	{ { "RET" }, -1, "501 5.5.4 Bad RET parameter syntax", 0, NULL },
	{ { "RET=FULLX" }, -1, "501 5.5.4 Bad RET parameter syntax", 0, NULL },
	{ { "ENVID=" }, -1, "501 5.5.4 Bad ENVID parameter syntax", 0, NULL },
	{ { "ENVID" }, -1, "501 5.5.4 Bad ENVID parameter syntax", 0, NULL },
	{ { "ENVID=a=b" }, -1, "501 5.5.4 Bad ENVID parameter syntax", 0, NULL },
	{ { "ENVID=a+2" }, -1, "501 5.5.4 Bad ENVID parameter syntax", 0, NULL },
	{ { "ENVID=a+2b" }, -1, "501 5.5.4 Bad ENVID parameter syntax", 0, NULL },	/* lower hex */
	{ { "ENVID=a+ZZ" }, -1, "501 5.5.4 Bad ENVID parameter syntax", 0, NULL },
	{ { "ENVID=a\x7f" }, -1, "501 5.5.4 Bad ENVID parameter syntax", 0, NULL },
	{ { "ENVID=\xc3\xa9" }, -1, "501 5.5.4 Bad ENVID parameter syntax", 0, NULL },
	/* limits first: an over-long value is refused as such, valid or not */
	{ { "ENVID=@LONG1@" }, -1, "501 5.5.4 ENVID parameter too long", 0, NULL },
	{ { "ENVID=a", "ENVID=b" }, -1, "501 5.5.4 Duplicate ENVID parameter", 0, NULL },
};

static const char *
expand(const char *p, char *buf, size_t len)
{
	const char *l1 = strstr(p, "@LONG1@"), *l = strstr(p, "@LONG@");
	if (l1 == NULL && l == NULL)
		return p;
	const char *at = l1 != NULL ? l1 : l;
	size_t n = l1 != NULL ? 101 : 100;
	size_t pre = (size_t)(at - p);
	ck_assert_uint_lt(pre + n, len);
	memcpy(buf, p, pre);
	memset(buf + pre, 'E', n);
	buf[pre + n] = '\0';
	return buf;
}

START_TEST(test_mail)
{
	struct dsnparam_mail m;
	const char *reply = NULL;
	int r = 0;
	char buf[256], want_envid[256];

	memset(&m, 0, sizeof(m));
	for (size_t i = 0; i < 3 && mail_cases[_i].params[i] != NULL; i++) {
		const char *p = expand(mail_cases[_i].params[i], buf, sizeof(buf));
		r = dsnparam_mail(&m, p, strlen(p), &reply);
		if (r == -1)
			break;
	}
	ck_assert_int_eq(r, mail_cases[_i].result);
	if (r == -1) {
		ck_assert_str_eq(reply, mail_cases[_i].reply);
		return;
	}
	ck_assert_int_eq(m.ret, mail_cases[_i].ret);
	ck_assert_int_eq(m.has_envid, mail_cases[_i].envid != NULL);
	if (mail_cases[_i].envid != NULL)
		ck_assert_str_eq(m.envid, expand(mail_cases[_i].envid, want_envid,
		    sizeof(want_envid)));
}
END_TEST

static const struct {
	const char *params[3];
	int result;
	const char *reply;
	unsigned notify;
	const char *orcpt;
} rcpt_cases[] = {
	{ { "NOTIFY=NEVER" }, 1, NULL, DSNPARAM_NOTIFY_NEVER, NULL },
	{ { "notify=success,failure,delay" }, 1, NULL,
	    DSNPARAM_NOTIFY_SUCCESS | DSNPARAM_NOTIFY_FAILURE | DSNPARAM_NOTIFY_DELAY, NULL },
	{ { "NOTIFY=DELAY", "ORCPT=rfc822;a+40b.example" }, 1, NULL, DSNPARAM_NOTIFY_DELAY,
	    "rfc822;a+40b.example" },
	{ { "ORCPT=RFC822;x" }, 1, NULL, 0, "RFC822;x" },
	{ { "ORCPT=@O500@" }, 1, NULL, 0, "@O500@" },
	{ { "BODY=7BIT" }, 0, NULL, 0, NULL },
	{ { "NOTIFY=NEVER,SUCCESS" }, -1,
	    "501 5.5.4 NOTIFY=NEVER cannot be combined with other NOTIFY values", 0, NULL },
	{ { "NOTIFY=FAILURE,NEVER" }, -1,
	    "501 5.5.4 NOTIFY=NEVER cannot be combined with other NOTIFY values", 0, NULL },
	{ { "NOTIFY=SUCCESS,SUCCESS" }, -1, "501 5.5.4 Bad NOTIFY parameter syntax", 0, NULL },
	{ { "NOTIFY=" }, -1, "501 5.5.4 Bad NOTIFY parameter syntax", 0, NULL },
	{ { "NOTIFY" }, -1, "501 5.5.4 Bad NOTIFY parameter syntax", 0, NULL },
	{ { "NOTIFY=SUCCESS," }, -1, "501 5.5.4 Bad NOTIFY parameter syntax", 0, NULL },
	{ { "NOTIFY=,SUCCESS" }, -1, "501 5.5.4 Bad NOTIFY parameter syntax", 0, NULL },
	{ { "NOTIFY=SOMETIMES" }, -1, "501 5.5.4 Bad NOTIFY parameter syntax", 0, NULL },
	{ { "NOTIFY=DELAY", "NOTIFY=DELAY" }, -1, "501 5.5.4 Duplicate NOTIFY parameter", 0, NULL },
	{ { "ORCPT=rfc822;a", "ORCPT=rfc822;a" }, -1, "501 5.5.4 Duplicate ORCPT parameter", 0, NULL },
	{ { "ORCPT=rfc822" }, -1, "501 5.5.4 Bad ORCPT parameter syntax", 0, NULL },
	{ { "ORCPT=rfc822;" }, -1, "501 5.5.4 Bad ORCPT parameter syntax", 0, NULL },
	{ { "ORCPT=x400;a" }, -1, "501 5.5.4 Bad ORCPT parameter syntax", 0, NULL },
	{ { "ORCPT=rfc822;a=b" }, -1, "501 5.5.4 Bad ORCPT parameter syntax", 0, NULL },
	{ { "ORCPT=rfc822;a+4" }, -1, "501 5.5.4 Bad ORCPT parameter syntax", 0, NULL },
	{ { "ORCPT" }, -1, "501 5.5.4 Bad ORCPT parameter syntax", 0, NULL },
	{ { "ORCPT=@O501@" }, -1, "501 5.5.4 ORCPT parameter too long", 0, NULL },
};

static const char *
expand_orcpt(const char *p, char *buf, size_t len)
{
	const char *at = strstr(p, "@O50");
	if (at == NULL)
		return p;
	size_t n = at[4] == '1' ? 501 : 500, pre = (size_t)(at - p);
	ck_assert_uint_lt(pre + n, len);
	memcpy(buf, p, pre);
	memcpy(buf + pre, "rfc822;", 7);
	memset(buf + pre + 7, 'a', n - 7);
	buf[pre + n] = '\0';
	return buf;
}

START_TEST(test_rcpt)
{
	struct dsnparam_rcpt rc;
	const char *reply = NULL;
	int r = 0;
	char buf[700], want[700];

	memset(&rc, 0, sizeof(rc));
	for (size_t i = 0; i < 3 && rcpt_cases[_i].params[i] != NULL; i++) {
		const char *p = expand_orcpt(rcpt_cases[_i].params[i], buf, sizeof(buf));
		r = dsnparam_rcpt(&rc, p, strlen(p), &reply);
		if (r == -1)
			break;
	}
	ck_assert_int_eq(r, rcpt_cases[_i].result);
	if (r == -1) {
		ck_assert_str_eq(reply, rcpt_cases[_i].reply);
		return;
	}
	ck_assert_uint_eq(rc.notify, rcpt_cases[_i].notify);
	ck_assert_int_eq(rc.has_orcpt, rcpt_cases[_i].orcpt != NULL);
	if (rcpt_cases[_i].orcpt != NULL)
		ck_assert_str_eq(rc.orcpt, expand_orcpt(rcpt_cases[_i].orcpt, want,
		    sizeof(want)));
}
END_TEST

/* the parameter is given with its length: nothing after it is read */
START_TEST(test_length_bounded)
{
	struct dsnparam_rcpt rc;
	const char *reply;
	memset(&rc, 0, sizeof(rc));
	ck_assert_int_eq(dsnparam_rcpt(&rc, "NOTIFY=DELAY GARBAGE", 12, &reply), 1);
	ck_assert_uint_eq(rc.notify, DSNPARAM_NOTIFY_DELAY);
	ck_assert(!dsnparam_xtext_valid("ab+4", 4));
	ck_assert(dsnparam_xtext_valid("ab+41", 5));
	ck_assert(!dsnparam_xtext_valid("", 0));
	ck_assert(!dsnparam_xtext_valid("a b", 3));
}
END_TEST

/* what the spool writes reads back the same */
START_TEST(test_notify_text)
{
	for (unsigned n = 1; n < 16; n++) {
		char text[64];
		unsigned back = 0;
		const char *reply;
		bool valid = !(n & DSNPARAM_NOTIFY_NEVER) || n == DSNPARAM_NOTIFY_NEVER;
		dsnparam_notify_format(n, text, sizeof(text));
		if (!valid)
			continue;
		ck_assert_int_eq(dsnparam_notify_parse(text, strlen(text), &back, &reply), 0);
		ck_assert_uint_eq(back, n);
	}
}
END_TEST

static Suite *
dsnparam_suite(void)
{
	Suite *s = suite_create("dsnparam");
	TCase *tc = tcase_create("dsnparam");

	tcase_add_loop_test(tc, test_mail, 0, N(mail_cases));
	tcase_add_loop_test(tc, test_rcpt, 0, N(rcpt_cases));
	tcase_add_test(tc, test_length_bounded);
	tcase_add_test(tc, test_notify_text);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(dsnparam_suite)
