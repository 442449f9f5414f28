/*
 * relayvisord's core (see super.h): start-up (configuration, the directories
 * root trusts, the user children switch to, the pid file, the services of every
 * kind in the service table), the housekeeping pass of every loop iteration
 * (retired services, systemd readiness and STATUS=, the end of a shutdown, the
 * observers), and the accessors the control server uses.
 *
 * Housekeeping that may free things runs from an ev_prepare watcher, once per
 * loop iteration, never from inside a state transition.
 */
#include "supervisor/super_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/fsdir.h"
#include "common/log.h"
#include "common/spool.h"
#include "common/xmalloc.h"
#include "profiles/audit.h"
#include "supervisor/sockets.h"


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
		if (!in->sp.autostart)
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
	if (sv->obs.changed != NULL)
		sv->obs.changed(sv->obs.arg);
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
	if (sv->obs.stopping != NULL)
		sv->obs.stopping(sv->obs.arg);
	for (struct sv_instance *in = sv->retired; in != NULL; in = in->next) {
		in->await_successor = false;
		inst_stop_all(in);
	}
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		inst_stop_all(in);
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
	/* delivery.local: maildir:PREFIX/%d/%u: the fixed prefix belongs to the
	   user the delivery agents run as (created 0700, or checked) */
	const char *loc = sv->cfg->delivery.configured ? sv->cfg->delivery.local : NULL;
	if (loc != NULL && strncmp(loc, "maildir:", 8) == 0) {
		char *base = xstrdup(loc + 8);
		char *pct = strchr(base, '%');
		if (pct != NULL)
			*pct = '\0';
		char *slash = strrchr(base, '/');
		if (slash != NULL && slash != base)
			*slash = '\0';
		r = slash != NULL ? fsdir_ensure(base, uid, gid, 0700, NULL, &e) : 0;
		if (r == -1)
			snprintf(err, sizeof(err), "delivery.local: %s", e);
		free(base);
		if (r == -1) {
			*error_r = err;
			return -1;
		}
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

/* the directory of relayvisord: the kinds' programs are beside it */
static void
sv_find_bindir(struct sv *sv)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n == -1) {
		log_warn("readlink /proc/self/exe");
		sv->bindir[0] = '\0';
		return;
	}
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash != NULL)
		*slash = '\0';
	snprintf(sv->bindir, sizeof(sv->bindir), "%s", self);
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
	sv->wake_fds[0] = sv->wake_fds[1] = -1;
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
	sv_find_bindir(sv);
	if (sv_setup_user(sv, error_r) == -1 || sv_setup_dirs(sv, error_r) == -1 ||
	    sv_lock(sv, error_r) == -1 || spool_wake_pipe(sv->wake_fds, error_r) == -1) {
		sv_free(sv);
		return NULL;
	}
	struct sv_instance **tail = &sv->instances;
	for (size_t k = 0; svc_kinds[k] != NULL; k++) {
		const struct svc_kind *kind = svc_kinds[k];
		size_t n = kind->count(sv->cfg);
		for (size_t i = 0; i < n; i++) {
			struct svc_params sp;
			kind->params(sv->cfg, i, &sp);
			struct sv_instance *in = inst_new(sv, kind, &sp, NULL, true,
			    error_r);
			if (in == NULL) {
				sv_free(sv);
				return NULL;
			}
			*tail = in;
			tail = &in->next;
		}
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
	if (sv->obs.started != NULL)
		sv->obs.started(sv->obs.arg);
	char listener[PATH_MAX];
	sv_program_path(sv, svc_kinds[0], listener, sizeof(listener));
	log_info("relayvisord %s started with pid %ld, %zu instance%s, listener %s",
	    RELAYVISOR_VERSION, (long)sv->pid, sv->cfg->n_instances,
	    sv->cfg->n_instances == 1 ? "" : "s", listener);
	audit_log_config(sv->cfg);
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		if (in->sp.autostart)
			for (unsigned i = 0; i < in->n_procs; i++)
				sv_proc_event(&in->procs[i], EV_START);
	ev_run(sv->loop, 0);
	if (sv->obs.stopping != NULL)
		sv->obs.stopping(sv->obs.arg);
}

void
sv_observe(struct sv *sv, const struct sv_observer *obs)
{
	sv->obs = *obs;
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
	for (int i = 0; i < 2; i++)
		if (sv->wake_fds[i] != -1)
			close(sv->wake_fds[i]);
	free(sv->logs_path);
	if (sv->cfg != NULL)
		config_free(sv->cfg);
	free(sv->confdir);
	free(sv->run_user);
	free(sv->control_path);
	free(sv->pidfile);
	free(sv);
}


int
sv_queue_request(struct sv *sv, const char *verb, const char *arg, uint32_t *id_r,
    const char **error_r)
{
	struct sv_proc *q = sv_proc_find(sv, "qmgr");
	if (q == NULL || !sv_proc_serving(q)) {
		*error_r = "no queue manager running (delivery: not configured, or qmgr "
		    "not ready)";
		return -1;
	}
	uint32_t id = ++sv->qnext;
	size_t k = id % (sizeof(sv->qanswers) / sizeof(sv->qanswers[0]));
	sv->qanswers[k].id = 0;
	char msg[CHILD_MSG_MAX];
	int n = snprintf(msg, sizeof(msg), "%s %u %s%s%s", CHILD_MSG_QUEUE, id, verb,
	    arg != NULL ? " " : "", arg != NULL ? arg : "");
	if (n < 0 || (size_t)n >= sizeof(msg) ||
	    send(q->notify_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
		*error_r = "cannot reach the queue manager";
		return -1;
	}
	*id_r = id;
	return 0;
}

bool
sv_queue_answer(struct sv *sv, uint32_t id, int *code_r, char *text, size_t len)
{
	size_t k = id % (sizeof(sv->qanswers) / sizeof(sv->qanswers[0]));
	if (id == 0 || sv->qanswers[k].id != id)
		return false;
	*code_r = sv->qanswers[k].code;
	snprintf(text, len, "%s", sv->qanswers[k].text);
	sv->qanswers[k].id = 0;
	return true;
}
