/*
 * Allocation that cannot fail: on exhaustion the process logs and exits, as a
 * daemon in an unknown state should not limp on (OpenSMTPD xmalloc). Used where a
 * NULL check at every call would only repeat this.
 */
#ifndef RELAYVISOR_XMALLOC_H
#define RELAYVISOR_XMALLOC_H

#include <stddef.h>

void *xcalloc(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t len);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For a process that allocates and frees a message body per message: freed heap
   is kept for the next one instead of going back to the kernel (see xmalloc.c) */
void xmalloc_keep_heap(void);

#endif
