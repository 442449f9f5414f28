/*
 * relayvisorctl's pieces: one request to relayvisord over the control socket
 * (common/ctlproto.h), the commands it answers itself (help, queue, history), and
 * the interactive prompt.
 */
#ifndef RELAYVISOR_CTL_H
#define RELAYVISOR_CTL_H

#include <signal.h>
#include <stdio.h>

struct ctl_ctx {
	const char *confdir;	/* -c */
	const char *socket;	/* -s, or server.control of the configuration */
	char *socket_buf;	/* owned copy of server.control */
	char *spool;		/* server.spool, loaded on demand */
	FILE *out;
};

/* socket path from -s or the configuration (even a partly invalid one, so that
   `reload` can report its errors); -1 with *error_r */
int ctl_resolve_socket(struct ctl_ctx *ctx, const char **error_r);
/* run one command (local or remote) and return its exit code */
int ctl_command(struct ctl_ctx *ctx, int argc, char **argv);
/* the prompt (prompt.c): libedit line editing and history on a terminal,
   plain lines otherwise; returns the exit code */
int ctl_interactive(struct ctl_ctx *ctx, FILE *in);
/* set by the prompt's SIGINT handler: a command waiting on the daemon (tail -f)
   returns to the prompt */
extern volatile sig_atomic_t ctl_interrupted;
void ctl_help(FILE *out, const char *verb);
/* `audit` (ctl/audit.c): returns the exit code */
int ctl_audit(struct ctl_ctx *ctx, int argc, char **argv);
/* `passwd` (ctl/passwd.c): returns the exit code */
int ctl_passwd(struct ctl_ctx *ctx, int argc, char **argv);
void ctl_ctx_free(struct ctl_ctx *ctx);

/* split a line of the prompt into words (in place); returns argc */
int ctl_split(char *line, char **argv, int max);

#endif
