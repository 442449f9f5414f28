/*
 * Signal names (signame.h), glibc's abbreviations.
 */
#include "common/signame.h"

#include <signal.h>
#include <string.h>
#include <strings.h>

int
signame_parse(const char *s)
{
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (int i = 1; i < NSIG; i++) {
		const char *abbr = sigabbrev_np(i);
		if (abbr != NULL && strcasecmp(abbr, s) == 0)
			return i;
	}
	return -1;
}
