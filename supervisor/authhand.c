/*
 * SMTP AUTH plumbing in the supervisor (issue 13): the auth process
 * (relayvisor-auth, the `auth` row of service.c) and the listeners never
 * share a descriptor they made themselves; relayvisord joins them.
 *
 *  - Password file: relayvisord (root) opens server.auth.passwd_file without
 *    following a symbolic link, checks it is a regular file nobody but its
 *    owner (root or us) can write, and hands its bytes to the auth process as
 *    a sealed memfd ("PASSWD", childproto.h) right after the spawn and again at
 *    every reload. The auth process never opens the file, and a listener never
 *    sees a hash.
 *  - Connections: one SOCK_SEQPACKET pair per (listener process, auth process
 *    life). When the auth process says READY, every running listener process
 *    gets a fresh pair ("AUTH" to the listener, "PEER name" to the auth
 *    process); a listener spawned while the auth process runs gets its pair at
 *    once. relayvisord keeps no copy: when the auth process dies, listeners see
 *    the end of their socket at once and answer 454 4.7.0 until the restarted
 *    process hands them a new one.
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
#include "common/log.h"
#include "common/passwd.h"
#include "common/tls.h"

static bool
is_auth(const struct sv_instance *in)
{
	return strcmp(in->kind->kind, "auth") == 0;
}

static bool
is_listener(const struct sv_instance *in)
{
	return strcmp(in->kind->kind, "smtpd") == 0;
}

static bool
proc_live(const struct sv_proc *p)
{
	return p->pid > 0 && p->notify_fd != -1 && fsm_has_child(p->fsm.state);
}

/* the running auth process (READY), or NULL */
static struct sv_proc *
auth_proc(struct sv *sv)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		if (is_auth(in) && in->n_procs > 0 && sv_proc_serving(&in->procs[0]))
			return &in->procs[0];
	return NULL;
}

/*
 * The password file's bytes as a sealed memfd. Opened as root: O_NOFOLLOW (a
 * link someone planted is refused), a regular file, owned by root or by us,
 * writable by nobody else. -1 with *error_r (static).
 */
int
sv_auth_passwd_memfd(const char *path, const char **error_r)
{
	static char err[512];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd == -1) {
		snprintf(err, sizeof(err), "auth.passwd_file %s: %s%s", path,
		    strerror(errno), errno == ELOOP ? " (a symbolic link: refused)" : "");
		*error_r = err;
		return -1;
	}
	char *buf = NULL;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, sizeof(err), "auth.passwd_file %s: not a regular file", path);
		goto fail;
	}
	if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022) != 0) {
		snprintf(err, sizeof(err), "auth.passwd_file %s: writable by others than "
		    "its owner, or owned by another user (uid %lu): refused", path,
		    (unsigned long)st.st_uid);
		goto fail;
	}
	if (st.st_size > PASSWD_FILE_MAX) {
		snprintf(err, sizeof(err), "auth.passwd_file %s: larger than %d octets",
		    path, PASSWD_FILE_MAX);
		goto fail;
	}
	size_t len = (size_t)st.st_size, off = 0;
	buf = malloc(len + 1);
	if (buf == NULL) {
		snprintf(err, sizeof(err), "auth.passwd_file %s: out of memory", path);
		goto fail;
	}
	while (off < len) {
		ssize_t r = read(fd, buf + off, len - off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	close(fd);
	fd = -1;
	const char *e;
	int mfd = tls_pem_memfd(buf, off, &e);
	tls_pem_free(buf, len + 1);
	if (mfd == -1) {
		snprintf(err, sizeof(err), "auth.passwd_file %s: %s", path, e);
		*error_r = err;
	}
	return mfd;
fail:
	if (buf != NULL)
		free(buf);
	if (fd != -1)
		close(fd);
	*error_r = err;
	return -1;
}

/* the password file to the auth process p (no file with a dovecot backend) */
static void
passwd_hand(struct sv_proc *p)
{
	const char *path = p->inst->sv->cfg->server.auth_passwd_file;
	const char *error;
	if (path == NULL || p->notify_fd == -1)
		return;
	int fd = sv_auth_passwd_memfd(path, &error);
	if (fd == -1) {
		char msg[CHILD_MSG_MAX];
		log_warnx("%s: %s", p->name, error);
		snprintf(msg, sizeof(msg), "%s %s", CHILD_MSG_PASSWD_ERROR, error);
		if (send(p->notify_fd, msg, strlen(msg), MSG_NOSIGNAL) == -1)
			log_warn("%s: notify", p->name);
		return;
	}
	if (childproto_send_fd(p->notify_fd, CHILD_MSG_PASSWD, fd) == -1)
		log_warn("%s: handing over the password file", p->name);
	close(fd);
}

/* a fresh pair between listener process l and auth process a */
static void
pair_hand(struct sv_proc *a, struct sv_proc *l)
{
	int pair[2];
	char msg[CHILD_MSG_MAX];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == -1) {
		log_warn("%s: socketpair for %s", l->name, a->name);
		return;
	}
	snprintf(msg, sizeof(msg), "%s %s", CHILD_MSG_PEER, l->name);
	if (childproto_send_fd(a->notify_fd, msg, pair[0]) == -1)
		log_warn("%s: handing %s's socket to %s", a->name, l->name, a->name);
	else if (childproto_send_fd(l->notify_fd, CHILD_MSG_AUTH, pair[1]) == -1)
		log_warn("%s: handing the auth socket to %s", l->name, l->name);
	close(pair[0]);
	close(pair[1]);
}

void
sv_auth_hand(struct sv_proc *p)
{
	struct sv *sv = p->inst->sv;
	if (!CONFIG_AUTH_ON(sv->cfg) || p->notify_fd == -1)
		return;
	if (is_auth(p->inst)) {
		passwd_hand(p);
		return;
	}
	struct sv_proc *a;
	if (is_listener(p->inst) && (a = auth_proc(sv)) != NULL)
		pair_hand(a, p);
}

void
sv_auth_ready(struct sv *sv, struct sv_proc *a)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
		if (!is_listener(in))
			continue;
		for (unsigned i = 0; i < in->n_procs; i++)
			if (proc_live(&in->procs[i]))
				pair_hand(a, &in->procs[i]);
	}
}

void
sv_auth_reload(struct sv *sv)
{
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next)
		if (is_auth(in) && in->n_procs > 0 && proc_live(&in->procs[0]))
			passwd_hand(&in->procs[0]);
}
