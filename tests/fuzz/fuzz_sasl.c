/*
 * libFuzzer target: the AUTH exchange (common/sasl). The input is split at LF:
 * the first line is what follows "AUTH ", each further line a client response.
 * Whatever comes, every reply is a well-formed SMTP reply line, a CHECK yields a
 * user and password within their limits (no NUL, no control character in the
 * user), and base64 decoding agrees with encoding.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_reply(const char *r)
{
	size_t n = strlen(r);
	if (n < 4 || n > 510 || !isdigit((unsigned char)r[0]) ||
	    !isdigit((unsigned char)r[1]) || !isdigit((unsigned char)r[2]) || r[3] != ' ')
		abort();
	if (r[0] != '3' && r[0] != '5')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sasl s;
	const char *p = (const char *)data, *end = p + size;
	sasl_init(&s);
	const char *nl = memchr(p, '\n', size);
	size_t len = nl != NULL ? (size_t)(nl - p) : size;
	enum sasl_status st = sasl_start(&s, p, len);
	p = nl != NULL ? nl + 1 : end;
	for (;;) {
		if (st == SASL_CHECK) {
			size_t ul = strlen(sasl_user(&s)), pl = strlen(sasl_password(&s));
			if (ul == 0 || ul > SASL_USER_MAX || pl == 0 || pl > SASL_PASS_MAX)
				abort();
			for (size_t i = 0; i < ul; i++)
				if ((unsigned char)sasl_user(&s)[i] < 0x20)
					abort();
			break;
		}
		check_reply(sasl_reply(&s));
		if (st == SASL_ERROR || p >= end)
			break;
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		st = sasl_feed(&s, p, len);
		p = nl != NULL ? nl + 1 : end;
	}
	sasl_reset(&s);

	/* base64 round trip on the raw input */
	unsigned char out[4096];
	char enc[8192];
	size_t n;
	if (size < 4096 && sasl_b64_decode((const char *)data, size, out, sizeof(out),
	    &n) == 0) {
		sasl_b64_encode(out, n, enc, sizeof(enc));
		unsigned char again[4096];
		size_t m;
		if (sasl_b64_decode(enc, strlen(enc), again, sizeof(again), &m) != 0 ||
		    m != n || memcmp(again, out, n) != 0)
			abort();
	}
	return 0;
}
