/*
 * Maildir delivery on a real file system under a temporary directory: name encoding
 * (no traversal), tmp -> new with ",S=size", trace headers, LF line ends across chunk
 * boundaries, unique names, symlinks refused below the template's fixed prefix,
 * Delivered-To loops, abort.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver/maildir.h"
#include "tests/unit/testmain.h"

static char base[64];
static char tmpl[128];

static void
setup(void)
{
	snprintf(base, sizeof(base), "/tmp/check_deliver_maildir.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
	snprintf(tmpl, sizeof(tmpl), "%s/mail/%%d/%%u", base);
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
}

static const struct {
	const char *in;
	const char *out;	/* NULL: refused */
} enc[] = {
	{ "john", "john" },
	{ "John.Doe", "john.doe" },
	{ "a+tag", "a+tag" },
	{ "..", "%2E." },
	{ ".hidden", "%2Ehidden" },
	{ "a/b", "a%2Fb" },
	{ "../../etc", "%2E.%2F..%2Fetc" },
	{ "x y", "x%20y" },
	{ "100%", "100%25" },
	{ "tab\there", "tab%09here" },
	{ "\xc3\xa9", "%C3%A9" },
	{ "", NULL },
};

START_TEST(encode)
{
	char out[300];
	int rc = maildir_encode(enc[_i].in, out, sizeof(out));

	if (enc[_i].out == NULL) {
		ck_assert_int_eq(rc, -1);
		return;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(out, enc[_i].out);
}
END_TEST

START_TEST(encode_limits)
{
	char in[300], out[1024];

	memset(in, 'a', 255);
	in[255] = '\0';
	ck_assert_int_eq(maildir_encode(in, out, sizeof(out)), 0);
	in[0] = '/';	/* 257 octets once encoded */
	ck_assert_int_eq(maildir_encode(in, out, sizeof(out)), -1);
	ck_assert_int_eq(maildir_encode("abc", out, 3), -1);
}
END_TEST

START_TEST(expand)
{
	char out[256];
	const char *err;

	ck_assert_int_eq(maildir_expand("/var/mail/%d/%u/100%%", "Bob", "Example.TEST", out,
	    sizeof(out), &err), 0);
	ck_assert_str_eq(out, "/var/mail/example.test/bob/100%");
	ck_assert_int_eq(maildir_expand("/m/%u", "", "x", out, sizeof(out), &err), -1);
	ck_assert_int_eq(maildir_expand("/m/%u", "abcdef", "x", out, 6, &err), -1);
}
END_TEST

static char *
slurp(const char *path, size_t *len_r)
{
	FILE *f = fopen(path, "r");
	static char buf[65536];

	ck_assert_ptr_nonnull(f);
	*len_r = fread(buf, 1, sizeof(buf) - 1, f);
	buf[*len_r] = '\0';
	fclose(f);
	return buf;
}

static int
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

START_TEST(deliver)
{
	const char *err;
	bool temp;
	char name[512], path[1024];
	size_t len;

	struct maildir_msg *m = maildir_open(tmpl, "User", "example.test", "s@remote.example",
	    "user@example.test", "mx.example.test", &temp, &err);
	ck_assert_msg(m != NULL, "%s", err);
	/* CRLF split across chunks; a bare CR stays */
	ck_assert_int_eq(maildir_write(m, "Subject: hi\r", 12, &err), 0);
	ck_assert_int_eq(maildir_write(m, "\n\r\nbody\ra\r\n.dot\r\n", 17, &err), 0);
	ck_assert_int_eq(maildir_commit(m, name, sizeof(name), &temp, &err), 0);
	ck_assert_str_eq(name + strlen(name) - 5, ",S=89");
	ck_assert(strncmp(name, "new/", 4) == 0);
	ck_assert_ptr_nonnull(strstr(name, ".mx.example.test,S="));
	snprintf(path, sizeof(path), "%s/mail/example.test/user/%s", base, name);
	const char *body = slurp(path, &len);
	ck_assert_str_eq(body, "Return-Path: <s@remote.example>\nDelivered-To: user@example.test\n"
	    "Subject: hi\n\nbody\ra\n.dot\n");
	ck_assert_uint_eq(len, 89);
	snprintf(path, sizeof(path), "%s/mail/example.test/user/tmp", base);
	ck_assert_int_eq(count_files(path), 0);
	snprintf(path, sizeof(path), "%s/mail/example.test/user/cur", base);
	ck_assert_int_eq(count_files(path), 0);
	struct stat st;
	snprintf(path, sizeof(path), "%s/mail/example.test/user", base);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);

	/* the null sender, and a second message gets another name */
	m = maildir_open(tmpl, "user", "example.test", "", "user@example.test", "mx/a:b",
	    &temp, &err);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(maildir_write(m, "x\n", 2, &err), 0);
	ck_assert_int_eq(maildir_commit(m, name, sizeof(name), &temp, &err), 0);
	ck_assert_ptr_nonnull(strstr(name, ".mx\\057a\\072b,S="));	/* qmail's escapes */
	snprintf(path, sizeof(path), "%s/mail/example.test/user/new", base);
	ck_assert_int_eq(count_files(path), 2);
	snprintf(path, sizeof(path), "%s/mail/example.test/user/%s", base, name);
	ck_assert_str_eq(slurp(path, &len), "Return-Path: <>\nDelivered-To: user@example.test\nx\n");
}
END_TEST

START_TEST(no_traversal)
{
	const char *err;
	bool temp;
	char name[512], path[1024];
	struct stat st;

	struct maildir_msg *m = maildir_open(tmpl, "../../../escape", "../x", "s@r.example",
	    "\"../../../escape\"@example.test", "h", &temp, &err);
	ck_assert_msg(m != NULL, "%s", err);
	ck_assert_int_eq(maildir_commit(m, name, sizeof(name), &temp, &err), 0);
	snprintf(path, sizeof(path), "%s/escape", base);
	ck_assert_int_eq(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/mail/%%2E.%%2Fx/%%2E.%%2F..%%2F..%%2Fescape/%s", base,
	    name);
	ck_assert_int_eq(stat(path, &st), 0);
}
END_TEST

START_TEST(symlink_refused)
{
	const char *err;
	bool temp;
	char path[256], target[256];

	snprintf(path, sizeof(path), "%s/mail", base);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/mail/example.test", base);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(target, sizeof(target), "%s/elsewhere", base);
	ck_assert_int_eq(mkdir(target, 0700), 0);
	snprintf(path, sizeof(path), "%s/mail/example.test/bob", base);
	ck_assert_int_eq(symlink(target, path), 0);
	struct maildir_msg *m = maildir_open(tmpl, "bob", "example.test", "", "bob@example.test",
	    "h", &temp, &err);
	ck_assert_ptr_null(m);
	ck_assert(!temp);
	ck_assert_int_eq(count_files(target), 0);	/* nothing created there */

	/* a symlinked new/ inside a real maildir: refused too */
	snprintf(path, sizeof(path), "%s/mail/example.test/carol", base);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/mail/example.test/carol/new", base);
	ck_assert_int_eq(symlink(target, path), 0);
	m = maildir_open(tmpl, "carol", "example.test", "", "carol@example.test", "h", &temp, &err);
	ck_assert_ptr_null(m);
	ck_assert_int_eq(count_files(target), 0);
}
END_TEST

START_TEST(fixed_prefix_may_be_a_symlink)
{
	const char *err;
	bool temp;
	char path[256], target[256], t[256], name[512];

	/* /base/link -> /base/real: the administrator's choice is followed */
	snprintf(target, sizeof(target), "%s/real", base);
	ck_assert_int_eq(mkdir(target, 0700), 0);
	snprintf(path, sizeof(path), "%s/link", base);
	ck_assert_int_eq(symlink(target, path), 0);
	snprintf(t, sizeof(t), "%s/link/%%u", base);
	struct maildir_msg *m = maildir_open(t, "dan", "example.test", "", "dan@example.test", "h",
	    &temp, &err);
	ck_assert_msg(m != NULL, "%s", err);
	ck_assert_int_eq(maildir_commit(m, name, sizeof(name), &temp, &err), 0);
	snprintf(path, sizeof(path), "%s/real/dan/new", base);
	ck_assert_int_eq(count_files(path), 1);
}
END_TEST

START_TEST(delivered_to_loop)
{
	const char *err;
	bool temp;
	char name[512], path[256];
	static const char looping[] = "Received: x\r\nDELIVERED-TO:  Eve@Example.test \r\n"
	    "Subject: y\r\n\r\nbody\r\n";
	static const char in_body[] = "Subject: y\r\n\r\nDelivered-To: eve@example.test\r\n";

	struct maildir_msg *m = maildir_open(tmpl, "eve", "example.test", "", "eve@example.test",
	    "h", &temp, &err);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(maildir_write(m, looping, strlen(looping), &err), 0);
	ck_assert_int_eq(maildir_commit(m, name, sizeof(name), &temp, &err), -1);
	ck_assert(!temp);
	ck_assert_ptr_nonnull(strstr(err, "loop"));
	snprintf(path, sizeof(path), "%s/mail/example.test/eve/tmp", base);
	ck_assert_int_eq(count_files(path), 0);
	snprintf(path, sizeof(path), "%s/mail/example.test/eve/new", base);
	ck_assert_int_eq(count_files(path), 0);
	/* in the body it is just text */
	m = maildir_open(tmpl, "eve", "example.test", "", "eve@example.test", "h", &temp, &err);
	ck_assert_int_eq(maildir_write(m, in_body, strlen(in_body), &err), 0);
	ck_assert_int_eq(maildir_commit(m, name, sizeof(name), &temp, &err), 0);
	ck_assert_int_eq(count_files(path), 1);
}
END_TEST

START_TEST(abort_cleans_tmp)
{
	const char *err;
	bool temp;
	char path[256];

	struct maildir_msg *m = maildir_open(tmpl, "fay", "example.test", "", "fay@example.test",
	    "h", &temp, &err);
	ck_assert_ptr_nonnull(m);
	maildir_write(m, "partial", 7, &err);
	snprintf(path, sizeof(path), "%s/mail/example.test/fay/tmp", base);
	ck_assert_int_eq(count_files(path), 1);
	maildir_abort(m);
	ck_assert_int_eq(count_files(path), 0);
	snprintf(path, sizeof(path), "%s/mail/example.test/fay/new", base);
	ck_assert_int_eq(count_files(path), 0);
}
END_TEST

START_TEST(unwritable_is_temporary)
{
	const char *err;
	bool temp;
	char path[256];

	if (geteuid() == 0)
		return;	/* root writes anyway; the symlink case covers refusal */
	snprintf(path, sizeof(path), "%s/mail", base);
	ck_assert_int_eq(mkdir(path, 0500), 0);
	ck_assert_ptr_null(maildir_open(tmpl, "gus", "example.test", "", "g@example.test", "h",
	    &temp, &err));
	ck_assert(temp);
}
END_TEST

static Suite *
deliver_maildir_suite(void)
{
	Suite *s = suite_create("deliver_maildir");
	TCase *tc = tcase_create("maildir");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, encode, 0, sizeof(enc) / sizeof(enc[0]));
	tcase_add_test(tc, encode_limits);
	tcase_add_test(tc, expand);
	tcase_add_test(tc, deliver);
	tcase_add_test(tc, no_traversal);
	tcase_add_test(tc, symlink_refused);
	tcase_add_test(tc, fixed_prefix_may_be_a_symlink);
	tcase_add_test(tc, delivered_to_loop);
	tcase_add_test(tc, abort_cleans_tmp);
	tcase_add_test(tc, unwritable_is_temporary);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(deliver_maildir_suite)
