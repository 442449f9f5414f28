/*
 * Command-line cutting and message-text decoding at the reader, before any
 * parser (see reader.h for the line-ending and long-line policy).
 */
#include "instances/reader.h"

#include <string.h>
#include <strings.h>

enum reader_state {
	RD_LINESTART,		/* at the start of a line */
	RD_TEXT,		/* inside a line */
	RD_CR,			/* saw CR, LF must follow */
	RD_DOT,			/* line started with '.', held back */
	RD_DOT_CR,		/* ".<CR>" at line start: LF ends the message */
};

/* where the header name of the current line stands (Postfix is_header()) */
enum hdr_state {
	HDR_NAME,		/* reading the name */
	HDR_WSP,		/* whitespace after the name: only ':' may follow */
	HDR_DONE,		/* decided: counted, or not a hop header */
};

/* the limit of the line starting at buf: MAIL and RCPT carry DSN parameters */
static size_t
cmd_limit(const char *buf, size_t len)
{
	if (len >= 5 && (strncasecmp(buf, "MAIL ", 5) == 0 ||
	    strncasecmp(buf, "RCPT ", 5) == 0))
		return READER_CMD_PARAM_MAX;
	return READER_CMD_MAX;
}

enum reader_status
reader_cmd_line(const char *buf, size_t len, size_t *linelen, size_t *consumed,
    bool *discard)
{
	size_t max = cmd_limit(buf, len);
	size_t scan = len < max ? len : max;
	const char *lf = memchr(buf, '\n', scan);

	*discard = false;
	*linelen = 0;
	*consumed = 0;
	if (lf == NULL) {
		if (len < max)
			return READER_MORE;
		/* no LF within the limit: the line is too long whatever follows */
		lf = memchr(buf, '\n', len);
		if (lf != NULL) {
			*consumed = (size_t)(lf - buf) + 1;
		} else {
			*consumed = len;
			*discard = true;
		}
		return READER_TOOLONG;
	}
	size_t i = (size_t)(lf - buf);
	*consumed = i + 1;
	if (i == 0 || buf[i - 1] != '\r')
		return READER_BARE_LF;
	if (memchr(buf, '\r', i - 1) != NULL)
		return READER_BARE_CR;
	*linelen = i - 1;
	const char *nul = memchr(buf, '\0', i - 1);
	if (nul != NULL) {
		*linelen = (size_t)(nul - buf);
		return READER_NUL;
	}
	return READER_LINE;
}

size_t
reader_discard_line(const char *buf, size_t len, bool *discard)
{
	const char *lf = memchr(buf, '\n', len);

	if (lf == NULL)
		return len;
	*discard = false;
	return (size_t)(lf - buf) + 1;
}

void
reader_data_init(struct reader_data *d)
{
	memset(d, 0, sizeof(*d));
	d->state = RD_LINESTART;
	d->in_header = true;
	d->hdr = HDR_NAME;
}

/*
 * A hop header is a line "Received:" or "Delivered-To:", names in any case and
 * optional whitespace before the colon, as Postfix counts for hopcount_limit.
 * Continuation lines (leading whitespace) are not headers of their own.
 */
static bool
data_is_hop_header(const char *name, unsigned len)
{
	return (len == 8 && strncasecmp(name, "received", 8) == 0) ||
	    (len == 12 && strncasecmp(name, "delivered-to", 12) == 0);
}

/* one content octet of the current line (not CR/LF): header bookkeeping */
static void
data_note_octet(struct reader_data *d, char c)
{
	d->line_len++;
	if (c == ':') {
		if (d->hdr != HDR_DONE && data_is_hop_header(d->pfx, d->pfx_len))
			d->hops++;
		d->hdr = HDR_DONE;
	} else if (c == ' ' || c == '\t') {
		d->hdr = d->pfx_len == 0 ? HDR_DONE : HDR_WSP;
	} else if (d->hdr == HDR_WSP || d->pfx_len == sizeof(d->pfx)) {
		d->hdr = HDR_DONE;	/* not a name, or longer than any hop header */
	} else {
		d->pfx[d->pfx_len++] = c;
	}
}

/* a CRLF completed the current line */
static void
data_end_line(struct reader_data *d)
{
	if (d->in_header && d->line_len == 0)
		d->in_header = false;
	if (d->line_len + 2 > READER_TEXT_MAX)
		d->long_lines++;
	d->line_len = 0;
	d->pfx_len = 0;
	d->hdr = d->in_header ? HDR_NAME : HDR_DONE;
	d->state = RD_LINESTART;
}

enum reader_status
reader_data_decode(struct reader_data *d, const char *in, size_t len, char *out,
    size_t *outlen, size_t *consumed)
{
	size_t i = 0, o = 0;
	enum reader_status st = READER_MORE;

	while (i < len) {
		char c = in[i];

		switch (d->state) {
		case RD_LINESTART:
			if (c == '.') {
				d->state = RD_DOT;
				i++;
				continue;
			}
			d->state = RD_TEXT;
			continue;	/* same octet, as text */
		case RD_DOT:
			if (c == '\r') {
				d->state = RD_DOT_CR;
				i++;
				continue;
			}
			if (c == '\n') {
				st = READER_BARE_LF;
				goto out;
			}
			/* dot-unstuffing: the leading dot is dropped (RFC 5321 4.5.2) */
			d->state = RD_TEXT;
			continue;
		case RD_DOT_CR:
			if (c != '\n') {
				st = READER_BARE_CR;
				goto out;
			}
			i++;
			d->state = RD_LINESTART;
			st = READER_LINE;
			goto out;
		case RD_CR:
			if (c != '\n') {
				st = READER_BARE_CR;
				goto out;
			}
			out[o++] = '\r';
			out[o++] = '\n';
			i++;
			data_end_line(d);
			continue;
		case RD_TEXT:
			break;
		}

		/* RD_TEXT */
		if (c == '\r') {
			d->state = RD_CR;
			i++;
			continue;
		}
		if (c == '\n') {
			st = READER_BARE_LF;
			goto out;
		}
		if (d->hdr != HDR_DONE) {
			data_note_octet(d, c);
			out[o++] = c;
			i++;
			continue;
		}
		/* fast path: copy up to the next CR or LF */
		const char *p = in + i, *end = in + len;
		const char *cr = memchr(p, '\r', (size_t)(end - p));
		const char *lim = cr != NULL ? cr : end;
		const char *lf = memchr(p, '\n', (size_t)(lim - p));
		if (lf != NULL)
			lim = lf;
		size_t n = (size_t)(lim - p);
		memcpy(out + o, p, n);
		o += n;
		i += n;
		d->line_len += n;
	}
out:
	d->size += o;
	*outlen = o;
	*consumed = i;
	return st;
}
