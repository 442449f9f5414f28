/*
 * Password file: parsing with file:line errors, crypt(3) verification (libxcrypt),
 * yescrypt hashing, and the atomic rewrite behind `relayvisorctl passwd`.
 */
#include "common/passwd.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/xmalloc.h"
#include "common/address.h"

struct passwd_db {
	struct passwd_entry *v;
	size_t n;
};

static void
err_add(struct passwd_errors *errs, const char *name, unsigned line, const char *fmt,
    const char *arg)
{
	char msg[512];
	snprintf(msg, sizeof(msg), fmt, arg != NULL ? arg : "");
	errs->v = xreallocarray(errs->v, errs->n + 1, sizeof(*errs->v));
	errs->v[errs->n++] = line > 0 ? xasprintf("%s:%u: %s", name, line, msg) :
	    xasprintf("%s: %s", name, msg);
}

void
passwd_errors_free(struct passwd_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		free(errs->v[i]);
	free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

static void
entry_free(struct passwd_entry *e)
{
	free(e->user);
	if (e->hash != NULL) {
		OPENSSL_cleanse(e->hash, strlen(e->hash));
		free(e->hash);
	}
	for (size_t i = 0; i < e->naddrs; i++)
		free(e->addrs[i]);
	free(e->addrs);
}

void
passwd_db_free(struct passwd_db *db)
{
	if (db == NULL)
		return;
	for (size_t i = 0; i < db->n; i++)
		entry_free(&db->v[i]);
	free(db->v);
	free(db);
}

size_t
passwd_db_count(const struct passwd_db *db)
{
	return db->n;
}

bool
passwd_user_valid(const char *user)
{
	size_t n = strlen(user);
	if (n == 0 || n > PASSWD_USER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)user[i];
		if (c <= ' ' || c == 0x7f || c == ':')
			return false;
	}
	return true;
}

/* a hash we can verify: libxcrypt knows it and it is not a legacy one */
static const char *
hash_problem(const char *hash)
{
	static const char *legacy =
	    "legacy hash (DES or MD5): set a new password with relayvisorctl passwd";
	static const char *unknown =
	    "not a crypt(3) hash (yescrypt $y$, bcrypt $2b$, sha512-crypt $6$)";
	if (hash[0] == '!' || hash[0] == '*')
		return NULL;	/* locked */
	if (hash[0] != '$')	/* traditional DES is 13 characters, or no hash */
		return strlen(hash) == 13 && crypt_checksalt(hash) != CRYPT_SALT_INVALID ?
		    legacy : unknown;
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_OK:
		break;
	case CRYPT_SALT_METHOD_LEGACY:
		return legacy;
	default:
		return unknown;
	}
	return NULL;
}

/* "a@b.example,@c.example" -> canonical patterns */
static int
parse_addrs(struct passwd_entry *e, char *field, struct passwd_errors *errs,
    const char *name, unsigned line)
{
	char *save = NULL;
	for (char *a = strtok_r(field, ",", &save); a != NULL; a = strtok_r(NULL, ",", &save)) {
		while (*a == ' ')
			a++;
		size_t n = strlen(a);
		while (n > 0 && a[n - 1] == ' ')
			a[--n] = '\0';
		char canon[ADDR_PATH_MAX + 8];
		if (n == 0 || !address_pattern_canon(a, canon, sizeof(canon))) {
			err_add(errs, name, line, "bad address \"%s\": expected user@domain "
			    "or @domain", a);
			return -1;
		}
		if (e->naddrs == PASSWD_ADDRS_MAX) {
			err_add(errs, name, line, "more than 64 addresses%s", NULL);
			return -1;
		}
		e->addrs = xreallocarray(e->addrs, e->naddrs + 1, sizeof(*e->addrs));
		e->addrs[e->naddrs++] = xstrdup(canon);
	}
	return 0;
}

struct passwd_db *
passwd_db_parse(const char *name, const char *text, size_t len, struct passwd_errors *errs)
{
	struct passwd_db *db = xcalloc(1, sizeof(*db));
	size_t nerr = errs->n;
	unsigned lineno = 0;
	const char *p = text, *end = text + len;
	if (len > PASSWD_FILE_MAX)
		err_add(errs, name, 0, "larger than 16 MB%s", NULL);
	while (p < end && errs->n == nerr) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		lineno++;
		char *line = xstrndup(p, n);
		p = nl != NULL ? nl + 1 : end;
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		size_t lead = strspn(line, " \t");
		if (line[lead] == '\0' || line[lead] == '#') {
			free(line);
			continue;
		}
		if (memchr(line, '\0', n) != NULL) {
			err_add(errs, name, lineno, "NUL octet in the line%s", NULL);
			free(line);
			continue;
		}
		char *c1 = strchr(line, ':');
		char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
		if (c1 == NULL) {
			err_add(errs, name, lineno, "expected user:HASH[:addresses]%s", NULL);
			OPENSSL_cleanse(line, n);
			free(line);
			continue;
		}
		*c1 = '\0';
		if (c2 != NULL)
			*c2 = '\0';
		struct passwd_entry e = { 0 };
		e.line = lineno;
		if (!passwd_user_valid(line)) {
			err_add(errs, name, lineno, "bad user name \"%s\": 1 to 255 octets, "
			    "no ':', space or control character", line);
		} else if (c2 != NULL && strchr(c2 + 1, ':') != NULL) {
			err_add(errs, name, lineno, "too many fields: expected "
			    "user:HASH[:addresses]%s", NULL);
		} else if (c1[1] == '\0') {
			err_add(errs, name, lineno, "empty hash for %s", line);
		} else if (hash_problem(c1 + 1) != NULL) {
			err_add(errs, name, lineno, "%s", hash_problem(c1 + 1));
		} else if (passwd_db_find(db, line) != NULL) {
			char msg[64];
			snprintf(msg, sizeof(msg), "%u", passwd_db_find(db, line)->line);
			err_add(errs, name, lineno, "user defined twice (first on line %s)",
			    msg);
		} else {
			e.user = xstrdup(line);
			e.hash = xstrdup(c1 + 1);
			if (c2 != NULL && parse_addrs(&e, c2 + 1, errs, name, lineno) == -1) {
				entry_free(&e);
			} else {
				db->v = xreallocarray(db->v, db->n + 1, sizeof(*db->v));
				db->v[db->n++] = e;
			}
		}
		OPENSSL_cleanse(line, n);
		free(line);
	}
	if (errs->n != nerr) {
		passwd_db_free(db);
		return NULL;
	}
	return db;
}

struct passwd_db *
passwd_db_load_fd(int fd, const char *name, struct passwd_errors *errs)
{
	struct stat st;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		err_add(errs, name, 0, "%s", errno ? strerror(errno) : "not a regular file");
		return NULL;
	}
	if (st.st_size > PASSWD_FILE_MAX) {
		err_add(errs, name, 0, "larger than 16 MB%s", NULL);
		return NULL;
	}
	size_t len = (size_t)st.st_size, off = 0;
	char *buf = xcalloc(1, len + 1);
	while (off < len) {
		ssize_t r = pread(fd, buf + off, len - off, (off_t)off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	struct passwd_db *db = NULL;
	if (off < len)
		err_add(errs, name, 0, "read: %s", strerror(errno ? errno : EIO));
	else
		db = passwd_db_parse(name, buf, len, errs);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return db;
}

struct passwd_db *
passwd_db_load(const char *path, struct passwd_errors *errs)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		err_add(errs, path, 0, "%s", strerror(errno));
		return NULL;
	}
	errno = 0;
	struct passwd_db *db = passwd_db_load_fd(fd, path, errs);
	close(fd);
	return db;
}

const struct passwd_entry *
passwd_db_find(const struct passwd_db *db, const char *user)
{
	for (size_t i = 0; i < db->n; i++)
		if (strcmp(db->v[i].user, user) == 0)
			return &db->v[i];
	return NULL;
}

int
passwd_hash_verify(const char *hash, const char *password)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return -1;
	int r;
	bool locked = hash[0] == '!' || hash[0] == '*';
	const char *out = crypt_rn(password, locked ? hash + 1 : hash, cd, sizeof(*cd));
	if (out == NULL || out[0] == '*') {
		r = locked ? 0 : -1;
	} else {
		size_t n = strlen(out), m = strlen(locked ? hash + 1 : hash);
		r = !locked && n == m && CRYPTO_memcmp(out, hash, n) == 0;
	}
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return r;
}

int
passwd_hash_new(const char *password, char *out, size_t outlen, const char **error_r)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL) {
		*error_r = "crypt_gensalt_rn($y$) failed: no yescrypt in libxcrypt?";
		return -1;
	}
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (cd == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	const char *h = crypt_rn(password, salt, cd, sizeof(*cd));
	int r = -1;
	if (h == NULL || h[0] == '*' || strlen(h) >= outlen)
		*error_r = "crypt_rn failed";
	else {
		memcpy(out, h, strlen(h) + 1);
		r = 0;
	}
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return r;
}

enum passwd_result
passwd_db_check(const struct passwd_db *db, const char *user, const char *password,
    const struct passwd_entry **entry_r)
{
	/* an unknown user is checked against a hash of our own making, so that it
	   takes as long as a known one */
	static char dummy[CRYPT_OUTPUT_SIZE];
	const char *error;
	if (entry_r != NULL)
		*entry_r = NULL;
	if (db == NULL)
		return PASSWD_TEMPFAIL;
	const struct passwd_entry *e = passwd_db_find(db, user);
	if (e == NULL) {
		if (dummy[0] == '\0' && passwd_hash_new("relayvisor", dummy, sizeof(dummy),
		    &error) == -1)
			return PASSWD_TEMPFAIL;
		(void)passwd_hash_verify(dummy, password);
		return PASSWD_FAIL;
	}
	int r = passwd_hash_verify(e->hash, password);
	if (r == -1)
		return PASSWD_TEMPFAIL;
	if (r == 0)
		return PASSWD_FAIL;
	if (entry_r != NULL)
		*entry_r = e;
	return PASSWD_OK;
}

bool
passwd_entry_sender_allowed(const struct passwd_entry *e, const char *from)
{
	struct mailaddr a;
	const char *error;
	char path[ADDR_PATH_MAX + 8];
	if (e == NULL || snprintf(path, sizeof(path), "<%s>", from) >= (int)sizeof(path) ||
	    address_parse(path, &a, &error) == -1 || a.null)
		return false;
	for (size_t i = 0; i < e->naddrs; i++)
		if (address_match_pattern(&a, e->addrs[i]))
			return true;
	return false;
}

/* the whole file, or NULL with errno (ENOENT: none yet) */
static char *
read_all(int fd, size_t *len_r)
{
	struct stat st;
	if (fstat(fd, &st) == -1)
		return NULL;
	if (!S_ISREG(st.st_mode) || st.st_size > PASSWD_FILE_MAX) {
		errno = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		return NULL;
	}
	size_t len = (size_t)st.st_size, off = 0;
	char *buf = xcalloc(1, len + 1);
	while (off < len) {
		ssize_t r = read(fd, buf + off, len - off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			errno = r == 0 ? EIO : errno;
			return NULL;
		}
		off += (size_t)r;
	}
	*len_r = len;
	return buf;
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* old text with the user's line replaced by user:hash (keeping its addresses),
   or the line appended */
static char *
replace_line(const char *old, size_t len, const char *user, const char *hash,
    size_t *outlen)
{
	size_t ulen = strlen(user), cap = len + strlen(user) + strlen(hash) + 8, n = 0;
	bool done = false;
	const char *p, *end = old + len;
	char *out = xcalloc(1, cap + 1);
	for (p = old; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		if (!done && ll > ulen && strncmp(p, user, ulen) == 0 && p[ulen] == ':') {
			const char *rest = memchr(p + ulen + 1, ':', ll - ulen - 1);
			size_t restlen = rest != NULL ? (size_t)(p + ll - rest) : 0;
			/* the old hash may be longer than the new one: room is enough */
			n += (size_t)snprintf(out + n, cap + 1 - n, "%s:%s", user, hash);
			if (restlen > 0) {
				memcpy(out + n, rest, restlen);
				n += restlen;
			}
			out[n++] = '\n';
			done = true;
		} else {
			memcpy(out + n, p, ll);
			n += ll;
			out[n++] = '\n';
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (!done)
		n += (size_t)snprintf(out + n, cap + 1 - n, "%s:%s\n", user, hash);
	*outlen = n;
	return out;
}

int
passwd_file_set(const char *path, const char *user, const char *password,
    const char **error_r)
{
	static char err[PATH_MAX + 128];
	char hash[CRYPT_OUTPUT_SIZE];
	if (!passwd_user_valid(user)) {
		*error_r = "bad user name: 1 to 255 octets, no ':', space or control character";
		return -1;
	}
	size_t plen = strlen(password);
	if (plen == 0 || plen > PASSWD_PASS_MAX || strchr(password, '\n') != NULL) {
		*error_r = plen == 0 ? "empty password" :
		    "bad password: at most 1023 octets, one line";
		return -1;
	}
	if (passwd_hash_new(password, hash, sizeof(hash), error_r) == -1)
		return -1;

	mode_t mode = 0600;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	char *old = NULL;
	size_t oldlen = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno != ENOENT) {
		snprintf(err, sizeof(err), "%s: %s", path, strerror(errno));
		*error_r = err;
		return -1;
	}
	if (fd != -1) {
		struct stat st;
		if (fstat(fd, &st) == -1 || (old = read_all(fd, &oldlen)) == NULL) {
			snprintf(err, sizeof(err), "%s: %s", path, strerror(errno));
			*error_r = err;
			close(fd);
			return -1;
		}
		mode = st.st_mode & 07777;
		uid = st.st_uid;
		gid = st.st_gid;
		close(fd);
	}
	size_t newlen;
	char *text = replace_line(old != NULL ? old : "", oldlen, user, hash, &newlen);
	if (old != NULL) {
		OPENSSL_cleanse(old, oldlen);
		free(old);
	}

	char dirbuf[PATH_MAX], basebuf[PATH_MAX], tmp[PATH_MAX];
	snprintf(dirbuf, sizeof(dirbuf), "%s", path);
	snprintf(basebuf, sizeof(basebuf), "%s", path);
	const char *dir = dirname(dirbuf), *base = basename(basebuf);
	int r = -1;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, base) >= sizeof(tmp)) {
		*error_r = "path too long";
		goto out;
	}
	int tfd = mkostemp(tmp, O_CLOEXEC);
	if (tfd == -1) {
		snprintf(err, sizeof(err), "mkstemp %s: %s", tmp, strerror(errno));
		*error_r = err;
		goto out;
	}
	const char *what = NULL;
	if (fchmod(tfd, mode) == -1)
		what = "fchmod";
	else if (uid != (uid_t)-1 && geteuid() == 0 && fchown(tfd, uid, gid) == -1)
		what = "fchown";
	else if (write_all(tfd, text, newlen) == -1)
		what = "write";
	else if (fsync(tfd) == -1)
		what = "fsync";
	if (close(tfd) == -1 && what == NULL)
		what = "close";
	if (what == NULL && rename(tmp, path) == -1)
		what = "rename";
	if (what != NULL) {
		snprintf(err, sizeof(err), "%s %s: %s", what, tmp, strerror(errno));
		*error_r = err;
		unlink(tmp);
		goto out;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd == -1 || fsync(dfd) == -1) {
		snprintf(err, sizeof(err), "fsync %s: %s", dir, strerror(errno));
		*error_r = err;
		if (dfd != -1)
			close(dfd);
		goto out;
	}
	close(dfd);
	r = 0;
out:
	OPENSSL_cleanse(text, newlen);
	OPENSSL_cleanse(hash, sizeof(hash));
	free(text);
	return r;
}
