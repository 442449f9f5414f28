/*
 * The SMTP input limits, applied to raw octets before any parser sees them
 * (STYLE.md 6): command lines are cut out of the input here, and message
 * text is decoded here (end-of-data detection, dot-unstuffing, line-ending
 * checks, hop counting). Pure functions on buffers, no I/O, so the
 * unit tests can feed them any split of any byte stream.
 *
 * Line endings: CR and LF may appear only as the pair CRLF, in commands and in
 * message text. A bare LF or a bare CR is refused (the session answers
 * "521 5.5.2 Error: bare <LF> received" and disconnects, as Postfix does with
 * smtpd_forbid_bare_newline = reject). Refusing instead of normalising means
 * no interpretation of an ambiguous stream ever reaches the spool or a
 * downstream server, so "<LF>.<LF>"-style SMTP smuggling cannot end a message
 * early or hide a second one, here or at the next hop.
 *
 * Long text lines: RFC 5321 4.5.3.1.6 limits a text line to 1000 octets, but
 * Postfix accepts longer lines and keeps them intact (its smtpd reads them in
 * pieces, cleanup joins them); breaking them is the delivering side's business.
 * We do the same: a long line is stored as received and memory stays bounded
 * because the decoder streams.
 */
#ifndef RELAYVISOR_READER_H
#define RELAYVISOR_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 5321 4.5.3.1.4: a command line, CRLF included */
#define READER_CMD_MAX 512
/* RFC 3461 (DSN) adds parameters to MAIL and RCPT beyond RFC 5321's 512: up to
   " RET=HDRS ENVID=" and 100 octets, " NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=" and
   500. A line starting "MAIL " or "RCPT " may be this long, CRLF included */
#define READER_CMD_PARAM_MAX (READER_CMD_MAX + 540)
/* RFC 5321 4.5.3.1.6: a text line, CRLF included (kept, not refused, see above) */
#define READER_TEXT_MAX 1000
/* RFC 5321 6.3 hop count; Postfix hopcount_limit */
#define READER_MAX_HOPS 50

enum reader_status {
	READER_MORE,		/* need more input */
	READER_LINE,		/* a command line / the end of the message */
	READER_TOOLONG,		/* command line over READER_CMD_MAX (MAIL and RCPT:
				   READER_CMD_PARAM_MAX) */
	READER_BARE_LF,
	READER_BARE_CR,
	READER_NUL,		/* a NUL octet in a command line: a syntax error */
};

/*
 * Cut the next command line out of buf[0..len). READER_LINE: the line is
 * buf[0..*linelen) without CRLF, *consumed octets (line + CRLF) are used up.
 * READER_TOOLONG: *consumed is everything up to and including the LF when it
 * is there, else all of len, and *discard is set: the caller must then drop
 * input through the next LF with reader_discard_line(). READER_BARE_*: the
 * connection is to be refused. READER_NUL: a well-ended line holds a NUL
 * (*linelen is the offset of the first NUL, *consumed the whole line): no
 * parser may see it, since C string handling would silently cut the command
 * there. READER_MORE: nothing consumed.
 */
enum reader_status reader_cmd_line(const char *buf, size_t len, size_t *linelen,
    size_t *consumed, bool *discard);
/* drop the rest of an overlong line: returns octets consumed, clears *discard
   when the LF was found */
size_t reader_discard_line(const char *buf, size_t len, bool *discard);

/* streaming state of one message's text */
struct reader_data {
	int state;		/* private */
	bool in_header;		/* still in the header section */
	int hdr;		/* private: where the current line's header name is */
	unsigned pfx_len;	/* octets of the current header name kept in pfx */
	char pfx[16];
	unsigned hops;		/* Received: and Delivered-To: header lines seen */
	uint64_t line_len;	/* length of the current line so far */
	uint64_t long_lines;	/* lines over READER_TEXT_MAX (kept) */
	uint64_t size;		/* decoded octets produced */
};

void reader_data_init(struct reader_data *d);
/*
 * Decode message text in[0..len) into out (room for len + 2 octets): removes
 * the stuffed dot, keeps CRLFs, stops after the terminating CRLF.CRLF.
 * *outlen: octets written to out; *consumed: input octets used. Returns
 * READER_MORE (everything consumed), READER_LINE (end of message reached;
 * input after it is not consumed) or READER_BARE_LF / READER_BARE_CR.
 */
enum reader_status reader_data_decode(struct reader_data *d, const char *in,
    size_t len, char *out, size_t *outlen, size_t *consumed);

#endif
