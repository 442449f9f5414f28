/*
 * relayvisorctl's pieces: the commands (ctl.c: those relayvisord answers, printed
 * as they come, and those it answers itself: help, queue, history), the
 * interactive prompt (prompt.c). Below them: client.h (the control socket),
 * audit.h (`audit`). A new verb: its help line in helps[] (ctl.c), its handler in
 * supervisor/control.c when relayvisord answers it.
 */
#ifndef RELAYVISOR_CTL_H
#define RELAYVISOR_CTL_H

#include <signal.h>
#include <stdio.h>

#include "ctl/client.h"


/* run one command (local or remote) and return its exit code */
int ctl_command(struct ctl_ctx *ctx, int argc, char **argv);
/* the prompt (prompt.c): libedit line editing and history on a terminal,
   plain lines otherwise; returns the exit code */
int ctl_interactive(struct ctl_ctx *ctx, FILE *in);
/* set by the prompt's SIGINT handler: a command waiting on the daemon (tail -f)
   returns to the prompt */
extern volatile sig_atomic_t ctl_interrupted;
void ctl_help(FILE *out, const char *verb);
/* `passwd` (ctl/passwd.c): needs no daemon; returns the exit code */
int ctl_passwd(struct ctl_ctx *ctx, int argc, char **argv);

/* split a line of the prompt into words (in place); returns argc */
int ctl_split(char *line, char **argv, int max);

#endif
