/*
 * The supervisor's control socket.
 */
#ifndef RELAYVISOR_SOCKETS_H
#define RELAYVISOR_SOCKETS_H

/* the control socket: stale one removed, mode 0600/0660 + group */
int sock_control(const char *path, const char *group, const char **error_r);

#endif
