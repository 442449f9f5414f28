/*
 * An instance's certificate chain and key as one PEM bundle, read from the
 * files tls: {cert, key} names. The supervisor calls it (as root: the key is
 * typically readable by root only) and hands the bundle on as a sealed memfd;
 * a standalone relayvisor-smtpd calls it before it confines itself.
 */
#include "common/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* append the file at path to *buf; -1 with *error_r (a static buffer) */
static int
append_file(const char *what, const char *path, char **buf, size_t *len,
    const char **error_r)
{
	static char err[512];
	struct stat st;

	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		snprintf(err, sizeof(err), "tls %s %s: %s", what, path, strerror(errno));
		*error_r = err;
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(err, sizeof(err), "tls %s %s: not a regular file", what, path);
		goto fail;
	}
	/* read as root: a file another user could have written is not trusted */
	if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022) != 0) {
		snprintf(err, sizeof(err), "tls %s %s: writable by others than its "
		    "owner, or owned by another user (uid %lu): refused", what, path,
		    (unsigned long)st.st_uid);
		goto fail;
	}
	if (st.st_size <= 0 || (size_t)st.st_size > TLS_PEM_MAX - *len) {
		snprintf(err, sizeof(err), "tls %s %s: %s", what, path,
		    st.st_size <= 0 ? "empty" : "certificate and key larger than 1 MB");
		goto fail;
	}
	size_t want = (size_t)st.st_size;
	char *n = realloc(*buf, *len + want + 2);
	if (n == NULL) {
		snprintf(err, sizeof(err), "tls %s %s: out of memory", what, path);
		goto fail;
	}
	*buf = n;
	size_t got = 0;
	while (got < want) {
		ssize_t r = read(fd, *buf + *len + got, want - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, sizeof(err), "tls %s %s: %s", what, path,
			    r == 0 ? "shorter than its size" : strerror(errno));
			goto fail;
		}
		got += (size_t)r;
	}
	*len += got;
	if ((*buf)[*len - 1] != '\n')
		(*buf)[(*len)++] = '\n';
	close(fd);
	return 0;
fail:
	*error_r = err;
	close(fd);
	return -1;
}

int
tls_pem_load_files(const char *cert, const char *key, char **pem_r, size_t *len_r,
    const char **error_r)
{
	char *buf = NULL;
	size_t len = 0;

	if (append_file("cert", cert, &buf, &len, error_r) == -1 ||
	    append_file("key", key, &buf, &len, error_r) == -1) {
		tls_pem_free(buf, len);
		return -1;
	}
	*pem_r = buf;
	*len_r = len;
	return 0;
}

int
tls_pem_files_memfd(const char *cert, const char *key, const char **error_r)
{
	static char err[640];
	char *pem;
	size_t len;
	struct tls_ctx *ctx;

	if (tls_pem_load_files(cert, key, &pem, &len, error_r) == -1)
		return -1;
	/* the listener must be able to use it: a broken pair is refused here */
	if (tls_server_ctx_new(pem, len, &ctx, error_r) == -1) {
		snprintf(err, sizeof(err), "tls cert %s, key %s: %s", cert, key, *error_r);
		*error_r = err;
		tls_pem_free(pem, len);
		return -1;
	}
	tls_ctx_unref(ctx);
	int fd = tls_pem_memfd(pem, len, error_r);
	tls_pem_free(pem, len);
	return fd;
}
