/*
 * The listening sockets of a listener process and the accept path: each
 * accepted connection is checked against the instance's caps and becomes a
 * session (session.h). The graceful stop closes them (smtpd_stop).
 */
#ifndef RELAYVISOR_LISTEN_H
#define RELAYVISOR_LISTEN_H

struct smtpd;

/* serve a listening socket (made non-blocking and close-on-exec here) */
int listen_add(struct smtpd *sd, int fd, const char *text, const char **error_r);
/* start accepting on every socket added */
void listen_start(struct smtpd *sd);

#endif
