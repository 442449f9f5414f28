/*
 * relayvisorctl's side of the control socket: where it is (-s, or the
 * configuration's server.control), and one request sent on it
 * (common/ctlproto.h). The verbs that read the reply are ctl.c's (printed as
 * they come) and audit.c's (records).
 */
#include "ctl/client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config.h"
#include "common/ctlproto.h"

void
ctl_ctx_free(struct ctl_ctx *ctx)
{
	free(ctx->socket_buf);
	free(ctx->spool);
}

/* the configuration, possibly with errors: its server: section is all we need */
int
ctl_load_server(struct ctl_ctx *ctx, const char **error_r)
{
	static char err[512];
	struct config_source *src;
	const char *error;
	if (config_source_read_dir(ctx->confdir, &src, &error) == -1) {
		snprintf(err, sizeof(err), "%s: %s", ctx->confdir, error);
		*error_r = err;
		return -1;
	}
	struct config_diags diags = { 0 };
	struct config *cfg = config_load(src, &diags);
	config_diags_free(&diags);
	if (cfg == NULL) {
		snprintf(err, sizeof(err), "%s: cannot load the configuration",
		    ctx->confdir);
		*error_r = err;
		return -1;
	}
	free(ctx->socket_buf);
	free(ctx->spool);
	ctx->socket_buf = strdup(cfg->server.control != NULL ? cfg->server.control :
	    CONFIG_DEFAULT_CONTROL);
	ctx->spool = strdup(cfg->server.spool != NULL ? cfg->server.spool :
	    CONFIG_DEFAULT_SPOOL);
	config_free(cfg);
	if (ctx->socket_buf == NULL || ctx->spool == NULL) {
		*error_r = strerror(ENOMEM);
		return -1;
	}
	return 0;
}

int
ctl_resolve_socket(struct ctl_ctx *ctx, const char **error_r)
{
	if (ctx->socket != NULL)
		return 0;
	if (ctl_load_server(ctx, error_r) == -1)
		return -1;
	ctx->socket = ctx->socket_buf;
	return 0;
}


int
ctl_request_send(struct ctl_ctx *ctx, int argc, char **argv, int *code_r)
{
	const char *error;
	char req[CTLPROTO_LINE_MAX + 1];
	int len = ctlproto_request_format(argc, argv, req, sizeof(req), &error);
	if (len == -1) {
		fprintf(ctx->out, "Error: %s\n", error);
		*code_r = CTL_EXIT_USAGE;
		return -1;
	}
	if (ctl_resolve_socket(ctx, &error) == -1) {
		fprintf(ctx->out, "Error: %s\n", error);
		*code_r = CTL_EXIT_UNKNOWN;
		return -1;
	}
	int fd = ctlproto_connect(ctx->socket, &error);
	if (fd == -1) {
		fprintf(ctx->out, "unix://%s %s\n", ctx->socket, error);
		*code_r = CTL_EXIT_UNKNOWN;
		return -1;
	}
	for (int off = 0; off < len; ) {
		ssize_t n = send(fd, req + off, (size_t)(len - off), MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			fprintf(ctx->out, "unix://%s %s\n", ctx->socket, strerror(errno));
			close(fd);
			*code_r = CTL_EXIT_UNKNOWN;
			return -1;
		}
		off += (int)n;
	}
	return fd;
}

int
ctl_reply_status(struct ctl_ctx *ctx, const struct ctl_reply_line *r, const char *raw)
{
	switch (r->kind) {
	case CTL_LINE_OK:
		return r->exitcode;
	case CTL_LINE_ERR:
		fprintf(ctx->out, "%s\n", r->text);
		return r->exitcode;
	case CTL_LINE_BAD:
		fprintf(ctx->out, "ERROR: bad reply line: %s\n", raw);
		return CTL_EXIT_ERROR;
	case CTL_LINE_DATA:
		break;
	}
	return -1;
}
