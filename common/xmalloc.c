/* Allocation that cannot fail (see xmalloc.h). */
#include "common/xmalloc.h"

#include <malloc.h>
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

/*
 * glibc's defaults give a freed 100 KB body back to the kernel (a heap trim,
 * madvise in a thread's arena, or munmap of a chunk above the mmap threshold)
 * and the next message faults the same pages in again, zeroed: 25-35 page
 * faults per 100 KB message in the listener and the agent, a tenth of their
 * CPU. Keeping up to KEEP_HEAP octets of free heap per arena and serving
 * blocks below it from the heap ends that; what is kept is bounded by the
 * peak of what was in use (SPOOL_MEM_BUDGET, bodies held at once), not grown.
 * Best effort: under a sanitizer's allocator mallopt does nothing.
 */
#define KEEP_HEAP (16 * 1024 * 1024)

void
xmalloc_keep_heap(void)
{
	(void)mallopt(M_TRIM_THRESHOLD, KEEP_HEAP);
	(void)mallopt(M_MMAP_THRESHOLD, KEEP_HEAP);
}
