/*
 * Listening sockets, one way for every program: the supervisor binds each
 * service's, a listener started standalone binds its own.
 */
#ifndef RELAYVISOR_SOCK_H
#define RELAYVISOR_SOCK_H

#include <stdbool.h>
#include <sys/socket.h>

#include "common/config.h"

/* bind and listen on one address (SO_REUSEADDR, IPV6_V6ONLY, non-blocking,
   close-on-exec); -1 with *error_r ("bind 192.0.2.1:25: ...") */
int sock_listen(const struct listen_addr *la, const char **error_r);
/* same family, address, port (and IPv6 scope) */
bool sock_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

#endif
