/*
 * What the supervisor and a supervised child say to each other. Both ends include
 * this header and link childproto.c, which formats and parses every message, so
 * they cannot drift apart (Postfix master_proto.h).
 *
 * A supervised child is started as its service kind's executable (the service
 * table, supervisor/service.c), e.g.
 *     relayvisor-smtpd --instance NAME
 * with, in its environment:
 *   LISTEN_FDS=n, LISTEN_PID=<its pid>   the service's listening sockets, fds 3..3+n-1,
 *                                        in the order of the instance's listen: list
 *                                        (n = 0 for a kind without sockets)
 *   RELAYVISOR_CONFIG_FD=k               a memfd with the validated configuration
 *                                        snapshot (config_source_read_fd)
 *   RELAYVISOR_NOTIFY_FD=m               one end of a SOCK_SEQPACKET socketpair
 * Messages on the notify socket, one per packet, ASCII:
 *   child -> supervisor  "READY"              once it serves (then it is RUNNING)
 *   supervisor -> child  "STATS"              child answers with one packet:
 *   child -> supervisor  "STATS name=N name=N ..."  its kind's counters since the
 *                                        child started, in the order of the kind's
 *                                        field list below; a child also sends one
 *                                        unasked as its last words at a clean exit
 *   supervisor -> child  "TLS" + one fd       (SCM_RIGHTS) a listener whose instance
 *                                        has tls: gets its certificate chain and key
 *                                        as a sealed memfd (common/tls.h) right after
 *                                        it is spawned, and again at each reload
 *                                        (a renewed certificate; sessions go on)
 *   supervisor -> child  "TLS-ERROR reason"   the files could not be read at spawn:
 *                                        the listener exits 78
 * Signals: SIGTERM is a graceful stop: the child closes its listening sockets, lets
 * open sessions finish (each gets "421 4.3.2" at its next command once idle), and exits
 * 0 when none is left. SIGKILL follows after stopwaitsecs.
 * Exit codes: 0 clean stop, 78 (EX_CONFIG) configuration error: not respawned.
 *
 * A new kind of child declares its counters as a new field list here (an enum of
 * indexes and a childproto_field table), used by the child to format and by the
 * supervisor's service table row to parse, bank and print them.
 */
#ifndef RELAYVISOR_CHILDPROTO_H
#define RELAYVISOR_CHILDPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#define CHILD_ENV_CONFIG_FD "RELAYVISOR_CONFIG_FD"
#define CHILD_ENV_NOTIFY_FD "RELAYVISOR_NOTIFY_FD"
#define CHILD_MSG_READY "READY"
#define CHILD_MSG_STATS "STATS"
#define CHILD_MSG_TLS "TLS"
#define CHILD_MSG_TLS_ERROR "TLS-ERROR"
#define CHILD_MSG_MAX 512
#define CHILD_EXIT_CONFIG 78

/* the signals a child treats as a graceful stop: what `stopsignal` may name
   (HUP is ignored by a child, KILL drops every session) */
#define CHILD_STOP_SIGNALS SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2

/* one counter of a kind's STATS record */
struct childproto_field {
	const char *name;	/* on the wire ("accepted") and, upper-cased, in `stats` */
	int width;		/* its column in `relayvisorctl stats` */
	bool gauge;		/* a level (open sessions), not a count: never banked
				   into the totals once the process is gone */
};

/* the most counters a kind may have */
#define CHILDPROTO_STATS_MAX 16

struct childproto_stats {
	uint64_t v[CHILDPROTO_STATS_MAX];
};

/* what a kind counts: its field table and how many */
struct childproto_fieldset {
	const struct childproto_field *fields;
	size_t n;
};

/* the listener's (relayvisor-smtpd) counters, indexes into its STATS record */
enum smtpd_stat {
	SMTPD_STAT_CONNECTIONS,
	SMTPD_STAT_ACTIVE,
	SMTPD_STAT_ACCEPTED,
	SMTPD_STAT_RELAY_REFUSED,
	SMTPD_STAT_REFUSED,
	SMTPD_STAT_BYTES,
	SMTPD_STAT_N
};
extern const struct childproto_fieldset childproto_smtpd_stats;

/* the queue manager's (relayvisor-qmgr) */
enum qmgr_stat {
	QMGR_STAT_QUEUED,	/* messages taken in */
	QMGR_STAT_SENT,		/* recipients delivered */
	QMGR_STAT_DEFERRED,	/* deferrals */
	QMGR_STAT_BOUNCED,	/* recipients bounced */
	QMGR_STAT_REMOVED,	/* messages removed (every recipient final) */
	QMGR_STAT_INFLIGHT,	/* recipients handed to agents now */
	QMGR_STAT_N
};
extern const struct childproto_fieldset childproto_qmgr_stats;

/* a delivery agent's (relayvisor-deliver) */
enum deliver_stat {
	DELIVER_STAT_JOBS,	/* jobs done */
	DELIVER_STAT_CONNECTIONS,	/* connections opened */
	DELIVER_STAT_ACTIVE,	/* jobs running now */
	DELIVER_STAT_SENT,
	DELIVER_STAT_DEFERRED,
	DELIVER_STAT_BOUNCED,
	DELIVER_STAT_N
};
extern const struct childproto_fieldset childproto_deliver_stats;

/* the auth process's (relayvisor-auth) */
enum auth_stat {
	AUTH_STAT_REQUESTS,	/* checks asked */
	AUTH_STAT_OK,
	AUTH_STAT_FAILED,
	AUTH_STAT_TEMPFAIL,
	AUTH_STAT_PEERS,	/* listener connections now */
	AUTH_STAT_USERS,	/* users in the password file */
	AUTH_STAT_N
};
extern const struct childproto_fieldset childproto_auth_stats;

/* supervisor -> qmgr on its notify socket: "PEER <agent process name>" with the
   qmgr's end of that agent's socketpair (common/deliverproto.h) as SCM_RIGHTS */
#define CHILD_MSG_PEER "PEER"
/* queue control, supervisor <-> qmgr on its notify socket (relayvisorctl flush,
   hold, release, delete, requeue reach the qmgr, the only writer, this way):
     supervisor -> qmgr  "QUEUE <id> <verb> [<QID>|@<domain>|all]"
     qmgr -> supervisor  "QUEUE <id> <exit code> <one line of text>" */
#define CHILD_MSG_QUEUE "QUEUE"
/* SMTP AUTH (supervisor/authhand.c, common/authproto.h):
     supervisor -> listener  "AUTH" + its end of a SOCK_SEQPACKET pair to the
                             auth process (again after each auth restart)
     supervisor -> auth      "PEER <listener process name>" + the other end
     supervisor -> auth      "PASSWD" + server.auth.passwd_file's bytes as a
                             sealed memfd, at spawn and at each reload
     supervisor -> auth      "PASSWD-ERROR reason": the file could not be read */
#define CHILD_MSG_AUTH "AUTH"
#define CHILD_MSG_PASSWD "PASSWD"
#define CHILD_MSG_PASSWD_ERROR "PASSWD-ERROR"

/* a message with one descriptor attached (SCM_RIGHTS); -1 with errno */
int childproto_send_fd(int sock, const char *msg, int fd);
/* one message (NUL-terminated in buf, cap > 1) and the descriptor it carried
   (*fd_r, close-on-exec; -1 when none); recv()'s result, or -1 with errno
   (EMSGSIZE truncated, EPROTO several descriptors: common/fdpass.h) */
ssize_t childproto_recv(int sock, char *buf, size_t cap, int *fd_r, int flags);

/* "STATS name=N ..." for the fields of set, into buf; snprintf's result */
int childproto_stats_format(char *buf, size_t size,
    const struct childproto_fieldset *set, const struct childproto_stats *s);
/* a STATS record into s (zeroed first); unknown names are ignored (an older or
   newer child), a field it lacks stays 0; -1 when msg is not a STATS record */
int childproto_stats_parse(const char *msg, const struct childproto_fieldset *set,
    struct childproto_stats *s);
/* to += from, gauges included unless counts_only */
void childproto_stats_add(const struct childproto_fieldset *set,
    struct childproto_stats *to, const struct childproto_stats *from, bool counts_only);

#endif
