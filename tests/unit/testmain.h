/*
 * Each tests/unit/check_<module>.c ends with CHECK_MAIN(<module>_suite): one binary
 * per module, so a crash in one module's tests cannot hide another's results.
 * Output is Check's summary line, which scripts/check.sh totals.
 */
#ifndef RELAYVISOR_TESTMAIN_H
#define RELAYVISOR_TESTMAIN_H

#include <check.h>
#include <stdlib.h>

#define CHECK_MAIN(suite_fn)						\
int main(void)								\
{									\
	SRunner *sr = srunner_create(suite_fn());			\
	srunner_run_all(sr, CK_NORMAL);					\
	int failed = srunner_ntests_failed(sr);				\
	srunner_free(sr);						\
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;		\
}

#endif
