/* Allocation that cannot fail (see xmalloc.h). */
#include "common/xmalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL)
		fatal("calloc %zu x %zu", n, size);
	return p;
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	void *np = reallocarray(p, n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (np == NULL)
		fatal("reallocarray %zu x %zu", n, size);
	return np;
}

char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		fatal("strdup");
	return p;
}

char *
xstrndup(const char *s, size_t len)
{
	char *p = strndup(s, len);

	if (p == NULL)
		fatal("strndup");
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("vasprintf");
	return s;
}
