/*
 * common/passwd: the file format and its errors (file:line), crypt(3)
 * verification for yescrypt, bcrypt and sha512-crypt, the sender map, and the
 * atomic rewrite behind `relayvisorctl passwd`.
 */
#include <check.h>
#include <crypt.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/passwd.h"
#include "tests/unit/testmain.h"

static char *
hash_with(const char *prefix, const char *password)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	ck_assert_ptr_nonnull(crypt_gensalt_rn(prefix, prefix[1] == '2' ? 4 : 0, NULL, 0,
	    salt, sizeof(salt)));
	const char *h = crypt_rn(password, salt, &cd, sizeof(cd));
	ck_assert_ptr_nonnull(h);
	return strdup(h);
}

static const char *schemes[] = { "$y$", "$2b$", "$6$", "$5$" };

START_TEST(test_verify_schemes)
{
	char *h = hash_with(schemes[_i], "correct horse");
	ck_assert_int_eq(strncmp(h, schemes[_i], strlen(schemes[_i])), 0);
	ck_assert_int_eq(passwd_hash_verify(h, "correct horse"), 1);
	ck_assert_int_eq(passwd_hash_verify(h, "correct horsE"), 0);
	ck_assert_int_eq(passwd_hash_verify(h, ""), 0);
	ck_assert_int_eq(passwd_hash_verify(h, "correct horse "), 0);
	/* locked: the right password does not open it */
	char locked[CRYPT_OUTPUT_SIZE + 2];
	snprintf(locked, sizeof(locked), "!%s", h);
	ck_assert_int_eq(passwd_hash_verify(locked, "correct horse"), 0);
	/* a truncated hash is no hash */
	h[strlen(h) - 5] = '\0';
	ck_assert_int_ne(passwd_hash_verify(h, "correct horse"), 1);
	free(h);
}
END_TEST

START_TEST(test_hash_new)
{
	char h1[CRYPT_OUTPUT_SIZE], h2[CRYPT_OUTPUT_SIZE];
	const char *error;
	ck_assert_int_eq(passwd_hash_new("pw", h1, sizeof(h1), &error), 0);
	ck_assert_int_eq(passwd_hash_new("pw", h2, sizeof(h2), &error), 0);
	ck_assert_int_eq(strncmp(h1, "$y$", 3), 0);
	ck_assert_str_ne(h1, h2);	/* fresh salt each time */
	ck_assert_int_eq(passwd_hash_verify(h1, "pw"), 1);
	ck_assert_int_eq(passwd_hash_verify(h2, "pw"), 1);
	ck_assert_int_eq(passwd_hash_new("pw", h1, 10, &error), -1);
}
END_TEST

START_TEST(test_parse_good)
{
	char *y = hash_with("$y$", "alicepw"), *b = hash_with("$2b$", "bobpw");
	char *s = hash_with("$6$", "carolpw");
	char text[2048];
	snprintf(text, sizeof(text),
	    "# users of the submission instance\n"
	    "\n"
	    "   \n"
	    "alice:%s:alice@example.test, @Alice.Example.TEST.\r\n"
	    "  # indented comment\n"
	    "bob:%s\n"
	    "carol:%s:\n"
	    "dave:!%s", y, b, s, s);
	struct passwd_errors errs = { 0 };
	struct passwd_db *db = passwd_db_parse("users", text, strlen(text), &errs);
	ck_assert_msg(db != NULL, "%s", errs.n ? errs.v[0] : "");
	ck_assert_uint_eq(passwd_db_count(db), 4);
	const struct passwd_entry *e = passwd_db_find(db, "alice");
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->line, 4);
	ck_assert_uint_eq(e->naddrs, 2);
	ck_assert_str_eq(e->addrs[0], "alice@example.test");
	ck_assert_str_eq(e->addrs[1], "@alice.example.test");
	ck_assert_ptr_null(passwd_db_find(db, "Alice"));
	ck_assert_ptr_null(passwd_db_find(db, "eve"));
	ck_assert_uint_eq(passwd_db_find(db, "carol")->naddrs, 0);

	const struct passwd_entry *got;
	ck_assert_int_eq(passwd_db_check(db, "alice", "alicepw", &got), PASSWD_OK);
	ck_assert_ptr_eq(got, e);
	ck_assert_int_eq(passwd_db_check(db, "alice", "bobpw", &got), PASSWD_FAIL);
	ck_assert_ptr_null(got);
	ck_assert_int_eq(passwd_db_check(db, "bob", "bobpw", NULL), PASSWD_OK);
	ck_assert_int_eq(passwd_db_check(db, "carol", "carolpw", NULL), PASSWD_OK);
	ck_assert_int_eq(passwd_db_check(db, "dave", "carolpw", NULL), PASSWD_FAIL);
	ck_assert_int_eq(passwd_db_check(db, "eve", "alicepw", NULL), PASSWD_FAIL);
	ck_assert_int_eq(passwd_db_check(NULL, "alice", "alicepw", NULL), PASSWD_TEMPFAIL);

	/* the sender map */
	ck_assert(passwd_entry_sender_allowed(e, "alice@example.test"));
	ck_assert(passwd_entry_sender_allowed(e, "alice@EXAMPLE.test"));
	ck_assert(passwd_entry_sender_allowed(e, "anyone@alice.example.test"));
	ck_assert(!passwd_entry_sender_allowed(e, "bob@example.test"));
	ck_assert(!passwd_entry_sender_allowed(e, "alice@sub.alice.example.test"));
	ck_assert(!passwd_entry_sender_allowed(e, ""));
	ck_assert(!passwd_entry_sender_allowed(e, "alice@example.test>"));
	ck_assert(!passwd_entry_sender_allowed(passwd_db_find(db, "bob"), "bob@example.test"));
	ck_assert(!passwd_entry_sender_allowed(NULL, "alice@example.test"));
	passwd_db_free(db);
	passwd_errors_free(&errs);
	free(y);
	free(b);
	free(s);
}
END_TEST

#define Y "$y$j9T$abcdefghijklmnopqrstu.$ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmno1"

static const struct {
	const char *text;
	const char *error;
} bad[] = {
	{ "alice\n", "f:1: expected user:HASH[:addresses]" },
	{ "# c\nalice:\n", "f:2: empty hash for alice" },
	{ ":" Y "\n", "f:1: bad user name \"\": 1 to 255 octets, no ':', space or control character" },
	{ "al ice:" Y "\n", "f:1: bad user name \"al ice\": 1 to 255 octets, no ':', space or control character" },
	{ "alice:" Y ":a@b.example:x\n", "f:1: too many fields: expected user:HASH[:addresses]" },
	{ "alice:plaintext\n", "f:1: not a crypt(3) hash (yescrypt $y$, bcrypt $2b$, sha512-crypt $6$)" },
	{ "alice:abJnggxhB/yWI\n", "f:1: legacy hash (DES or MD5): set a new password with relayvisorctl passwd" },
	{ "alice:$1$abcdefgh$abcdefghijklmnopqrstuv\n", "f:1: legacy hash (DES or MD5): set a new password with relayvisorctl passwd" },
	{ "alice:" Y "\nbob:" Y "\nalice:" Y "\n", "f:3: user defined twice (first on line 1)" },
	{ "alice:" Y ":not an address\n", "f:1: bad address \"not an address\": expected user@domain or @domain" },
	{ "alice:" Y ":a@b.example,,@c.example\n", NULL },
	{ "alice:" Y ":a@b.example,@\n", "f:1: bad address \"@\": expected user@domain or @domain" },
	{ "alice:" Y ":<a@b.example>\n", "f:1: bad address \"<a@b.example>\": expected user@domain or @domain" },
};

START_TEST(test_parse_errors)
{
	struct passwd_errors errs = { 0 };
	struct passwd_db *db = passwd_db_parse("f", bad[_i].text, strlen(bad[_i].text), &errs);
	if (bad[_i].error == NULL) {
		ck_assert_ptr_nonnull(db);
		ck_assert_uint_eq(errs.n, 0);
	} else {
		ck_assert_ptr_null(db);
		ck_assert_uint_eq(errs.n, 1);
		ck_assert_str_eq(errs.v[0], bad[_i].error);
	}
	passwd_db_free(db);
	passwd_errors_free(&errs);
}
END_TEST

static char dir[] = "/tmp/rv-check-passwd-XXXXXX";

static void
mkdir_tmp(void)
{
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
rm_tmp(void)
{
	char cmd[sizeof(dir) + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		abort();
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

START_TEST(test_file_set)
{
	char path[256];
	const char *error = NULL;
	struct stat st;
	struct passwd_errors errs = { 0 };
	snprintf(path, sizeof(path), "%s/passwd", dir);

	/* a new file: mode 0600, one line */
	ck_assert_msg(passwd_file_set(path, "alice", "first", &error) == 0, "%s", error);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	struct passwd_db *db = passwd_db_load(path, &errs);
	ck_assert_ptr_nonnull(db);
	ck_assert_int_eq(passwd_db_check(db, "alice", "first", NULL), PASSWD_OK);
	passwd_db_free(db);

	/* hand edits: comments, another user, alice's addresses, no final newline */
	char text[4096];
	char *bobhash = hash_with("$6$", "bobpw");
	char bobline[CRYPT_OUTPUT_SIZE + 8];
	snprintf(bobline, sizeof(bobline), "bob:%s\n# end", bobhash);
	snprintf(text, sizeof(text), "# managed by hand\n%s\n%s", slurp(path), bobline);
	char *nl = strstr(text, "\nbob");
	ck_assert_ptr_nonnull(nl);
	/* alice:HASH\n -> alice:HASH:@example.test */
	char *alice_end = strchr(strstr(text, "alice:"), '\n');
	memmove(alice_end + 14, alice_end, strlen(alice_end) + 1);
	memcpy(alice_end, ":@example.test", 14);
	char *cut = strstr(text, "\n\n");
	if (cut != NULL)
		memmove(cut, cut + 1, strlen(cut));
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, 0640), 0);

	/* change alice: her addresses and every other line stay */
	ck_assert_int_eq(passwd_file_set(path, "alice", "second", &error), 0);
	const char *now = slurp(path);
	ck_assert_msg(strncmp(now, "# managed by hand\nalice:$y$", 27) == 0, "%s", now);
	ck_assert_msg(strstr(now, ":@example.test\nbob:$6$") != NULL, "%s", now);
	ck_assert_msg(strstr(now, bobline) != NULL, "%s", now);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	/* and add carol at the end */
	ck_assert_int_eq(passwd_file_set(path, "carol", "third", &error), 0);
	now = slurp(path);
	ck_assert_ptr_nonnull(strstr(now, "# end\ncarol:$y$"));
	ck_assert_int_eq(now[strlen(now) - 1], '\n');
	/* no temporary file left behind */
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 1", dir);
	ck_assert_int_eq(system(cmd), 0);
	db = passwd_db_load(path, &errs);
	ck_assert_msg(db != NULL, "%s", errs.n ? errs.v[0] : "");
	ck_assert_int_eq(passwd_db_check(db, "alice", "second", NULL), PASSWD_OK);
	ck_assert_int_eq(passwd_db_check(db, "alice", "first", NULL), PASSWD_FAIL);
	ck_assert_int_eq(passwd_db_check(db, "bob", "bobpw", NULL), PASSWD_OK);
	ck_assert_int_eq(passwd_db_check(db, "carol", "third", NULL), PASSWD_OK);
	ck_assert_uint_eq(passwd_db_find(db, "alice")->naddrs, 1);
	free(bobhash);
	passwd_db_free(db);
	passwd_errors_free(&errs);

	/* what is refused */
	ck_assert_int_eq(passwd_file_set(path, "a:b", "pw", &error), -1);
	ck_assert_int_eq(passwd_file_set(path, "", "pw", &error), -1);
	ck_assert_int_eq(passwd_file_set(path, "dan", "", &error), -1);
	ck_assert_str_eq(error, "empty password");
	ck_assert_int_eq(passwd_file_set(path, "dan", "two\nlines", &error), -1);
	char link[300];
	snprintf(link, sizeof(link), "%s/link", dir);
	ck_assert_int_eq(symlink(path, link), 0);
	ck_assert_int_eq(passwd_file_set(link, "dan", "pw", &error), -1);
	ck_assert_int_eq(unlink(link), 0);
	snprintf(link, sizeof(link), "%s/nodir/passwd", dir);
	ck_assert_int_eq(passwd_file_set(link, "dan", "pw", &error), -1);
}
END_TEST

START_TEST(test_load_errors)
{
	struct passwd_errors errs = { 0 };
	ck_assert_ptr_null(passwd_db_load("/nonexistent/passwd", &errs));
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.v[0], "/nonexistent/passwd: No such file or directory");
	passwd_errors_free(&errs);
	ck_assert_ptr_null(passwd_db_load("/tmp", &errs));
	ck_assert_uint_eq(errs.n, 1);
	passwd_errors_free(&errs);
}
END_TEST

static Suite *
passwd_suite(void)
{
	Suite *s = suite_create("passwd");
	TCase *tc = tcase_create("passwd");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, mkdir_tmp, rm_tmp);
	tcase_add_loop_test(tc, test_verify_schemes, 0, sizeof(schemes) / sizeof(schemes[0]));
	tcase_add_test(tc, test_hash_new);
	tcase_add_test(tc, test_parse_good);
	tcase_add_loop_test(tc, test_parse_errors, 0, sizeof(bad) / sizeof(bad[0]));
	tcase_add_test(tc, test_file_set);
	tcase_add_test(tc, test_load_errors);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(passwd_suite)
