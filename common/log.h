/*
 * Logging for every relayvisor program. In the foreground a line goes to stderr as
 * "Mon DD HH:MM:SS host tag[pid]: message" (what syslog would have written, so the
 * supervisor's per-instance log files look like /var/log/mail.log and fail2ban or
 * pflogsumm read them unchanged); otherwise to syslog(3) with facility mail.
 */
#ifndef RELAYVISOR_LOG_H
#define RELAYVISOR_LOG_H

#include <ev.h>
#include <stdarg.h>
#include <stdbool.h>

/* tag: e.g. "relayvisor/internet/smtpd"; foreground: stderr instead of syslog */
void log_init(const char *tag, bool foreground);
void log_set_tag(const char *tag);
void log_set_debug(bool on);
const char *log_tag(void);
/* foreground only: the lines this (the loop's) thread logs during one pass of
   loop go out in one write before the loop waits again, and at exit; fatal
   lines and other threads' lines at once */
void log_buffer_loop(struct ev_loop *loop);
/* write out what log_buffer_loop gathered (no-op on other threads) */
void log_flush(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* warning with ": strerror(errno)" appended */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* warning without errno */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* an error the program survives ("error: ..."; Postfix's msg_error) */
void log_errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* start-up only: log and exit(1) (fatal appends errno) */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
