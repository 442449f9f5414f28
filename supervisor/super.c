/*
 * relayvisord's core (see super.h): instances own their listening sockets and
 * their processes; each process is driven by the pure state machine of fsm.c and
 * this file carries out the actions (fork/exec, signals, libev timers). Children
 * exits come through ev_child; nothing here sleeps.
 *
 * Housekeeping that may free things (retired instances, the end of a shutdown,
 * systemd readiness, control waiters) runs from an ev_prepare watcher, once per
 * loop iteration, never from inside a state transition.
 */
#include "supervisor/super.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/childproto.h"
#include "common/confine.h"
#include "common/fsdir.h"
#include "common/log.h"
#include "profiles/audit.h"
#include "common/spool.h"
#include "supervisor/control.h"

struct sv {
	struct ev_loop *loop;
	char *confdir;
	bool foreground;
	struct config *cfg;
	struct sv_instance *instances;	/* live, config order */
	struct sv_instance *retired;	/* stopping, freed once their children are gone */
	char smtpd_path[PATH_MAX];
	bool switch_user;		/* root: children setuid to run_user */
	char *run_user;
	uid_t run_uid;
	gid_t run_gid;
	int control_fd;
	char *control_path;
	char *pidfile;
	int pid_fd;			/* the pid file, flock()ed for our lifetime */
	char *logs_path;		/* the directory logs_fd was opened as */
	int logs_fd;			/* server.logs, root's: log files only via openat */
	ev_signal sigterm_w, sigint_w, sighup_w, sigusr2_w;
	ev_prepare house_w;
	bool shutting_down;
	bool sd_notified;
	char sd_status[512];		/* the last STATUS= sent */
	pid_t pid;
};

static void proc_child_cb(struct ev_loop *loop, ev_child *w, int revents);
static void proc_startsecs_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void proc_stopwait_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void proc_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void proc_notify_cb(struct ev_loop *loop, ev_io *w, int revents);
static int proc_notify_read(struct sv_proc *p);
static void stats_bank(struct sv_proc *p);
static void proc_out_cb(struct ev_loop *loop, ev_io *w, int revents);

static char *
dir_of(const char *path)
{
	char *d = xstrdup(path);
	char *slash = strrchr(d, '/');
	if (slash == NULL) {
		free(d);
		return xstrdup(".");
	}
	if (slash == d)
		slash[1] = '\0';
	else
		*slash = '\0';
	return d;
}

struct ev_loop *sv_loop(struct sv *sv) { return sv->loop; }
const struct config *sv_config(const struct sv *sv) { return sv->cfg; }
const char *sv_control_path(const struct sv *sv) { return sv->control_path; }
const char *sv_confdir(const struct sv *sv) { return sv->confdir; }
int sv_control_fd(const struct sv *sv) { return sv->control_fd; }
struct sv_instance *sv_instances(struct sv *sv) { return sv->instances; }
bool sv_shutting_down(const struct sv *sv) { return sv->shutting_down; }

struct sv_instance *
sv_instance_find(struct sv *sv, const char *name)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		if (strcmp(in->name, name) == 0)
			return in;
	return NULL;
}

struct sv_proc *
sv_proc_find(struct sv *sv, const char *name)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		for (unsigned i = 0; i < in->n_procs; i++)
			if (strcmp(in->procs[i].name, name) == 0)
				return &in->procs[i];
	return NULL;
}

const char *
sv_log_path(struct sv *sv, const char *instance)
{
	static char buf[PATH_MAX];
	snprintf(buf, sizeof(buf), "%s/%s.log", sv->cfg->server.logs, instance);
	return buf;
}

/*
 * logs/<instance>.log (suffix e.g. ".1"), opened through the logs directory's
 * descriptor with O_NOFOLLOW, and only when it is a plain file with one link:
 * a symlink or a hard link planted there never makes root write or read
 * another file.
 */
int
sv_log_openat(struct sv *sv, const char *instance, int flags)
{
	char name[NAME_MAX + 1];
	if (sv->logs_fd == -1) {
		errno = EBADF;
		return -1;
	}
	if (snprintf(name, sizeof(name), "%s.log", instance) >= (int)sizeof(name)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = openat(sv->logs_fd, name, flags | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC |
	    O_NONBLOCK, 0640);
	if (fd == -1)
		return -1;
	struct stat st;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		errno = EPERM;
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl != -1)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

/* (re)open an instance's log for appending */
static void
inst_log_open(struct sv_instance *in)
{
	if (in->log_fd != -1)
		close(in->log_fd);
	in->log_size = 0;
	in->log_fd = sv_log_openat(in->sv, in->name, O_WRONLY | O_APPEND | O_CREAT);
	if (in->log_fd == -1) {
		log_warn("open %s%s", sv_log_path(in->sv, in->name), errno == ELOOP ||
		    errno == EPERM ? " (not a plain file: a symlink or hard link? "
		    "refused)" : "");
		return;
	}
	struct stat st;
	if (fstat(in->log_fd, &st) == 0)
		in->log_size = (uint64_t)st.st_size;
}

/* supervisord's rotation: NAME.log -> NAME.log.1 -> ... -> NAME.log.N */
static void
inst_log_rotate(struct sv_instance *in)
{
	struct sv *sv = in->sv;
	unsigned n = sv->cfg->server.log_backups;
	if (n == 0) {
		if (in->log_fd != -1 && ftruncate(in->log_fd, 0) == -1)
			log_warn("truncate %s", sv_log_path(sv, in->name));
		in->log_size = 0;
		return;
	}
	char from[NAME_MAX + 16], to[NAME_MAX + 16];
	for (unsigned i = n; i >= 1; i--) {
		if (i == 1)
			snprintf(from, sizeof(from), "%s.log", in->name);
		else
			snprintf(from, sizeof(from), "%s.log.%u", in->name, i - 1);
		snprintf(to, sizeof(to), "%s.log.%u", in->name, i);
		if (renameat(sv->logs_fd, from, sv->logs_fd, to) == -1 && errno != ENOENT)
			log_warn("rename %s/%s to %s", sv->logs_path, from, to);
	}
	inst_log_open(in);
	log_info("%s: log rotated at %llu bytes", in->name,
	    (unsigned long long)sv->cfg->server.log_max_bytes);
}

/* the logs directory: created root's 0750, or an existing one checked */
static int
sv_logs_setup(struct sv *sv, const char *path, const char **error_r)
{
	if (fsdir_ensure(path, geteuid(), getegid(), 0750, NULL, error_r) == -1)
		return -1;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		static char err[PATH_MAX + 64];
		snprintf(err, sizeof(err), "open %s: %s", path, strerror(errno));
		*error_r = err;
		return -1;
	}
	if (sv->logs_fd != -1)
		close(sv->logs_fd);
	sv->logs_fd = fd;
	free(sv->logs_path);
	sv->logs_path = xstrdup(path);
	return 0;
}

void
sv_reopen_logs(struct sv *sv)
{
	const char *error;
	/* the directory itself may have been removed or replaced: start over */
	if (sv_logs_setup(sv, sv->cfg->server.logs, &error) == -1)
		log_warnx("logs: %s", error);
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		inst_log_open(in);
	for (struct sv_instance *in = sv->retired; in != NULL; in = in->next)
		inst_log_open(in);
	log_info("logs reopened in %s", sv->cfg->server.logs);
}

/* one line into the instance's log; rotation by size, and a log (or its
   directory) that was removed behind our back is noticed within a second */
static void
inst_log_write(struct sv_instance *in, const char *buf, size_t len)
{
	struct sv *sv = in->sv;
	time_t now = time(NULL);
	if (now != in->log_checked) {
		in->log_checked = now;
		struct stat st;
		if (in->log_fd == -1 || (fstat(in->log_fd, &st) == 0 && st.st_nlink == 0)) {
			log_warnx("%s: log file gone, reopening", sv_log_path(sv, in->name));
			sv_reopen_logs(sv);
		}
	}
	if (in->log_fd == -1)
		return;
	if (write(in->log_fd, buf, len) == -1) {
		log_warn("write %s", sv_log_path(sv, in->name));
		return;
	}
	in->log_size += len;
	if (sv->cfg->server.log_max_bytes > 0 &&
	    in->log_size >= sv->cfg->server.log_max_bytes)
		inst_log_rotate(in);
}

/* ---- instances ---- */

static void
inst_set_params(struct sv_instance *in, const struct instance *ci)
{
	in->cfg = ci;
	in->fp.autorestart = ci->autorestart;
	in->fp.startretries = ci->startretries;
	in->fp.backoff_initial = ci->backoff_initial;
	in->fp.backoff_max = ci->backoff_max;
	in->startsecs = ci->startsecs;
	in->stopwaitsecs = ci->stopwaitsecs;
	in->stopsignal = ci->stopsignal;
	in->autostart = ci->autostart;
}

static void
inst_free(struct sv_instance *in)
{
	for (size_t i = 0; i < in->n_fds; i++)
		if (in->fds[i] != -1 && close(in->fds[i]) == -1)
			log_warn("close listening socket of %s", in->name);
	for (unsigned i = 0; i < in->n_procs; i++) {
		struct sv_proc *p = &in->procs[i];
		struct ev_loop *loop = in->sv->loop;
		if (loop != NULL) {
			ev_timer_stop(loop, &p->startsecs_t);
			ev_timer_stop(loop, &p->stopwait_t);
			ev_timer_stop(loop, &p->backoff_t);
			ev_child_stop(loop, &p->child_w);
			ev_io_stop(loop, &p->notify_io);
			ev_io_stop(loop, &p->out_io);
		}
		if (p->notify_fd != -1)
			close(p->notify_fd);
		if (p->out_fd != -1)
			close(p->out_fd);
	}
	if (in->log_fd != -1)
		close(in->log_fd);
	free(in->procs);
	free(in->fds);
	free(in->addrs);
	free(in->name);
	free(in);
}

/*
 * A new instance with its listening sockets: an address old already has is
 * shared (dup) so the kernel backlog carries over, others are bound afresh.
 * lenient (start-up): an address that cannot be bound does not fail the whole
 * daemon; the socket stays closed, the reason is kept in bind_error, and the
 * instance goes FATAL with it when it is started (sv_proc_event).
 */
static struct sv_instance *
inst_new(struct sv *sv, const struct instance *ci, const struct sv_instance *old,
    bool lenient, const char **error_r)
{
	struct sv_instance *in = xcalloc(1, sizeof(*in));
	in->sv = sv;
	in->name = xstrdup(ci->name);
	in->log_fd = -1;
	inst_set_params(in, ci);
	in->n_fds = ci->n_listen;
	in->fds = xcalloc(ci->n_listen, sizeof(int));
	in->addrs = xcalloc(ci->n_listen, sizeof(struct sockaddr_storage));
	for (size_t i = 0; i < in->n_fds; i++)
		in->fds[i] = -1;
	for (size_t i = 0; i < ci->n_listen; i++) {
		const struct listen_addr *la = &ci->listen[i];
		in->addrs[i] = la->ss;
		int fd = -1;
		for (size_t j = 0; old != NULL && j < old->n_fds && fd == -1; j++) {
			if (old->fds[j] != -1 && sock_same_addr(&old->addrs[j], &la->ss)) {
				fd = fcntl(old->fds[j], F_DUPFD_CLOEXEC, 3);
				if (fd == -1)
					log_warn("dup listening socket %s", la->text);
			}
		}
		if (fd == -1)
			fd = sock_listen(la, error_r);
		if (fd == -1 && lenient) {
			snprintf(in->bind_error, sizeof(in->bind_error), "%s", *error_r);
			log_warnx("%s: %s: the instance cannot serve until it can be "
			    "bound", in->name, *error_r);
			continue;
		}
		if (fd == -1) {
			inst_free(in);
			return NULL;
		}
		in->fds[i] = fd;
	}
	if (old != NULL)
		in->totals = old->totals;	/* stats go on across a reload */
	in->n_procs = ci->procs > 0 ? ci->procs : 1;
	in->procs = xcalloc(in->n_procs, sizeof(struct sv_proc));
	for (unsigned i = 0; i < in->n_procs; i++) {
		struct sv_proc *p = &in->procs[i];
		p->inst = in;
		p->index = i;
		if (in->n_procs == 1)
			snprintf(p->name, sizeof(p->name), "%s", in->name);
		else
			snprintf(p->name, sizeof(p->name), "%s:%02u", in->name, i);
		fsm_init(&p->fsm);
		p->notify_fd = -1;
		p->out_fd = -1;
		ev_init(&p->child_w, proc_child_cb);
		ev_init(&p->startsecs_t, proc_startsecs_cb);
		ev_init(&p->stopwait_t, proc_stopwait_cb);
		ev_init(&p->backoff_t, proc_backoff_cb);
		ev_init(&p->notify_io, proc_notify_cb);
		ev_init(&p->out_io, proc_out_cb);
		p->child_w.data = p->startsecs_t.data = p->stopwait_t.data = p;
		p->backoff_t.data = p->notify_io.data = p->out_io.data = p;
	}
	inst_log_open(in);
	return in;
}

/* ---- listening ---- */

int
sv_inst_listen(struct sv_instance *in, const char **error_r)
{
	for (size_t i = 0; i < in->n_fds; i++) {
		if (in->fds[i] != -1 || in->cfg == NULL || i >= in->cfg->n_listen)
			continue;
		in->fds[i] = sock_listen(&in->cfg->listen[i], error_r);
		if (in->fds[i] == -1) {
			snprintf(in->bind_error, sizeof(in->bind_error), "%s", *error_r);
			return -1;
		}
		log_info("%s: listening on %s again", in->name, in->cfg->listen[i].text);
	}
	in->bind_error[0] = '\0';
	return 0;
}

/* a process of the instance serves, or is about to */
static bool
inst_can_serve(const struct sv_instance *in)
{
	for (unsigned i = 0; i < in->n_procs; i++)
		if (fsm_has_child(in->procs[i].fsm.state))
			return true;
	return false;
}

/*
 * Every process failed (BACKOFF, FATAL, EXITED): close the listening sockets, so
 * that connecting clients are refused at once (and sending MTAs try the next MX)
 * rather than wait unanswered in a backlog. A plain stop (STOPPED, as within
 * `restart`) keeps them, so clients wait for the next process and none is refused.
 */
static void
inst_unlisten(struct sv_instance *in)
{
	bool closed = false;
	for (size_t i = 0; i < in->n_fds; i++) {
		if (in->fds[i] == -1)
			continue;
		if (close(in->fds[i]) == -1)
			log_warn("close listening socket of %s", in->name);
		in->fds[i] = -1;
		closed = true;
	}
	if (closed)
		log_warnx("%s: no process can serve: listening sockets closed, clients "
		    "are refused until it starts again", in->name);
}

/* ---- spawning ---- */

/*
 * Spool commit notification (spool.h), issue 11 hook: one pipe for the whole
 * supervisor, made at the first spawn. Every listener inherits the write end
 * (fd n+5, named by SPOOL_ENV_WAKE_FD) before it confines itself; the read end
 * stays here for the queue manager of the next issue, and keeps the pipe open
 * so a listener's wake-up never meets EPIPE meanwhile. The service table
 * (i11s) should make this "the wake end goes to kinds that commit messages,
 * the read end to the qmgr" instead.
 */
static int spool_wake_fds[2] = { -1, -1 };

static int
spool_wake_write_fd(void)
{
	const char *err;

	if (spool_wake_fds[1] == -1 && spool_wake_pipe(spool_wake_fds, &err) == -1) {
		log_warnx("spool commit notification: %s", err);
		spool_wake_fds[0] = spool_wake_fds[1] = -1;
	}
	return spool_wake_fds[1];
}

/* In the child between fork and exec: only plain system calls, then exec. */
static void __attribute__((noreturn))
child_exec(struct sv *sv, struct sv_proc *p, int cfgfd, int notifyfd, int outfd,
    int wakefd)
{
	struct sv_instance *in = p->inst;
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	/* keep terminal signals (^C in -n mode) for the supervisor to relay */
	setpgid(0, 0);

	/* move every fd we hand over above the target range, then into place:
	   listening sockets 3..3+n-1, config n+3, notify n+4, spool wake-up
	   n+5 (when there is one), output on 1 and 2 */
	int n = (int)in->n_fds;
	int high = n + 16;
	int src[n + 4];
	for (int i = 0; i < n; i++)
		src[i] = in->fds[i];
	src[n] = cfgfd;
	src[n + 1] = notifyfd;
	src[n + 2] = outfd;
	src[n + 3] = wakefd;
	for (int i = 0; i < n + 4; i++) {
		if (src[i] == -1)
			continue;
		src[i] = fcntl(src[i], F_DUPFD, high);
		if (src[i] == -1)
			_exit(127);
	}
	int devnull = open("/dev/null", O_RDONLY);
	if (devnull != -1 && devnull != 0) {
		dup2(devnull, 0);
		close(devnull);
	}
	if (dup2(src[n + 2], 1) == -1 || dup2(src[n + 2], 2) == -1)
		_exit(127);
	for (int i = 0; i < n + 2; i++)
		if (dup2(src[i], 3 + i) == -1)
			_exit(127);
	if (wakefd != -1 && dup2(src[n + 3], n + 5) == -1)
		_exit(127);
	close_range((unsigned)(wakefd != -1 ? n + 6 : n + 5), ~0U, 0);

	/* a clean environment: what childproto.h defines, a PATH, and the
	   sanitizers' options; nothing else of ours reaches the child */
	char e_fds[32], e_pid[32], e_cfg[64], e_notify[64], e_user[128], e_wake[64];
	char *envp[16];
	int ne = 0;
	envp[ne++] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	snprintf(e_fds, sizeof(e_fds), "LISTEN_FDS=%d", n);
	envp[ne++] = e_fds;
	snprintf(e_pid, sizeof(e_pid), "LISTEN_PID=%ld", (long)getpid());
	envp[ne++] = e_pid;
	snprintf(e_cfg, sizeof(e_cfg), "%s=%d", CHILD_ENV_CONFIG_FD, n + 3);
	envp[ne++] = e_cfg;
	snprintf(e_notify, sizeof(e_notify), "%s=%d", CHILD_ENV_NOTIFY_FD, n + 4);
	envp[ne++] = e_notify;
	if (wakefd != -1) {
		snprintf(e_wake, sizeof(e_wake), "%s=%d", SPOOL_ENV_WAKE_FD, n + 5);
		envp[ne++] = e_wake;
	}
	if (sv->switch_user) {
		snprintf(e_user, sizeof(e_user), "%s=%s", CONFINE_ENV_USER, sv->run_user);
		envp[ne++] = e_user;
	}
	static const char *const pass[] = { "TZ=", "ASAN_OPTIONS=", "UBSAN_OPTIONS=",
	    "LSAN_OPTIONS=" };
	for (char **e = environ; *e != NULL && ne < 15; e++)
		for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
			if (strncmp(*e, pass[i], strlen(pass[i])) == 0)
				envp[ne++] = *e;
	envp[ne] = NULL;

	/* executed as root when we are: the child opens what it needs, then
	   confines itself (common/confine.h); no exec may ever gain privileges */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 ||
	    prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != sv->pid)
		_exit(127);
	char *argv[] = { "relayvisor-smtpd", "--instance", in->name, NULL };
	execve(sv->smtpd_path, argv, envp);
	fprintf(stderr, "relayvisord: exec %s: %s\n", sv->smtpd_path, strerror(errno));
	_exit(127);
}

static int
proc_spawn(struct sv_proc *p)
{
	struct sv_instance *in = p->inst;
	struct sv *sv = in->sv;
	const char *error;
	/* the previous child's last words may still sit in its pipe (p->pid is 0
	   here, so a pipe some grandchild keeps open is abandoned, not waited for) */
	while (p->out_fd != -1)
		proc_out_cb(sv->loop, &p->out_io, EV_READ);
	int cfgfd = config_source_memfd(sv->cfg->source, &error);
	if (cfgfd == -1) {
		log_warnx("%s: configuration snapshot: %s", p->name, error);
		return -1;
	}
	int sp[2], out[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("%s: socketpair", p->name);
		close(cfgfd);
		return -1;
	}
	if (pipe2(out, O_CLOEXEC) == -1) {
		log_warn("%s: pipe", p->name);
		close(cfgfd);
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	int wakefd = spool_wake_write_fd();
	pid_t pid = fork();
	if (pid == -1) {
		log_warn("%s: fork", p->name);
		close(cfgfd);
		close(sp[0]);
		close(sp[1]);
		close(out[0]);
		close(out[1]);
		return -1;
	}
	if (pid == 0)
		child_exec(sv, p, cfgfd, sp[1], out[1], wakefd);
	close(cfgfd);
	close(sp[1]);
	close(out[1]);
	p->pid = pid;
	p->start_time = time(NULL);
	memset(&p->stats, 0, sizeof(p->stats));
	p->stats_pending = false;
	if (p->notify_fd != -1) {
		ev_io_stop(sv->loop, &p->notify_io);
		close(p->notify_fd);
	}
	p->notify_fd = sp[0];
	ev_io_set(&p->notify_io, p->notify_fd, EV_READ);
	ev_io_start(sv->loop, &p->notify_io);
	p->out_fd = out[0];
	if (fcntl(p->out_fd, F_SETFL, O_NONBLOCK) == -1)
		log_warn("%s: fcntl O_NONBLOCK", p->name);
	ev_io_set(&p->out_io, p->out_fd, EV_READ);
	ev_io_start(sv->loop, &p->out_io);
	ev_child_set(&p->child_w, pid, 0);
	ev_child_start(sv->loop, &p->child_w);
	log_info("spawned: '%s' with pid %ld", p->name, (long)pid);
	return 0;
}

/* ---- the state machine's actions ---- */

enum proc_action
sv_proc_event(struct sv_proc *p, enum proc_event ev)
{
	struct sv_instance *in = p->inst;
	struct sv *sv = in->sv;
	if (ev == EV_START && (sv->shutting_down || in->retired))
		return ACT_REFUSE;
	enum proc_state from = p->fsm.state;
	enum proc_action act = fsm_step(&p->fsm, ev, &in->fp);
	enum proc_state to = p->fsm.state;
	if (from != to)
		log_info("%s: %s -> %s (%s)", p->name, fsm_state_name(from),
		    fsm_state_name(to), fsm_event_name(ev));
	if (from == PROC_STARTING && to != PROC_STARTING)
		ev_timer_stop(sv->loop, &p->startsecs_t);
	if (from == PROC_STOPPING && to != PROC_STOPPING)
		ev_timer_stop(sv->loop, &p->stopwait_t);

	switch (act) {
	case ACT_NONE:
	case ACT_REFUSE:
		break;
	case ACT_SPAWN: {
		ev_timer_stop(sv->loop, &p->backoff_t);
		const char *error;
		if (sv_inst_listen(in, &error) == -1) {
			log_warnx("%s: %s", p->name, error);
			return sv_proc_event(p, EV_BIND_FAILED);
		}
		if (proc_spawn(p) == -1)
			return sv_proc_event(p, EV_SPAWN_FAILED);
		if (in->startsecs <= 0)
			return sv_proc_event(p, EV_STARTSECS);
		ev_timer_set(&p->startsecs_t, in->startsecs, 0);
		ev_timer_start(sv->loop, &p->startsecs_t);
		break;
	}
	case ACT_STOP:
		if (p->pid > 0 && kill(p->pid, in->stopsignal) == -1)
			log_warn("kill %ld (%s)", (long)p->pid, p->name);
		ev_timer_set(&p->stopwait_t, in->stopwaitsecs, 0);
		ev_timer_start(sv->loop, &p->stopwait_t);
		break;
	case ACT_KILL:
		log_warnx("killing '%s' (%ld) with SIGKILL", p->name, (long)p->pid);
		if (p->pid > 0 && kill(p->pid, SIGKILL) == -1)
			log_warn("kill %ld (%s)", (long)p->pid, p->name);
		break;
	case ACT_BACKOFF: {
		double d = fsm_backoff_delay(&in->fp, p->fsm.failures);
		log_info("%s: retry %u of %u in %.3gs", p->name, p->fsm.failures,
		    in->fp.startretries, d);
		ev_timer_set(&p->backoff_t, d, 0);
		ev_timer_start(sv->loop, &p->backoff_t);
		break;
	}
	case ACT_CANCEL:
		ev_timer_stop(sv->loop, &p->backoff_t);
		break;
	}
	if (to == PROC_FATAL && from != PROC_FATAL)
		log_warnx("gave up: %s entered FATAL state%s%s%s", p->name,
		    ev == EV_EXIT_CONFIG ? " (configuration error, exit 78)" :
		    ev == EV_BIND_FAILED ? " (" : ", too many start retries too quickly",
		    ev == EV_BIND_FAILED ? in->bind_error : "",
		    ev == EV_BIND_FAILED ? ")" : "");
	if (from != to && (to == PROC_BACKOFF || to == PROC_FATAL || to == PROC_EXITED) &&
	    !in->retired && !inst_can_serve(in))
		inst_unlisten(in);
	return act;
}

int
sv_proc_signal(struct sv_proc *p, int sig)
{
	if (p->pid <= 0 || !fsm_has_child(p->fsm.state))
		return -1;
	if (kill(p->pid, sig) == -1) {
		log_warn("kill %ld (%s)", (long)p->pid, p->name);
		return -1;
	}
	return 0;
}

static void
proc_startsecs_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sv_proc_event(w->data, EV_STARTSECS);
}

static void
proc_stopwait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sv_proc_event(w->data, EV_STOPWAIT_ELAPSED);
}

static void
proc_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sv_proc_event(w->data, EV_BACKOFF_ELAPSED);
}

static void
proc_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	(void)revents;
	struct sv_proc *p = w->data;
	ev_child_stop(loop, w);
	int st = w->rstatus;
	p->pid = 0;
	p->stop_time = time(NULL);
	p->last_status = st;
	p->stats_pending = false;
	/* its last words: the final STATS a listener sends as it exits */
	while (p->notify_fd != -1 && proc_notify_read(p) == 1)
		;
	if (p->notify_fd != -1) {
		ev_io_stop(loop, &p->notify_io);
		close(p->notify_fd);
		p->notify_fd = -1;
	}
	stats_bank(p);
	enum proc_event ev;
	char how[64];
	if (WIFEXITED(st)) {
		int code = WEXITSTATUS(st);
		ev = code == 0 ? EV_EXIT_EXPECTED :
		    code == CHILD_EXIT_CONFIG ? EV_EXIT_CONFIG : EV_EXIT_UNEXPECTED;
		snprintf(how, sizeof(how), "exit status %d", code);
	} else {
		ev = EV_EXIT_UNEXPECTED;
		snprintf(how, sizeof(how), "terminated by %s",
		    sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "signal");
	}
	bool expected = ev == EV_EXIT_EXPECTED || p->fsm.state == PROC_STOPPING;
	log_info("exited: %s (%s; %s)", p->name, how,
	    expected ? "expected" : "not expected");
	sv_proc_event(p, ev);
}

/* "STATS connections=N active=N ..." */
static void
stats_parse(const char *msg, struct child_stats *s)
{
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "connections", offsetof(struct child_stats, connections) },
		{ "active", offsetof(struct child_stats, active) },
		{ "accepted", offsetof(struct child_stats, accepted) },
		{ "relay_refused", offsetof(struct child_stats, relay_refused) },
		{ "refused", offsetof(struct child_stats, refused) },
		{ "bytes", offsetof(struct child_stats, bytes) },
	};
	const char *p = msg;
	while ((p = strchr(p, ' ')) != NULL) {
		p++;
		const char *eq = strchr(p, '=');
		if (eq == NULL)
			break;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			size_t kl = strlen(keys[i].key);
			if ((size_t)(eq - p) == kl && strncmp(p, keys[i].key, kl) == 0)
				*(uint64_t *)((char *)s + keys[i].off) =
				    strtoull(eq + 1, NULL, 10);
		}
	}
}

/* a process's counters join its instance's totals once it is gone (a retired
   instance's go to its successor of the same name) */
static void
stats_bank(struct sv_proc *p)
{
	struct sv_instance *in = p->inst;
	if (in->retired)
		in = sv_instance_find(in->sv, in->name);
	if (in != NULL) {
		in->totals.connections += p->stats.connections;
		in->totals.accepted += p->stats.accepted;
		in->totals.relay_refused += p->stats.relay_refused;
		in->totals.refused += p->stats.refused;
		in->totals.bytes += p->stats.bytes;
	}
	memset(&p->stats, 0, sizeof(p->stats));
}

/* one message from the child's notify socket: 1 handled, 0 none waiting,
   -1 the socket is closed */
static int
proc_notify_read(struct sv_proc *p)
{
	struct ev_loop *loop = p->inst->sv->loop;
	char msg[CHILD_MSG_MAX + 1];
	ssize_t n = recv(p->notify_fd, msg, CHILD_MSG_MAX, MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		if (n == -1)
			log_warn("%s: notify socket", p->name);
		ev_io_stop(loop, &p->notify_io);
		close(p->notify_fd);
		p->notify_fd = -1;
		p->stats_pending = false;
		return -1;
	}
	msg[n] = '\0';
	if (strcmp(msg, CHILD_MSG_READY) == 0) {
		log_info("%s: ready (pid %ld)", p->name, (long)p->pid);
		sv_proc_event(p, EV_READY);
	} else if (strncmp(msg, CHILD_MSG_STATS, strlen(CHILD_MSG_STATS)) == 0) {
		stats_parse(msg, &p->stats);
		p->stats_pending = false;
	} else {
		log_warnx("%s: unknown notify message: %.64s", p->name, msg);
	}
	return 1;
}

static void
proc_notify_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	proc_notify_read(w->data);
}

/* one line of a child's output: its log file, our stderr in -n, tail -f readers */
static void
proc_out_line(struct sv_proc *p, const char *line, size_t len)
{
	struct sv_instance *in = p->inst;
	char buf[sizeof(p->outbuf) + 2];
	memcpy(buf, line, len);
	buf[len] = '\n';
	inst_log_write(in, buf, len + 1);
	if (in->sv->foreground && write(STDERR_FILENO, buf, len + 1) == -1)
		log_warn("write stderr");
	buf[len] = '\0';
	control_log_line(in->sv, in->name, buf);
}

static void
proc_out_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	struct sv_proc *p = w->data;
	ssize_t n = read(p->out_fd, p->outbuf + p->outlen, sizeof(p->outbuf) - p->outlen);
	if (n == -1 && errno == EINTR)
		return;
	/* EAGAIN with no child left means a grandchild holds the pipe: give up */
	if (n == -1 && errno == EAGAIN && p->pid > 0)
		return;
	if (n <= 0) {
		if (n == -1)
			log_warn("read output of %s", p->name);
		if (p->outlen > 0)
			proc_out_line(p, p->outbuf, p->outlen);
		p->outlen = 0;
		ev_io_stop(loop, w);
		close(p->out_fd);
		p->out_fd = -1;
		return;
	}
	p->outlen += (size_t)n;
	size_t start = 0;
	for (size_t i = 0; i < p->outlen; i++) {
		if (p->outbuf[i] == '\n') {
			proc_out_line(p, p->outbuf + start, i - start);
			start = i + 1;
		}
	}
	if (start == 0 && p->outlen == sizeof(p->outbuf)) {
		/* a line longer than the buffer: cut it */
		proc_out_line(p, p->outbuf, p->outlen);
		start = p->outlen;
	}
	memmove(p->outbuf, p->outbuf + start, p->outlen - start);
	p->outlen -= start;
}

/* ---- statistics ---- */

int
sv_stats_request(struct sv *sv, struct sv_instance *only)
{
	int asked = 0;
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
		if (only != NULL && in != only)
			continue;
		for (unsigned i = 0; i < in->n_procs; i++) {
			struct sv_proc *p = &in->procs[i];
			if (p->notify_fd == -1 || p->pid <= 0)
				continue;
			if (send(p->notify_fd, CHILD_MSG_STATS, strlen(CHILD_MSG_STATS),
			    MSG_DONTWAIT | MSG_NOSIGNAL) == -1) {
				log_warn("%s: send STATS", p->name);
				continue;
			}
			p->stats_pending = true;
			asked++;
		}
	}
	return asked;
}

bool
sv_stats_pending(struct sv *sv)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		for (unsigned i = 0; i < in->n_procs; i++)
			if (in->procs[i].stats_pending)
				return true;
	return false;
}

/* ---- housekeeping ---- */

static bool
inst_idle(const struct sv_instance *in)
{
	for (unsigned i = 0; i < in->n_procs; i++) {
		const struct sv_proc *p = &in->procs[i];
		if (p->pid > 0 || fsm_has_child(p->fsm.state) || p->out_fd != -1)
			return false;
	}
	return true;
}

/* the successor of a gracefully restarted instance serves (or gave up) */
static bool
successor_ready(struct sv *sv, const char *name)
{
	struct sv_instance *in = sv_instance_find(sv, name);
	if (in == NULL)
		return true;
	for (unsigned i = 0; i < in->n_procs; i++) {
		const struct sv_proc *p = &in->procs[i];
		if (p->fsm.state == PROC_STARTING && !p->fsm.ready)
			return false;
	}
	return true;
}

static void
inst_stop_all(struct sv_instance *in)
{
	for (unsigned i = 0; i < in->n_procs; i++) {
		struct sv_proc *p = &in->procs[i];
		if (fsm_has_child(p->fsm.state) || p->fsm.state == PROC_BACKOFF)
			sv_proc_event(p, EV_STOP);
	}
}

/* systemd's sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET */
static void
sd_notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (path == NULL || path[0] == '\0')
		return;
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	size_t len = strlen(path);
	if (len >= sizeof(sun.sun_path)) {
		log_warnx("NOTIFY_SOCKET too long");
		return;
	}
	memcpy(sun.sun_path, path, len);
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';	/* abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("socket NOTIFY_SOCKET");
		return;
	}
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) == -1)
		log_warn("sendto NOTIFY_SOCKET %s", path);
	close(fd);
}

/* every autostart process is RUNNING or has given up (FATAL): none is still
   on its way (STARTING, BACKOFF) */
static bool
autostart_settled(struct sv *sv)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
		if (!in->autostart)
			continue;
		for (unsigned i = 0; i < in->n_procs; i++) {
			enum proc_state st = in->procs[i].fsm.state;
			if (st == PROC_STARTING || st == PROC_BACKOFF)
				return false;
		}
	}
	return true;
}

/* systemd's STATUS=: how many processes run, and which failed and why */
static void
sd_status_text(struct sv *sv, char *buf, size_t size)
{
	unsigned running = 0, total = 0;
	size_t off = 0;
	char failed[400] = "";
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
		for (unsigned i = 0; i < in->n_procs; i++) {
			const struct sv_proc *p = &in->procs[i];
			total++;
			if (p->fsm.state == PROC_RUNNING)
				running++;
			if (p->fsm.state != PROC_FATAL && p->fsm.state != PROC_BACKOFF)
				continue;
			int n = snprintf(failed + off, sizeof(failed) - off, "%s%s %s%s%s%s",
			    off ? ", " : "", p->name, fsm_state_name(p->fsm.state),
			    in->bind_error[0] ? " (" : "", in->bind_error,
			    in->bind_error[0] ? ")" : "");
			if (n > 0 && (size_t)n < sizeof(failed) - off)
				off += (size_t)n;
		}
	}
	snprintf(buf, size, "%u of %u processes RUNNING%s%s", running, total,
	    off ? "; " : "", failed);
}

static void
house_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)revents;
	struct sv *sv = w->data;
	for (struct sv_instance **pp = &sv->retired; *pp != NULL; ) {
		struct sv_instance *in = *pp;
		if (in->await_successor && successor_ready(sv, in->name)) {
			in->await_successor = false;
			log_info("%s: successor ready, stopping the old processes", in->name);
			inst_stop_all(in);
		}
		if (!in->await_successor && inst_idle(in)) {
			*pp = in->next;
			log_info("%s: old processes gone", in->name);
			inst_free(in);
			continue;
		}
		pp = &in->next;
	}
	/* READY=1 once no autostart process is still on its way: one FATAL
	   instance must not keep systemd from counting the others as up */
	if (!sv->shutting_down && (sv->sd_notified || autostart_settled(sv))) {
		char status[sizeof(sv->sd_status)], msg[sizeof(status) + 32];
		sd_status_text(sv, status, sizeof(status));
		if (!sv->sd_notified || strcmp(status, sv->sd_status) != 0) {
			snprintf(msg, sizeof(msg), "%sSTATUS=%s",
			    sv->sd_notified ? "" : "READY=1\n", status);
			if (!sv->sd_notified)
				log_info("ready: %s", status);
			sv->sd_notified = true;
			snprintf(sv->sd_status, sizeof(sv->sd_status), "%s", status);
			sd_notify(msg);
		}
	}
	control_state_changed(sv);
	if (sv->shutting_down && sv->retired == NULL) {
		bool idle = true;
		for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
			idle = idle && inst_idle(in);
		if (idle) {
			log_info("every child stopped; exiting");
			ev_prepare_stop(loop, w);
			ev_break(loop, EVBREAK_ALL);
		}
	}
}

void
sv_shutdown(struct sv *sv)
{
	if (sv->shutting_down)
		return;
	sv->shutting_down = true;
	log_info("shutting down");
	sd_notify("STOPPING=1");
	control_stop_listening(sv);
	for (struct sv_instance *in = sv->retired; in != NULL; in = in->next) {
		in->await_successor = false;
		inst_stop_all(in);
	}
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		inst_stop_all(in);
}

/* ---- reload ---- */

static void
out_line(const struct sv_out *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
out_line(const struct sv_out *out, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_info("%s", buf);
	if (out != NULL)
		out->line(out->arg, buf);
}

/* every diagnostic, one line each: to the client as -t prints it
   ("FILE:L:C: error: ..."), to the log with its severity in front, once
   ("error: FILE:L:C: ...", never "warning: ...: error: ...") */
static void
out_diags(const struct sv_out *out, const struct config_diags *d)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	if (fp == NULL) {
		log_warn("open_memstream");
		return;
	}
	config_diags_print(d, fp);
	fclose(fp);
	for (size_t i = 0; i < d->n; i++) {
		const struct config_diag *g = &d->v[i];
		char where[PATH_MAX + 32] = "";
		if (g->mark.file != NULL)
			snprintf(where, sizeof(where), "%s:%u:%u: ", g->mark.file,
			    g->mark.line, g->mark.column);
		if (g->warning)
			log_warnx("%s%s", where, g->message);
		else
			log_errorx("%s%s", where, g->message);
	}
	for (char *line = text, *nl; out != NULL && line != NULL && *line != '\0';
	    line = nl) {
		nl = strchr(line, '\n');
		if (nl != NULL)
			*nl++ = '\0';
		out->line(out->arg, line);
	}
	free(text);
}

/* "ERROR: CANT_REREAD: ..." is the client's wording; the log has its own prefix */
static const char *
strip_error(const char *e)
{
	return strncmp(e, "ERROR: ", 7) == 0 ? e + 7 : e;
}

static void
inst_retire(struct sv *sv, struct sv_instance *in, bool await_successor)
{
	in->retired = true;
	in->cfg = NULL;
	in->fp.autorestart = AUTORESTART_FALSE;
	in->await_successor = await_successor;
	for (unsigned i = 0; i < in->n_procs; i++) {
		struct sv_proc *p = &in->procs[i];
		/* nothing to wait for when no child serves */
		if (!fsm_has_child(p->fsm.state))
			sv_proc_event(p, EV_STOP);
	}
	if (!await_successor)
		inst_stop_all(in);
	in->next = sv->retired;
	sv->retired = in;
}

static bool
inst_running_any(const struct sv_instance *in)
{
	for (unsigned i = 0; i < in->n_procs; i++)
		if (fsm_has_child(in->procs[i].fsm.state))
			return true;
	return false;
}

int
sv_reload(struct sv *sv, bool dry_run, const struct sv_out *out, const char **error_r)
{
	static char err[256];
	if (sv->shutting_down) {
		*error_r = "ERROR: shutting down";
		return -1;
	}
	struct config_diags diags = { 0 };
	struct config *ncfg = config_load_dir(sv->confdir, &diags);
	if (ncfg == NULL || diags.n_errors > 0) {
		out_diags(out, &diags);
		snprintf(err, sizeof(err), "ERROR: CANT_REREAD: %zu error%s in %s",
		    diags.n_errors, diags.n_errors == 1 ? "" : "s", sv->confdir);
		if (diags.n_errors == 0)
			snprintf(err, sizeof(err), "ERROR: CANT_REREAD: cannot read %s",
			    sv->confdir);
		config_diags_free(&diags);
		if (ncfg != NULL)
			config_free(ncfg);
		*error_r = err;
		return -1;
	}
	if (diags.n_warnings > 0)
		out_diags(out, &diags);
	config_diags_free(&diags);

	size_t nchanges = 0;
	if (dry_run) {
		for (size_t i = 0; i < ncfg->n_instances; i++) {
			const struct instance *ni = &ncfg->instances[i];
			struct sv_instance *in = sv_instance_find(sv, ni->name);
			if (in == NULL) {
				out_line(out, "%s: available", ni->name);
				nchanges++;
			} else if (!config_instance_equal(sv->cfg, in->cfg, ncfg, ni)) {
				out_line(out, "%s: changed", ni->name);
				nchanges++;
			}
		}
		for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
			if (config_instance(ncfg, in->name) == NULL) {
				out_line(out, "%s: disappeared", in->name);
				nchanges++;
			}
		}
		if (nchanges == 0)
			out_line(out, "No config updates to processes");
		config_free(ncfg);
		return 0;
	}

	/* phase 1: bind what the new and changed instances need; any failure
	   leaves everything as it was */
	struct sv_instance **fresh = xcalloc(ncfg->n_instances, sizeof(*fresh));
	for (size_t i = 0; i < ncfg->n_instances; i++) {
		const struct instance *ni = &ncfg->instances[i];
		struct sv_instance *old = sv_instance_find(sv, ni->name);
		if (old != NULL && config_instance_equal(sv->cfg, old->cfg, ncfg, ni))
			continue;
		fresh[i] = inst_new(sv, ni, old, false, error_r);
		if (fresh[i] == NULL) {
			snprintf(err, sizeof(err), "ERROR: %s: %s", ni->name, *error_r);
			for (size_t j = 0; j < i; j++)
				if (fresh[j] != NULL)
					inst_free(fresh[j]);
			free(fresh);
			config_free(ncfg);
			*error_r = err;
			log_errorx("reload refused, nothing changed: %s",
			    strip_error(err));
			return -1;
		}
	}

	/* phase 2: removed instances stop now */
	for (struct sv_instance **pp = &sv->instances; *pp != NULL; ) {
		struct sv_instance *in = *pp;
		if (config_instance(ncfg, in->name) != NULL) {
			pp = &in->next;
			continue;
		}
		*pp = in->next;
		bool was = inst_running_any(in);
		inst_retire(sv, in, false);
		if (was)
			out_line(out, "%s: stopped", in->name);
		out_line(out, "%s: removed process group", in->name);
		nchanges++;
	}

	/* phase 3: the new list in config order; changed ones hand over */
	struct sv_instance *head = NULL, **tail = &head;
	for (size_t i = 0; i < ncfg->n_instances; i++) {
		const struct instance *ni = &ncfg->instances[i];
		struct sv_instance *old = sv_instance_find(sv, ni->name);
		struct sv_instance *in;
		if (fresh[i] == NULL) {
			in = old;	/* unchanged: same processes, new config pointers */
			inst_set_params(in, ni);
		} else {
			in = fresh[i];
			if (old != NULL) {
				/* unlink old from the live list before retiring it */
				for (struct sv_instance **pp = &sv->instances; *pp != NULL;
				    pp = &(*pp)->next) {
					if (*pp == old) {
						*pp = old->next;
						break;
					}
				}
				inst_retire(sv, old, inst_running_any(old));
				out_line(out, "%s: updated process group", ni->name);
			} else {
				out_line(out, "%s: added process group", ni->name);
			}
			nchanges++;
		}
		/* take it out of the old list (unchanged ones are still there) */
		for (struct sv_instance **pp = &sv->instances; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == in) {
				*pp = in->next;
				break;
			}
		}
		in->next = NULL;
		*tail = in;
		tail = &in->next;
	}
	free(fresh);
	struct config *old_cfg = sv->cfg;
	sv->instances = head;
	sv->cfg = ncfg;
	bool logs_moved = strcmp(old_cfg->server.logs, ncfg->server.logs) != 0;
	config_free(old_cfg);
	audit_log_config(sv->cfg);
	if (logs_moved)
		sv_reopen_logs(sv);
	/* start after the swap: children get the new snapshot */
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
		for (unsigned i = 0; i < in->n_procs; i++) {
			struct sv_proc *p = &in->procs[i];
			if (in->autostart && p->fsm.state == PROC_STOPPED && p->stop_time == 0
			    && p->pid == 0)
				sv_proc_event(p, EV_START);
		}
	}
	if (nchanges == 0)
		out_line(out, "No config updates to processes");
	return 0;
}

/* ---- start-up ---- */

static void
sig_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	struct sv *sv = w->data;
	if (w->signum == SIGUSR2) {
		log_info("SIGUSR2: reopening the logs");
		sv_reopen_logs(sv);
		return;
	}
	if (w->signum == SIGHUP) {
		log_info("SIGHUP: reloading %s", sv->confdir);
		const char *error;
		if (sv_reload(sv, false, NULL, &error) == -1)
			log_errorx("reload failed, nothing changed: %s",
			    strip_error(error));
		return;
	}
	log_info("received %s", sigabbrev_np(w->signum));
	sv_shutdown(sv);
}

static int
sv_setup_user(struct sv *sv, const char **error_r)
{
	static char err[256];
	const char *user = sv->cfg->server.user;
	if (geteuid() != 0) {
		if (user != NULL) {
			struct passwd *pw = getpwnam(user);
			if (pw == NULL || pw->pw_uid != geteuid())
				log_warnx("not root: server.user %s ignored, children "
				    "keep uid %ld", user, (long)geteuid());
		}
		return 0;
	}
	if (user == NULL) {
		user = "nobody";
		log_warnx("running as root without server.user: children run as %s",
		    user);
	}
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, sizeof(err), "server.user %s: no such user", user);
		*error_r = err;
		return -1;
	}
	sv->switch_user = pw->pw_uid != 0;
	sv->run_user = xstrdup(user);
	sv->run_uid = pw->pw_uid;
	sv->run_gid = pw->pw_gid;
	return 0;
}

/*
 * The directories root keeps: the spool (spool_prepare: root's, its tmp the
 * listeners'), the logs (root's: listeners never write there, their output comes
 * through pipes) and the control socket's. Existing ones are checked, never
 * chowned (common/fsdir.h).
 */
static int
sv_setup_dirs(struct sv *sv, const char **error_r)
{
	static char err[PATH_MAX + 300];
	const struct server *s = &sv->cfg->server;
	uid_t uid = sv->switch_user ? sv->run_uid : geteuid();
	gid_t gid = sv->switch_user ? sv->run_gid : getegid();
	const char *e;
	if (spool_prepare(s->spool, uid, gid, &e) == -1) {
		snprintf(err, sizeof(err), "spool: %s", e);
		*error_r = err;
		return -1;
	}
	if (sv_logs_setup(sv, s->logs, &e) == -1) {
		snprintf(err, sizeof(err), "logs: %s", e);
		*error_r = err;
		return -1;
	}
	char *cdir = dir_of(s->control);
	int r = fsdir_ensure(cdir, geteuid(), getegid(), 0755, NULL, &e);
	if (r == -1)
		snprintf(err, sizeof(err), "control: %s", e);
	free(cdir);
	if (r == -1) {
		*error_r = err;
		return -1;
	}
	return 0;
}

/*
 * One supervisor per configuration: relayvisord.pid next to the control socket,
 * flock()ed for our whole life. A second relayvisord finds it locked and stops
 * before binding anything; a pid file left by a kill -9 is not locked and is
 * simply replaced. The file is written whole under a temporary name, locked,
 * then renamed into place, so a reader never sees it empty. The check and the
 * rename happen under a lock of the directory, so two supervisors starting at
 * once cannot both pass the check.
 */
static int
sv_lock(struct sv *sv, const char **error_r)
{
	static char err[PATH_MAX + 128];
	char *dir = dir_of(sv->cfg->server.control);
	char *tmp = NULL;
	if (asprintf(&sv->pidfile, "%s/relayvisord.pid", dir) == -1 ||
	    asprintf(&tmp, "%s/.relayvisord.pid.%ld", dir, (long)getpid()) == -1)
		fatal("asprintf");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1 || flock(dfd, LOCK_EX) == -1) {
		snprintf(err, sizeof(err), "lock %s: %s", dir, strerror(errno));
		goto fail;
	}
	int fd = open(sv->pidfile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1 && errno != ENOENT) {
		snprintf(err, sizeof(err), "open %s: %s", sv->pidfile, strerror(errno));
		goto fail;
	}
	if (fd != -1) {
		char old[32] = "";
		ssize_t n = read(fd, old, sizeof(old) - 1);
		old[n > 0 ? n : 0] = '\0';
		old[strcspn(old, "\n")] = '\0';
		if (flock(fd, LOCK_SH | LOCK_NB) == -1) {
			int e = errno;
			close(fd);
			if (e == EWOULDBLOCK)
				snprintf(err, sizeof(err), "already running (pid %s, %s)",
				    old[0] != '\0' ? old : "unknown", sv->cfg->server.control);
			else
				snprintf(err, sizeof(err), "flock %s: %s", sv->pidfile,
				    strerror(e));
			goto fail;
		}
		close(fd);
		log_warnx("stale pid file %s (pid %s, not running): replacing it",
		    sv->pidfile, old[0] != '\0' ? old : "unknown");
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (fd == -1 || flock(fd, LOCK_EX | LOCK_NB) == -1 ||
	    write(fd, buf, (size_t)len) != len || rename(tmp, sv->pidfile) == -1) {
		snprintf(err, sizeof(err), "write %s: %s", sv->pidfile, strerror(errno));
		if (fd != -1) {
			unlink(tmp);
			close(fd);
		}
		goto fail;
	}
	sv->pid_fd = fd;
	close(dfd);
	free(dir);
	free(tmp);
	return 0;
fail:
	if (dfd != -1)
		close(dfd);
	free(dir);
	free(tmp);
	free(sv->pidfile);
	sv->pidfile = NULL;
	*error_r = err;
	return -1;
}

static void
sv_find_smtpd(struct sv *sv)
{
	/* documented override, e.g. for a wrapper or a test double */
	const char *env = getenv("RELAYVISOR_SMTPD");
	if (env != NULL && env[0] != '\0') {
		snprintf(sv->smtpd_path, sizeof(sv->smtpd_path), "%s", env);
		return;
	}
	char self[PATH_MAX - 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n == -1) {
		log_warn("readlink /proc/self/exe");
		snprintf(sv->smtpd_path, sizeof(sv->smtpd_path), "relayvisor-smtpd");
		return;
	}
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash != NULL)
		*slash = '\0';
	snprintf(sv->smtpd_path, sizeof(sv->smtpd_path), "%s/relayvisor-smtpd", self);
}

struct sv *
sv_new(const char *confdir, bool foreground, const char **error_r)
{
	struct sv *sv = xcalloc(1, sizeof(*sv));
	sv->confdir = xstrdup(confdir);
	sv->foreground = foreground;
	sv->control_fd = -1;
	sv->pid_fd = -1;
	sv->logs_fd = -1;
	sv->pid = getpid();
	struct config_diags diags = { 0 };
	sv->cfg = config_load_dir(confdir, &diags);
	if (diags.n > 0)
		config_diags_print(&diags, stderr);
	if (sv->cfg == NULL || diags.n_errors > 0) {
		config_diags_free(&diags);
		*error_r = "invalid configuration";
		sv_free(sv);
		return NULL;
	}
	config_diags_free(&diags);
	sv_find_smtpd(sv);
	if (sv_setup_user(sv, error_r) == -1 || sv_setup_dirs(sv, error_r) == -1 ||
	    sv_lock(sv, error_r) == -1) {
		sv_free(sv);
		return NULL;
	}
	struct sv_instance **tail = &sv->instances;
	for (size_t i = 0; i < sv->cfg->n_instances; i++) {
		struct sv_instance *in = inst_new(sv, &sv->cfg->instances[i], NULL, true,
		    error_r);
		if (in == NULL) {
			sv_free(sv);
			return NULL;
		}
		*tail = in;
		tail = &in->next;
	}
	sv->control_path = xstrdup(sv->cfg->server.control);
	sv->control_fd = sock_control(sv->control_path, sv->cfg->server.control_group,
	    error_r);
	if (sv->control_fd == -1) {
		sv_free(sv);
		return NULL;
	}
	return sv;
}

void
sv_run(struct sv *sv)
{
	sv->pid = getpid();
	sv->loop = ev_default_loop(EVFLAG_AUTO);
	if (sv->loop == NULL)
		fatalx("cannot initialise libev");
	signal(SIGPIPE, SIG_IGN);
	ev_signal_init(&sv->sigterm_w, sig_cb, SIGTERM);
	ev_signal_init(&sv->sigint_w, sig_cb, SIGINT);
	ev_signal_init(&sv->sighup_w, sig_cb, SIGHUP);
	sv->sigterm_w.data = sv->sigint_w.data = sv->sighup_w.data = sv;
	ev_signal_start(sv->loop, &sv->sigterm_w);
	ev_signal_start(sv->loop, &sv->sigint_w);
	ev_signal_start(sv->loop, &sv->sighup_w);
	ev_signal_init(&sv->sigusr2_w, sig_cb, SIGUSR2);
	sv->sigusr2_w.data = sv;
	ev_signal_start(sv->loop, &sv->sigusr2_w);
	ev_prepare_init(&sv->house_w, house_cb);
	sv->house_w.data = sv;
	ev_prepare_start(sv->loop, &sv->house_w);
	control_start(sv);
	log_info("relayvisord %s started with pid %ld, %zu instance%s, listener %s",
	    RELAYVISOR_VERSION, (long)sv->pid, sv->cfg->n_instances,
	    sv->cfg->n_instances == 1 ? "" : "s", sv->smtpd_path);
	audit_log_config(sv->cfg);
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		if (in->autostart)
			for (unsigned i = 0; i < in->n_procs; i++)
				sv_proc_event(&in->procs[i], EV_START);
	ev_run(sv->loop, 0);
	control_stop_listening(sv);
}

void
sv_control_closed(struct sv *sv)
{
	sv->control_fd = -1;
}

void
sv_free(struct sv *sv)
{
	if (sv == NULL)
		return;
	while (sv->instances != NULL) {
		struct sv_instance *in = sv->instances;
		sv->instances = in->next;
		inst_free(in);
	}
	while (sv->retired != NULL) {
		struct sv_instance *in = sv->retired;
		sv->retired = in->next;
		inst_free(in);
	}
	if (sv->control_fd != -1)
		close(sv->control_fd);
	/* still holding the lock: the file is ours to remove */
	if (sv->pid_fd != -1) {
		if (unlink(sv->pidfile) == -1)
			log_warn("unlink %s", sv->pidfile);
		close(sv->pid_fd);
	}
	if (sv->logs_fd != -1)
		close(sv->logs_fd);
	free(sv->logs_path);
	if (sv->cfg != NULL)
		config_free(sv->cfg);
	free(sv->confdir);
	free(sv->run_user);
	free(sv->control_path);
	free(sv->pidfile);
	free(sv);
}
