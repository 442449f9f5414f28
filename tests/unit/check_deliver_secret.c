/*
 * The relayhost's password file (deliver/secret.h): the first line is the
 * password, and a file someone else could have changed or read is refused with
 * the file named.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver/secret.h"
#include "tests/unit/testmain.h"

struct secret_case {
	const char *content;	/* NULL: a symbolic link to a good file */
	mode_t mode;
	const char *want;	/* the password, or NULL: refused */
	const char *why;	/* substring of the error */
};

static const struct secret_case cases[] = {
	{ "s3cret\n", 0600, "s3cret", NULL },
	{ "s3cret\r\nsecond line\n", 0600, "s3cret", NULL },
	{ "no newline", 0640, "no newline", NULL },
	{ " spaces kept \n", 0400, " spaces kept ", NULL },
	{ "s3cret\n", 0604, NULL, "readable by everyone" },
	{ "s3cret\n", 0620, NULL, "writable by others" },
	{ "s3cret\n", 0602, NULL, "writable by others" },
	{ "\n", 0600, NULL, "no password on its first line" },
	{ "", 0600, NULL, "no password on its first line" },
	{ NULL, 0600, NULL, "symbolic link" },
};

START_TEST(secret_file)
{
	const struct secret_case *c = &cases[_i];
	char dir[] = "/tmp/check_secret.XXXXXX";
	char path[256], target[256], buf[SECRET_MAX + 1];
	const char *err = NULL;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/pw", dir);
	snprintf(target, sizeof(target), "%s/target", dir);
	const char *content = c->content != NULL ? c->content : "s3cret\n";
	const char *file = c->content != NULL ? path : target;
	int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
	ck_assert_int_eq(chmod(file, c->mode), 0);
	if (c->content == NULL)
		ck_assert_int_eq(symlink(target, path), 0);

	int r = secret_read_file(path, buf, sizeof(buf), &err);
	if (c->want != NULL) {
		ck_assert_msg(r == 0, "case %d: %s", _i, r == 0 ? "" : err);
		ck_assert_str_eq(buf, c->want);
	} else {
		ck_assert_int_eq(r, -1);
		ck_assert_str_eq(buf, "");
		ck_assert_msg(strstr(err, c->why) != NULL && strstr(err, path) != NULL,
		    "case %d: %s", _i, err);
	}
	unlink(path);
	unlink(target);
	rmdir(dir);
}
END_TEST

/* a password longer than the limit is refused, not cut */
START_TEST(secret_too_long)
{
	char dir[] = "/tmp/check_secret.XXXXXX";
	char path[256], buf[SECRET_MAX + 1], big[SECRET_MAX + 10];
	const char *err;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/pw", dir);
	memset(big, 'x', sizeof(big));
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_eq(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	close(fd);
	ck_assert_int_eq(secret_read_file(path, buf, sizeof(buf), &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "longer than 1023"));
	ck_assert_int_eq(secret_read_file("/nonexistent/pw", buf, sizeof(buf), &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/pw"));
	unlink(path);
	rmdir(dir);
}
END_TEST

static Suite *
deliver_secret_suite(void)
{
	Suite *s = suite_create("deliver_secret");
	TCase *tc = tcase_create("secret");

	tcase_add_loop_test(tc, secret_file, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, secret_too_long);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(deliver_secret_suite)
