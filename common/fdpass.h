/*
 * One packet with at most one descriptor attached (SCM_RIGHTS), on the
 * SOCK_SEQPACKET sockets between our processes: the supervisor's notify socket
 * (common/childproto.h) and the qmgr <-> agent pairs (common/deliverproto.h).
 * Strict on receipt: a truncated packet or more than one descriptor is an
 * error, and every descriptor that came with it is closed.
 */
#ifndef RELAYVISOR_FDPASS_H
#define RELAYVISOR_FDPASS_H

#include <stddef.h>
#include <sys/types.h>

/* len octets, and fd unless it is -1; 0, or -1 with errno (EMSGSIZE when the
   packet did not go whole). EINTR is retried. */
int fdpass_send(int sock, const void *buf, size_t len, int fd);
/* one packet into buf; *fd_r the descriptor it carried (close-on-exec) or -1.
   recvmsg's result (0: the peer closed), or -1 with errno: EMSGSIZE when the
   packet or its control data did not fit, EPROTO for several descriptors.
   flags: e.g. MSG_DONTWAIT. EINTR is retried. */
ssize_t fdpass_recv(int sock, void *buf, size_t cap, int *fd_r, int flags);

#endif
