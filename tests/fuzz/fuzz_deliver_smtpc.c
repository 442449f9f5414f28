/*
 * libFuzzer target: the SMTP/LMTP client engine (deliver/smtpc.c) fed arbitrary
 * server octets. The first input octet picks SMTP or LMTP and how the rest is cut
 * into reads. A scripted driver sends up to three messages of three recipients
 * (streaming a body on 354) and then QUIT. Whatever the server says:
 *  - every recipient of a message gets exactly one result, and DONE comes only after
 *    all of them; events arrive only in states that allow them;
 *  - everything written is CRLF-terminated lines, no bare CR or LF;
 *  - after CLOSED, nothing is read, written or reported.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "deliver/smtpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct smtpc_rcpt rcpts[] = {
	{ "a@remote.example", SMTPC_NOTIFY_SUCCESS | SMTPC_NOTIFY_FAILURE, "rfc822;a@remote.example" },
	{ "b@remote.example", 0, NULL },
	{ "c@remote.example", SMTPC_NOTIFY_NEVER, NULL },
};
static const char body[] = "Subject: t\r\n\r\n.line\n..two\r\rbare\r\nend";

struct drv {
	struct smtpc *c;
	unsigned got[3];
	bool in_msg, closed, in_body;
	int sent;
	bool tls_fail;
};

static void
check_output(struct drv *d)
{
	size_t len;
	const char *p = smtpc_output(d->c, &len);

	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\r' && (i + 1 >= len || p[i + 1] != '\n'))
			abort();
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			abort();
	}
	if (len > 0 && p[len - 1] != '\n')
		abort();
	if (d->closed && len > 0 && strncmp(p, "QUIT\r\n", len) != 0)
		abort();
	/* the password (base64 "c2VjcmV0", or inside the PLAIN string) never
	   leaves before TLS */
	if (!smtpc_tls(d->c) && (memmem(p, len, "AUTH", 4) != NULL ||
	    memmem(p, len, "c2VjcmV0", 8) != NULL || memmem(p, len, "AHVzZXIAc2Vj", 12) != NULL))
		abort();
	smtpc_output_consume(d->c, len);
}

static void
drain(struct drv *d)
{
	struct smtpc_event ev;
	const char *err;
	static const struct smtpc_msg m = {
		.sender = "s@example.test", .size = 200, .eightbit = true,
		.ret = SMTPC_RET_HDRS, .envid = "QID1", .rcpts = rcpts, .n_rcpts = 3,
	};

	check_output(d);
	while (smtpc_next_event(d->c, &ev)) {
		if (d->closed)
			abort();
		switch (ev.type) {
		case SMTPC_EV_READY:
			if (d->in_msg)
				abort();
			if (d->sent < 3) {
				memset(d->got, 0, sizeof(d->got));
				/* a stale READY (the server spoke out of turn after it
				   in the same read) finds the connection closed */
				if (smtpc_send(d->c, &m, &err) != 0) {
					if (!smtpc_closed(d->c))
						abort();
					break;
				}
				d->sent++;
				d->in_msg = true;
			} else {
				smtpc_quit(d->c);
			}
			break;
		case SMTPC_EV_BODY:
			if (!d->in_msg || d->in_body)
				abort();
			smtpc_body(d->c, body, sizeof(body) - 1);
			smtpc_body_end(d->c);
			break;
		case SMTPC_EV_RCPT:
			if (!d->in_msg || ev.rcpt >= 3 || d->got[ev.rcpt]++ != 0)
				abort();
			if (ev.dsn[0] < '2' || ev.dsn[0] > '5' || ev.dsn[1] != '.')
				abort();
			if ((ev.status == SMTPC_SENT) != (ev.dsn[0] == '2'))
				abort();
			if (strlen(ev.text) >= SMTPC_TEXT_MAX)
				abort();
			break;
		case SMTPC_EV_DONE:
			if (!d->in_msg || d->got[0] != 1 || d->got[1] != 1 || d->got[2] != 1)
				abort();
			d->in_msg = false;
			break;
		case SMTPC_EV_CLOSED:
			if (d->in_msg)
				abort();
			d->closed = true;
			break;
		case SMTPC_EV_STARTTLS:
			if (d->in_msg || smtpc_tls(d->c))
				abort();
			/* the driver's handshake: done, or failed (even chunk sizes) */
			if (!d->tls_fail)
				smtpc_tls_done(d->c);
			else
				smtpc_fail(d->c, "4.7.5", "Cannot start TLS: handshake failure");
			break;
		}
		check_output(d);
	}
	if (d->closed != smtpc_closed(d->c))
		abort();
	if (d->closed && smtpc_timeout(d->c) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool inited;
	struct smtpc_params p;
	struct drv d;

	if (!inited) {
		log_init("fuzz_deliver_smtpc", true);	/* run with -close_fd_mask=2 */
		inited = true;
	}
	if (size == 0)
		return 0;
	smtpc_params_default(&p);
	p.proto = (data[0] & 0x80) ? SMTPC_LMTP : SMTPC_SMTP;
	p.helo_name = "relay.example.test";
	p.peer = "mx.fuzz[192.0.2.1]:25";
	p.max_line = 512;
	p.max_reply_lines = 32;
	p.max_reply_octets = 4096;
	/* bit 6: STARTTLS required and AUTH to the server */
	if (data[0] & 0x40) {
		p.starttls = p.require_tls = true;
		p.auth_user = "user";
		p.auth_pass = "secret";
	}
	size_t chunk = 1 + (data[0] & 0x3f);
	data++, size--;

	memset(&d, 0, sizeof(d));
	d.tls_fail = chunk % 2 == 0;
	d.c = smtpc_new(&p);
	for (size_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		smtpc_feed(d.c, data + off, n);
		drain(&d);
	}
	smtpc_feed_eof(d.c);
	drain(&d);
	if (!d.closed || d.in_msg)
		abort();
	smtpc_free(d.c);
	return 0;
}
