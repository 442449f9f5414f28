/*
 * relayvisorctl's connection to relayvisord: the control socket's path and one
 * request sent on it (common/ctlproto.h).
 */
#ifndef RELAYVISOR_CTL_CLIENT_H
#define RELAYVISOR_CTL_CLIENT_H

#include <stdio.h>

#include "common/ctlproto.h"

struct ctl_ctx {
	const char *confdir;	/* -c */
	const char *socket;	/* -s, or server.control of the configuration */
	char *socket_buf;	/* owned copy of server.control */
	char *spool;		/* server.spool, loaded on demand */
	FILE *out;
};
/* server.control and server.spool of the configuration, even a partly
   invalid one; -1 with *error_r */
int ctl_load_server(struct ctl_ctx *ctx, const char **error_r);
/* socket path from -s or the configuration (even a partly invalid one, so that
   `reload` can report its errors); -1 with *error_r */
int ctl_resolve_socket(struct ctl_ctx *ctx, const char **error_r);
/* format and send one request; the connected fd to read the reply from, or -1
   with the message printed to ctx->out and *code_r the exit code */
int ctl_request_send(struct ctl_ctx *ctx, int argc, char **argv, int *code_r);
/* a reply's status line (OK, ERR, BAD) shown as relayvisorctl shows it; its
   exit code, -1 for a data line (the caller's to show) */
int ctl_reply_status(struct ctl_ctx *ctx, const struct ctl_reply_line *r, const char *raw);
void ctl_ctx_free(struct ctl_ctx *ctx);

#endif
