/*
 * Private to common/config*.c: the layout of a config_source, shared by the reader
 * and serialiser (config_source.c) and the loader (config.c).
 */
#ifndef RELAYVISOR_CONFIG_INTERNAL_H
#define RELAYVISOR_CONFIG_INTERNAL_H

#include "common/config.h"

struct config_file {
	char *name;	/* "10-server.yaml" */
	char *path;	/* dir + "/" + name: what diagnostics print */
	char *data;	/* NUL-terminated */
	size_t len;
};

struct config_source {
	char *dir;
	struct config_file *files;
	size_t n;
	/* "*.yml" names found beside them: not read, each an error of the loader
	   (never in a snapshot: a source with them never validates) */
	char **yml;
	size_t n_yml;
};

#endif
