/*
 * One SMTP session (RFC 5321 server side): an explicit state machine with one
 * session_enter_state(), commands through a table of check / proceed halves,
 * the open mail transaction as its own object (s->tx). Input is read into a
 * bounded buffer of its connection (common/io.h) and cut into commands or
 * decoded message text by reader.c; replies are queued in the connection's
 * output buffer and flushed once per batch, which is what makes PIPELINING
 * answer every command exactly once and in order.
 *
 * The session sits below the listener: it uses the process context of
 * smtpd.h (limits, spool, counters, the deferred-work queue that resumes it
 * after a group commit), and only listen.c, which accepts connections, calls
 * into it.
 *
 * A session made with fd -1 does no I/O: session_feed() hands it octets and
 * session_output() shows what it would have written (unit tests).
 */
#ifndef RELAYVISOR_SESSION_H
#define RELAYVISOR_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct smtpd;
struct session;

/* a session for an accepted connection (fd -1: no I/O, for tests); counted
   in the smtpd's session list and per-client table */
struct session *session_new(struct smtpd *sd, int fd, const struct sockaddr *sa,
    socklen_t salen);
/* "unknown[192.0.2.7]" and "192.0.2.7" for a client address (the one way
   every log line names a client) */
void session_client_name(const struct sockaddr *sa, char *ip, size_t iplen,
    char *client, size_t clientlen);
/* log the connection, check the access list, greet */
void session_start(struct session *s);
/* octets from the client, as if read from the socket */
void session_feed(struct session *s, const void *buf, size_t len);
/* the client closed its side (as a read of 0) */
void session_feed_eof(struct session *s);
/* queued output not yet written (fd -1 sessions keep all of it) */
const char *session_output(const struct session *s, size_t *len);
void session_output_clear(struct session *s);
/* the session is over (its fd closed, logged); only fd -1 sessions stay */
bool session_closed(const struct session *s);
/* the command timer expired (tests call it directly) */
void session_timeout(struct session *s);
/* free an fd -1 session (others free themselves when they end) */
void session_free(struct session *s);

#endif
