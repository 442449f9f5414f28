/*
 * Maildir delivery (maildir.h): safe expansion of the path template, a directory walk
 * with openat(O_NOFOLLOW) below the administrator's prefix, tmp file, fsync,
 * rename into new/, fsync of new/.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "deliver/maildir.h"

#define MAILDIR_NAME_MAX 255
#define MAILDIR_HDR_LINE 1000

struct maildir_msg {
	int dirfd;			/* the maildir */
	int fd;				/* tmp/<name> */
	char name[MAILDIR_NAME_MAX + 1];
	size_t size;			/* octets written, LF line ends */
	bool cr;			/* a CR ended the previous chunk */
	bool in_header, bol;
	char line[MAILDIR_HDR_LINE + 1];	/* header line being read */
	size_t line_len;
	char *dt_rcpt;			/* our Delivered-To value */
	bool loop;
	int error;			/* errno of a failed write */
};

static unsigned long counter;

int
maildir_encode(const char *in, char *out, size_t len)
{
	static const char safe[] = "-_+=!#$&'*^`{|}~.";
	size_t o = 0;

	for (size_t i = 0; in[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)tolower((unsigned char)in[i]);
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    (ch != 0 && strchr(safe, ch) != NULL);
		if (i == 0 && ch == '.')
			ok = false;
		if (ok) {
			if (o + 1 >= len)
				return -1;
			out[o++] = (char)ch;
		} else {
			if (o + 3 >= len)
				return -1;
			snprintf(out + o, 4, "%%%02X", ch);
			o += 3;
		}
	}
	if (o == 0 || o > MAILDIR_NAME_MAX)
		return -1;
	out[o] = '\0';
	return 0;
}

int
maildir_expand(const char *tmpl, const char *local, const char *domain, char *out,
    size_t len, const char **error_r)
{
	char enc_l[MAILDIR_NAME_MAX + 1], enc_d[MAILDIR_NAME_MAX + 1];
	size_t o = 0;

	if (maildir_encode(local, enc_l, sizeof(enc_l)) == -1) {
		*error_r = "local part empty or too long for a mailbox name";
		return -1;
	}
	if (maildir_encode(domain, enc_d, sizeof(enc_d)) == -1) {
		*error_r = "domain empty or too long for a mailbox name";
		return -1;
	}
	for (const char *p = tmpl; *p != '\0'; p++) {
		const char *add = NULL;
		char one[2] = { *p, '\0' };
		if (*p == '%' && (p[1] == 'd' || p[1] == 'u' || p[1] == '%')) {
			add = p[1] == 'd' ? enc_d : p[1] == 'u' ? enc_l : "%";
			p++;
		} else {
			add = one;
		}
		size_t n = strlen(add);
		if (o + n >= len) {
			*error_r = "mailbox path too long";
			return -1;
		}
		memcpy(out + o, add, n);
		o += n;
	}
	out[o] = '\0';
	return 0;
}

/* open (creating when missing) dir `name` under dirfd; nofollow below the prefix */
static int
open_dir(int dirfd, const char *name, bool nofollow)
{
	int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0);
	int fd = openat(dirfd, name, flags);

	if (fd == -1 && errno == ENOENT) {
		if (mkdirat(dirfd, name, 0700) == -1 && errno != EEXIST)
			return -1;
		fd = openat(dirfd, name, flags);
	}
	return fd;
}

/* the template's fixed prefix, opened by maildir_base_open() before the drop */
static int base_fd = -1;
static char base_prefix[4096];

/* the length of tmpl's fixed part: up to the '/' before the first expansion */
static size_t
fixed_len(const char *tmpl)
{
	const char *pct = strchr(tmpl, '%');
	size_t fixed = strlen(tmpl);
	if (pct != NULL) {
		fixed = (size_t)(pct - tmpl);
		while (fixed > 0 && tmpl[fixed - 1] != '/')
			fixed--;
	}
	return fixed;
}

int
maildir_base_open(const char *tmpl, uid_t uid, gid_t gid, const char **error_r)
{
	size_t fixed = fixed_len(tmpl);
	if (tmpl[0] != '/' || fixed >= sizeof(base_prefix)) {
		*error_r = "maildir template is not an absolute path";
		return -1;
	}
	memcpy(base_prefix, tmpl, fixed);
	base_prefix[fixed] = '\0';
	/* mkdir -p; only the directory itself, when we made it, is given away */
	char *copy = xstrdup(base_prefix), *save = NULL;
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	bool made = false;
	for (char *c = strtok_r(copy, "/", &save); c != NULL && fd != -1;
	    c = strtok_r(NULL, "/", &save)) {
		made = mkdirat(fd, c, 0755) == 0;
		int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int e = errno;
		close(fd);
		errno = e;
		fd = next;
	}
	free(copy);
	if (fd != -1 && made && (uid != (uid_t)-1 || gid != (gid_t)-1) &&
	    fchown(fd, uid, gid) == -1)
		log_warn("chown %s", base_prefix);
	if (fd == -1) {
		log_warn("maildir base %s", base_prefix);
		*error_r = "cannot create or open the maildir template's directory";
		return -1;
	}
	if (base_fd != -1)
		close(base_fd);
	base_fd = fd;
	return 0;
}

/*
 * Walk path from "/" (or from the base opened before the privilege drop, when
 * path lies below it): components before `fixed` octets follow symlinks (the
 * administrator's prefix), the rest do not. Returns the maildir's fd.
 */
static int
walk(const char *path, size_t fixed)
{
	size_t blen = strlen(base_prefix);
	bool below = base_fd != -1 && blen > 0 && blen <= fixed &&
	    strncmp(path, base_prefix, blen) == 0;
	char *copy = xstrdup(below ? path + blen : path), *save = NULL;
	int fd = below ? fcntl(base_fd, F_DUPFD_CLOEXEC, 0) :
	    open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (below)
		fixed -= blen;

	for (char *c = strtok_r(copy, "/", &save); c != NULL && fd != -1;
	    c = strtok_r(NULL, "/", &save)) {
		bool nofollow = (size_t)(c - copy) + strlen(c) > fixed;
		int next = open_dir(fd, c, nofollow);
		int e = errno;
		close(fd);
		errno = e;
		fd = next;
	}
	free(copy);
	return fd;
}

static void
hostname_part(const char *host, char *out, size_t len)
{
	size_t o = 0;

	/* qmail: '/' -> \057, ':' -> \072 */
	for (; *host != '\0' && o + 5 < len; host++) {
		if (*host == '/' || *host == ':')
			o += (size_t)snprintf(out + o, len - o, "\\%03o", (unsigned char)*host);
		else if ((unsigned char)*host > 0x20 && (unsigned char)*host < 0x7f)
			out[o++] = *host;
	}
	out[o] = '\0';
	if (o == 0)
		snprintf(out, len, "localhost");
}

static bool
write_all(struct maildir_msg *m, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(m->fd, p, n);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			m->error = errno;
			return false;
		}
		p += w;
		n -= (size_t)w;
		m->size += (size_t)w;
	}
	return true;
}

struct maildir_msg *
maildir_open(const char *tmpl, const char *local, const char *domain, const char *sender,
    const char *rcpt, const char *hostname, bool *temp_r, const char **error_r)
{
	char path[4096], host[128];
	const char *pct = strchr(tmpl, '%');
	size_t fixed;

	*temp_r = false;
	if (tmpl[0] != '/') {
		*error_r = "maildir template is not an absolute path";
		return NULL;
	}
	if (maildir_expand(tmpl, local, domain, path, sizeof(path), error_r) == -1)
		return NULL;
	/* the fixed prefix: up to the '/' before the first expansion */
	fixed = pct != NULL ? fixed_len(tmpl) : strlen(path);
	struct maildir_msg *m = xcalloc(1, sizeof(*m));
	m->fd = -1;
	m->dirfd = walk(path, fixed);
	*temp_r = true;
	if (m->dirfd == -1) {
		log_warn("maildir %s", path);
		*error_r = errno == ELOOP || errno == ENOTDIR ?
		    "mailbox path is not a directory (symlink refused)" :
		    "cannot create or open the maildir";
		if (errno == ELOOP || errno == ENOTDIR)
			*temp_r = false;
		free(m);
		return NULL;
	}
	for (size_t i = 0; i < 3; i++) {
		static const char *const sub[] = { "tmp", "new", "cur" };
		int fd = open_dir(m->dirfd, sub[i], true);
		if (fd == -1) {
			log_warn("maildir %s/%s", path, sub[i]);
			*error_r = "cannot create tmp/, new/ or cur/ in the maildir";
			close(m->dirfd);
			free(m);
			return NULL;
		}
		close(fd);
	}

	struct timeval tv;
	unsigned char rnd[4] = { 0 };
	gettimeofday(&tv, NULL);
	if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));	/* counter and pid still make it unique */
	hostname_part(hostname != NULL ? hostname : "localhost", host, sizeof(host));
	snprintf(m->name, sizeof(m->name), "%lld.M%06ldP%ldQ%luR%02x%02x%02x%02x.%s",
	    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), ++counter,
	    rnd[0], rnd[1], rnd[2], rnd[3], host);
	char tmpname[MAILDIR_NAME_MAX + 8];
	snprintf(tmpname, sizeof(tmpname), "tmp/%s", m->name);
	m->fd = openat(m->dirfd, tmpname,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (m->fd == -1) {
		log_warn("maildir %s/%s", path, tmpname);
		*error_r = "cannot create a file in the maildir's tmp/";
		close(m->dirfd);
		free(m);
		return NULL;
	}
	m->in_header = true;
	m->bol = true;
	m->dt_rcpt = xstrdup(rcpt);
	char *hdr = xasprintf("Return-Path: <%s>\nDelivered-To: %s\n", sender, rcpt);
	bool ok = write_all(m, hdr, strlen(hdr));
	free(hdr);
	if (!ok) {
		*error_r = "cannot write to the maildir";
		maildir_abort(m);
		return NULL;
	}
	return m;
}

/* a complete header line (no line end): a Delivered-To naming us is a loop */
static void
header_line(struct maildir_msg *m)
{
	const char *l = m->line;
	size_t n = strlen("Delivered-To:");

	if (m->line_len == 0) {
		m->in_header = false;
		return;
	}
	if (m->line_len > n && strncasecmp(l, "Delivered-To:", n) == 0) {
		l += n;
		while (*l == ' ' || *l == '\t')
			l++;
		size_t len = strlen(l);
		while (len > 0 && (l[len - 1] == ' ' || l[len - 1] == '\t'))
			len--;
		if (len == strlen(m->dt_rcpt) && strncasecmp(l, m->dt_rcpt, len) == 0)
			m->loop = true;
	}
}

int
maildir_write(struct maildir_msg *m, const void *data, size_t len, const char **error_r)
{
	const char *p = data, *end = p + len;
	char buf[8192];
	size_t o = 0;

	if (m->error != 0) {
		*error_r = "cannot write to the maildir";
		return -1;
	}
	for (; p < end; p++) {
		char ch = *p;
		if (m->cr) {
			m->cr = false;
			if (ch != '\n') {	/* a bare CR stays */
				buf[o++] = '\r';
				if (m->in_header && m->line_len < MAILDIR_HDR_LINE)
					m->line[m->line_len++] = '\r';
			}
		}
		if (ch == '\r') {
			m->cr = true;
			continue;
		}
		buf[o++] = ch;
		if (m->in_header) {
			if (ch == '\n') {
				m->line[m->line_len] = '\0';
				header_line(m);
				m->line_len = 0;
			} else if (m->line_len < MAILDIR_HDR_LINE) {
				m->line[m->line_len++] = ch;
			}
		}
		if (o + 2 >= sizeof(buf)) {
			if (!write_all(m, buf, o))
				break;
			o = 0;
		}
	}
	if (m->error == 0 && o > 0)
		write_all(m, buf, o);
	if (m->error != 0) {
		errno = m->error;
		log_warn("maildir write %s", m->name);
		*error_r = "cannot write to the maildir";
		return -1;
	}
	return 0;
}

void
maildir_abort(struct maildir_msg *m)
{
	char tmpname[MAILDIR_NAME_MAX + 8];

	if (m == NULL)
		return;
	if (m->fd != -1)
		close(m->fd);
	snprintf(tmpname, sizeof(tmpname), "tmp/%s", m->name);
	if (unlinkat(m->dirfd, tmpname, 0) == -1 && errno != ENOENT)
		log_warn("maildir unlink %s", tmpname);
	close(m->dirfd);
	free(m->dt_rcpt);
	free(m);
}

int
maildir_commit(struct maildir_msg *m, char *name_r, size_t len, bool *temp_r,
    const char **error_r)
{
	char tmpname[MAILDIR_NAME_MAX + 8], newname[MAILDIR_NAME_MAX + 40];

	*temp_r = true;
	if (m->cr) {
		m->cr = false;
		write_all(m, "\r", 1);
	}
	if (m->loop) {
		*temp_r = false;
		*error_r = "mail forwarding loop: the message already has our Delivered-To";
		maildir_abort(m);
		return -1;
	}
	if (m->error != 0 || fsync(m->fd) == -1) {
		log_warn("maildir fsync %s", m->name);
		*error_r = "cannot write the message to disk";
		maildir_abort(m);
		return -1;
	}
	if (close(m->fd) == -1) {
		m->fd = -1;
		log_warn("maildir close %s", m->name);
		*error_r = "cannot write the message to disk";
		maildir_abort(m);
		return -1;
	}
	m->fd = -1;
	snprintf(tmpname, sizeof(tmpname), "tmp/%s", m->name);
	snprintf(newname, sizeof(newname), "new/%s,S=%zu", m->name, m->size);
	if (renameat(m->dirfd, tmpname, m->dirfd, newname) == -1) {
		log_warn("maildir rename %s", tmpname);
		*error_r = "cannot move the message into new/";
		maildir_abort(m);
		return -1;
	}
	int nfd = openat(m->dirfd, "new", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (nfd == -1 || fsync(nfd) == -1) {
		/* the rename is done; not knowing it is durable, we must not say so */
		log_warn("maildir fsync new/");
		if (nfd != -1)
			close(nfd);
		unlinkat(m->dirfd, newname, 0);
		*error_r = "cannot make the delivery durable";
		close(m->dirfd);
		free(m->dt_rcpt);
		free(m);
		return -1;
	}
	close(nfd);
	snprintf(name_r, len, "%s", newname);
	close(m->dirfd);
	free(m->dt_rcpt);
	free(m);
	return 0;
}
