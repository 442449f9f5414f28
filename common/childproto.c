/*
 * The child protocol's messages (childproto.h), formatted by the children and
 * parsed by the supervisor with the same field tables.
 */
#include "common/childproto.h"

#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fdpass.h"

static const struct childproto_field smtpd_fields[SMTPD_STAT_N] = {
	[SMTPD_STAT_CONNECTIONS] = { "connections", 11, false },
	[SMTPD_STAT_ACTIVE] = { "active", 6, true },
	[SMTPD_STAT_ACCEPTED] = { "accepted", 8, false },
	[SMTPD_STAT_RELAY_REFUSED] = { "relay_refused", 13, false },
	[SMTPD_STAT_REFUSED] = { "refused", 7, false },
	[SMTPD_STAT_BYTES] = { "bytes", 12, false },
};
const struct childproto_fieldset childproto_smtpd_stats = { smtpd_fields, SMTPD_STAT_N };

static const struct childproto_field qmgr_fields[QMGR_STAT_N] = {
	[QMGR_STAT_QUEUED] = { "queued", 8, false },
	[QMGR_STAT_SENT] = { "sent", 8, false },
	[QMGR_STAT_DEFERRED] = { "deferred", 8, false },
	[QMGR_STAT_BOUNCED] = { "bounced", 8, false },
	[QMGR_STAT_REMOVED] = { "removed", 8, false },
	[QMGR_STAT_INFLIGHT] = { "inflight", 8, true },
};
const struct childproto_fieldset childproto_qmgr_stats = { qmgr_fields, QMGR_STAT_N };

static const struct childproto_field deliver_fields[DELIVER_STAT_N] = {
	[DELIVER_STAT_JOBS] = { "jobs", 8, false },
	[DELIVER_STAT_CONNECTIONS] = { "connections", 11, false },
	[DELIVER_STAT_ACTIVE] = { "active", 6, true },
	[DELIVER_STAT_SENT] = { "sent", 8, false },
	[DELIVER_STAT_DEFERRED] = { "deferred", 8, false },
	[DELIVER_STAT_BOUNCED] = { "bounced", 8, false },
};
const struct childproto_fieldset childproto_deliver_stats = { deliver_fields,
	DELIVER_STAT_N };

int
childproto_stats_format(char *buf, size_t size, const struct childproto_fieldset *set,
    const struct childproto_stats *s)
{
	size_t off = 0;
	int n = snprintf(buf, size, "%s", CHILD_MSG_STATS);
	if (n < 0)
		return n;
	off = (size_t)n;
	for (size_t i = 0; i < set->n && i < CHILDPROTO_STATS_MAX; i++) {
		n = snprintf(off < size ? buf + off : NULL, off < size ? size - off : 0,
		    " %s=%" PRIu64, set->fields[i].name, s->v[i]);
		if (n < 0)
			return n;
		off += (size_t)n;
	}
	return (int)off;
}

int
childproto_stats_parse(const char *msg, const struct childproto_fieldset *set,
    struct childproto_stats *s)
{
	size_t kl = strlen(CHILD_MSG_STATS);
	memset(s, 0, sizeof(*s));
	if (strncmp(msg, CHILD_MSG_STATS, kl) != 0 || (msg[kl] != ' ' && msg[kl] != '\0'))
		return -1;
	const char *p = msg + kl;
	while ((p = strchr(p, ' ')) != NULL) {
		p++;
		const char *eq = strchr(p, '=');
		if (eq == NULL)
			break;
		for (size_t i = 0; i < set->n && i < CHILDPROTO_STATS_MAX; i++) {
			size_t nl = strlen(set->fields[i].name);
			if ((size_t)(eq - p) == nl && strncmp(p, set->fields[i].name, nl) == 0)
				s->v[i] = strtoull(eq + 1, NULL, 10);
		}
	}
	return 0;
}

void
childproto_stats_add(const struct childproto_fieldset *set, struct childproto_stats *to,
    const struct childproto_stats *from, bool counts_only)
{
	for (size_t i = 0; i < set->n && i < CHILDPROTO_STATS_MAX; i++)
		if (!counts_only || !set->fields[i].gauge)
			to->v[i] += from->v[i];
}

int
childproto_send_fd(int sock, const char *msg, int fd)
{
	return fdpass_send(sock, msg, strlen(msg), fd);
}

ssize_t
childproto_recv(int sock, char *buf, size_t cap, int *fd_r, int flags)
{
	ssize_t n = fdpass_recv(sock, buf, cap - 1, fd_r, flags);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

static const struct childproto_field auth_fields[AUTH_STAT_N] = {
	[AUTH_STAT_REQUESTS] = { "requests", 8, false },
	[AUTH_STAT_OK] = { "ok", 8, false },
	[AUTH_STAT_FAILED] = { "failed", 8, false },
	[AUTH_STAT_TEMPFAIL] = { "tempfail", 8, false },
	[AUTH_STAT_PEERS] = { "peers", 5, true },
	[AUTH_STAT_USERS] = { "users", 6, true },
};
const struct childproto_fieldset childproto_auth_stats = { auth_fields, AUTH_STAT_N };
