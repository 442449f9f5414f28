/*
 * What comes from the children: the notify socket (READY, STATS: common/
 * childproto.h, parsed with the kind's field table), their stdout/stderr pipes
 * cut into lines for logs/<name>.log, our stderr in -n mode and `tail -f`, and
 * the log files themselves (opened through root's directory descriptor, rotated
 * at log_max_bytes).
 */
#include "supervisor/super_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/childproto.h"
#include "common/fsdir.h"
#include "common/log.h"
#include "common/xmalloc.h"

/* ---- logs ---- */

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
void
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
int
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


/* whole lines into the log in as few writes as rotation allows: the file is
   rotated after the line that reaches log_max_bytes, as with one line a write */
static void
inst_log_write_lines(struct sv_instance *in, const char *buf, size_t len)
{
	uint64_t max = in->sv->cfg->server.log_max_bytes;
	while (len > 0) {
		size_t n = len;
		if (max > 0 && in->log_fd != -1 && in->log_size + len >= max) {
			size_t room = in->log_size < max ? (size_t)(max - in->log_size) : 1;
			const char *nl = memchr(buf + room - 1, '\n', len - (room - 1));
			n = nl != NULL ? (size_t)(nl - buf) + 1 : len;
		}
		inst_log_write(in, buf, n);
		buf += n;
		len -= n;
	}
}

/* ---- the notify socket and the output pipes ---- */
/* a process's counters join its instance's totals once it is gone (a retired
   instance's go to its successor of the same name) */
void
stats_bank(struct sv_proc *p)
{
	struct sv_instance *in = p->inst;
	if (in->retired)
		in = sv_instance_find(in->sv, in->name);
	if (in != NULL)
		childproto_stats_add(in->kind->stats, &in->totals, &p->stats, true);
	memset(&p->stats, 0, sizeof(p->stats));
}

int
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
		if (p->inst->kind->ready != NULL && p->notify_fd != -1)
			p->inst->kind->ready(p->inst->sv, p);
	} else if (strncmp(msg, CHILD_MSG_QUEUE " ", strlen(CHILD_MSG_QUEUE) + 1) == 0) {
		struct sv *sv = p->inst->sv;
		unsigned long id;
		int code, off = 0;
		if (sscanf(msg + strlen(CHILD_MSG_QUEUE) + 1, "%lu %d %n", &id, &code, &off) >= 2 &&
		    off > 0) {
			size_t k = id % (sizeof(sv->qanswers) / sizeof(sv->qanswers[0]));
			sv->qanswers[k].id = (uint32_t)id;
			sv->qanswers[k].code = code;
			snprintf(sv->qanswers[k].text, sizeof(sv->qanswers[k].text), "%s",
			    msg + strlen(CHILD_MSG_QUEUE) + 1 + off);
		}
	} else if (childproto_stats_parse(msg, p->inst->kind->stats, &p->stats) == 0) {
		p->stats_pending = false;
	} else {
		log_warnx("%s: unknown notify message: %.64s", p->name, msg);
	}
	return 1;
}

void
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
	if (in->sv->obs.log_line != NULL)
		in->sv->obs.log_line(in->sv->obs.arg, in->name, buf);
}

void
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
	/* the whole lines of this read go to the files in one write each (a busy
	   child sends several per pass); tail -f readers still get them one by one */
	const char *last = memrchr(p->outbuf, '\n', p->outlen);
	size_t start = last == NULL ? 0 : (size_t)(last - p->outbuf) + 1;
	if (start > 0) {
		struct sv_instance *in = p->inst;
		inst_log_write_lines(in, p->outbuf, start);
		if (in->sv->foreground && write(STDERR_FILENO, p->outbuf, start) == -1)
			log_warn("write stderr");
		for (size_t i = 0, b = 0; in->sv->obs.log_line != NULL && i < start; i++) {
			if (p->outbuf[i] == '\n') {
				char line[sizeof(p->outbuf) + 1];
				memcpy(line, p->outbuf + b, i - b);
				line[i - b] = '\0';
				in->sv->obs.log_line(in->sv->obs.arg, in->name, line);
				b = i + 1;
			}
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

