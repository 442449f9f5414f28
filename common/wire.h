/*
 * Binary message encoding shared by the packet protocols between our processes
 * (common/authproto.h, common/deliverproto.h): big-endian integers and strings
 * as a u16 length and that many octets. A writer that runs out of room, or a
 * string over its limit, sets `over`; a reader that runs short, or meets a
 * string over its limit or holding a NUL, sets `bad` and returns zeros from then
 * on. So an encoder or decoder checks once, at the end, not at every field.
 */
#ifndef RELAYVISOR_WIRE_H
#define RELAYVISOR_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wire_w {
	unsigned char *p;
	size_t len, cap;
	bool over;
};

struct wire_r {
	const unsigned char *p;
	size_t len, off;
	bool bad;
};

void wire_put(struct wire_w *w, const void *v, size_t n);
void wire_put8(struct wire_w *w, unsigned v);
void wire_put16(struct wire_w *w, size_t v);
void wire_put32(struct wire_w *w, uint32_t v);
void wire_put64(struct wire_w *w, uint64_t v);
/* s as u16 length + octets; over max (or 65535) sets over */
void wire_putstr(struct wire_w *w, const char *s, size_t max);

unsigned wire_get8(struct wire_r *r);
size_t wire_get16(struct wire_r *r);
uint32_t wire_get32(struct wire_r *r);
uint64_t wire_get64(struct wire_r *r);
/* a string into out[max + 1]: within max, no NUL inside */
void wire_getstr(struct wire_r *r, char *out, size_t max);

#endif
