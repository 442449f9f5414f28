/*
 * relayvisorctl's interactive prompt (no command on the command line), like
 * supervisorctl's: "relayvisor> ", `help`, `history`, `quit`/`exit` or EOF to
 * leave. On a terminal, lines are read with libedit (Emacs keys, arrows walk the
 * history); otherwise (a pipe, a script) plain lines are read and nothing is
 * echoed but the prompt.
 *
 * Ctrl-C never kills the prompt: while a command waits on relayvisord (`tail -f`,
 * a slow `restart`) it returns to the prompt (the daemon still completes what it
 * was asked); at the prompt it discards the line being typed.
 */
#include "ctl/ctl.h"

#include <editline/readline.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ctlproto.h"

#define HISTORY_MAX 500

struct history {
	char *v[HISTORY_MAX];
	size_t n, first;	/* number of v[0], counting from 1 */
};

static void
history_add(struct history *h, const char *line)
{
	char *keep = strdup(line);
	if (keep == NULL)
		return;
	if (h->n == HISTORY_MAX) {
		free(h->v[0]);
		memmove(h->v, h->v + 1, (h->n - 1) * sizeof(char *));
		h->n--;
		h->first++;
	}
	h->v[h->n++] = keep;
}

static void
on_sigint(int sig)
{
	(void)sig;
	ctl_interrupted = 1;
}

/* one line without its newline (malloc'd); NULL at EOF */
static char *
prompt_read(FILE *in, FILE *out, bool tty)
{
	if (tty) {
		for (;;) {
			ctl_interrupted = 0;
			char *line = readline("relayvisor> ");
			if (line != NULL || !ctl_interrupted)
				return line;
			/* Ctrl-C at the prompt: a fresh line */
			fputc('\n', out);
		}
	}
	char buf[CTLPROTO_LINE_MAX];
	fputs("relayvisor> ", out);
	fflush(out);
	if (fgets(buf, sizeof(buf), in) == NULL)
		return NULL;
	buf[strcspn(buf, "\r\n")] = '\0';
	return strdup(buf);
}

int
ctl_interactive(struct ctl_ctx *ctx, FILE *in)
{
	struct history h = { .n = 0, .first = 1 };
	bool tty = in == stdin && isatty(fileno(in)) && isatty(STDOUT_FILENO);
	/* no SA_RESTART: a read waiting on the daemon returns EINTR */
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old);
	if (tty) {
		rl_readline_name = "relayvisorctl";
		using_history();
		stifle_history(HISTORY_MAX);
	}
	char *line;
	while ((line = prompt_read(in, ctx->out, tty)) != NULL) {
		char copy[CTLPROTO_LINE_MAX];
		snprintf(copy, sizeof(copy), "%s", line);
		char *argv[CTLPROTO_ARGS_MAX];
		int argc = ctl_split(line, argv, CTLPROTO_ARGS_MAX);
		if (argc == 0) {
			free(line);
			continue;
		}
		if (strcmp(argv[0], "quit") == 0 || strcmp(argv[0], "exit") == 0) {
			free(line);
			break;
		}
		history_add(&h, copy);
		if (tty)
			add_history(copy);
		if (strcmp(argv[0], "history") == 0) {
			for (size_t i = 0; i < h.n; i++)
				fprintf(ctx->out, "%5zu  %s\n", h.first + i, h.v[i]);
		} else {
			ctl_interrupted = 0;
			ctl_command(ctx, argc, argv);
		}
		fflush(ctx->out);
		free(line);
	}
	if (line == NULL && tty)
		fputc('\n', ctx->out);
	sigaction(SIGINT, &old, NULL);
	for (size_t i = 0; i < h.n; i++)
		free(h.v[i]);
	return 0;
}
