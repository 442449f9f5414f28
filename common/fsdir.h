/*
 * The directories relayvisor keeps (spool, spool/tmp, the chroot, logs, the
 * control socket's directory), created or checked the way `postfix check` checks
 * its own: a directory created here gets its owner and mode; an existing one is
 * never chowned or chmodded, only checked, and refused with the fix named when
 * its owner is not the expected one or group or others may write to it. Root
 * then acts only inside directories nobody else can change.
 */
#ifndef RELAYVISOR_FSDIR_H
#define RELAYVISOR_FSDIR_H

#include <stdbool.h>
#include <sys/types.h>

/* create path (missing parents get 0755, root's) owned by uid:gid with mode,
   or check the existing one; *created_r tells which (may be NULL). -1 with
   *error_r (static buffer) naming the path, the problem and the fix. */
int fsdir_ensure(const char *path, uid_t uid, gid_t gid, mode_t mode,
    bool *created_r, const char **error_r);

/* a user name for messages ("root", "nobody", or the number) */
const char *fsdir_user_name(uid_t uid);

#endif
