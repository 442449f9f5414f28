/*
 * fsdir_ensure() (see fsdir.h). The final component is opened with O_NOFOLLOW
 * and changed through its descriptor only, so a symlink planted at the name
 * between the mkdir and the chown cannot redirect a root chown.
 */
#include "common/fsdir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

static char fsdir_err[PATH_MAX + 256];

const char *
fsdir_user_name(uid_t uid)
{
	static char buf[64];
	struct passwd *pw = getpwuid(uid);
	if (pw != NULL)
		snprintf(buf, sizeof(buf), "%s", pw->pw_name);
	else
		snprintf(buf, sizeof(buf), "%lu", (unsigned long)uid);
	return buf;
}

/* missing parents of path, mode 0755 */
static int
fsdir_parents(const char *path, const char **error_r)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		snprintf(fsdir_err, sizeof(fsdir_err), "%.64s...: path too long", path);
		*error_r = fsdir_err;
		return -1;
	}
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) == -1 && errno != EEXIST) {
			snprintf(fsdir_err, sizeof(fsdir_err), "mkdir %s: %s", buf,
			    strerror(errno));
			*error_r = fsdir_err;
			return -1;
		}
		*p = '/';
	}
	return 0;
}

int
fsdir_ensure(const char *path, uid_t uid, gid_t gid, mode_t mode, bool *created_r,
    const char **error_r)
{
	bool created = false;
	if (created_r != NULL)
		*created_r = false;
	if (fsdir_parents(path, error_r) == -1)
		return -1;
	/* created whole under a temporary name, then renamed into place, so that a
	   second process starting at the same moment never sees it half made */
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.%ld.new", path, (long)getpid()) >=
	    (int)sizeof(tmp)) {
		snprintf(fsdir_err, sizeof(fsdir_err), "%.64s...: path too long", path);
		*error_r = fsdir_err;
		return -1;
	}
	struct stat lst;
	if (lstat(path, &lst) == -1 && errno == ENOENT) {
		if (mkdir(tmp, 0700) == -1) {
			snprintf(fsdir_err, sizeof(fsdir_err), "mkdir %s: %s", tmp,
			    strerror(errno));
			*error_r = fsdir_err;
			return -1;
		}
		int tfd = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (tfd == -1 || (geteuid() == 0 && fchown(tfd, uid, gid) == -1) ||
		    fchmod(tfd, mode) == -1) {
			snprintf(fsdir_err, sizeof(fsdir_err), "chown/chmod %s: %s", tmp,
			    strerror(errno));
			if (tfd != -1)
				close(tfd);
			rmdir(tmp);
			*error_r = fsdir_err;
			return -1;
		}
		close(tfd);
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
			created = true;
		else {
			int e = errno;
			rmdir(tmp);
			if (e != EEXIST) {
				snprintf(fsdir_err, sizeof(fsdir_err), "rename %s to %s: %s",
				    tmp, path, strerror(e));
				*error_r = fsdir_err;
				return -1;
			}
			/* someone else made it meanwhile: check theirs below */
		}
	}
	if (created) {
		log_info("created %s (owner %s, mode %04o)", path, fsdir_user_name(uid),
		    (unsigned)mode);
		if (created_r != NULL)
			*created_r = true;
		return 0;
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		snprintf(fsdir_err, sizeof(fsdir_err), "open %s: %s%s", path,
		    strerror(errno), errno == ELOOP ? " (a symbolic link: name the "
		    "directory itself)" : "");
		*error_r = fsdir_err;
		return -1;
	}
	struct stat st;
	int r = fstat(fd, &st);
	close(fd);
	if (r == -1) {
		snprintf(fsdir_err, sizeof(fsdir_err), "stat %s: %s", path, strerror(errno));
		*error_r = fsdir_err;
		return -1;
	}
	if (st.st_uid != uid) {
		char owner[64];
		snprintf(owner, sizeof(owner), "%s", fsdir_user_name(st.st_uid));
		snprintf(fsdir_err, sizeof(fsdir_err), "%s is owned by %s, it must be "
		    "owned by %s (fix: chown %s %s)", path, owner, fsdir_user_name(uid),
		    fsdir_user_name(uid), path);
		*error_r = fsdir_err;
		return -1;
	}
	if ((st.st_mode & 022) != 0) {
		/* a shared directory such as /tmp: the fix is another directory */
		bool shared = (st.st_mode & S_ISVTX) != 0;
		snprintf(fsdir_err, sizeof(fsdir_err), "%s is writable by %s (mode "
		    "%04o) (fix: %s%s)", path,
		    (st.st_mode & 022) == 022 ? "group and others" :
		    (st.st_mode & 002) ? "others" : "its group",
		    (unsigned)(st.st_mode & 07777),
		    shared ? "use a directory of relayvisor's own below " : "chmod go-w ",
		    path);
		*error_r = fsdir_err;
		return -1;
	}
	return 0;
}
