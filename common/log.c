/*
 * One sink for every program: syslog, or timestamped lines on stderr in the
 * foreground. Each line is written with a single write(2) so lines from several
 * processes sharing a log file never interleave mid-line.
 */
#include "common/log.h"

#include <errno.h>
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

void
log_init(const char *tag, bool foreground)
{
	log_fg = foreground;
	log_set_tag(tag);
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
	char line[2300], ts[32];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
	int len = snprintf(line, sizeof(line), "%s %s %s[%ld]: %s%s\n", ts,
	    log_host[0] ? log_host : "localhost", log_tagbuf, (long)getpid(),
	    pri == LOG_WARNING ? "warning: " : pri == LOG_ERR ? "error: " :
	    pri < LOG_ERR ? "fatal: " : "", msg);
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(line)) {
		len = sizeof(line) - 1;
		line[len - 1] = '\n';
	}
	/* best effort: a full or closed stderr must not kill the process */
	ssize_t w = write(STDERR_FILENO, line, (size_t)len);
	(void)w;
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
