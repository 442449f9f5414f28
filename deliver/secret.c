/*
 * Reading the relayhost's password file (secret.h): checks on the open
 * descriptor, never on the path, so what is checked is what is read.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver/secret.h"

int
secret_read_file(const char *path, char *buf, size_t cap, const char **error_r)
{
	static char err[600];
	char tmp[SECRET_MAX + 3];
	struct stat st;
	size_t got = 0;

	buf[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
	if (fd == -1) {
		snprintf(err, sizeof(err), "password file %.400s: %s", path,
		    errno == ELOOP ? "a symbolic link: refused" : strerror(errno));
		*error_r = err;
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, sizeof(err), "password file %.400s: not a regular file", path);
		goto fail;
	}
	if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022) != 0) {
		snprintf(err, sizeof(err), "password file %.400s: writable by others than "
		    "its owner, or owned by another user (uid %lu): refused", path,
		    (unsigned long)st.st_uid);
		goto fail;
	}
	if ((st.st_mode & 004) != 0) {
		snprintf(err, sizeof(err), "password file %.400s: readable by everyone "
		    "(chmod 600 it): refused", path);
		goto fail;
	}
	for (;;) {
		ssize_t r = read(fd, tmp + got, sizeof(tmp) - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			snprintf(err, sizeof(err), "password file %.400s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got == sizeof(tmp))
			break;
	}
	close(fd);
	size_t n = 0;
	while (n < got && tmp[n] != '\n')
		n++;
	if (n == got && got == sizeof(tmp)) {
		snprintf(err, sizeof(err), "password file %.400s: the password is longer "
		    "than %d octets", path, SECRET_MAX);
		goto wipe;
	}
	if (n > 0 && tmp[n - 1] == '\r')
		n--;
	if (n == 0 || n > SECRET_MAX || n >= cap || memchr(tmp, '\0', n) != NULL) {
		snprintf(err, sizeof(err), "password file %.400s: %s", path, n == 0 ?
		    "no password on its first line" : memchr(tmp, '\0', n) != NULL ?
		    "a NUL octet in the password" : "the password is too long");
		goto wipe;
	}
	memcpy(buf, tmp, n);
	buf[n] = '\0';
	explicit_bzero(tmp, sizeof(tmp));
	return 0;
fail:
	close(fd);
wipe:
	explicit_bzero(tmp, sizeof(tmp));
	*error_r = err;
	return -1;
}
