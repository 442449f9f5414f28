/*
 * relayvisor-smtpd: one SMTP listener process for one instance.
 *
 *   relayvisor-smtpd -c DIR --instance NAME [-d]
 *
 * Supervised (common/childproto.h): the listening sockets come as LISTEN_FDS
 * from fd 3, the configuration as the snapshot in RELAYVISOR_CONFIG_FD (files
 * are never re-read), readiness and counters go over RELAYVISOR_NOTIFY_FD.
 * Standalone: the configuration is read from DIR and the instance's listen
 * addresses are bound here.
 *
 * Started as root with a user to become (RELAYVISOR_USER from the supervisor,
 * or server.user standalone), it opens everything first (sockets, the snapshot,
 * the spool and its spill directory), then confines itself (common/confine.h):
 * chroot into spool/empty, no groups, that user, no new privileges, not
 * dumpable. Only then does it read the network. Exit 78 (EX_CONFIG) on any
 * configuration error, so the supervisor does not respawn a hopeless child.
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/child.h"
#include "common/childproto.h"
#include "common/config.h"
#include "common/confine.h"
#include "common/log.h"
#include "common/sock.h"
#include "common/spool.h"
#include "common/tls.h"
#include "common/xmalloc.h"
#include "common/authproto.h"
#include "instances/authc.h"
#include "instances/listen.h"
#include "instances/smtpd.h"

#define LISTEN_FDS_START 3
/* an AUTH the auth process has not answered by then gets 454 4.7.0 */
#define AUTH_TIMEOUT 10.0

static struct smtpd *main_sd;
static int notify_fd = -1;
static ev_io notify_io;

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: relayvisor-smtpd [-d] [-c CONFDIR] --instance NAME\n");
	exit(CHILD_EXIT_CONFIG);
}

/* 10 000 idle sessions need 10 000 descriptors */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit RLIMIT_NOFILE");
		return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit RLIMIT_NOFILE %lu", (unsigned long)rl.rlim_max);
	}
}

/*
 * A certificate from the supervisor ("TLS" with a sealed memfd): the context
 * new sessions use. Sessions already in TLS hold a reference to the old one.
 * -1 when it cannot be used (the old context, if any, stays).
 */
static int
tls_take(int fd, const char *why)
{
	struct tls_ctx *ctx;
	const char *err;

	if (fd == -1) {
		log_warnx("%s: no descriptor came with the certificate message", why);
		return -1;
	}
	int r = tls_server_ctx_from_fd(fd, &ctx, &err);
	close(fd);
	if (r == -1) {
		log_warnx("%s: %s", why, err);
		return -1;
	}
	bool had = main_sd->tls != NULL;
	tls_ctx_swap(&main_sd->tls, ctx);
	if (had)
		log_info("TLS certificate reloaded: new sessions use it");
	return 0;
}

/* supervised with tls: the first message is the certificate (sent right after
   the fork); standalone, the files are read here, before confinement */
static void
tls_setup(const struct instance *inst, bool supervised)
{
	const char *err;

	if (inst->tls_cert == NULL)
		return;
	if (!supervised || notify_fd < 0) {
		char *pem;
		size_t len;
		struct tls_ctx *ctx;
		if (tls_pem_load_files(inst->tls_cert, inst->tls_key, &pem, &len,
		    &err) == -1 || tls_server_ctx_new(pem, len, &ctx, &err) == -1) {
			log_warnx("%s", err);
			exit(CHILD_EXIT_CONFIG);
		}
		tls_pem_free(pem, len);
		main_sd->tls = ctx;
		return;
	}
	int fd = child_await_fd(notify_fd, CHILD_MSG_TLS, CHILD_MSG_TLS_ERROR,
	    "certificate");
	if (tls_take(fd, "certificate") == -1)
		exit(CHILD_EXIT_CONFIG);
}

static void
notify_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	char buf[CHILD_MSG_MAX + 1];
	int fd;

	(void)revents;
	ssize_t n = childproto_recv(notify_fd, buf, sizeof(buf), &fd, MSG_DONTWAIT);
	if (n == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			log_warn("notify recv");
			ev_io_stop(loop, w);
		}
		return;
	}
	if (n == 0) {
		/* the supervisor went away; PR_SET_PDEATHSIG ends us */
		ev_io_stop(loop, w);
		return;
	}
	if (strcmp(buf, CHILD_MSG_TLS) == 0) {
		(void)tls_take(fd, "reloaded certificate (the previous one stays)");
		return;
	}
	if (strcmp(buf, CHILD_MSG_AUTH) == 0 && fd != -1 && main_sd->authc != NULL) {
		authc_set_fd(main_sd->authc, fd);
		return;
	}
	if (fd != -1)
		close(fd);
	if (strncmp(buf, CHILD_MSG_TLS_ERROR, strlen(CHILD_MSG_TLS_ERROR)) == 0) {
		log_warnx("certificate not reloaded: %s", buf);
		return;
	}
	if (strcmp(buf, CHILD_MSG_STATS) == 0) {
		char reply[CHILD_MSG_MAX];
		smtpd_stats_format(main_sd, reply, sizeof(reply));
		child_notify(notify_fd, reply);
	} else {
		log_warnx("notify: unknown message \"%.40s\"", buf);
	}
}

/*
 * Signals. Every signal the configuration accepts as `stopsignal` (TERM, INT,
 * QUIT, USR1, USR2: common/config.c) is a graceful stop. HUP is ignored: reload
 * belongs to the supervisor, which hands a new process the new configuration.
 */
static const int stop_signals[] = { CHILD_STOP_SIGNALS };
#define N_STOP_SIGNALS (sizeof(stop_signals) / sizeof(stop_signals[0]))

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	log_info("SIG%s: graceful stop", sigabbrev_np(w->signum));
	smtpd_stop(main_sd);
}

static void
sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	log_info("SIGHUP ignored: relayvisord reloads the configuration "
	    "(relayvisorctl reload)");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "instance", required_argument, NULL, 'i' },
		{ "config", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = "conf.d", *name = NULL;
	bool debug = false;
	int ch;

	while ((ch = getopt_long(argc, argv, "c:di:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			dir = optarg;
			break;
		case 'd':
			debug = true;
			break;
		case 'i':
			name = optarg;
			break;
		case 'h':
			printf("usage: relayvisor-smtpd [-d] [-c CONFDIR] --instance NAME\n"
			    "  -c CONFDIR       configuration directory (default conf.d); not read\n"
			    "                   when the supervisor passes a snapshot\n"
			    "  --instance NAME  the instance to serve\n"
			    "  -d               debug logging\n"
			    "Started by relayvisord, or standalone (binds the instance's listen\n"
			    "addresses), or with systemd socket activation (LISTEN_FDS).\n"
			    "Exit 78 on a configuration error.\n");
			exit(0);
		case 'V':
			printf("relayvisor-smtpd %s\n", RELAYVISOR_VERSION);
			exit(0);
		default:
			usage();
		}
	}
	if (name == NULL || optind != argc)
		usage();

	/* always the foreground sink: the supervisor keeps stderr in logs/<instance>.log */
	log_init("relayvisor-smtpd", true);
	log_set_debug(debug);
	xmalloc_keep_heap();	/* a body buffer per message */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		log_warn("signal SIGPIPE");
	/* a HUP must not kill us while starting either (the loop logs it later) */
	if (signal(SIGHUP, SIG_IGN) == SIG_ERR)
		log_warn("signal SIGHUP");

	int listen_pid = child_env_num("LISTEN_PID");
	int n_fds = child_env_num("LISTEN_FDS");
	bool supervised = listen_pid >= 0 && listen_pid == (int)getpid() && n_fds >= 0;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	notify_fd = child_env_fd(CHILD_ENV_NOTIFY_FD);
	/* the commit notification for the queue manager (spool.h) */
	int wake_fd = child_env_fd(SPOOL_ENV_WAKE_FD);
	pid_t ppid = getppid();
	char run_user[64];
	child_env_str(CONFINE_ENV_USER, run_user, sizeof(run_user));

	struct config *cfg = child_load_config(dir);
	const struct instance *inst = config_instance(cfg, name);
	if (inst == NULL) {
		log_warnx("no instance named %s in the configuration", name);
		exit(CHILD_EXIT_CONFIG);
	}
	char tag[192];
	if (inst->syslog_name != NULL)
		snprintf(tag, sizeof(tag), "%s/smtpd", inst->syslog_name);
	else
		snprintf(tag, sizeof(tag), "relayvisor/%s/smtpd", inst->name);
	log_set_tag(tag);

	raise_fd_limit();
	struct ev_loop *loop = EV_DEFAULT;
	if (loop == NULL)
		fatalx("libev: no event loop");
	log_buffer_loop(loop);	/* a pass's lines in one write */
	main_sd = smtpd_new(loop, cfg, inst);
	if (main_sd == NULL)
		fatal("smtpd_new");
	tls_setup(inst, supervised);
	/* SMTP AUTH: the connection to the auth process comes on the notify
	   socket (or inherited, standalone) */
	int auth_fd = child_env_fd(AUTHPROTO_ENV_FD);
	if (CONFIG_AUTH_ON(cfg)) {
		main_sd->authc = authc_new(loop, AUTH_TIMEOUT);
		main_sd->authfail = authfail_new();
		if (auth_fd >= 0)
			authc_set_fd(main_sd->authc, auth_fd);
	} else if (auth_fd >= 0) {
		close(auth_fd);
	}

	const char *err;
	if (supervised) {
		if ((size_t)n_fds != inst->n_listen)
			log_warnx("%d sockets inherited for %zu listen addresses", n_fds,
			    inst->n_listen);
		for (int i = 0; i < n_fds; i++) {
			const char *text = (size_t)i < inst->n_listen ?
			    inst->listen[i].text : "inherited";
			if (listen_add(main_sd, LISTEN_FDS_START + i, text, &err) == -1)
				fatal("listener fd %d (%s): %s", LISTEN_FDS_START + i, text, err);
		}
	} else {
		for (size_t i = 0; i < inst->n_listen; i++) {
			const char *error;
			int fd = sock_listen(&inst->listen[i], &error);
			if (fd == -1) {
				log_warnx("%s", error);
				exit(1);
			}
			if (listen_add(main_sd, fd, inst->listen[i].text, &err) == -1)
				fatal("listener %s: %s", inst->listen[i].text, err);
		}
	}
	if (main_sd->n_listeners == 0)
		log_warnx("no listening socket: serving nothing");

	/* the user to become: the supervisor names it; standalone, server.user */
	const char *user = supervised ? (run_user[0] != '\0' ? run_user : NULL) :
	    cfg->server.user;
	bool confine_root = geteuid() == 0 && user != NULL;
	if (confine_root && !supervised) {
		struct passwd *pw = getpwnam(user);
		if (pw == NULL) {
			log_warnx("server.user %s: no such user", user);
			exit(CHILD_EXIT_CONFIG);
		}
		if (spool_prepare(cfg->server.spool, pw->pw_uid, pw->pw_gid, &err) == -1) {
			log_warnx("spool %s: %s", cfg->server.spool, err);
			exit(1);
		}
	}
	struct spool *spool;
	if (spool_open(cfg->server.spool, 0, &spool, &err) == -1) {
		log_warnx("spool %s: %s", cfg->server.spool, err);
		exit(1);
	}
	smtpd_set_spool(main_sd, spool);
	spool_set_wake_fd(spool, wake_fd);

	char jail[4096];
	snprintf(jail, sizeof(jail), "%s/%s", cfg->server.spool, CONFINE_EMPTY_SUBDIR);
	char what[160];
	snprintf(what, sizeof(what), "listener %s", inst->name);
	struct confine conf = {
		.user = confine_root ? user : NULL,
		.chroot = confine_root ? jail : NULL,
		.what = what,
	};
	struct confine_result cres;
	if (confine_apply(&conf, &cres, &err) == -1) {
		log_warnx("confinement: %s", err);
		exit(1);
	}
	if (cres.switched)
		log_info("confined: chroot %s, user %s (uid %lu, gid %lu)",
		    cres.chrooted ? jail : "none", user, (unsigned long)cres.uid,
		    (unsigned long)cres.gid);
	if (supervised || notify_fd >= 0) {
		/* die with the supervisor; set after the switch, which clears it */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
			log_warn("prctl PR_SET_PDEATHSIG");
		if (getppid() != ppid)
			fatalx("supervisor exited during start-up");
	}
	if (smtpd_async_commit(main_sd, &err) == -1)
		log_warnx("%s: committing on the event loop instead", err);

	ev_signal stop_w[N_STOP_SIGNALS], hup_w;
	for (size_t i = 0; i < N_STOP_SIGNALS; i++) {
		ev_signal_init(&stop_w[i], signal_cb, stop_signals[i]);
		ev_signal_start(loop, &stop_w[i]);
	}
	ev_signal_init(&hup_w, sighup_cb, SIGHUP);
	ev_signal_start(loop, &hup_w);
	if (notify_fd >= 0) {
		ev_io_init(&notify_io, notify_cb, notify_fd, EV_READ);
		ev_io_start(loop, &notify_io);
	}
	smtpd_start(main_sd);
	listen_start(main_sd);
	log_info("ready: instance %s, %zu listening sockets", inst->name,
	    main_sd->n_listeners);
	child_notify(notify_fd, CHILD_MSG_READY);

	ev_run(loop, 0);

	/* messages of sessions that died before their commit are still owed one */
	if (spool_pending(spool) > 0 && spool_commit(spool) == -1)
		log_warnx("spool commit failed at exit");
	/* the final counters, which the supervisor adds to the instance's totals */
	char stats[CHILD_MSG_MAX];
	smtpd_stats_format(main_sd, stats, sizeof(stats));
	child_notify(notify_fd, stats);
	log_info("stopped");
	struct authc *authc = main_sd->authc;
	struct authfail *authfail = main_sd->authfail;
	smtpd_free(main_sd);	/* sessions first: they cancel their requests */
	authc_free(authc);
	authfail_free(authfail);
	spool_close(spool);
	config_free(cfg);
	if (confine_leak_check_blind(&cres))
		_exit(0);
	return 0;
}
