/* The binary encoding of wire.h. */
#include "common/wire.h"

#include <string.h>

void
wire_put(struct wire_w *w, const void *v, size_t n)
{
	if (w->over || w->cap - w->len < n) {
		w->over = true;
		return;
	}
	memcpy(w->p + w->len, v, n);
	w->len += n;
}

void
wire_put8(struct wire_w *w, unsigned v)
{
	unsigned char c = (unsigned char)v;
	wire_put(w, &c, 1);
}

void
wire_put16(struct wire_w *w, size_t v)
{
	unsigned char b[2] = { (unsigned char)(v >> 8), (unsigned char)v };
	wire_put(w, b, 2);
}

void
wire_put32(struct wire_w *w, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
	    (unsigned char)(v >> 8), (unsigned char)v };
	wire_put(w, b, 4);
}

void
wire_put64(struct wire_w *w, uint64_t v)
{
	wire_put32(w, (uint32_t)(v >> 32));
	wire_put32(w, (uint32_t)v);
}

void
wire_putstr(struct wire_w *w, const char *s, size_t max)
{
	if (max > 65535)
		max = 65535;
	size_t n = strnlen(s, max + 1);
	if (n > max) {
		w->over = true;
		return;
	}
	wire_put16(w, n);
	wire_put(w, s, n);
}

unsigned
wire_get8(struct wire_r *r)
{
	if (r->bad || r->len - r->off < 1) {
		r->bad = true;
		return 0;
	}
	return r->p[r->off++];
}

size_t
wire_get16(struct wire_r *r)
{
	size_t hi = wire_get8(r);
	return hi << 8 | wire_get8(r);
}

uint32_t
wire_get32(struct wire_r *r)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | wire_get8(r);
	return v;
}

uint64_t
wire_get64(struct wire_r *r)
{
	uint64_t hi = wire_get32(r);
	return hi << 32 | wire_get32(r);
}

void
wire_getstr(struct wire_r *r, char *out, size_t max)
{
	size_t n = wire_get16(r);
	if (r->bad || n > max || r->len - r->off < n || memchr(r->p + r->off, '\0', n)) {
		r->bad = true;
		out[0] = '\0';
		return;
	}
	memcpy(out, r->p + r->off, n);
	out[n] = '\0';
	r->off += n;
}
