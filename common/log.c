/*
 * One sink for every program: syslog, or timestamped lines on stderr in the
 * foreground. Each line is written with a single write(2) so lines from several
 * processes sharing a log file never interleave mid-line. An event-loop program
 * may gather the lines its loop thread logs in one pass (log_buffer_loop): one
 * write per pass instead of one per line, each at most PIPE_BUF octets so it is
 * still atomic on the supervisor's pipe; the mail of a busy listener or qmgr
 * logs several lines per message, and a write per line (and the supervisor's
 * wake-up for each) was a fifth of the relay's CPU.
 */
#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static char log_tagbuf[128] = "relayvisor";
static bool log_fg = true;
static bool log_dbg;
static char log_host[64];
static pid_t log_pid;

/* the loop thread's lines of this pass (log_buffer_loop), at most PIPE_BUF */
static char log_buf[PIPE_BUF];
static size_t log_buf_len;
static bool log_buffered;
static pthread_t log_owner;
static ev_prepare log_prepare;

/* after fork: our pid, and the parent's gathered lines are the parent's to write */
static void
log_refresh_pid(void)
{
	log_pid = getpid();
	log_buf_len = 0;
}

void
log_init(const char *tag, bool foreground)
{
	log_fg = foreground;
	log_set_tag(tag);
	static bool atfork;
	if (!atfork && pthread_atfork(NULL, NULL, log_refresh_pid) == 0)
		atfork = true;
	log_pid = getpid();
	if (gethostname(log_host, sizeof(log_host)) == -1)
		strcpy(log_host, "localhost");
	log_host[sizeof(log_host) - 1] = '\0';
	char *dot = strchr(log_host, '.');
	if (dot != NULL)
		*dot = '\0';
	if (!foreground)
		openlog(log_tagbuf, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_tag(const char *tag)
{
	snprintf(log_tagbuf, sizeof(log_tagbuf), "%s", tag);
	if (!log_fg) {
		closelog();
		openlog(log_tagbuf, LOG_PID | LOG_NDELAY, LOG_MAIL);
	}
}

const char *
log_tag(void)
{
	return log_tagbuf;
}

void
log_set_debug(bool on)
{
	log_dbg = on;
}

static void
log_vemit(int pri, const char *fmt, va_list ap, const char *suffix)
{
	char msg[2048];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if (suffix != NULL)
		snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), ": %s", suffix);
	if (!log_fg) {
		syslog(pri, "%s", msg);
		return;
	}
	char line[2300];
	/* the stamp changes once a second: formatted then, per thread */
	static _Thread_local time_t ts_when = -1;
	static _Thread_local char ts[32];
	time_t now = time(NULL);
	if (now != ts_when) {
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
		ts_when = now;
	}
	int len = snprintf(line, sizeof(line), "%s %s %s[%ld]: %s%s\n", ts,
	    log_host[0] ? log_host : "localhost", log_tagbuf, (long)log_pid,
	    pri == LOG_WARNING ? "warning: " : pri == LOG_ERR ? "error: " :
	    pri < LOG_ERR ? "fatal: " : "", msg);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(line)) {
		len = sizeof(line) - 1;
		line[len - 1] = '\n';
	}
	if (log_buffered && pthread_equal(pthread_self(), log_owner)) {
		if (pri > LOG_CRIT && (size_t)len <= sizeof(log_buf)) {
			if (log_buf_len + (size_t)len > sizeof(log_buf))
				log_flush();
			memcpy(log_buf + log_buf_len, line, (size_t)len);
			log_buf_len += (size_t)len;
			return;
		}
		log_flush();	/* what came before goes first */
	}
	/* best effort: a full or closed stderr must not kill the process */
	ssize_t w = write(STDERR_FILENO, line, (size_t)len);
	(void)w;
}

void
log_flush(void)
{
	if (log_buf_len == 0 || !pthread_equal(pthread_self(), log_owner))
		return;
	ssize_t w = write(STDERR_FILENO, log_buf, log_buf_len);
	(void)w;
	log_buf_len = 0;
}

static void
log_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	log_flush();
}

/* before the loop waits for events, the pass's lines go out; at exit too */
void
log_buffer_loop(struct ev_loop *loop)
{
	if (!log_fg || log_buffered)
		return;
	log_owner = pthread_self();
	log_buffered = true;
	ev_prepare_init(&log_prepare, log_prepare_cb);
	ev_prepare_start(loop, &log_prepare);
	ev_unref(loop);		/* it keeps no loop alive */
	atexit(log_flush);
}

#define LOG_FN(name, pri, errsuffix)					\
void									\
name(const char *fmt, ...)						\
{									\
	int saved = errno;						\
	va_list ap;							\
	va_start(ap, fmt);						\
	log_vemit(pri, fmt, ap, errsuffix ? strerror(saved) : NULL);	\
	va_end(ap);							\
	errno = saved;							\
}

LOG_FN(log_info, LOG_INFO, 0)
LOG_FN(log_warn, LOG_WARNING, 1)
LOG_FN(log_warnx, LOG_WARNING, 0)
LOG_FN(log_errorx, LOG_ERR, 0)

void
log_debug(const char *fmt, ...)
{
	if (!log_dbg)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_CRIT, fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_CRIT, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
