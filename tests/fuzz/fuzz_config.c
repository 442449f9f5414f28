/*
 * libFuzzer target: the configuration loader on arbitrary YAML. Whatever the input,
 * loading must terminate without a crash or leak, and a load that reports no error
 * must have resolved every instance's profile.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	const char *names[] = { "fuzz.yaml" };
	const char *bufs[] = { text };
	struct config_source *src = config_source_from_buffers("fuzz", names, bufs, 1);
	struct config_diags diags;
	memset(&diags, 0, sizeof(diags));
	struct config *cfg = config_load(src, &diags);
	if (cfg != NULL && diags.n_errors == 0) {
		for (size_t i = 0; i < cfg->n_instances; i++)
			if (cfg->instances[i].profile == NULL)
				abort();
	}
	config_free(cfg);
	config_diags_free(&diags);
	free(text);
	return 0;
}
