/*
 * confine_apply(): chroot, drop groups, switch user, no new privileges, not
 * dumpable, then prove root is gone (see confine.h). Each step is checked where
 * it is made; a failure is an error the caller turns into exit, never a warning.
 */
#include "common/confine.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static char confine_err[512];

static int
confine_fail(const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
confine_fail(const char **error_r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(confine_err, sizeof(confine_err), fmt, ap);
	va_end(ap);
	*error_r = confine_err;
	return -1;
}

int
confine_check_empty_dir(int dirfd, const char *path, const char **error_r)
{
	struct stat st;
	if (fstat(dirfd, &st) == -1)
		return confine_fail(error_r, "stat %s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return confine_fail(error_r, "%s: not a directory", path);
	if (st.st_uid != 0)
		return confine_fail(error_r, "%s: owned by uid %lu, not root (fix: "
		    "chown root:root %s)", path, (unsigned long)st.st_uid, path);
	if ((st.st_mode & 022) != 0)
		return confine_fail(error_r, "%s: writable by group or others (fix: "
		    "chmod 0555 %s)", path, path);
	int fd = dup(dirfd);
	DIR *d = fd == -1 ? NULL : fdopendir(fd);
	if (d == NULL) {
		if (fd != -1)
			close(fd);
		return confine_fail(error_r, "opendir %s: %s", path, strerror(errno));
	}
	rewinddir(d);
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		r = confine_fail(error_r, "%s: not empty (%s in it); a chroot must be "
		    "an empty directory", path, de->d_name);
		break;
	}
	closedir(d);
	return r;
}

/*
 * Sanitizer builds: reports are written to files named by log_path, which a
 * chrooted process can no longer open, and symbolisation reads /proc/self/maps.
 * The runtime offers hooks for sandboxes (Chrome uses them): cache the mappings
 * and open the report file now. Absent from normal builds (weak symbols).
 */
struct sanitizer_sandbox_args {
	int coverage_sandboxed;
	intptr_t coverage_fd;
	unsigned int coverage_max_block_size;
};
void __sanitizer_sandbox_on_notify(struct sanitizer_sandbox_args *args)
    __attribute__((weak));
void __sanitizer_set_report_fd(void *fd) __attribute__((weak));
void __lsan_do_leak_check(void) __attribute__((weak));

bool
confine_leak_check_blind(const struct confine_result *res)
{
	return res->chrooted && __lsan_do_leak_check != NULL;
}

static void
confine_sanitizer_prepare(void)
{
	if (__sanitizer_sandbox_on_notify == NULL)
		return;
	struct sanitizer_sandbox_args args = { 0, -1, 0 };
	__sanitizer_sandbox_on_notify(&args);
	const char *opts = getenv("ASAN_OPTIONS");
	const char *lp = opts != NULL ? strstr(opts, "log_path=") : NULL;
	if (lp == NULL || __sanitizer_set_report_fd == NULL)
		return;
	lp += strlen("log_path=");
	char path[4096];
	size_t n = strcspn(lp, ":");
	if (snprintf(path, sizeof(path), "%.*s.confined.%ld", (int)n, lp,
	    (long)getpid()) >= (int)sizeof(path))
		return;
	/* created on demand would be nicer; an empty file is not a report */
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd != -1)
		__sanitizer_set_report_fd((void *)(intptr_t)fd);
}

/* effective or permitted capabilities left: the switch did not take them all */
static int
confine_caps_left(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) == -1)
		return -1;
	return (data[0].effective | data[1].effective | data[0].permitted |
	    data[1].permitted) != 0;
}

int
confine_apply(const struct confine *c, struct confine_result *res,
    const char **error_r)
{
	memset(res, 0, sizeof(*res));
	res->uid = geteuid();
	res->gid = getegid();
	/* the time zone is read from /etc/localtime once, before it disappears */
	tzset();
	bool root = geteuid() == 0;
	if (root && c->user != NULL) {
		errno = 0;
		struct passwd *pw = getpwnam(c->user);
		if (pw == NULL)
			return confine_fail(error_r, "user %s: %s", c->user,
			    errno != 0 ? strerror(errno) : "no such user");
		uid_t uid = pw->pw_uid;
		gid_t gid = pw->pw_gid;
		if (uid == 0)
			return confine_fail(error_r, "user %s has uid 0: a confined "
			    "process never runs as root", c->user);
		if (c->chroot != NULL) {
			int dfd = open(c->chroot, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
			    O_CLOEXEC);
			if (dfd == -1)
				return confine_fail(error_r, "open %s: %s", c->chroot,
				    strerror(errno));
			int r = confine_check_empty_dir(dfd, c->chroot, error_r);
			close(dfd);
			if (r == -1)
				return -1;
			confine_sanitizer_prepare();
			if (chroot(c->chroot) == -1)
				return confine_fail(error_r, "chroot %s: %s", c->chroot,
				    strerror(errno));
			if (chdir("/") == -1)
				return confine_fail(error_r, "chdir / in %s: %s",
				    c->chroot, strerror(errno));
			res->chrooted = true;
		}
		if (setgroups(0, NULL) == -1)
			return confine_fail(error_r, "setgroups: %s", strerror(errno));
		if (setresgid(gid, gid, gid) == -1)
			return confine_fail(error_r, "setresgid %lu: %s",
			    (unsigned long)gid, strerror(errno));
		if (setresuid(uid, uid, uid) == -1)
			return confine_fail(error_r, "setresuid %lu: %s",
			    (unsigned long)uid, strerror(errno));
		res->switched = true;
		res->uid = uid;
		res->gid = gid;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return confine_fail(error_r, "prctl PR_SET_NO_NEW_PRIVS: %s",
		    strerror(errno));
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		return confine_fail(error_r, "prctl PR_SET_DUMPABLE: %s", strerror(errno));
	if (res->switched) {
		/* prove it: none of these may work any more */
		if (setuid(0) != -1 || seteuid(0) != -1)
			return confine_fail(error_r, "root could be regained after "
			    "switching to %s", c->user);
		if (res->gid != 0 && (setgid(0) != -1 || setegid(0) != -1))
			return confine_fail(error_r, "group root could be regained "
			    "after switching to %s", c->user);
		uid_t ru, eu, su;
		gid_t rg, eg, sg;
		if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1 ||
		    ru != res->uid || eu != res->uid || su != res->uid ||
		    rg != res->gid || eg != res->gid || sg != res->gid)
			return confine_fail(error_r, "credentials are not all %lu:%lu "
			    "after the switch", (unsigned long)res->uid,
			    (unsigned long)res->gid);
		if (getgroups(0, NULL) != 0)
			return confine_fail(error_r, "supplementary groups remain");
		if (confine_caps_left() != 0)
			return confine_fail(error_r, "capabilities remain after "
			    "switching to %s", c->user);
	}
	return 0;
}
