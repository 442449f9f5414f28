/*
 * The relayhost's password (delivery.relayhost_auth.password_file), read by the
 * delivery agent before it drops privileges, like Postfix's sasl_passwd. The
 * file holds the password on its first line (a trailing CR LF or LF is not part of
 * it). As the agent may read it as root, a file someone else could have changed
 * or read is refused: not a regular file, a symbolic link as its last component,
 * owned by another user than root or the reader, writable by group or others, or
 * readable by others. The password is never logged.
 */
#ifndef RELAYVISOR_SECRET_H
#define RELAYVISOR_SECRET_H

#include <stddef.h>

#define SECRET_MAX 1023

/* the password into buf (cap > SECRET_MAX); -1 with *error_r (static, names the
   file) */
int secret_read_file(const char *path, char *buf, size_t cap, const char **error_r);

#endif
