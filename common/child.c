/* The child's start-up (child.h). */
#include "common/child.h"

#include <errno.h>
#include <fcntl.h>
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
