/*
 * What the supervisor and a listener child say to each other. Both ends include
 * this header, so they cannot drift apart (Postfix master_proto.h).
 *
 * A supervised child is started as
 *     relayvisor-smtpd --instance NAME
 * with, in its environment:
 *   LISTEN_FDS=n, LISTEN_PID=<its pid>   the instance's listening sockets, fds 3..3+n-1,
 *                                        in the order of the instance's listen: list
 *   RELAYVISOR_CONFIG_FD=k               a memfd with the validated configuration
 *                                        snapshot (config_source_read_fd)
 *   RELAYVISOR_NOTIFY_FD=m               one end of a SOCK_SEQPACKET socketpair
 * Messages on the notify socket, one per packet, ASCII:
 *   child -> supervisor  "READY"              once it serves (then it is RUNNING)
 *   supervisor -> child  "STATS"              child answers with one packet:
 *   child -> supervisor  "STATS connections=N active=N accepted=N relay_refused=N
 *                          refused=N bytes=N" (counters since the child started)
 * Signals: SIGTERM is a graceful stop: the child closes its listening sockets, lets
 * open sessions finish (each gets "421 4.3.2" at its next command once idle), and exits
 * 0 when none is left. SIGKILL follows after stopwaitsecs.
 * Exit codes: 0 clean stop, 78 (EX_CONFIG) configuration error: not respawned.
 */
#ifndef RELAYVISOR_CHILDPROTO_H
#define RELAYVISOR_CHILDPROTO_H

#define CHILD_ENV_CONFIG_FD "RELAYVISOR_CONFIG_FD"
#define CHILD_ENV_NOTIFY_FD "RELAYVISOR_NOTIFY_FD"
#define CHILD_MSG_READY "READY"
#define CHILD_MSG_STATS "STATS"
#define CHILD_MSG_MAX 512
#define CHILD_EXIT_CONFIG 78

#endif
