/*
 * The control protocol between relayvisorctl and relayvisord, both ends in one
 * header so they cannot drift apart (Postfix master_proto.h).
 *
 * Transport: a unix stream socket (server.control). The client connects, sends ONE
 * request line and reads the reply; the server closes the connection after the
 * status line (or, for `tail -f`, when the client closes or half-closes). The
 * client may half-close (SHUT_WR) after its request, which then needs no final LF;
 * it still gets the reply. A request the server accepted is carried out even if
 * the client goes away before the reply.
 *
 * Request: one line, at most CTLPROTO_LINE_MAX octets including the LF, words
 * separated by single spaces: "VERB ARG ARG\n", e.g. "status internet lan\n",
 * "check lan --client 127.0.0.1 --from <a@b> --to <c@d>\n". Words cannot contain
 * spaces, LF or NUL.
 *
 * Reply: zero or more data lines, then one status line. A data line is printed by
 * the client as is; a data line that begins with '.' is sent with one more '.' in
 * front (dot-stuffing, as SMTP DATA), so every line that begins with a single '.'
 * and a letter is a status line:
 *     ".OK <exit>"                 done; the client exits with <exit> (status
 *                                  uses 3 when an instance is not running)
 *     ".ERR <exit> <message>"      failed; the client prints <message> on stderr
 *                                  and exits with <exit>
 * Exit codes are supervisorctl's: 0 ok, 1 error, 2 bad arguments, 3 not running,
 * 4 no such process / no connection, 7 `pid` of a stopped process. `start` of a
 * started and `stop` of a stopped process are 0; stop/restart/signal without a
 * name 1, start without one 2. `check`: 0 accepted, 1 refused.
 * `tail -f` streams data lines without a status line until the client closes.
 */
#ifndef RELAYVISOR_CTLPROTO_H
#define RELAYVISOR_CTLPROTO_H

#include <stdbool.h>
#include <stddef.h>

#define CTLPROTO_LINE_MAX 4096
#define CTLPROTO_ARGS_MAX 64

#define CTL_EXIT_OK 0
#define CTL_EXIT_ERROR 1
#define CTL_EXIT_USAGE 2
#define CTL_EXIT_NOT_RUNNING 3
#define CTL_EXIT_UNKNOWN 4

struct ctl_request {
	int argc;
	char *argv[CTLPROTO_ARGS_MAX];
	char buf[CTLPROTO_LINE_MAX];
};

/*
 * Split a request line (with or without its LF) into words. -1 with *error_r on an
 * empty line, a line too long, an empty word (double space), control characters
 * or too many words.
 */
int ctlproto_request_parse(const char *line, size_t len, struct ctl_request *req,
    const char **error_r);
/* Join argv into "w1 w2 ...\n" in buf; -1 with *error_r when it does not fit or a
   word is empty or holds a space or control character. Returns the length. */
int ctlproto_request_format(int argc, char *const *argv, char *buf, size_t size,
    const char **error_r);

/* kinds of reply line, as the client reads them */
enum ctl_line_kind { CTL_LINE_DATA, CTL_LINE_OK, CTL_LINE_ERR, CTL_LINE_BAD };

struct ctl_reply_line {
	enum ctl_line_kind kind;
	const char *text;	/* data (unstuffed) or ERR message; points into line */
	int exitcode;		/* OK / ERR */
};

/* Classify one reply line (NUL-terminated, without LF); line is not modified. */
void ctlproto_reply_parse(const char *line, struct ctl_reply_line *r);

/* Server side: format a data line with dot-stuffing and LF into buf; returns the
   length, truncating overlong text to fit in size. */
size_t ctlproto_data_format(const char *text, char *buf, size_t size);
/* ".OK n\n" / ".ERR n message\n" into buf; returns the length */
size_t ctlproto_status_format(int exitcode, const char *message, char *buf,
    size_t size);

/* Client side: connect to the unix socket at path (blocking). -1 with *error_r
   ("no such file", "refused connection", ...) on failure. */
int ctlproto_connect(const char *path, const char **error_r);

#endif
