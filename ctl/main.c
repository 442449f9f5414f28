/*
 * relayvisorctl [-c CONFDIR | -s SOCKET] [COMMAND [ARGS]]: supervisorctl for
 * relayvisord. Without a command, an interactive prompt ("help", "history").
 * Exit codes are supervisorctl's (common/ctlproto.h).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/ctlproto.h"
#include "ctl/ctl.h"

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: relayvisorctl [-c CONFDIR | -s SOCKET] [COMMAND [ARGS]]\n"
	    "  -c CONFDIR  configuration directory, for server.control and\n"
	    "              server.spool (default ./conf.d, or\n"
	    "              " RELAYVISOR_SYSCONFDIR "/conf.d where ./conf.d does not exist)\n"
	    "  -s SOCKET   the control socket (no configuration read)\n"
	    "Commands (\"relayvisorctl help\" for details): status start stop restart\n"
	    "reread update reload avail pid signal tail reopen check stats queue audit\n"
	    "passwd shutdown version help\n");
}

int
main(int argc, char **argv)
{
	struct ctl_ctx ctx = { .confdir = config_default_dir(), .out = stdout };
	int ch;
	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("relayvisorctl %s\n", RELAYVISOR_VERSION);
		return 0;
	}
	while ((ch = getopt(argc, argv, "+c:s:h")) != -1) {
		switch (ch) {
		case 'c':
			ctx.confdir = optarg;
			break;
		case 's':
			ctx.socket = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return CTL_EXIT_USAGE;
		}
	}
	int code;
	if (optind == argc)
		code = ctl_interactive(&ctx, stdin);
	else
		code = ctl_command(&ctx, argc - optind, argv + optind);
	fflush(stdout);
	ctl_ctx_free(&ctx);
	return code;
}
