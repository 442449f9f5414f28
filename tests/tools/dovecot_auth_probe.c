/*
 * Test driver for common/dovecot_auth against a real Dovecot (integration test
 * test_dovecot_auth.py): connects to an auth-client socket, sends every
 * USER:PASSWORD given at once (before Dovecot's handshake arrives, so they are
 * multiplexed on one connection), and prints one line per answer as it comes:
 *     ID ok|fail|tempfail USER [REASON]
 * Non-blocking socket and poll(2), as the auth process will drive the module.
 * Exit 0 when every request was answered, 1 otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/dovecot_auth.h"

static const char *names[] = { "ok", "fail", "tempfail" };

int
main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: dovecot_auth_probe SOCKET USER:PASSWORD...\n");
		return 2;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", argv[1]);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr, "connect %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct dovecot_auth *da = dovecot_auth_new((unsigned long)getpid());
	const char *error;
	for (int i = 2; i < argc; i++) {
		char *colon = strchr(argv[i], ':');
		if (colon == NULL)
			return 2;
		*colon = '\0';
		struct dovecot_auth_params p = { .user = argv[i], .password = colon + 1,
		    .local_ip = "127.0.0.1", .remote_ip = "192.0.2.7", .secured = true };
		if (dovecot_auth_request(da, &p, &error) == 0) {
			fprintf(stderr, "request: %s\n", error);
			return 1;
		}
	}
	int answered = 0, want = argc - 2;
	while (answered < want) {
		const char *data;
		size_t n = dovecot_auth_output(da, &data);
		struct pollfd pfd = { fd, POLLIN | (n > 0 ? POLLOUT : 0), 0 };
		if (poll(&pfd, 1, 10000) <= 0) {
			fprintf(stderr, "timeout or poll error\n");
			break;
		}
		if ((pfd.revents & POLLOUT) && n > 0) {
			ssize_t w = write(fd, data, n);
			if (w > 0)
				dovecot_auth_consume(da, (size_t)w);
		}
		if (pfd.revents & (POLLIN | POLLHUP)) {
			char buf[4096];
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r == 0 || (r == -1 && errno != EAGAIN)) {
				dovecot_auth_disconnected(da);
				fprintf(stderr, "connection closed\n");
			} else if (r > 0 && dovecot_auth_feed(da, buf, (size_t)r, &error) == -1) {
				fprintf(stderr, "protocol: %s\n", error);
			}
		}
		struct dovecot_auth_reply rep;
		while (dovecot_auth_next_reply(da, &rep)) {
			printf("%u %s %s%s%s\n", rep.id, names[rep.result], rep.user,
			    rep.reason[0] ? " " : "", rep.reason);
			fflush(stdout);
			answered++;
		}
		if (pfd.revents & POLLHUP)
			break;
	}
	dovecot_auth_free(da);
	close(fd);
	return answered == want ? 0 : 1;
}
