/*
 * What every program relayvisord runs does first (the child's side of
 * common/childproto.h): take the descriptors and numbers the supervisor put in
 * the environment, load the configuration snapshot it validated, and talk on the
 * notify socket. The listener, the queue manager and the delivery agents share
 * these, so a new service kind starts the same way.
 */
#ifndef RELAYVISOR_CHILD_H
#define RELAYVISOR_CHILD_H

#include <stddef.h>

struct config;

/* a non-negative decimal from the environment (LISTEN_PID, LISTEN_FDS);
   -1 when absent or not one. The variable stays. */
int child_env_num(const char *name);
/* an inherited descriptor named in the environment: the variable is removed
   and the descriptor made close-on-exec; -1 when absent or unusable (logged) */
int child_env_fd(const char *name);
/* a string from the environment into buf ("" when absent), then removed */
void child_env_str(const char *name, char *buf, size_t size);
/* the configuration: the supervisor's snapshot (RELAYVISOR_CONFIG_FD) when it
   handed one, else the files of dir. Diagnostics go to stderr; errors end the
   process with CHILD_EXIT_CONFIG, so the supervisor does not respawn it. */
struct config *child_load_config(const char *dir);
/* one message on the notify socket (fd -1: none; a failure is logged) */
void child_notify(int fd, const char *msg);
/* at start-up, the first thing the supervisor hands over on the notify socket:
   message msg with a descriptor (a sealed memfd: a certificate, the password
   file), within 30 s. Returns that descriptor; anything else ends the process
   with CHILD_EXIT_CONFIG (the supervisor's "msg_error TEXT" logged as TEXT,
   otherwise "expected WHAT from the supervisor"), and silence with 1. */
int child_await_fd(int notify_fd, const char *msg, const char *msg_error,
    const char *what);

#endif
