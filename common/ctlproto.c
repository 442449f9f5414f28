/*
 * Framing of the control protocol (see ctlproto.h): request words, dot-stuffed
 * data lines and the closing status line. Shared by relayvisord and relayvisorctl.
 */
#include "common/ctlproto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
ctlproto_request_parse(const char *line, size_t len, struct ctl_request *req,
    const char **error_r)
{
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len == 0) {
		*error_r = "empty request";
		return -1;
	}
	if (len >= sizeof(req->buf)) {
		*error_r = "request line too long";
		return -1;
	}
	memcpy(req->buf, line, len);
	req->buf[len] = '\0';
	req->argc = 0;
	char *p = req->buf;
	for (;;) {
		char *sp = strchr(p, ' ');
		if (sp != NULL)
			*sp = '\0';
		if (*p == '\0') {
			*error_r = "empty word in request";
			return -1;
		}
		for (const char *c = p; *c != '\0'; c++) {
			if ((unsigned char)*c < 0x20 || *c == 0x7f) {
				*error_r = "control character in request";
				return -1;
			}
		}
		if (req->argc == CTLPROTO_ARGS_MAX) {
			*error_r = "too many words in request";
			return -1;
		}
		req->argv[req->argc++] = p;
		if (sp == NULL)
			break;
		p = sp + 1;
	}
	return 0;
}

int
ctlproto_request_format(int argc, char *const *argv, char *buf, size_t size,
    const char **error_r)
{
	size_t off = 0;
	if (argc <= 0) {
		*error_r = "empty request";
		return -1;
	}
	if (argc > CTLPROTO_ARGS_MAX) {
		*error_r = "too many words in request";
		return -1;
	}
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (n == 0) {
			*error_r = "empty word in request";
			return -1;
		}
		for (size_t j = 0; j < n; j++) {
			unsigned char c = (unsigned char)argv[i][j];
			if (c <= 0x20 || c == 0x7f) {
				*error_r = "space or control character in an argument";
				return -1;
			}
		}
		if (off + n + 2 > size || off + n + 1 > CTLPROTO_LINE_MAX) {
			*error_r = "request line too long";
			return -1;
		}
		if (i > 0)
			buf[off++] = ' ';
		memcpy(buf + off, argv[i], n);
		off += n;
	}
	buf[off++] = '\n';
	buf[off] = '\0';
	return (int)off;
}

void
ctlproto_reply_parse(const char *line, struct ctl_reply_line *r)
{
	r->exitcode = 0;
	r->text = line;
	if (line[0] != '.') {
		r->kind = CTL_LINE_DATA;
		return;
	}
	if (line[1] == '.') {
		r->kind = CTL_LINE_DATA;
		r->text = line + 1;
		return;
	}
	bool ok = strncmp(line, ".OK ", 4) == 0;
	bool err = strncmp(line, ".ERR ", 5) == 0;
	if (!ok && !err) {
		r->kind = CTL_LINE_BAD;
		return;
	}
	const char *p = line + (ok ? 4 : 5);
	char *end;
	errno = 0;
	long code = strtol(p, &end, 10);
	if (end == p || errno != 0 || code < 0 || code > 255 ||
	    (*end != '\0' && *end != ' ')) {
		r->kind = CTL_LINE_BAD;
		return;
	}
	r->exitcode = (int)code;
	r->kind = ok ? CTL_LINE_OK : CTL_LINE_ERR;
	r->text = *end == ' ' ? end + 1 : end;
}

size_t
ctlproto_data_format(const char *text, char *buf, size_t size)
{
	size_t off = 0;
	if (size < 3)
		return 0;
	if (text[0] == '.')
		buf[off++] = '.';
	for (const char *p = text; *p != '\0' && *p != '\n' && off + 2 < size; p++)
		buf[off++] = *p;
	buf[off++] = '\n';
	buf[off] = '\0';
	return off;
}

size_t
ctlproto_status_format(int exitcode, const char *message, char *buf, size_t size)
{
	int n;
	if (message == NULL)
		n = snprintf(buf, size, ".OK %d\n", exitcode);
	else
		n = snprintf(buf, size, ".ERR %d %s\n", exitcode, message);
	if (n < 0)
		return 0;
	if ((size_t)n >= size) {
		/* keep the line terminated even when the message was cut */
		buf[size - 2] = '\n';
		buf[size - 1] = '\0';
		return size - 1;
	}
	return (size_t)n;
}

int
ctlproto_connect(const char *path, const char **error_r)
{
	struct sockaddr_un sun;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*error_r = "socket path too long";
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		*error_r = strerror(errno);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		int e = errno;
		close(fd);
		if (e == ENOENT)
			*error_r = "no such file";
		else if (e == ECONNREFUSED)
			*error_r = "refused connection";
		else if (e == EACCES)
			*error_r = "permission denied";
		else
			*error_r = strerror(e);
		return -1;
	}
	return fd;
}
