/* The child's start-up (child.h). */
#include "common/child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/childproto.h"
#include "common/config.h"
#include "common/log.h"

int
child_env_num(const char *name)
{
	const char *v = getenv(name);
	char *end;

	if (v == NULL || *v == '\0')
		return -1;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0 || n > 1 << 30)
		return -1;
	return (int)n;
}

int
child_env_fd(const char *name)
{
	int fd = child_env_num(name);

	unsetenv(name);
	if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		log_warn("%s=%d", name, fd);
		return -1;
	}
	return fd;
}

void
child_env_str(const char *name, char *buf, size_t size)
{
	const char *v = getenv(name);

	snprintf(buf, size, "%s", v != NULL ? v : "");
	unsetenv(name);
}

struct config *
child_load_config(const char *dir)
{
	struct config_diags diags;
	struct config *cfg;
	int fd = child_env_fd(CHILD_ENV_CONFIG_FD);

	memset(&diags, 0, sizeof(diags));
	if (fd >= 0) {
		struct config_source *src;
		const char *err;
		if (config_source_read_fd(fd, &src, &err) == -1) {
			log_warnx("configuration snapshot (fd %d): %s", fd, err);
			exit(CHILD_EXIT_CONFIG);
		}
		close(fd);
		cfg = config_load(src, &diags);
	} else {
		cfg = config_load_dir(dir, &diags);
	}
	if (cfg == NULL || diags.n_errors > 0) {
		config_diags_print(&diags, stderr);
		config_diags_free(&diags);
		if (cfg != NULL)
			config_free(cfg);
		exit(CHILD_EXIT_CONFIG);
	}
	if (diags.n > 0)
		config_diags_print(&diags, stderr);
	config_diags_free(&diags);
	return cfg;
}

void
child_notify(int fd, const char *msg)
{
	if (fd >= 0 && send(fd, msg, strlen(msg), MSG_NOSIGNAL) == -1)
		log_warn("notify %s", msg);
}

int
child_await_fd(int notify_fd, const char *msg, const char *msg_error, const char *what)
{
	struct pollfd pfd = { .fd = notify_fd, .events = POLLIN };
	char buf[CHILD_MSG_MAX + 1];
	int pr, fd;

	while ((pr = poll(&pfd, 1, 30000)) == -1 && errno == EINTR)
		;
	if (pr != 1) {
		log_warnx("no %s from the supervisor within 30s", what);
		exit(1);
	}
	ssize_t n = childproto_recv(notify_fd, buf, sizeof(buf), &fd, 0);
	if (n > 0 && strcmp(buf, msg) == 0 && fd != -1)
		return fd;
	if (fd != -1)
		close(fd);
	size_t elen = strlen(msg_error);
	if (n > 0 && strncmp(buf, msg_error, elen) == 0 && buf[elen] == ' ')
		log_warnx("%s", buf + elen + 1);
	else if (n > 0)
		log_warnx("expected the %s from the supervisor, got \"%.40s\"", what, buf);
	else
		log_warnx("expected the %s from the supervisor", what);
	exit(CHILD_EXIT_CONFIG);
}
