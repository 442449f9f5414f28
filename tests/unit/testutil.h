/*
 * What the unit suites share (tests/unit/testutil.c, linked into every
 * check_* binary): table sizes and temporary directories.
 */
#ifndef RELAYVISOR_TESTUTIL_H
#define RELAYVISOR_TESTUTIL_H

/* the number of rows of a table, as tcase_add_loop_test wants it */
#define N(t) ((int)(sizeof(t) / sizeof((t)[0])))

/* a fresh directory under $TMPDIR (or /tmp) named after what; the test fails
   when it cannot be made. Free with testutil_rmtree(). */
char *testutil_tmpdir(const char *what);
/* remove dir and everything below it (no link followed), then free it */
void testutil_rmtree(char *dir);

#endif
