/*
 * RFC 3461 parameters of MAIL and RCPT, parsed strictly (dsnparam.h): limits
 * first, then syntax. Pure functions on strings, so the listener's session,
 * the spool's envelope reader and the tests share one parser.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/dsnparam.h"

static bool
is_upper_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

bool
dsnparam_xtext_valid(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			if (i + 2 >= len)
				return false;
			if (!is_upper_hex(s[i + 1]) || !is_upper_hex(s[i + 2]))
				return false;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
	}
	return true;
}

/* the keyword of "KEY=value": true when param starts with kw and "=" */
static bool
keyword(const char *param, size_t len, const char *kw, const char **value_r,
    size_t *vlen_r)
{
	size_t k = strlen(kw);
	if (len <= k || strncasecmp(param, kw, k) != 0 || param[k] != '=')
		return false;
	*value_r = param + k + 1;
	*vlen_r = len - k - 1;
	return true;
}

int
dsnparam_mail(struct dsnparam_mail *m, const char *param, size_t len,
    const char **reply_r)
{
	const char *v;
	size_t vl;

	if (keyword(param, len, "RET", &v, &vl)) {
		if (m->ret != DSNPARAM_RET_NONE) {
			*reply_r = "501 5.5.4 Duplicate RET parameter";
			return -1;
		}
		if (vl == 4 && strncasecmp(v, "FULL", 4) == 0)
			m->ret = DSNPARAM_RET_FULL;
		else if (vl == 4 && strncasecmp(v, "HDRS", 4) == 0)
			m->ret = DSNPARAM_RET_HDRS;
		else {
			*reply_r = "501 5.5.4 Bad RET parameter syntax";
			return -1;
		}
		return 1;
	}
	if (keyword(param, len, "ENVID", &v, &vl)) {
		if (m->has_envid) {
			*reply_r = "501 5.5.4 Duplicate ENVID parameter";
			return -1;
		}
		if (vl > DSNPARAM_ENVID_MAX) {
			*reply_r = "501 5.5.4 ENVID parameter too long";
			return -1;
		}
		if (!dsnparam_xtext_valid(v, vl)) {
			*reply_r = "501 5.5.4 Bad ENVID parameter syntax";
			return -1;
		}
		memcpy(m->envid, v, vl);
		m->envid[vl] = '\0';
		m->has_envid = true;
		return 1;
	}
	/* "RET" or "ENVID" without "=": a DSN keyword without its value */
	if ((len == 3 && strncasecmp(param, "RET", 3) == 0)) {
		*reply_r = "501 5.5.4 Bad RET parameter syntax";
		return -1;
	}
	if (len == 5 && strncasecmp(param, "ENVID", 5) == 0) {
		*reply_r = "501 5.5.4 Bad ENVID parameter syntax";
		return -1;
	}
	return 0;
}

int
dsnparam_notify_parse(const char *s, size_t len, unsigned *notify_r,
    const char **reply_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} words[] = {
		{ "NEVER", DSNPARAM_NOTIFY_NEVER },
		{ "SUCCESS", DSNPARAM_NOTIFY_SUCCESS },
		{ "FAILURE", DSNPARAM_NOTIFY_FAILURE },
		{ "DELAY", DSNPARAM_NOTIFY_DELAY },
	};
	unsigned notify = 0;
	size_t i = 0, n_words = 0;

	*reply_r = "501 5.5.4 Bad NOTIFY parameter syntax";
	if (len == 0)
		return -1;
	while (i <= len) {
		size_t e = i;
		while (e < len && s[e] != ',')
			e++;
		unsigned bit = 0;
		for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
			if (e - i == strlen(words[k].name) &&
			    strncasecmp(s + i, words[k].name, e - i) == 0)
				bit = words[k].bit;
		/* an unknown word, an empty one, or one given twice */
		if (bit == 0 || (notify & bit))
			return -1;
		notify |= bit;
		n_words++;
		i = e + 1;
	}
	if ((notify & DSNPARAM_NOTIFY_NEVER) && n_words > 1) {
		*reply_r = "501 5.5.4 NOTIFY=NEVER cannot be combined with other "
		    "NOTIFY values";
		return -1;
	}
	*notify_r = notify;
	return 0;
}

void
dsnparam_notify_format(unsigned notify, char *buf, size_t len)
{
	if (notify & DSNPARAM_NOTIFY_NEVER) {
		snprintf(buf, len, "NEVER");
		return;
	}
	snprintf(buf, len, "%s%s%s%s%s",
	    notify & DSNPARAM_NOTIFY_SUCCESS ? "SUCCESS" : "",
	    (notify & DSNPARAM_NOTIFY_SUCCESS) &&
	    (notify & (DSNPARAM_NOTIFY_FAILURE | DSNPARAM_NOTIFY_DELAY)) ? "," : "",
	    notify & DSNPARAM_NOTIFY_FAILURE ? "FAILURE" : "",
	    (notify & DSNPARAM_NOTIFY_FAILURE) && (notify & DSNPARAM_NOTIFY_DELAY) ?
	    "," : "",
	    notify & DSNPARAM_NOTIFY_DELAY ? "DELAY" : "");
}

bool
dsnparam_orcpt_valid(const char *s, size_t len)
{
	const char *semi = memchr(s, ';', len);
	/* addr-type: rfc822 (RFC 3461 4.2; the only type an SMTP relay knows) */
	if (semi == NULL || semi - s != 6 || strncasecmp(s, "rfc822", 6) != 0)
		return false;
	return dsnparam_xtext_valid(semi + 1, len - 7);
}

int
dsnparam_rcpt(struct dsnparam_rcpt *r, const char *param, size_t len,
    const char **reply_r)
{
	const char *v;
	size_t vl;

	if (keyword(param, len, "NOTIFY", &v, &vl)) {
		if (r->notify != 0) {
			*reply_r = "501 5.5.4 Duplicate NOTIFY parameter";
			return -1;
		}
		if (dsnparam_notify_parse(v, vl, &r->notify, reply_r) == -1)
			return -1;
		return 1;
	}
	if (keyword(param, len, "ORCPT", &v, &vl)) {
		if (r->has_orcpt) {
			*reply_r = "501 5.5.4 Duplicate ORCPT parameter";
			return -1;
		}
		if (vl > DSNPARAM_ORCPT_MAX) {
			*reply_r = "501 5.5.4 ORCPT parameter too long";
			return -1;
		}
		if (!dsnparam_orcpt_valid(v, vl)) {
			*reply_r = "501 5.5.4 Bad ORCPT parameter syntax";
			return -1;
		}
		memcpy(r->orcpt, v, vl);
		r->orcpt[vl] = '\0';
		r->has_orcpt = true;
		return 1;
	}
	if (len == 6 && strncasecmp(param, "NOTIFY", 6) == 0) {
		*reply_r = "501 5.5.4 Bad NOTIFY parameter syntax";
		return -1;
	}
	if (len == 5 && strncasecmp(param, "ORCPT", 5) == 0) {
		*reply_r = "501 5.5.4 Bad ORCPT parameter syntax";
		return -1;
	}
	return 0;
}
