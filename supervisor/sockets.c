/*
 * The control socket the supervisor owns (the listening sockets of services are
 * bound with common/sock.h, kept across child restarts by spawn.c so
 * connections wait in the backlog instead of being refused).
 */
#include "supervisor/sockets.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"

int
sock_control(const char *path, const char *group, const char **error_r)
{
	static char err[512];
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, sizeof(err), "control socket path too long: %s", path);
		*error_r = err;
		return -1;
	}
	strcpy(sun.sun_path, path);
	gid_t gid = (gid_t)-1;
	if (group != NULL) {
		struct group *gr = getgrnam(group);
		if (gr == NULL) {
			snprintf(err, sizeof(err), "control_group %s: no such group", group);
			*error_r = err;
			return -1;
		}
		gid = gr->gr_gid;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		snprintf(err, sizeof(err), "socket %s: %s", path, strerror(errno));
		*error_r = err;
		return -1;
	}
	/* a socket file nobody answers on is a stale one from a crash; one that
	   answers belongs to a running supervisor */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe != -1) {
		if (connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(probe);
			close(fd);
			snprintf(err, sizeof(err),
			    "another relayvisord is listening on %s", path);
			*error_r = err;
			return -1;
		}
		close(probe);
	}
	if (unlink(path) == -1 && errno != ENOENT)
		log_warn("unlink %s", path);
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	int e = errno;
	umask(old);
	if (r == -1) {
		snprintf(err, sizeof(err), "bind %s: %s", path, strerror(e));
		close(fd);
		*error_r = err;
		return -1;
	}
	if (group != NULL) {
		if (chown(path, (uid_t)-1, gid) == -1 || chmod(path, 0660) == -1) {
			snprintf(err, sizeof(err), "chown/chmod %s: %s", path,
			    strerror(errno));
			close(fd);
			*error_r = err;
			return -1;
		}
	}
	if (listen(fd, 64) == -1) {
		snprintf(err, sizeof(err), "listen %s: %s", path, strerror(errno));
		close(fd);
		*error_r = err;
		return -1;
	}
	return fd;
}
