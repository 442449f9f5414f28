/* Packets with a descriptor (fdpass.h). */
#include "common/fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FDPASS_RECV_FDS 8	/* room to see (and close) what a peer sent too many */

int
fdpass_send(int sock, const void *buf, size_t len, int fd)
{
	struct iovec iov = { (void *)buf, len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd != -1) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if ((size_t)n != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

ssize_t
fdpass_recv(int sock, void *buf, size_t cap, int *fd_r, int flags)
{
	struct iovec iov = { buf, cap };
	union {
		char buf[CMSG_SPACE(FDPASS_RECV_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
	    .msg_controllen = sizeof(u.buf) };
	*fd_r = -1;
	ssize_t n;
	do
		n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	int got = 0, fds[FDPASS_RECV_FDS];
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && got < FDPASS_RECV_FDS; i++)
			memcpy(&fds[got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	int err = 0;
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		err = EMSGSIZE;
	else if (got > 1)
		err = EPROTO;
	if (err != 0) {
		for (int i = 0; i < got; i++)
			close(fds[i]);
		errno = err;
		return -1;
	}
	if (got == 1)
		*fd_r = fds[0];
	return n;
}
