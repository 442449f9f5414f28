/*
 * Confinement of a child process, OpenSMTPD's way: the process is executed as
 * root, opens every descriptor it will ever need (sockets, configuration, spool,
 * spill directory), then calls confine_apply(): chroot into an empty directory
 * owned by root, no supplementary groups, the unprivileged user's gid and uid
 * (real, effective and saved), PR_SET_NO_NEW_PRIVS, not dumpable, and a check
 * that root cannot be regained. From then on it reaches files only through the
 * descriptors it holds.
 *
 * Every kind of child the supervisor runs (listeners today; a queue manager and
 * delivery agents later) fills a struct confine with what it needs and calls the
 * same function; a process that is not root only gets NO_NEW_PRIVS and
 * non-dumpable.
 */
#ifndef RELAYVISOR_CONFINE_H
#define RELAYVISOR_CONFINE_H

#include <stdbool.h>
#include <sys/types.h>

/* the environment variable through which the supervisor names the user a
   child switches to (childproto.h) */
#define CONFINE_ENV_USER "RELAYVISOR_USER"
/* name of the empty chroot directory the supervisor keeps under the spool */
#define CONFINE_EMPTY_SUBDIR "empty"

struct confine {
	const char *user;	/* NULL: keep the current user (and no chroot) */
	const char *chroot;	/* empty root-owned directory; NULL: no chroot */
	const char *what;	/* for messages: "listener lan" */
};

struct confine_result {
	bool switched;		/* uid changed */
	bool chrooted;
	uid_t uid;
	gid_t gid;
};

/* -1 with *error_r (a static buffer) when any step fails: the caller must exit,
   never serve half-confined */
int confine_apply(const struct confine *c, struct confine_result *res,
    const char **error_r);

/*
 * LeakSanitizer lists a process's threads in /proc, which a chrooted process
 * cannot see: its check at exit can only fail. True in a sanitizer build of a
 * chrooted process, whose main() then leaves with _exit() after its orderly
 * shutdown. (The suite runs the same listener code unconfined too, where the
 * leak check works.)
 */
bool confine_leak_check_blind(const struct confine_result *res);

/* the checks confine_apply() makes of the chroot directory, for the supervisor:
   a directory owned by root, not writable by group or others, and empty */
int confine_check_empty_dir(int dirfd, const char *path, const char **error_r);

#endif
