/*
 * Shared unit-test helpers (testutil.h).
 */
#define _XOPEN_SOURCE 700
#include "tests/unit/testutil.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

char *
testutil_tmpdir(const char *what)
{
	const char *base = getenv("TMPDIR");
	char *dir;
	ck_assert_int_ge(asprintf(&dir, "%s/rv-%s-XXXXXX",
	    base != NULL && base[0] != '\0' ? base : "/tmp", what), 0);
	ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s", dir);
	return dir;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void
testutil_rmtree(char *dir)
{
	if (dir == NULL)
		return;
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}
