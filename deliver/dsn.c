/*
 * RFC 3464 DSN composition and the RFC 3461 "who is told" decision (dsn.h).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "deliver/dsn.h"
#include "deliver/smtpc.h"

#define DSN_FIELD_MAX 900	/* one field's value, well under 998 per line */

struct out {
	char *p;
	size_t len, cap;
};

static void
out_add(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		while (cap < o->len + n + 1)
			cap *= 2;
		o->p = xreallocarray(o->p, cap, 1);
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void __attribute__((format(printf, 2, 3)))
out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1)
		abort();
	va_end(ap);
	out_add(o, s, strlen(s));
	free(s);
}

/* printable ASCII only, bounded: values from the network go into header fields */
static void
clean(const char *in, char *out, size_t len)
{
	size_t o = 0;

	if (len > DSN_FIELD_MAX + 1)
		len = DSN_FIELD_MAX + 1;
	for (; in != NULL && *in != '\0' && o + 1 < len; in++) {
		unsigned char ch = (unsigned char)*in;
		out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	out[o] = '\0';
}

void
dsn_rcpt_reason(struct dsn_rcpt *d, const char *reason, char *buf, size_t len)
{
	static const char *const verbs[] = { " said: ", " refused to talk to me: " };
	const char *peer, *end = NULL, *reply = NULL;

	d->remote_mta = NULL;
	d->diagnostic = NULL;
	d->diagnostic_type = NULL;
	if (reason == NULL || reason[0] == '\0' || len < 2)
		return;
	if (strncmp(reason, "host ", 5) == 0) {
		peer = reason + 5;
		for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]) && end == NULL; i++) {
			end = strstr(peer, verbs[i]);
			if (end != NULL)
				reply = end + strlen(verbs[i]);
		}
	}
	/* the peer is one word ("mx.example[192.0.2.1]:25", a socket path) */
	if (end == NULL || end == peer || memchr(peer, ' ', (size_t)(end - peer)) != NULL ||
	    !isdigit((unsigned char)reply[0])) {
		snprintf(buf, len, "%s", reason);
		d->diagnostic = buf;
		d->diagnostic_type = "X-Relayvisor";
		return;
	}
	size_t nl = strcspn(peer, "[ ");
	size_t rl = strlen(reply);
	const char *tail = strstr(reply, " (in reply to ");
	if (tail != NULL && tail[strlen(tail) - 1] == ')')
		rl = (size_t)(tail - reply);
	snprintf(buf, len, "%.*s", (int)nl, peer);
	size_t used = strlen(buf) + 1;
	if (used >= len) {
		d->remote_mta = buf;
		return;
	}
	d->remote_mta = buf;
	snprintf(buf + used, len - used, "%.*s", (int)rl, reply);
	d->diagnostic = buf + used;
}

enum dsn_target
dsn_decide(const char *sender, unsigned notify, enum dsn_action action)
{
	bool null_sender = sender == NULL || sender[0] == '\0';

	if (notify & SMTPC_NOTIFY_NEVER)
		return DSN_NONE;
	switch (action) {
	case DSN_FAILED:
		if (notify != 0 && !(notify & SMTPC_NOTIFY_FAILURE))
			return DSN_NONE;
		return null_sender ? DSN_DOUBLE_BOUNCE : DSN_TO_SENDER;
	case DSN_DELAYED:
		if (notify != 0 && !(notify & SMTPC_NOTIFY_DELAY))
			return DSN_NONE;
		return null_sender ? DSN_NONE : DSN_TO_SENDER;
	case DSN_DELIVERED:
	case DSN_RELAYED:
		if (!(notify & SMTPC_NOTIFY_SUCCESS))
			return DSN_NONE;
		return null_sender ? DSN_NONE : DSN_TO_SENDER;
	}
	return DSN_NONE;
}

int
dsn_xtext_decode(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (const char *p = in; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;
		if (o + 1 >= len)
			return -1;
		if (ch == '+') {
			unsigned v;
			if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]) ||
			    sscanf(p + 1, "%2x", &v) != 1)
				return -1;
			out[o++] = (char)v;
			p += 2;
		} else if (ch < 33 || ch > 126 || ch == '=') {
			return -1;
		} else {
			out[o++] = (char)ch;
		}
	}
	out[o] = '\0';
	return 0;
}

void
dsn_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%a, %d %b %Y %H:%M:%S +0000",
	    &tm) == 0)
		snprintf(buf, len, "Thu, 01 Jan 1970 00:00:00 +0000");
}

/* "rfc822;a+40b" -> "rfc822; a@b"; NULL when malformed */
static bool
orcpt_field(const char *orcpt, char *out, size_t len)
{
	char dec[600], type[64];
	const char *semi = orcpt != NULL ? strchr(orcpt, ';') : NULL;

	if (semi == NULL || semi == orcpt || (size_t)(semi - orcpt) >= sizeof(type))
		return false;
	memcpy(type, orcpt, (size_t)(semi - orcpt));
	type[semi - orcpt] = '\0';
	for (char *p = type; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return false;
	if (dsn_xtext_decode(semi + 1, dec, sizeof(dec)) == -1)
		return false;
	char c[DSN_FIELD_MAX + 1];
	clean(dec, c, sizeof(c));
	snprintf(out, len, "%s; %s", type, c);
	return true;
}

static const char *
action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_FAILED: return "failed";
	case DSN_DELAYED: return "delayed";
	case DSN_DELIVERED: return "delivered";
	case DSN_RELAYED: return "relayed";
	}
	return "failed";
}

/* end of the header: offset after the empty line (or everything) */
static size_t
header_end(const char *m, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (m[i] != '\n')
			continue;
		if (i + 1 < len && m[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && m[i + 1] == '\r' && m[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

/* the original, lines ending in CRLF */
static void
add_crlf(struct out *o, const char *m, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		if (m[i] != '\n')
			continue;
		size_t end = i > start && m[i - 1] == '\r' ? i - 1 : i;
		out_add(o, m + start, end - start);
		out_add(o, "\r\n", 2);
		start = i + 1;
	}
	if (start < len) {
		out_add(o, m + start, len - start);
		out_add(o, "\r\n", 2);
	}
}

static bool
has_8bit(const char *m, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)m[i] >= 0x80)
			return true;
	return false;
}

static bool
mem_contains(const char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(hay + i, needle, n) == 0)
			return true;
	return false;
}

char *
dsn_compose(const struct dsn_report *r, const char *orig, size_t orig_len, bool complete,
    size_t *len_r, bool *eightbit_r)
{
	struct out o = { 0 };
	char mta[256], qid[128], sender[DSN_FIELD_MAX + 1], date[64], boundary[512];
	bool failed = false, delayed = false;
	size_t limit = r->full_limit ? r->full_limit : 50000;

	/* what of the original goes back: whole, or its header */
	bool full = complete && r->ret != DSN_RET_HDRS && orig_len <= limit;
	size_t n = orig == NULL ? 0 : full ? orig_len : header_end(orig, orig_len);
	bool eightbit = orig != NULL && has_8bit(orig, n);

	clean(r->reporting_mta, mta, sizeof(mta));
	clean(r->qid, qid, sizeof(qid));
	clean(r->sender, sender, sizeof(sender));
	for (size_t i = 0; i < r->n_rcpts; i++) {
		failed |= r->rcpts[i].action == DSN_FAILED;
		delayed |= r->rcpts[i].action == DSN_DELAYED;
	}
	/* a boundary that occurs nowhere in the original */
	for (unsigned k = 0;; k++) {
		snprintf(boundary, sizeof(boundary), "%s.%lld.%u/%s", qid, (long long)r->now, k, mta);
		if (orig == NULL || !mem_contains(orig, orig_len, boundary))
			break;
	}

	dsn_date(r->now, date, sizeof(date));
	out_printf(&o, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n", mta);
	out_printf(&o, "To: <%s>\r\n", sender);
	out_printf(&o, "Subject: %s\r\n", failed ? "Undelivered Mail Returned to Sender" :
	    delayed ? "Delayed Mail (still being retried)" : "Successful Mail Delivery Report");
	out_printf(&o, "Date: %s\r\n", date);
	out_printf(&o, "Message-ID: <%s.%lld.dsn@%s>\r\n", qid, (long long)r->now, mta);
	out_printf(&o, "Auto-Submitted: auto-replied\r\n");
	out_printf(&o, "MIME-Version: 1.0\r\n");
	out_printf(&o, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n", boundary);
	out_printf(&o, "%s\r\n", eightbit ? "Content-Transfer-Encoding: 8bit\r\n" : "");
	out_printf(&o, "This is a MIME-encapsulated message.\r\n\r\n");

	/* 1: for people */
	out_printf(&o, "--%s\r\nContent-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
	out_printf(&o, "This is the mail system at host %s.\r\n\r\n", mta);
	if (failed)
		out_printf(&o, "I'm sorry to have to inform you that your message could not\r\n"
		    "be delivered to one or more recipients. It's attached below.\r\n\r\n"
		    "For further assistance, please send mail to postmaster.\r\n\r\n"
		    "If you do so, please include this problem report. You can\r\n"
		    "delete your own text from the attached returned message.\r\n");
	else if (delayed) {
		char until[64], since[48];
		long long d = (long long)(r->now - r->arrival);
		dsn_date(r->retry_until, until, sizeof(until));
		/* hours as Postfix says it; a short delay_warning in minutes or seconds */
		if (d >= 3600)
			snprintf(since, sizeof(since), "%lld hour(s)", d / 3600);
		else if (d >= 60)
			snprintf(since, sizeof(since), "%lld minute(s)", d / 60);
		else
			snprintf(since, sizeof(since), "%lld second(s)", d < 0 ? 0 : d);
		out_printf(&o, "####################################################################\r\n"
		    "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
		    "####################################################################\r\n\r\n"
		    "Your message could not be delivered for %s.\r\n"
		    "The mail system will keep trying until %s.\r\n", since, until);
	} else
		out_printf(&o, "Your message was successfully delivered to the destination(s)\r\n"
		    "listed below. If the message was delivered to a mailbox you will\r\n"
		    "receive no further notifications. Otherwise you may still receive\r\n"
		    "notifications of mail delivery errors from other systems.\r\n");
	out_printf(&o, "\r\n                   The mail system\r\n");
	for (size_t i = 0; i < r->n_rcpts; i++) {
		char a[DSN_FIELD_MAX + 1], t[DSN_FIELD_MAX + 1];
		clean(r->rcpts[i].addr, a, sizeof(a));
		clean(r->rcpts[i].text != NULL ? r->rcpts[i].text : action_name(r->rcpts[i].action),
		    t, sizeof(t));
		out_printf(&o, "\r\n<%s>: %s\r\n", a, t);
	}
	out_printf(&o, "\r\n");

	/* 2: for machines */
	out_printf(&o, "--%s\r\nContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n", boundary);
	out_printf(&o, "Reporting-MTA: dns; %s\r\n", mta);
	out_printf(&o, "X-Queue-ID: %s\r\n", qid);
	if (r->envid != NULL) {
		char dec[200], c[200];
		if (dsn_xtext_decode(r->envid, dec, sizeof(dec)) == 0) {
			clean(dec, c, sizeof(c));
			out_printf(&o, "Original-Envelope-Id: %s\r\n", c);
		}
	}
	out_printf(&o, "X-Original-Sender: rfc822; %s\r\n", sender);
	dsn_date(r->arrival, date, sizeof(date));
	out_printf(&o, "Arrival-Date: %s\r\n", date);
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		char a[DSN_FIELD_MAX + 1], f[DSN_FIELD_MAX + 80], st[32];
		clean(rc->addr, a, sizeof(a));
		out_printf(&o, "\r\nFinal-Recipient: rfc822; %s\r\n", a);
		if (orcpt_field(rc->orcpt, f, sizeof(f)))
			out_printf(&o, "Original-Recipient: %s\r\n", f);
		out_printf(&o, "Action: %s\r\n", action_name(rc->action));
		clean(rc->status != NULL ? rc->status : rc->action == DSN_FAILED ? "5.0.0" :
		    rc->action == DSN_DELAYED ? "4.0.0" : "2.0.0", st, sizeof(st));
		out_printf(&o, "Status: %s\r\n", st);
		if (rc->remote_mta != NULL) {
			clean(rc->remote_mta, f, sizeof(f));
			out_printf(&o, "Remote-MTA: dns; %s\r\n", f);
		}
		if (rc->diagnostic != NULL) {
			clean(rc->diagnostic, f, sizeof(f));
			char ty[40];
			clean(rc->diagnostic_type != NULL ? rc->diagnostic_type : "smtp", ty,
			    sizeof(ty));
			out_printf(&o, "Diagnostic-Code: %s; %s\r\n", ty, f);
		}
		if (rc->last_attempt != 0) {
			dsn_date(rc->last_attempt, date, sizeof(date));
			out_printf(&o, "Last-Attempt-Date: %s\r\n", date);
		}
		if (rc->action == DSN_DELAYED && r->retry_until != 0) {
			dsn_date(r->retry_until, date, sizeof(date));
			out_printf(&o, "Will-Retry-Until: %s\r\n", date);
		}
	}
	out_printf(&o, "\r\n");

	/* 3: the original */
	if (orig != NULL && orig_len > 0) {
		out_printf(&o, "--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n%s\r\n",
		    boundary, full ? "Undelivered Message" : "Undelivered Message Headers",
		    full ? "message/rfc822" : "text/rfc822-headers",
		    eightbit ? "Content-Transfer-Encoding: 8bit\r\n" : "");
		add_crlf(&o, orig, n);
		out_printf(&o, "\r\n");
	}
	out_printf(&o, "--%s--\r\n", boundary);
	*len_r = o.len;
	*eightbit_r = eightbit;
	return o.p;
}
