/*
 * Listening sockets (sock.h).
 */
#include "common/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

#define LISTEN_BACKLOG 1024

int
sock_listen(const struct listen_addr *la, const char **error_r)
{
	static char err[512];
	int fam = la->ss.ss_family;
	int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		snprintf(err, sizeof(err), "socket %s: %s", la->text, strerror(errno));
		*error_r = err;
		return -1;
	}
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		log_warn("setsockopt SO_REUSEADDR %s", la->text);
	if (fam == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		log_warn("setsockopt IPV6_V6ONLY %s", la->text);
	if (bind(fd, (const struct sockaddr *)&la->ss, la->sslen) == -1) {
		snprintf(err, sizeof(err), "bind %s: %s", la->text, strerror(errno));
		close(fd);
		*error_r = err;
		return -1;
	}
	if (listen(fd, LISTEN_BACKLOG) == -1) {
		snprintf(err, sizeof(err), "listen %s: %s", la->text, strerror(errno));
		close(fd);
		*error_r = err;
		return -1;
	}
	return fd;
}

bool
sock_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		    x->sin6_scope_id == y->sin6_scope_id &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

