/*
 * The bytes a configuration is built from: every *.yaml of a directory, read once.
 * The supervisor validates exactly these bytes and hands children the same snapshot
 * over a sealed memfd, so a file edited after `-t` or `reload` cannot slip into a
 * child unchecked.
 *
 * Snapshot format (all integers 32-bit big-endian):
 *   "RVCF" version(1) dirlen dir nfiles { namelen name datalen data }*
 */
#include "common/config_internal.h"
#include "common/xmalloc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_MAGIC "RVCF"
#define SNAP_VERSION 1
/* far beyond any sane configuration; bounds what a corrupt snapshot can allocate */
#define SNAP_MAX (64u * 1024 * 1024)

static char source_errbuf[512];

static const char *
source_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(source_errbuf, sizeof(source_errbuf), fmt, ap);
	va_end(ap);
	return source_errbuf;
}

static char *
source_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

/* an empty source for dir; files are appended with source_add() */
static struct config_source *
source_new(const char *dir, size_t n)
{
	struct config_source *src = xcalloc(1, sizeof(*src));

	src->dir = xstrndup(dir, strlen(dir));
	src->files = xcalloc(n, sizeof(*src->files));
	return src;
}

static void
source_add(struct config_source *src, const char *name, size_t namelen, char *data,
    size_t len)
{
	struct config_file *f = &src->files[src->n++];

	f->name = xstrndup(name, namelen);
	f->path = source_path(src->dir, f->name);
	f->data = data;
	f->len = len;
}

size_t
config_source_count(const struct config_source *src)
{
	return src->n;
}

const char *
config_source_name(const struct config_source *src, size_t i)
{
	return i < src->n ? src->files[i].name : NULL;
}

const char *
config_source_dir(const struct config_source *src)
{
	return src->dir;
}

struct config_source *
config_source_from_buffers(const char *dir, const char *const *names,
    const char *const *bufs, size_t n)
{
	struct config_source *src = source_new(dir, n);

	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(bufs[i]);
		source_add(src, names[i], strlen(names[i]), xstrndup(bufs[i], len), len);
	}
	return src;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
is_yaml_name(const char *name)
{
	size_t len = strlen(name);

	/* hidden files are editor droppings (.10-x.yaml.swp) or disabled on purpose */
	return name[0] != '.' && len > 5 && strcmp(name + len - 5, ".yaml") == 0;
}

/* "x.yml": meant as configuration, but not read; the loader says so */
static bool
is_yml_name(const char *name)
{
	size_t len = strlen(name);

	return name[0] != '.' && len > 4 && strcmp(name + len - 4, ".yml") == 0;
}

/* whole file into memory; NUL-terminated for the convenience of the parser */
static int
read_file(const char *path, char **data_r, size_t *len_r, const char **error_r)
{
	int fd;
	struct stat st;
	char *data = NULL;
	size_t len = 0, cap = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		*error_r = source_error("open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		*error_r = source_error("fstat %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*error_r = source_error("%s: not a regular file", path);
		close(fd);
		return -1;
	}
	for (;;) {
		if (len + 1 >= cap) {
			cap = cap == 0 ? 4096 : cap * 2;
			if (cap > SNAP_MAX) {
				*error_r = source_error("%s: file too large", path);
				free(data);
				close(fd);
				return -1;
			}
			char *nd = realloc(data, cap);
			if (nd == NULL)
				abort();
			data = nd;
		}
		ssize_t r = read(fd, data + len, cap - len - 1);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			*error_r = source_error("read %s: %s", path, strerror(errno));
			free(data);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

int
config_source_read_dir(const char *dir, struct config_source **src_r,
    const char **error_r)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct config_source *src;

	if ((d = opendir(dir)) == NULL) {
		*error_r = source_error("opendir %s: %s", dir, strerror(errno));
		return -1;
	}
	char **yml = NULL;
	size_t n_yml = 0;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (is_yml_name(de->d_name)) {
			yml = xreallocarray(yml, n_yml + 1, sizeof(*yml));
			yml[n_yml++] = xstrdup(de->d_name);
			continue;
		}
		if (!is_yaml_name(de->d_name))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			char **nn = realloc(names, cap * sizeof(*names));
			if (nn == NULL)
				abort();
			names = nn;
		}
		names[n++] = xstrndup(de->d_name, strlen(de->d_name));
	}
	if (errno != 0) {
		*error_r = source_error("readdir %s: %s", dir, strerror(errno));
		closedir(d);
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
		for (size_t i = 0; i < n_yml; i++)
			free(yml[i]);
		free(yml);
		return -1;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), name_cmp);
	if (n_yml > 0)
		qsort(yml, n_yml, sizeof(*yml), name_cmp);

	src = source_new(dir, n);
	src->yml = yml;
	src->n_yml = n_yml;
	int ret = 0;
	for (size_t i = 0; i < n; i++) {
		char *path = source_path(dir, names[i]), *data;
		size_t len;
		if (ret == 0 && read_file(path, &data, &len, error_r) == 0)
			source_add(src, names[i], strlen(names[i]), data, len);
		else
			ret = -1;
		free(path);
		free(names[i]);
	}
	free(names);
	if (ret < 0) {
		config_source_free(src);
		return -1;
	}
	*src_r = src;
	return 0;
}

void
config_source_free(struct config_source *src)
{
	if (src == NULL)
		return;
	for (size_t i = 0; i < src->n; i++) {
		free(src->files[i].name);
		free(src->files[i].path);
		free(src->files[i].data);
	}
	free(src->files);
	for (size_t i = 0; i < src->n_yml; i++)
		free(src->yml[i]);
	free(src->yml);
	free(src->dir);
	free(src);
}

/* growing byte buffer for the serialiser */
struct snapbuf {
	unsigned char *p;
	size_t len, cap;
};

static void
snap_put(struct snapbuf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap == 0 ? 4096 : b->cap;
		while (cap < b->len + len)
			cap *= 2;
		unsigned char *np = realloc(b->p, cap);
		if (np == NULL)
			abort();
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void
snap_put32(struct snapbuf *b, uint32_t v)
{
	uint32_t be = htonl(v);

	snap_put(b, &be, sizeof(be));
}

static void
snap_put_bytes(struct snapbuf *b, const void *data, size_t len)
{
	snap_put32(b, (uint32_t)len);
	snap_put(b, data, len);
}

int
config_source_write(const struct config_source *src, int fd, const char **error_r)
{
	struct snapbuf b = { NULL, 0, 0 };
	size_t off = 0;

	snap_put(&b, SNAP_MAGIC, 4);
	snap_put32(&b, SNAP_VERSION);
	snap_put_bytes(&b, src->dir, strlen(src->dir));
	snap_put32(&b, (uint32_t)src->n);
	for (size_t i = 0; i < src->n; i++) {
		snap_put_bytes(&b, src->files[i].name, strlen(src->files[i].name));
		snap_put_bytes(&b, src->files[i].data, src->files[i].len);
	}
	if (b.len > SNAP_MAX) {
		free(b.p);
		*error_r = source_error("configuration snapshot too large (%zu bytes)", b.len);
		return -1;
	}
	while (off < b.len) {
		ssize_t w = write(fd, b.p + off, b.len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1) {
			*error_r = source_error("write config snapshot: %s", strerror(errno));
			free(b.p);
			return -1;
		}
		off += (size_t)w;
	}
	free(b.p);
	return 0;
}

/* reader over the snapshot bytes; every take checks the remaining length */
struct snapreader {
	const unsigned char *p;
	size_t len, off;
};

static bool
snap_get32(struct snapreader *r, uint32_t *v)
{
	uint32_t be;

	if (r->len - r->off < sizeof(be))
		return false;
	memcpy(&be, r->p + r->off, sizeof(be));
	r->off += sizeof(be);
	*v = ntohl(be);
	return true;
}

static bool
snap_get_bytes(struct snapreader *r, const unsigned char **data, size_t *len)
{
	uint32_t n;

	if (!snap_get32(r, &n) || r->len - r->off < n)
		return false;
	*data = r->p + r->off;
	*len = n;
	r->off += n;
	return true;
}

/*
 * Reads the whole snapshot. A seekable fd (the memfd) is read with pread from
 * offset 0: its file offset may be shared with other processes that inherited it.
 */
int
config_source_read_fd(int fd, struct config_source **src_r, const char **error_r)
{
	struct snapbuf b = { NULL, 0, 0 };
	bool seekable = lseek(fd, 0, SEEK_CUR) != -1;
	unsigned char chunk[8192];
	struct snapreader r;
	const unsigned char *dir, *name, *data;
	size_t dirlen, namelen, datalen;
	uint32_t version, n;
	struct config_source *src = NULL;

	for (;;) {
		ssize_t got = seekable ? pread(fd, chunk, sizeof(chunk), (off_t)b.len) :
		    read(fd, chunk, sizeof(chunk));
		if (got == -1 && errno == EINTR)
			continue;
		if (got == -1) {
			*error_r = source_error("read config snapshot: %s", strerror(errno));
			free(b.p);
			return -1;
		}
		if (got == 0)
			break;
		if (b.len + (size_t)got > SNAP_MAX) {
			*error_r = source_error("config snapshot too large");
			free(b.p);
			return -1;
		}
		snap_put(&b, chunk, (size_t)got);
	}
	r.p = b.p;
	r.len = b.len;
	r.off = 0;
	if (b.len < 4 || memcmp(b.p, SNAP_MAGIC, 4) != 0) {
		*error_r = source_error("config snapshot: bad magic");
		goto fail;
	}
	r.off = 4;
	if (!snap_get32(&r, &version) || version != SNAP_VERSION) {
		*error_r = source_error("config snapshot: unsupported version");
		goto fail;
	}
	if (!snap_get_bytes(&r, &dir, &dirlen) || !snap_get32(&r, &n) ||
	    n > (r.len - r.off) / 8) {
		*error_r = source_error("config snapshot: truncated header");
		goto fail;
	}
	{
		char *d = xstrndup((const char *)dir, dirlen);
		src = source_new(d, n);
		free(d);
	}
	for (uint32_t i = 0; i < n; i++) {
		if (!snap_get_bytes(&r, &name, &namelen) ||
		    !snap_get_bytes(&r, &data, &datalen)) {
			*error_r = source_error("config snapshot: truncated file %u", i);
			goto fail;
		}
		source_add(src, (const char *)name, namelen,
		    xstrndup((const char *)data, datalen), datalen);
	}
	if (r.off != r.len) {
		*error_r = source_error("config snapshot: trailing garbage");
		goto fail;
	}
	free(b.p);
	*src_r = src;
	return 0;
fail:
	config_source_free(src);
	free(b.p);
	return -1;
}

int
config_source_memfd(const struct config_source *src, const char **error_r)
{
	int fd = memfd_create("relayvisor-config", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd == -1) {
		*error_r = source_error("memfd_create: %s", strerror(errno));
		return -1;
	}
	if (config_source_write(src, fd, error_r) < 0) {
		close(fd);
		return -1;
	}
	/* children must see exactly what was validated */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
	    F_SEAL_SEAL) == -1) {
		*error_r = source_error("fcntl F_ADD_SEALS: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (lseek(fd, 0, SEEK_SET) == -1) {
		*error_r = source_error("lseek memfd: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

const char *
config_default_dir(void)
{
	struct stat st;
	if (stat("./conf.d", &st) == 0 || errno != ENOENT)
		return "./conf.d";
	return RELAYVISOR_SYSCONFDIR "/conf.d";
}
