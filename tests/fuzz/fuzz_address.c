/*
 * libFuzzer target: the RFC 5321 path parser and the pattern matcher on arbitrary
 * bytes. The parser must never read past its input, and what it accepts must be
 * self-consistent: a parsed address's canonical text parses again to the same
 * local part and domain.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mailaddr a, b;
	const char *error;
	size_t end;

	if (address_parse_path((const char *)data, size, &a, &end, &error) == 0) {
		if (end > size)
			abort();
		if (!a.null) {
			char again[sizeof(a.text) + 2];
			snprintf(again, sizeof(again), "<%s>", a.text);
			if (address_parse(again, &b, &error) != 0)
				abort();
			if (strcmp(a.local, b.local) != 0 || strcmp(a.domain, b.domain) != 0)
				abort();
			(void)address_match_pattern(&a, "@example.test");
			(void)address_match_pattern(&a, "@.example.test");
			(void)address_is_postmaster(&a);
		}
	}
	return 0;
}
