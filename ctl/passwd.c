/*
 * relayvisorctl passwd [--stdin] USER [FILE]: set USER's password in a password
 * file (common/passwd.h), as a yescrypt hash. FILE defaults to
 * server.auth.passwd_file of the configuration (-c). On a terminal it asks twice without
 * echo; with --stdin it reads one line. No daemon is needed: the auth process
 * picks the file up on reload.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/config.h"
#include "common/ctlproto.h"
#include "common/passwd.h"
#include "ctl/ctl.h"

static struct termios saved;
static volatile sig_atomic_t echo_off;

/* ^C at the prompt must not leave the terminal without echo */
static void
restore_and_exit(int sig)
{
	if (echo_off)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* one line from fd into buf (without the newline); -1 on EOF before a newline
   when nothing was read, on error, or when longer than cap - 1 */
static int
read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return n > 0 ? (buf[n] = '\0', 0) : -1;
		if (c == '\n')
			break;
		if (n + 1 >= cap)
			return -1;
		buf[n++] = c;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return 0;
}

static int
prompt(const char *text, char *buf, size_t cap)
{
	struct termios t = saved;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	/* echo off first, then the prompt: what is typed after it is never shown */
	echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == -1) {
		echo_off = 0;
		return -1;
	}
	fputs(text, stderr);
	fflush(stderr);
	int r = read_line(STDIN_FILENO, buf, cap);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
	echo_off = 0;
	return r;
}

/* server.auth.passwd_file of the configuration in ctx->confdir, into buf;
   -1 with the reason printed */
static int
default_file(struct ctl_ctx *ctx, char *buf, size_t cap)
{
	struct config_source *src;
	const char *error;
	if (config_source_read_dir(ctx->confdir, &src, &error) == -1) {
		fprintf(stderr, "relayvisorctl passwd: no FILE given and the configuration "
		    "%s cannot be read: %s\n", ctx->confdir, error);
		return -1;
	}
	struct config_diags diags = { 0 };
	struct config *cfg = config_load(src, &diags);
	config_diags_free(&diags);
	int r = -1;
	if (cfg == NULL || cfg->server.auth_passwd_file == NULL)
		fprintf(stderr, "relayvisorctl passwd: no FILE given and the configuration "
		    "%s names no server.auth.passwd_file\n", ctx->confdir);
	else if (snprintf(buf, cap, "%s", cfg->server.auth_passwd_file) >= (int)cap)
		fprintf(stderr, "relayvisorctl passwd: server.auth.passwd_file is too "
		    "long\n");
	else
		r = 0;
	config_free(cfg);
	return r;
}

int
ctl_passwd(struct ctl_ctx *ctx, int argc, char **argv)
{
	bool from_stdin = false;
	int i = 1;
	if (i < argc && strcmp(argv[i], "--stdin") == 0) {
		from_stdin = true;
		i++;
	}
	if (argc - i < 1 || argc - i > 2 || argv[i][0] == '-') {
		fprintf(stderr, "usage: relayvisorctl passwd [--stdin] USER [FILE]\n");
		return CTL_EXIT_USAGE;
	}
	const char *user = argv[i], *file = argv[i + 1];
	char filebuf[4096];
	if (argc - i == 1) {
		if (default_file(ctx, filebuf, sizeof(filebuf)) == -1)
			return CTL_EXIT_ERROR;
		file = filebuf;
	}
	if (!passwd_user_valid(user)) {
		fprintf(stderr, "relayvisorctl passwd: bad user name \"%s\": 1 to 255 octets, "
		    "no ':', space or control character\n", user);
		return CTL_EXIT_USAGE;
	}
	char pw[PASSWD_PASS_MAX + 2], again[PASSWD_PASS_MAX + 2];
	int code = CTL_EXIT_ERROR;
	if (from_stdin) {
		if (read_line(STDIN_FILENO, pw, sizeof(pw)) == -1) {
			fprintf(stderr, "relayvisorctl passwd: no password line on stdin "
			    "(or longer than %d octets)\n", PASSWD_PASS_MAX);
			goto out;
		}
	} else {
		if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved) == -1) {
			fprintf(stderr, "relayvisorctl passwd: stdin is not a terminal; "
			    "use --stdin to read the password from it\n");
			return CTL_EXIT_USAGE;
		}
		signal(SIGINT, restore_and_exit);
		signal(SIGTERM, restore_and_exit);
		signal(SIGHUP, restore_and_exit);
		if (prompt("New password: ", pw, sizeof(pw)) == -1 ||
		    prompt("Retype new password: ", again, sizeof(again)) == -1) {
			fprintf(stderr, "relayvisorctl passwd: no password read "
			    "(at most %d octets)\n", PASSWD_PASS_MAX);
			goto out;
		}
		if (strcmp(pw, again) != 0) {
			fprintf(stderr, "relayvisorctl passwd: the passwords differ; "
			    "nothing changed\n");
			goto out;
		}
	}
	const char *error;
	if (passwd_file_set(file, user, pw, &error) == -1) {
		fprintf(stderr, "relayvisorctl passwd: %s\n", error);
		goto out;
	}
	fprintf(ctx->out, "%s: password set in %s\n", user, file);
	code = CTL_EXIT_OK;
out:
	OPENSSL_cleanse(pw, sizeof(pw));
	OPENSSL_cleanse(again, sizeof(again));
	return code;
}
