/*
 * relayvisord: the supervisor. Loads and validates the configuration, binds every
 * instance's sockets and the control socket, then runs the listeners and answers
 * relayvisorctl. -n stays in the foreground (make run, systemd Type=notify);
 * otherwise it daemonises. Either way relayvisord.pid next to the control socket
 * is held locked for its life: one supervisor per configuration.
 *
 * Environment: RELAYVISOR_SMTPD overrides the listener executable (default:
 * relayvisor-smtpd next to relayvisord's own executable), e.g. for a wrapper.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "supervisor/control.h"
#include "supervisor/super.h"

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: relayvisord [-c DIR] [-n] [-t] [-d] [--help] [--version]\n"
	    "  -c DIR     configuration directory (default ./conf.d, or\n"
	    "             " RELAYVISOR_SYSCONFDIR "/conf.d where ./conf.d does not exist)\n"
	    "  -n         stay in the foreground, log to stderr\n"
	    "  -t         check the configuration and exit (0 ok, 1 errors);\n"
	    "             problems go to stderr, the summary line to stdout\n"
	    "  -d         debug logging\n"
	    "Environment: RELAYVISOR_SMTPD overrides the listener executable\n"
	    "(default: relayvisor-smtpd next to relayvisord).\n");
}

/*
 * Daemon mode, first half: fork at once, so that the pid in relayvisord.pid and
 * every lock are the daemon's own. The parent waits until the child reports
 * that it serves (daemonise_done) and exits 0, or exits with the child's status
 * when it failed; the child's errors reach the terminal meanwhile.
 */
static int daemon_pipe = -1;

static void
daemonise_begin(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) == -1)
		fatal("pipe");
	pid_t pid = fork();
	if (pid == -1)
		fatal("fork");
	if (pid > 0) {
		close(p[1]);
		char c;
		ssize_t n;
		while ((n = read(p[0], &c, 1)) == -1 && errno == EINTR)
			;
		if (n == 1)
			_exit(0);
		int st;
		while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
			;
		_exit(WIFEXITED(st) && WEXITSTATUS(st) != 0 ? WEXITSTATUS(st) : 1);
	}
	close(p[0]);
	daemon_pipe = p[1];
	if (setsid() == -1)
		fatal("setsid");
}

/* second half: detach from the terminal and let the parent go */
static void
daemonise_done(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd == -1)
		fatal("open /dev/null");
	if (dup2(fd, 0) == -1 || dup2(fd, 1) == -1 || dup2(fd, 2) == -1)
		fatal("dup2 /dev/null");
	if (fd > 2)
		close(fd);
	if (write(daemon_pipe, "1", 1) != 1)
		log_warn("daemon start-up pipe");
	close(daemon_pipe);
	daemon_pipe = -1;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *confdir = config_default_dir();
	bool foreground = false, test = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "c:ntdhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			confdir = optarg;
			break;
		case 'n':
			foreground = true;
			break;
		case 't':
			test = true;
			break;
		case 'd':
			log_set_debug(true);
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("relayvisord %s\n", RELAYVISOR_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (test)
		return config_check_report(confdir, stderr, stdout);

	log_init("relayvisord", true);
	if (!foreground)
		daemonise_begin();
	const char *error;
	struct sv *sv = sv_new(confdir, foreground, &error);
	if (sv == NULL) {
		fprintf(stderr, "relayvisord: %s\n", error);
		return 1;
	}
	if (!foreground) {
		log_init("relayvisord", false);
		daemonise_done();
	}
	control_attach(sv);
	sv_run(sv);
	sv_free(sv);
	log_info("exiting");
	return 0;
}
