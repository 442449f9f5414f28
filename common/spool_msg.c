/*
 * Building a message before its commit: envelope fields (sender, recipients,
 * attributes, all refused when they hold CR or LF) and the body, which stays in
 * memory up to SPOOL_SPILL_THRESHOLD, beyond that up to SPOOL_MEM_MSG_MAX while
 * the process's SPOOL_MEM_BUDGET allows, and then moves to
 * spool/tmp/<qid>.<pid> with a SPOOL_SPILL_THRESHOLD buffer kept as its write
 * buffer, so a process's memory is bounded whatever the message sizes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/dsnparam.h"
#include "common/log.h"
#include "common/spool.h"
#include "common/spool_internal.h"

/* --- building a message ------------------------------------------------------ */

struct spool_msg *
spool_msg_begin(struct spool *sp)
{
	if (sp->readonly || spool_inherited(sp)) {
		log_warnx("spool: message begun on %s handle",
		    sp->readonly ? "a read-only" : "an inherited");
		return NULL;
	}
	struct spool_msg *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->sp = sp;
	m->fd = -1;
	spool_qid_new(m->qid, &m->arrival);
	return m;
}

const char *
spool_msg_qid(const struct spool_msg *m)
{
	return m->qid;
}

static bool
spool_value_ok(const char *v)
{
	return strpbrk(v, "\r\n") == NULL;
}

int
spool_msg_set_sender(struct spool_msg *m, const char *sender)
{
	if (!spool_value_ok(sender)) {
		errno = EINVAL;
		return -1;
	}
	char *s = strdup(sender);
	if (s == NULL)
		return -1;
	free(m->sender);
	m->sender = s;
	return 0;
}

int
spool_msg_add_rcpt(struct spool_msg *m, const char *rcpt)
{
	if (!spool_value_ok(rcpt)) {
		errno = EINVAL;
		return -1;
	}
	if (m->n_rcpts == m->cap_rcpts) {
		size_t cap = m->cap_rcpts ? m->cap_rcpts * 2 : 4;
		char **v = reallocarray(m->rcpts, cap, sizeof(*v));
		if (v == NULL)
			return -1;
		m->rcpts = v;
		unsigned *nv = reallocarray(m->notify, cap, sizeof(*nv));
		if (nv == NULL)
			return -1;
		m->notify = nv;
		char **ov = reallocarray(m->orcpt, cap, sizeof(*ov));
		if (ov == NULL)
			return -1;
		m->orcpt = ov;
		m->cap_rcpts = cap;
	}
	if ((m->rcpts[m->n_rcpts] = strdup(rcpt)) == NULL)
		return -1;
	m->notify[m->n_rcpts] = 0;
	m->orcpt[m->n_rcpts] = NULL;
	m->n_rcpts++;
	return 0;
}

static bool
spool_key_builtin(const char *key)
{
	static const char *const builtin[] = {
		"version", "arrival", "size", "sender", "rcpt", "qid",
		"ret", "envid", "notify", "orcpt",
	};
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (strcmp(key, builtin[i]) == 0)
			return true;
	return false;
}

static bool
spool_key_ok(const char *key)
{
	if (*key == '\0' || spool_key_builtin(key))
		return false;
	for (const char *p = key; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '_' || *p == '-'))
			return false;
	return true;
}

int
spool_msg_set_dsn(struct spool_msg *m, int ret, const char *envid)
{
	if (ret < DSNPARAM_RET_NONE || ret > DSNPARAM_RET_HDRS || (envid != NULL &&
	    (strlen(envid) > DSNPARAM_ENVID_MAX ||
	    !dsnparam_xtext_valid(envid, strlen(envid))))) {
		errno = EINVAL;
		return -1;
	}
	char *e = NULL;
	if (envid != NULL && (e = strdup(envid)) == NULL)
		return -1;
	free(m->envid);
	m->envid = e;
	m->dsn_ret = ret;
	return 0;
}

int
spool_msg_set_rcpt_dsn(struct spool_msg *m, unsigned notify, const char *orcpt)
{
	const char *reply;
	char text[64];
	unsigned back;

	dsnparam_notify_format(notify, text, sizeof(text));
	if (m->n_rcpts == 0 || (notify != 0 && (dsnparam_notify_parse(text,
	    strlen(text), &back, &reply) == -1 || back != notify)) ||
	    (orcpt != NULL && (strlen(orcpt) > DSNPARAM_ORCPT_MAX ||
	    !dsnparam_orcpt_valid(orcpt, strlen(orcpt))))) {
		errno = EINVAL;
		return -1;
	}
	char *o = NULL;
	if (orcpt != NULL && (o = strdup(orcpt)) == NULL)
		return -1;
	size_t i = m->n_rcpts - 1;
	free(m->orcpt[i]);
	m->orcpt[i] = o;
	m->notify[i] = notify;
	return 0;
}

int
spool_msg_set_attr(struct spool_msg *m, const char *key, const char *value)
{
	if (!spool_key_ok(key) || !spool_value_ok(value)) {
		errno = EINVAL;
		return -1;
	}
	char *v = strdup(value);
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < m->n_attrs; i++) {
		if (strcmp(m->attrs[i].key, key) == 0) {
			free(m->attrs[i].value);
			m->attrs[i].value = v;
			return 0;
		}
	}
	if (m->n_attrs == m->cap_attrs) {
		size_t cap = m->cap_attrs ? m->cap_attrs * 2 : 8;
		struct spool_attr *a = reallocarray(m->attrs, cap, sizeof(*a));
		if (a == NULL) {
			free(v);
			return -1;
		}
		m->attrs = a;
		m->cap_attrs = cap;
	}
	if ((m->attrs[m->n_attrs].key = strdup(key)) == NULL) {
		free(v);
		return -1;
	}
	m->attrs[m->n_attrs++].value = v;
	return 0;
}

static int
spool_write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* write the buffered octets to the spill file, creating it first if needed */
static int
spool_msg_flush(struct spool_msg *m, const char **error_r)
{
	if (m->fd == -1) {
		if (m->tmppath == NULL && asprintf(&m->tmppath, "%s/%s.%ld",
		    m->sp->tmpdir, m->qid, (long)getpid()) == -1) {
			m->tmppath = NULL;
			errno = ENOMEM;
			*error_r = spool_err("out of memory");
			return -1;
		}
		m->fd = openat(m->sp->tmpfd, strrchr(m->tmppath, '/') + 1,
		    O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (m->fd == -1) {
			int e = errno;
			log_warn("open %s", m->tmppath);
			*error_r = spool_err("open %s: %s", m->tmppath, strerror(e));
			free(m->tmppath);
			m->tmppath = NULL;
			errno = e;
			return -1;
		}
	}
	if (spool_write_all(m->fd, m->buf, m->buf_len) == -1) {
		int e = errno;
		log_warn("write %s", m->tmppath);
		*error_r = spool_err("write %s: %s", m->tmppath, strerror(e));
		errno = e;
		return -1;
	}
	m->file_len += m->buf_len;
	m->buf_len = 0;
	/* spilled: the buffer shrinks back to the write buffer's size */
	if (m->buf_cap > SPOOL_SPILL_THRESHOLD) {
		unsigned char *nb = realloc(m->buf, SPOOL_SPILL_THRESHOLD);
		if (nb != NULL) {
			m->sp->mem_over -= m->buf_cap - SPOOL_SPILL_THRESHOLD;
			m->buf = nb;
			m->buf_cap = SPOOL_SPILL_THRESHOLD;
		}
	}
	return 0;
}

/*
 * The in-memory body's next size, 0 when it must spill instead. Below
 * SPOOL_SPILL_THRESHOLD it grows fourfold (4, 16, 64 KiB): every step is a
 * realloc that may copy what is there, and a 100 KB body took five of them.
 */
static size_t
spool_msg_grow_to(const struct spool_msg *m)
{
	if (m->fd != -1)
		return 0;
	if (m->buf_cap < SPOOL_SPILL_THRESHOLD) {
		size_t cap = m->buf_cap ? m->buf_cap * 4 : SPOOL_BUF_INITIAL;
		return cap > SPOOL_SPILL_THRESHOLD ? SPOOL_SPILL_THRESHOLD : cap;
	}
	size_t cap = m->buf_cap * 2;
	if (cap > SPOOL_MEM_MSG_MAX)
		cap = SPOOL_MEM_MSG_MAX;
	if (cap <= m->buf_cap || m->sp->mem_over + (cap - m->buf_cap) > SPOOL_MEM_BUDGET)
		return 0;
	return cap;
}

void *
spool_msg_reserve(struct spool_msg *m, size_t len, size_t *room_r, const char **error_r)
{
	if (m->error != 0) {
		errno = m->error;
		*error_r = spool_err("message %s: earlier write failed: %s", m->qid,
		    strerror(m->error));
		return NULL;
	}
	if (m->buf_len == m->buf_cap) {
		size_t cap = spool_msg_grow_to(m);
		if (cap != 0) {
			unsigned char *nb = realloc(m->buf, cap);
			if (nb == NULL) {
				m->error = ENOMEM;
				errno = ENOMEM;
				*error_r = spool_err("out of memory");
				return NULL;
			}
			if (cap > SPOOL_SPILL_THRESHOLD)
				m->sp->mem_over += cap - (m->buf_cap > SPOOL_SPILL_THRESHOLD ?
				    m->buf_cap : SPOOL_SPILL_THRESHOLD);
			m->buf = nb;
			m->buf_cap = cap;
		} else if (spool_msg_flush(m, error_r) == -1) {
			m->error = errno;
			return NULL;
		}
	}
	size_t n = m->buf_cap - m->buf_len;
	*room_r = n < len ? n : len;
	return m->buf + m->buf_len;
}

void
spool_msg_wrote(struct spool_msg *m, size_t n)
{
	m->buf_len += n;
	m->size += n;
}

int
spool_msg_write(struct spool_msg *m, const void *buf, size_t len,
    const char **error_r)
{
	const unsigned char *p = buf;

	if (m->error != 0) {
		errno = m->error;
		*error_r = spool_err("message %s: earlier write failed: %s", m->qid,
		    strerror(m->error));
		return -1;
	}
	while (len > 0) {
		size_t n;
		unsigned char *dst = spool_msg_reserve(m, len, &n, error_r);
		if (dst == NULL)
			return -1;
		memcpy(dst, p, n);
		spool_msg_wrote(m, n);
		p += n;
		len -= n;
	}
	return 0;
}

uint64_t
spool_msg_size(const struct spool_msg *m)
{
	return m->size;
}

void
spool_msg_free(struct spool_msg *m)
{
	if (m->fd != -1 && close(m->fd) == -1)
		log_warn("close %s", m->tmppath);
	if (m->tmppath != NULL && unlinkat(m->sp->tmpfd, strrchr(m->tmppath, '/') + 1,
	    0) == -1 && errno != ENOENT)
		log_warn("unlink %s", m->tmppath);
	free(m->tmppath);
	if (m->buf_cap > SPOOL_SPILL_THRESHOLD)
		m->sp->mem_over -= m->buf_cap - SPOOL_SPILL_THRESHOLD;
	free(m->buf);
	free(m->sender);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		free(m->rcpts[i]);
		free(m->orcpt[i]);
	}
	free(m->rcpts);
	free(m->notify);
	free(m->orcpt);
	free(m->envid);
	for (size_t i = 0; i < m->n_attrs; i++) {
		free(m->attrs[i].key);
		free(m->attrs[i].value);
	}
	free(m->attrs);
	free(m);
}

void
spool_msg_abort(struct spool_msg *m)
{
	if (m != NULL)
		spool_msg_free(m);
}
