/*
 * Services and their processes: a service's listening sockets (when its kind has
 * any; shared with its predecessor across a reload so the backlog carries over),
 * fork and exec of its kind's program the childproto.h way, and the actions of
 * the state machine (fsm.c): spawn, signal, timers, exits. Whatever the kind:
 * what differs between kinds is data in the service table (service.h).
 */
#include "supervisor/super_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/childproto.h"
#include "common/confine.h"
#include "common/log.h"
#include "common/sock.h"
#include "common/xmalloc.h"

static void proc_child_cb(struct ev_loop *loop, ev_child *w, int revents);
static void proc_startsecs_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void proc_stopwait_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void proc_backoff_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- instances ---- */

void
inst_set_params(struct sv_instance *in, const struct svc_params *sp)
{
	in->sp = *sp;
	in->configured = true;
}

void
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
		if (p->peer_fd != -1)
			close(p->peer_fd);
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
struct sv_instance *
inst_new(struct sv *sv, const struct svc_kind *kind, const struct svc_params *sp,
    const struct sv_instance *old, bool lenient, const char **error_r)
{
	struct sv_instance *in = xcalloc(1, sizeof(*in));
	in->sv = sv;
	in->kind = kind;
	in->name = xstrdup(sp->name);
	in->log_fd = -1;
	inst_set_params(in, sp);
	size_t n_listen = kind->sockets ? sp->n_listen : 0;
	in->n_fds = n_listen;
	in->fds = xcalloc(n_listen + 1, sizeof(int));
	in->addrs = xcalloc(n_listen + 1, sizeof(struct sockaddr_storage));
	for (size_t i = 0; i < in->n_fds; i++)
		in->fds[i] = -1;
	for (size_t i = 0; i < n_listen; i++) {
		const struct listen_addr *la = &sp->listen[i];
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
	if (old != NULL && old->kind == kind)
		in->totals = old->totals;	/* stats go on across a reload */
	in->n_procs = sp->procs > 0 ? sp->procs : 1;
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
		p->peer_fd = -1;
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
		if (in->fds[i] != -1 || !in->configured || i >= in->sp.n_listen)
			continue;
		in->fds[i] = sock_listen(&in->sp.listen[i], error_r);
		if (in->fds[i] == -1) {
			snprintf(in->bind_error, sizeof(in->bind_error), "%s", *error_r);
			return -1;
		}
		log_info("%s: listening on %s again", in->name, in->sp.listen[i].text);
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

/* In the child between fork and exec: only plain system calls, then exec. */
static void __attribute__((noreturn))
child_exec(struct sv *sv, struct sv_proc *p, const char *path, int cfgfd, int notifyfd,
    int outfd, const struct svc_fd *extra, int n_extra)
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
	   listening sockets 3..3+n-1, config n+3, notify n+4, the kind's extra
	   descriptors n+5.., output on 1 and 2 */
	int n = (int)in->n_fds;
	int high = n + 16 + SVC_FDS_MAX;
	int src[n + 3 + SVC_FDS_MAX];
	for (int i = 0; i < n; i++)
		src[i] = in->fds[i];
	src[n] = cfgfd;
	src[n + 1] = notifyfd;
	for (int i = 0; i < n_extra; i++)
		src[n + 2 + i] = extra[i].fd;
	src[n + 2 + n_extra] = outfd;
	for (int i = 0; i < n + 3 + n_extra; i++) {
		src[i] = fcntl(src[i], F_DUPFD, high);
		if (src[i] == -1)
			_exit(127);
	}
	int devnull = open("/dev/null", O_RDONLY);
	if (devnull != -1 && devnull != 0) {
		dup2(devnull, 0);
		close(devnull);
	}
	if (dup2(src[n + 2 + n_extra], 1) == -1 || dup2(src[n + 2 + n_extra], 2) == -1)
		_exit(127);
	for (int i = 0; i < n + 2 + n_extra; i++)
		if (dup2(src[i], 3 + i) == -1)
			_exit(127);
	close_range((unsigned)(n + 5 + n_extra), ~0U, 0);

	/* a clean environment: what childproto.h defines, a PATH, and the
	   sanitizers' options; nothing else of ours reaches the child */
	char e_fds[32], e_pid[32], e_cfg[64], e_notify[64], e_user[128];
	char e_extra[SVC_FDS_MAX][96];
	char *envp[16 + SVC_FDS_MAX];
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
	for (int i = 0; i < n_extra; i++) {
		snprintf(e_extra[i], sizeof(e_extra[i]), "%s=%d", extra[i].env, n + 5 + i);
		envp[ne++] = e_extra[i];
	}
	if (sv->switch_user && in->kind->confine.user) {
		snprintf(e_user, sizeof(e_user), "%s=%s", CONFINE_ENV_USER, sv->run_user);
		envp[ne++] = e_user;
	}
	static const char *const pass[] = { "TZ=", "ASAN_OPTIONS=", "UBSAN_OPTIONS=",
	    "LSAN_OPTIONS=" };
	for (char **e = environ; *e != NULL && ne < 15 + SVC_FDS_MAX; e++)
		for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
			if (strncmp(*e, pass[i], strlen(pass[i])) == 0)
				envp[ne++] = *e;
	envp[ne] = NULL;

	/* executed as root when we are: the child opens what it needs, then
	   confines itself (common/confine.h); no exec may ever gain privileges */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 ||
	    prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != sv->pid)
		_exit(127);
	char *argv[] = { (char *)in->kind->program, "--instance", in->name, NULL };
	if (!in->kind->instance_arg)
		argv[1] = NULL;
	execve(path, argv, envp);
	fprintf(stderr, "relayvisord: exec %s: %s\n", path, strerror(errno));
	_exit(127);
}

/* the supervisor's copies of descriptors made for one child only */
static void
extra_close(const struct svc_fd *extra, int n)
{
	for (int i = 0; i < n; i++)
		if (extra[i].close_after)
			close(extra[i].fd);
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
	char path[PATH_MAX];
	sv_program_path(sv, in->kind, path, sizeof(path));
	struct svc_fd extra[SVC_FDS_MAX];
	int n_extra = 0;
	if (in->kind->fds != NULL &&
	    (n_extra = in->kind->fds(sv, p, extra, SVC_FDS_MAX)) == -1)
		return -1;
	int cfgfd = config_source_memfd(sv->cfg->source, &error);
	if (cfgfd == -1) {
		log_warnx("%s: configuration snapshot: %s", p->name, error);
		extra_close(extra, n_extra);
		return -1;
	}
	int sp[2], out[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1) {
		log_warn("%s: socketpair", p->name);
		close(cfgfd);
		extra_close(extra, n_extra);
		return -1;
	}
	if (pipe2(out, O_CLOEXEC) == -1) {
		log_warn("%s: pipe", p->name);
		close(cfgfd);
		close(sp[0]);
		close(sp[1]);
		extra_close(extra, n_extra);
		return -1;
	}
	pid_t pid = fork();
	if (pid == -1) {
		log_warn("%s: fork", p->name);
		close(cfgfd);
		close(sp[0]);
		close(sp[1]);
		close(out[0]);
		close(out[1]);
		extra_close(extra, n_extra);
		return -1;
	}
	if (pid == 0)
		child_exec(sv, p, path, cfgfd, sp[1], out[1], extra, n_extra);
	extra_close(extra, n_extra);
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
	sv_tls_hand(p);
	sv_auth_hand(p);
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
	enum proc_action act = fsm_step(&p->fsm, ev, &in->sp.fp);
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
		if (in->sp.startsecs <= 0)
			return sv_proc_event(p, EV_STARTSECS);
		ev_timer_set(&p->startsecs_t, in->sp.startsecs, 0);
		ev_timer_start(sv->loop, &p->startsecs_t);
		break;
	}
	case ACT_STOP:
		if (p->pid > 0 && kill(p->pid, in->sp.stopsignal) == -1)
			log_warn("kill %ld (%s)", (long)p->pid, p->name);
		ev_timer_set(&p->stopwait_t, in->sp.stopwaitsecs, 0);
		ev_timer_start(sv->loop, &p->stopwait_t);
		break;
	case ACT_KILL:
		log_warnx("killing '%s' (%ld) with SIGKILL", p->name, (long)p->pid);
		if (p->pid > 0 && kill(p->pid, SIGKILL) == -1)
			log_warn("kill %ld (%s)", (long)p->pid, p->name);
		break;
	case ACT_BACKOFF: {
		double d = fsm_backoff_delay(&in->sp.fp, p->fsm.failures);
		log_info("%s: retry %u of %u in %.3gs", p->name, p->fsm.failures,
		    in->sp.fp.startretries, d);
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

bool
sv_proc_serving(const struct sv_proc *p)
{
	return p->pid > 0 && p->notify_fd != -1 && p->fsm.ready &&
	    (p->fsm.state == PROC_STARTING || p->fsm.state == PROC_RUNNING);
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
	if (p->inst->kind->exited != NULL)
		p->inst->kind->exited(p->inst->sv, p);
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


void
inst_stop_all(struct sv_instance *in)
{
	for (unsigned i = 0; i < in->n_procs; i++) {
		struct sv_proc *p = &in->procs[i];
		if (fsm_has_child(p->fsm.state) || p->fsm.state == PROC_BACKOFF)
			sv_proc_event(p, EV_STOP);
	}
}

bool
inst_running_any(const struct sv_instance *in)
{
	for (unsigned i = 0; i < in->n_procs; i++)
		if (fsm_has_child(in->procs[i].fsm.state))
			return true;
	return false;
}

/* the kind's documented override (e.g. RELAYVISOR_SMTPD, for a wrapper or a
   test double), else its program next to relayvisord */
void
sv_program_path(const struct sv *sv, const struct svc_kind *kind, char *buf, size_t size)
{
	const char *env = kind->path_env != NULL ? getenv(kind->path_env) : NULL;
	if (env != NULL && env[0] != '\0')
		snprintf(buf, size, "%s", env);
	else if (sv->bindir[0] != '\0')
		snprintf(buf, size, "%s/%s", sv->bindir, kind->program);
	else
		snprintf(buf, size, "%s", kind->program);
}
