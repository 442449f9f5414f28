/*
 * SMTP/LMTP client engine as transcripts: the test plays the server, feeding reply
 * octets and asserting the exact commands the engine writes and the events it
 * reports (per-recipient results, DONE, READY, CLOSED), including pipelining, HELO
 * fallback, LMTP's per-recipient replies, SIZE refusal, 421 and lost connections,
 * timeouts per state, dot-stuffing across chunk boundaries and hostile replies.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/smtpc.h"
#include "tests/unit/testmain.h"

#define MAXEV 128

static struct smtpc_event evs[MAXEV];
static size_t nev;
static char outbuf[1 << 16];

/* take and return everything the engine wants to send */
static const char *
take(struct smtpc *c)
{
	size_t len;
	const char *p = smtpc_output(c, &len);

	ck_assert_uint_lt(len, sizeof(outbuf));
	memcpy(outbuf, p, len);
	outbuf[len] = '\0';
	smtpc_output_consume(c, len);
	return outbuf;
}

static void
drain(struct smtpc *c)
{
	nev = 0;
	while (nev < MAXEV && smtpc_next_event(c, &evs[nev]))
		nev++;
}

static void
feed(struct smtpc *c, const char *s)
{
	smtpc_feed(c, s, strlen(s));
	drain(c);
}

static struct smtpc *
new_client(enum smtpc_proto proto)
{
	struct smtpc_params p;

	smtpc_params_default(&p);
	p.proto = proto;
	p.helo_name = "relay.example.test";
	p.peer = "mx.remote.example[192.0.2.1]:25";
	return smtpc_new(&p);
}

/* greeting + EHLO reply with the given extension lines; READY reached */
static struct smtpc *
ready_client(enum smtpc_proto proto, const char *ehlo_reply)
{
	struct smtpc *c = new_client(proto);

	ck_assert_uint_eq(smtpc_timeout(c), 300);
	feed(c, "220 mx.remote.example ESMTP\r\n");
	ck_assert_str_eq(take(c), proto == SMTPC_LMTP ? "LHLO relay.example.test\r\n" :
	    "EHLO relay.example.test\r\n");
	ck_assert_uint_eq(nev, 0);
	feed(c, ehlo_reply);
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_READY);
	ck_assert_uint_eq(smtpc_timeout(c), 0);
	return c;
}

static const char full_ehlo[] =
    "250-mx.remote.example Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
    "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250 STARTTLS\r\n";
static const char plain_ehlo[] = "250-mx.remote.example\r\n250 8BITMIME\r\n";

static const struct smtpc_rcpt three[] = {
	{ "a@remote.example", SMTPC_NOTIFY_SUCCESS | SMTPC_NOTIFY_FAILURE,
	  "rfc822;a+40remote.example" },
	{ "b@remote.example", 0, NULL },
	{ "c@remote.example", SMTPC_NOTIFY_NEVER, NULL },
};

static struct smtpc_msg
msg3(void)
{
	struct smtpc_msg m = {
		.sender = "s@example.test", .size = 123, .eightbit = true,
		.ret = SMTPC_RET_HDRS, .envid = "QID123", .rcpts = three, .n_rcpts = 3,
	};
	return m;
}

START_TEST(pipelined_transaction)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_msg m = msg3();
	const char *err;

	ck_assert_uint_eq(smtpc_extensions(c) & (SMTPC_EXT_PIPELINING | SMTPC_EXT_SIZE |
	    SMTPC_EXT_8BITMIME | SMTPC_EXT_ENHANCED | SMTPC_EXT_DSN | SMTPC_EXT_STARTTLS),
	    SMTPC_EXT_PIPELINING | SMTPC_EXT_SIZE | SMTPC_EXT_8BITMIME | SMTPC_EXT_ENHANCED |
	    SMTPC_EXT_DSN | SMTPC_EXT_STARTTLS);
	ck_assert_uint_eq(smtpc_size_limit(c), 10240000);
	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	ck_assert_str_eq(take(c),
	    "MAIL FROM:<s@example.test> SIZE=123 BODY=8BITMIME RET=HDRS ENVID=QID123\r\n"
	    "RCPT TO:<a@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40remote.example\r\n"
	    "RCPT TO:<b@remote.example>\r\n"
	    "RCPT TO:<c@remote.example> NOTIFY=NEVER\r\n"
	    "DATA\r\n");
	ck_assert_uint_eq(smtpc_timeout(c), 300);	/* MAIL */
	feed(c, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <b@remote.example>: no such user\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_RCPT);
	ck_assert_uint_eq(evs[0].rcpt, 1);
	ck_assert_int_eq(evs[0].status, SMTPC_BOUNCE);
	ck_assert_int_eq(evs[0].code, 550);
	ck_assert_str_eq(evs[0].dsn, "5.1.1");
	ck_assert_str_eq(evs[0].text, "550 5.1.1 <b@remote.example>: no such user");
	ck_assert(!evs[0].conn_failed);
	ck_assert_uint_eq(smtpc_timeout(c), 300);	/* RCPT */
	feed(c, "451 4.3.0 try later\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].status, SMTPC_DEFER);
	ck_assert_str_eq(evs[0].dsn, "4.3.0");
	ck_assert_uint_eq(smtpc_timeout(c), 120);	/* DATA */
	feed(c, "354 go ahead\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_BODY);
	ck_assert_uint_eq(smtpc_timeout(c), 180);
	smtpc_body(c, "Subject: x\r\n\r\n.hidden\r\n", 23);
	smtpc_body_end(c);
	ck_assert_str_eq(take(c), "Subject: x\r\n\r\n..hidden\r\n.\r\n");
	ck_assert_uint_eq(smtpc_timeout(c), 600);
	feed(c, "250 2.0.0 Ok: queued as ABC\r\n");
	ck_assert_uint_eq(nev, 3);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_RCPT);
	ck_assert_uint_eq(evs[0].rcpt, 0);
	ck_assert_int_eq(evs[0].status, SMTPC_SENT);
	ck_assert_str_eq(evs[0].dsn, "2.0.0");
	ck_assert_int_eq(evs[0].stage, SMTPC_STAGE_DOT);
	ck_assert_int_eq(evs[1].type, SMTPC_EV_DONE);
	ck_assert_int_eq(evs[2].type, SMTPC_EV_READY);
	ck_assert_str_eq(take(c), "");	/* no RSET after a completed message */

	char d[512];
	smtpc_describe(c, &evs[0], d, sizeof(d));
	ck_assert_str_eq(d, "host mx.remote.example[192.0.2.1]:25 said: 250 2.0.0 Ok: "
	    "queued as ABC (in reply to end of DATA command)");

	smtpc_quit(c);
	ck_assert_str_eq(take(c), "QUIT\r\n");
	feed(c, "221 2.0.0 Bye\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_CLOSED);
	ck_assert(!evs[0].error);
	ck_assert(evs[0].handshake_ok);
	ck_assert(smtpc_closed(c));
	smtpc_free(c);
}
END_TEST

START_TEST(one_command_per_round_trip)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, plain_ehlo);
	struct smtpc_msg m = msg3();
	const char *err;

	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	/* no DSN, no SIZE offered: no parameters but BODY */
	ck_assert_str_eq(take(c), "MAIL FROM:<s@example.test> BODY=8BITMIME\r\n");
	feed(c, "250 ok\r\n");
	ck_assert_str_eq(take(c), "RCPT TO:<a@remote.example>\r\n");
	feed(c, "250 ok\r\n");
	ck_assert_str_eq(take(c), "RCPT TO:<b@remote.example>\r\n");
	feed(c, "250 ok\r\n");
	ck_assert_str_eq(take(c), "RCPT TO:<c@remote.example>\r\n");
	feed(c, "550 nope\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_str_eq(evs[0].dsn, "5.0.0");	/* no enhanced code: class default */
	ck_assert_str_eq(take(c), "DATA\r\n");
	feed(c, "354 go\r\n");
	smtpc_body(c, "x\r\n", 3);
	smtpc_body_end(c);
	ck_assert_str_eq(take(c), "x\r\n.\r\n");
	feed(c, "250 ok\r\n");
	ck_assert_uint_eq(nev, 4);
	ck_assert_int_eq(evs[0].status, SMTPC_SENT);
	ck_assert_int_eq(evs[1].status, SMTPC_SENT);
	ck_assert_int_eq(evs[2].type, SMTPC_EV_DONE);
	smtpc_free(c);
}
END_TEST

START_TEST(helo_fallback)
{
	struct smtpc *c = new_client(SMTPC_SMTP);
	struct smtpc_msg m = msg3();
	const char *err;

	feed(c, "220 old.example\r\n");
	ck_assert_str_eq(take(c), "EHLO relay.example.test\r\n");
	feed(c, "502 5.5.2 what?\r\n");
	ck_assert_str_eq(take(c), "HELO relay.example.test\r\n");
	ck_assert_uint_eq(nev, 0);
	feed(c, "250 old.example\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_READY);
	ck_assert_uint_eq(smtpc_extensions(c), 0);
	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	ck_assert_str_eq(take(c), "MAIL FROM:<s@example.test>\r\n");
	smtpc_free(c);
}
END_TEST

START_TEST(lmtp_per_recipient_after_dot)
{
	struct smtpc *c = ready_client(SMTPC_LMTP,
	    "250-dovecot\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n");
	struct smtpc_msg m = msg3();
	const char *err;

	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	take(c);
	feed(c, "250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n");
	ck_assert_uint_eq(nev, 2);
	ck_assert_uint_eq(evs[0].rcpt, 1);
	ck_assert_int_eq(evs[1].type, SMTPC_EV_BODY);
	smtpc_body(c, "hello", 5);
	smtpc_body_end(c);
	ck_assert_str_eq(take(c), "hello\r\n.\r\n");
	feed(c, "250 2.0.0 <a> saved\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_uint_eq(evs[0].rcpt, 0);
	ck_assert_int_eq(evs[0].status, SMTPC_SENT);
	feed(c, "452 4.2.2 <c> mailbox full\r\n");
	ck_assert_uint_eq(nev, 3);
	ck_assert_uint_eq(evs[0].rcpt, 2);
	ck_assert_int_eq(evs[0].status, SMTPC_DEFER);
	ck_assert_str_eq(evs[0].dsn, "4.2.2");
	ck_assert_int_eq(evs[1].type, SMTPC_EV_DONE);
	ck_assert_int_eq(evs[2].type, SMTPC_EV_READY);
	smtpc_free(c);
}
END_TEST

START_TEST(lmtp_no_helo_fallback_no_loop_check)
{
	struct smtpc_params p;

	smtpc_params_default(&p);
	p.proto = SMTPC_LMTP;
	p.helo_name = "me.example";
	struct smtpc *c = smtpc_new(&p);
	feed(c, "220 me.example LMTP\r\n");	/* Dovecot may share our name */
	ck_assert_str_eq(take(c), "LHLO me.example\r\n");
	feed(c, "500 what\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_CLOSED);
	ck_assert(evs[0].error);
	ck_assert(!evs[0].handshake_ok);
	smtpc_free(c);
}
END_TEST

START_TEST(size_refused_early)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, "250-mx\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
	struct smtpc_msg m = msg3();
	const char *err;

	m.size = 5000;
	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	drain(c);
	ck_assert_str_eq(take(c), "");
	ck_assert_uint_eq(nev, 5);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(evs[i].type, SMTPC_EV_RCPT);
		ck_assert_int_eq(evs[i].status, SMTPC_BOUNCE);
		ck_assert_str_eq(evs[i].dsn, "5.3.4");
	}
	ck_assert_str_eq(evs[0].text, "message size 5000 exceeds size limit 1000 of server "
	    "mx.remote.example[192.0.2.1]:25");
	ck_assert_int_eq(evs[3].type, SMTPC_EV_DONE);
	ck_assert_int_eq(evs[4].type, SMTPC_EV_READY);
	/* under the limit it goes */
	m.size = 999;
	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	ck_assert_ptr_nonnull(strstr(take(c), "MAIL FROM:<s@example.test> SIZE=999\r\n"));
	smtpc_free(c);
}
END_TEST

START_TEST(reply_421_defers_the_rest)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_msg m = msg3();
	const char *err;

	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "250 ok\r\n550 5.1.1 no\r\n421 4.7.0 shutting down\r\n");
	ck_assert_uint_eq(nev, 5);
	ck_assert_int_eq(evs[0].status, SMTPC_BOUNCE);
	ck_assert_uint_eq(evs[0].rcpt, 0);
	ck_assert(!evs[0].conn_failed);
	for (int i = 1; i < 3; i++) {
		ck_assert_int_eq(evs[i].status, SMTPC_DEFER);
		ck_assert(evs[i].conn_failed);
		ck_assert_int_eq(evs[i].code, 421);
		ck_assert_str_eq(evs[i].dsn, "4.7.0");
	}
	ck_assert_int_eq(evs[3].type, SMTPC_EV_DONE);
	ck_assert_int_eq(evs[4].type, SMTPC_EV_CLOSED);
	ck_assert(evs[4].error);
	ck_assert(evs[4].handshake_ok);
	/* nothing more is read or written */
	feed(c, "250 ok\r\n");
	ck_assert_uint_eq(nev, 0);
	ck_assert_str_eq(take(c), "");
	smtpc_free(c);
}
END_TEST

START_TEST(lost_connection_after_dot)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_msg m = msg3();
	const char *err;
	char d[512];

	smtpc_send(c, &m, &err);
	feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	smtpc_body(c, "x\n", 2);
	smtpc_body_end(c);
	take(c);
	smtpc_feed_eof(c);
	drain(c);
	ck_assert_uint_eq(nev, 5);
	ck_assert_int_eq(evs[0].status, SMTPC_DEFER);
	ck_assert(evs[0].conn_failed);
	ck_assert_str_eq(evs[0].dsn, "4.4.2");
	ck_assert_int_eq(evs[0].code, 0);
	smtpc_describe(c, &evs[0], d, sizeof(d));
	ck_assert_str_eq(d, "lost connection with mx.remote.example[192.0.2.1]:25 while "
	    "sending end of data -- message may be sent more than once");
	ck_assert_int_eq(evs[4].type, SMTPC_EV_CLOSED);
	smtpc_free(c);
}
END_TEST

START_TEST(timeout_in_data)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, plain_ehlo);
	struct smtpc_rcpt r = { "a@b.example", 0, NULL };
	struct smtpc_msg m = { .sender = "", .size = 1, .rcpts = &r, .n_rcpts = 1 };
	const char *err;

	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	ck_assert_str_eq(take(c), "MAIL FROM:<>\r\n");
	feed(c, "250 ok\r\n");
	ck_assert_str_eq(take(c), "RCPT TO:<a@b.example>\r\n");
	ck_assert_uint_eq(smtpc_timeout(c), 300);
	feed(c, "250 ok\r\n");
	ck_assert_str_eq(take(c), "DATA\r\n");
	ck_assert_uint_eq(smtpc_timeout(c), 120);
	smtpc_timeout_fired(c);
	drain(c);
	ck_assert_uint_eq(nev, 3);
	ck_assert_int_eq(evs[0].status, SMTPC_DEFER);
	ck_assert_str_eq(evs[0].text, "conversation timed out with "
	    "mx.remote.example[192.0.2.1]:25 while sending DATA command");
	ck_assert_uint_eq(smtpc_timeout(c), 0);
	smtpc_free(c);
}
END_TEST

START_TEST(rset_and_reuse)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_msg m = msg3();
	const char *err;

	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n554 5.6.0 no data for you\r\n");
	ck_assert_uint_eq(nev, 4);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(evs[i].status, SMTPC_BOUNCE);
		ck_assert_int_eq(evs[i].stage, SMTPC_STAGE_DATA);
	}
	ck_assert_int_eq(evs[3].type, SMTPC_EV_DONE);
	ck_assert_str_eq(take(c), "RSET\r\n");
	ck_assert_uint_eq(smtpc_timeout(c), 300);
	ck_assert_int_eq(smtpc_send(c, &m, &err), -1);	/* not idle during RSET */
	feed(c, "250 ok\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_READY);
	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	ck_assert_uint_eq(smtpc_messages(c), 2);
	smtpc_free(c);
}
END_TEST

START_TEST(mail_rejected_pipelined)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_msg m = msg3();
	const char *err;

	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "553 5.7.1 sender rejected\r\n");
	ck_assert_uint_eq(nev, 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(evs[i].status, SMTPC_BOUNCE);
		ck_assert_str_eq(evs[i].dsn, "5.7.1");
		ck_assert_int_eq(evs[i].stage, SMTPC_STAGE_MAIL);
	}
	feed(c, "503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no MAIL\r\n");
	ck_assert_uint_eq(nev, 0);
	feed(c, "503 5.5.1 no valid recipients\r\n");
	ck_assert_uint_eq(nev, 2);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_DONE);
	ck_assert_int_eq(evs[1].type, SMTPC_EV_READY);
	ck_assert_str_eq(take(c), "");	/* no transaction open: no RSET */
	smtpc_free(c);
}
END_TEST

START_TEST(mail_deferred_unpipelined)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, plain_ehlo);
	struct smtpc_msg m = msg3();
	const char *err;

	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "452 4.3.1 insufficient storage\r\n");
	ck_assert_uint_eq(nev, 5);
	ck_assert_int_eq(evs[2].status, SMTPC_DEFER);
	ck_assert(!evs[2].conn_failed);
	ck_assert_int_eq(evs[4].type, SMTPC_EV_READY);
	ck_assert_str_eq(take(c), "");
	smtpc_free(c);
}
END_TEST

START_TEST(all_rcpts_rejected_pipelined_354)
{
	/* a broken server answers 354 to a DATA with no recipient: empty message,
	   nobody delivered, the connection stays usable */
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt r = { "a@b.example", 0, NULL };
	struct smtpc_msg m = { .sender = "", .size = 1, .rcpts = &r, .n_rcpts = 1 };
	const char *err;

	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "250 ok\r\n550 no\r\n354 go\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].status, SMTPC_BOUNCE);
	ck_assert_str_eq(take(c), ".\r\n");
	feed(c, "554 no valid recipients\r\n");
	ck_assert_uint_eq(nev, 2);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_DONE);
	ck_assert_int_eq(evs[1].type, SMTPC_EV_READY);
	smtpc_free(c);
}
END_TEST

START_TEST(multiline_reply_flattened)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt r = { "a@b.example", 0, NULL };
	struct smtpc_msg m = { .sender = "s@x.example", .size = 1, .rcpts = &r, .n_rcpts = 1 };
	const char *err;

	smtpc_send(c, &m, &err);
	/* split octet by octet: the reader keeps state across feeds */
	const char *rep = "250 ok\r\n550-5.7.1 first line\r\n550-5.7.1 \x01second\xff\r\n"
	    "550 5.7.1 last\r\n";
	for (const char *p = rep; *p != '\0'; p++)
		smtpc_feed(c, p, 1);
	drain(c);
	ck_assert_uint_eq(nev, 1);
	ck_assert_str_eq(evs[0].text, "550 5.7.1 first line 5.7.1 ?second? 5.7.1 last");
	ck_assert_str_eq(evs[0].dsn, "5.7.1");
	smtpc_free(c);
}
END_TEST

START_TEST(greeting_refused)
{
	struct smtpc *c = new_client(SMTPC_SMTP);
	char d[512];

	feed(c, "554 5.7.1 go away\r\n");
	ck_assert_str_eq(take(c), "QUIT\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_CLOSED);
	ck_assert(evs[0].error);
	ck_assert(!evs[0].handshake_ok);
	ck_assert_int_eq(evs[0].code, 554);
	smtpc_describe(c, &evs[0], d, sizeof(d));
	ck_assert_str_eq(d, "host mx.remote.example[192.0.2.1]:25 refused to talk to me: "
	    "554 5.7.1 go away");
	smtpc_free(c);
}
END_TEST

START_TEST(loop_detected)
{
	struct smtpc *c = new_client(SMTPC_SMTP);

	feed(c, "220 RELAY.example.test ESMTP\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_CLOSED);
	ck_assert(evs[0].loop);
	ck_assert_str_eq(evs[0].dsn, "5.4.6");
	smtpc_free(c);
	/* the same from the EHLO reply's first line */
	c = new_client(SMTPC_SMTP);
	feed(c, "220 mx ESMTP\r\n");
	feed(c, "250-relay.example.test hi\r\n250 PIPELINING\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert(evs[0].loop);
	smtpc_free(c);
}
END_TEST

/* hostile replies: each ends the connection as a protocol error */
static const struct {
	const char *name;
	const char *input;
} hostile[] = {
	{ "letters", "abc\r\n" },
	{ "code 199", "199 hi\r\n" },
	{ "code 600", "600 hi\r\n" },
	{ "bad separator", "250xhello\r\n" },
	{ "code changes", "250-a\r\n251 b\r\n" },
	{ "too short", "25\r\n" },
	{ "empty line", "\r\n" },
	{ "bare LF", "\n" },	/* nothing buffered yet: no NULL arithmetic */
	{ "unsolicited", "250 surprise\r\n" },
};

START_TEST(hostile_replies)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt r = { "a@b.example", 0, NULL };
	struct smtpc_msg m = { .sender = "s@x.example", .size = 1, .rcpts = &r, .n_rcpts = 1 };
	const char *err;
	bool idle = strcmp(hostile[_i].name, "unsolicited") == 0;

	if (!idle)
		smtpc_send(c, &m, &err);
	feed(c, hostile[_i].input);
	ck_assert_msg(smtpc_closed(c), "%s", hostile[_i].name);
	ck_assert_int_eq(evs[nev - 1].type, SMTPC_EV_CLOSED);
	ck_assert(evs[nev - 1].error);
	if (!idle) {
		ck_assert_int_eq(evs[0].type, SMTPC_EV_RCPT);
		ck_assert_int_eq(evs[0].status, SMTPC_DEFER);
		ck_assert_str_eq(evs[0].dsn, "4.5.0");
	}
	smtpc_free(c);
}
END_TEST

START_TEST(reply_limits)
{
	struct smtpc_params p;
	char line[8192];

	smtpc_params_default(&p);
	/* a line over max_line: refused before its end arrives */
	struct smtpc *c = smtpc_new(&p);
	memset(line, 'x', sizeof(line));
	memcpy(line, "220 ", 4);
	smtpc_feed(c, line, 4096);
	ck_assert(!smtpc_closed(c));
	smtpc_feed(c, line, 1);
	ck_assert(smtpc_closed(c));
	smtpc_free(c);
	/* exactly max_line with CRLF passes */
	c = smtpc_new(&p);
	memset(line, 'x', sizeof(line));
	memcpy(line, "220 ", 4);
	memcpy(line + 4094, "\r\n", 2);
	smtpc_feed(c, line, 4096);
	ck_assert(!smtpc_closed(c));
	smtpc_free(c);
	/* too many lines */
	c = smtpc_new(&p);
	for (int i = 0; i < 200 && !smtpc_closed(c); i++)
		smtpc_feed(c, "220-more\r\n", 10);
	ck_assert(smtpc_closed(c));
	smtpc_free(c);
	/* too many octets in one reply */
	p.max_reply_lines = 100000;
	c = smtpc_new(&p);
	memset(line, 'y', 1000);
	memcpy(line, "220-", 4);
	memcpy(line + 998, "\r\n", 2);
	int i;
	for (i = 0; i < 100 && !smtpc_closed(c); i++)
		smtpc_feed(c, line, 1000);
	ck_assert(smtpc_closed(c));
	ck_assert_int_eq(i, 66);	/* 65 536 / 1 000 */
	smtpc_free(c);
}
END_TEST

START_TEST(send_refuses_bad_messages)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt many[SMTPC_MAX_RCPTS + 1];
	struct smtpc_rcpt bad = { "a@b.example\r\nRCPT TO:<x@evil>", 0, NULL };
	struct smtpc_msg m = { .sender = "s@x.example", .size = 1, .rcpts = many,
	    .n_rcpts = SMTPC_MAX_RCPTS + 1 };
	const char *err;

	for (size_t i = 0; i < SMTPC_MAX_RCPTS + 1; i++)
		many[i] = (struct smtpc_rcpt){ "a@b.example", 0, NULL };
	ck_assert_int_eq(smtpc_send(c, &m, &err), -1);
	m.n_rcpts = 0;
	ck_assert_int_eq(smtpc_send(c, &m, &err), -1);
	m.rcpts = &bad;
	m.n_rcpts = 1;
	ck_assert_int_eq(smtpc_send(c, &m, &err), -1);
	m.rcpts = many;
	m.sender = "s@x\n";
	ck_assert_int_eq(smtpc_send(c, &m, &err), -1);
	ck_assert_str_eq(take(c), "");
	/* 50 go, pipelined in one write */
	m.sender = "s@x.example";
	m.n_rcpts = SMTPC_MAX_RCPTS;
	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	const char *o = take(c);
	int n = 0;
	for (const char *p = o; (p = strstr(p, "RCPT TO:")) != NULL; p++)
		n++;
	ck_assert_int_eq(n, SMTPC_MAX_RCPTS);
	smtpc_free(c);
}
END_TEST

START_TEST(bad_dsn_params_dropped)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt r = { "a@b.example", SMTPC_NOTIFY_DELAY, "rfc822;a=b" };
	struct smtpc_msg m = { .sender = "s@x.example", .size = 1, .rcpts = &r,
	    .n_rcpts = 1, .envid = "bad envid", .ret = SMTPC_RET_FULL };
	const char *err;

	smtpc_send(c, &m, &err);
	ck_assert_str_eq(take(c), "MAIL FROM:<s@x.example> SIZE=1 RET=FULL\r\n"
	    "RCPT TO:<a@b.example> NOTIFY=DELAY\r\nDATA\r\n");
	smtpc_free(c);
}
END_TEST

/* body transparency: input as stored -> octets on the wire before the final dot */
static const struct {
	const char *in;
	const char *want;
} bodies[] = {
	{ "", "" },
	{ "a", "a\r\n" },
	{ "a\r\n", "a\r\n" },
	{ "a\n", "a\r\n" },
	{ ".", "..\r\n" },
	{ ".\r\n.\r\n", "..\r\n..\r\n" },
	{ "a\r\n.\r\nb", "a\r\n..\r\nb\r\n" },
	{ "a\n.\nb\n", "a\r\n..\r\nb\r\n" },
	{ "a\r.\rb", "a\r\n..\r\nb\r\n" },	/* bare CR: a line end, never smuggled */
	{ "x.y\r\n..z", "x.y\r\n...z\r\n" },
	{ "a\r", "a\r\n" },
	{ "\r\n\r\n", "\r\n\r\n" },
};

static void
body_case(const char *in, const char *want, size_t chunk)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt r = { "a@b.example", 0, NULL };
	struct smtpc_msg m = { .sender = "s@x.example", .size = 1, .rcpts = &r, .n_rcpts = 1 };
	const char *err;
	char expect[256];

	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "250 ok\r\n250 ok\r\n354 go\r\n");
	size_t len = strlen(in);
	for (size_t off = 0; off < len; off += chunk)
		smtpc_body(c, in + off, len - off < chunk ? chunk == 0 ? 0 : len - off : chunk);
	smtpc_body_end(c);
	snprintf(expect, sizeof(expect), "%s.\r\n", want);
	ck_assert_msg(strcmp(take(c), expect) == 0, "body \"%s\" chunk %zu: got \"%s\"", in,
	    chunk, outbuf);
	smtpc_free(c);
}

START_TEST(dot_stuffing)
{
	body_case(bodies[_i].in, bodies[_i].want, 1);
	body_case(bodies[_i].in, bodies[_i].want, 2);
	body_case(bodies[_i].in, bodies[_i].want, 1000);
}
END_TEST

START_TEST(long_lines_folded)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt r = { "a@b.example", 0, NULL };
	struct smtpc_msg m = { .sender = "s@x.example", .size = 1, .rcpts = &r, .n_rcpts = 1 };
	const char *err;
	static char in[2500];

	memset(in, 'z', 2000);
	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "250 ok\r\n250 ok\r\n354 go\r\n");
	smtpc_body(c, in, 1500);
	smtpc_body(c, in, 500);
	smtpc_body_end(c);
	const char *o = take(c);
	/* 998 + CRLF SP + 997 + CRLF SP + 5 */
	ck_assert_uint_eq(strlen(o), 998 + 3 + 997 + 3 + 5 + 2 + 3);
	ck_assert_mem_eq(o + 998, "\r\n z", 4);
	ck_assert_mem_eq(o + 998 + 3 + 997, "\r\n z", 4);
	for (const char *p = o; (p = strstr(p, "\r\n")) != NULL; p += 2)
		ck_assert(p[2] == ' ' || p[2] == '.' || p[2] == '\0');
	smtpc_free(c);
}
END_TEST

/*
 * The reference: what the body transformation means, one octet at a time (bare
 * CR and bare LF become CRLF, lines over 998 octets fold with CRLF SP, a dot at
 * the start of a line is doubled). smtpc_body copies clean lines whole; it must
 * give the same octets for every body and every way of cutting it into chunks.
 */
struct ref_state { bool bol, cr; size_t linelen; };

static size_t
ref_octet(struct ref_state *r, char *o, unsigned char ch)
{
	size_t n = 0;
	if (r->cr) {
		r->cr = false;
		o[n++] = '\r', o[n++] = '\n';
		r->bol = true, r->linelen = 0;
		if (ch == '\n')
			return n;
	}
	if (ch == '\r') {
		r->cr = true;
		return n;
	}
	if (ch == '\n') {
		o[n++] = '\r', o[n++] = '\n';
		r->bol = true, r->linelen = 0;
		return n;
	}
	if (r->linelen >= 998) {
		o[n++] = '\r', o[n++] = '\n', o[n++] = ' ';
		r->linelen = 1;
		r->bol = false;
	}
	if (r->bol && ch == '.')
		o[n++] = '.';
	o[n++] = (char)ch;
	r->linelen++;
	r->bol = false;
	return n;
}

START_TEST(body_matches_reference)
{
	static unsigned char in[6000];
	static char want[3 * sizeof(in) + 16], got[3 * sizeof(in) + 16];
	static const unsigned char alphabet[] = "ab.\r\n";
	unsigned seed = 12345u + (unsigned)_i;

	for (int round = 0; round < 40; round++) {
		/* runs of one octet, some long enough to fold */
		size_t len = 0;
		while (len < sizeof(in)) {
			unsigned char ch = alphabet[rand_r(&seed) % 5];
			size_t run = rand_r(&seed) % 8 == 0 ? (size_t)(rand_r(&seed) % 2100) :
			    (size_t)(rand_r(&seed) % 3 + 1);
			if (ch == '\r' || ch == '\n')
				run = run > 2 ? 2 : run;
			for (size_t k = 0; k < run && len < sizeof(in); k++)
				in[len++] = ch;
			if (rand_r(&seed) % 4 == 0 && len + 2 <= sizeof(in))
				in[len++] = '\r', in[len++] = '\n';
		}
		len = (size_t)rand_r(&seed) % (sizeof(in) + 1);
		struct ref_state r = { .bol = true };
		size_t wn = 0;
		for (size_t k = 0; k < len; k++)
			wn += ref_octet(&r, want + wn, in[k]);
		if (r.cr || !r.bol)
			want[wn++] = '\r', want[wn++] = '\n';
		memcpy(want + wn, ".\r\n", 3);
		wn += 3;

		struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
		struct smtpc_rcpt rc = { "a@b.example", 0, NULL };
		struct smtpc_msg m = { .sender = "s@x.example", .size = 1, .rcpts = &rc,
		    .n_rcpts = 1 };
		const char *err;
		smtpc_send(c, &m, &err);
		take(c);
		feed(c, "250 ok\r\n250 ok\r\n354 go\r\n");
		size_t gn = 0, olen;
		for (size_t off = 0; off < len; ) {
			size_t chunk = 1 + (size_t)rand_r(&seed) % (round % 3 == 0 ? 7 : 3000);
			if (chunk > len - off)
				chunk = len - off;
			smtpc_body(c, in + off, chunk);
			off += chunk;
			const char *p = smtpc_output(c, &olen);
			ck_assert_uint_le(gn + olen, sizeof(got));
			memcpy(got + gn, p, olen);
			gn += olen;
			smtpc_output_consume(c, olen);
		}
		smtpc_body_end(c);
		const char *p = smtpc_output(c, &olen);
		memcpy(got + gn, p, olen);
		gn += olen;
		ck_assert_uint_eq(gn, wn);
		ck_assert_msg(memcmp(got, want, wn) == 0, "seed %d round %d: bodies differ", _i,
		    round);
		smtpc_free(c);
	}
}
END_TEST

/* smtpc_body_scan's two answers, one at a time */
static bool
wire_ready(const void *data, size_t len)
{
	bool eight;
	return smtpc_body_scan(data, len, &eight);
}

static bool
has_8bit(const void *data, size_t len)
{
	bool eight;
	(void)smtpc_body_scan(data, len, &eight);
	return eight;
}

/* smtpc_body_scan, wire-ready: hand cases, the 16-octet blocks' edges included */
static const struct {
	const char *in;
	bool ready;
} wire_cases[] = {
	{ "", true },
	{ "a\r\n", true },
	{ "\r\n\r\n", true },
	{ "a", false },				/* no line end at the end */
	{ "a\r", false },
	{ ".\r\n", false },
	{ "a\r\n.\r\n", false },
	{ "a\r\n..x\r\n", false },
	{ "a\nb\r\n", false },			/* bare LF */
	{ "a\rb\r\n", false },			/* bare CR */
	{ "a\r\r\n", false },
	{ "0123456789abcd\r\n.x\r\n", false },	/* dot at 16, LF at 15 */
	{ "0123456789abc\r\n.x\r\n", false },	/* dot at 15 */
	{ "0123456789abcde\r\n.x\r\n", false },	/* dot at 17, CR at 15, LF at 16 */
	{ "0123456789abcdefghijklmnopqrstu\r\n", true },	/* CRLF at 31/32 */
	{ "0123456789abcdefghijklmnopqrstu\n\r\n", false },
	{ "0123456789abcdefghijklmnopqrstuvwxyz\r\n0123456789abcdefghij\rk\r\n", false },
	{ "0123456789abcdefghijklmnopqrstuvwxyz\r\n0123456789abcdefghij.k\r\n", true },
};

START_TEST(wire_ready_cases)
{
	const char *in = wire_cases[_i].in;
	ck_assert_msg(wire_ready(in, strlen(in)) == wire_cases[_i].ready,
	    "\"%s\": want %s", in, wire_cases[_i].ready ? "ready" : "not ready");
}
END_TEST

/* lines of 998 octets are fine, 999 would be folded; also far from the start */
/* smtpc_body_scan, 8-bit: one high octet anywhere, across the 16-octet blocks,
   whatever the wire-ready answer (a dot line ends that one early) */
START_TEST(has_8bit_every_position)
{
	char buf[70];
	for (size_t len = 0; len <= sizeof(buf); len++) {
		memset(buf, 'a', sizeof(buf));
		ck_assert(!has_8bit(buf, len));
		for (size_t at = 0; at < len; at++) {
			memset(buf, 'a', sizeof(buf));
			buf[at] = (char)(0x80 | (at & 0x7f));
			ck_assert_msg(has_8bit(buf, len), "len %zu at %zu", len, at);
			/* the octet just past the end is not looked at */
			if (at + 1 < sizeof(buf) && at == len - 1) {
				buf[at] = 'a';
				buf[at + 1] = (char)0xff;
				ck_assert(!has_8bit(buf, len));
			}
		}
	}
	/* a wire-ready body keeps that answer with a high octet in it; one that
	   stops being wire-ready at its first line still finds a later one */
	char lines[68];
	for (size_t at = 0; at < sizeof(lines); at++) {
		for (size_t i = 0; i < sizeof(lines); i += 4)
			memcpy(lines + i, "ab\r\n", 4);
		if (lines[at] == '\r' || lines[at] == '\n')
			continue;
		lines[at] = (char)0xc3;
		ck_assert_msg(wire_ready(lines, sizeof(lines)), "at %zu", at);
		ck_assert_msg(has_8bit(lines, sizeof(lines)), "at %zu", at);
		if (at >= 4) {
			lines[0] = '.';
			ck_assert(!wire_ready(lines, sizeof(lines)));
			ck_assert_msg(has_8bit(lines, sizeof(lines)), "dot first, at %zu", at);
		}
	}
}
END_TEST

START_TEST(wire_ready_line_length)
{
	static char in[3000];
	for (size_t pre = 0; pre < 40; pre += 13) {
		for (size_t text = 996; text <= 1000; text++) {
			size_t n = 0;
			for (size_t k = 0; k < pre; k++)
				in[n++] = 'p';
			if (pre > 0)
				in[n++] = '\r', in[n++] = '\n';
			memset(in + n, 'x', text);
			n += text;
			in[n++] = '\r', in[n++] = '\n';
			ck_assert_msg(wire_ready(in, n) == (text <= 998),
			    "prefix %zu, line of %zu", pre, text);
		}
	}
}
END_TEST

/*
 * The fast path's safety: a body is wire-ready exactly when smtpc_body() (the
 * reference transformation) would send it unchanged. Random bodies, most of
 * them clean lines with at most one defect (a leading dot, a bare CR or LF, a
 * long line, a missing last line end) anywhere; a check that let one defect
 * through would send a dot-line unstuffed or a bare LF on the wire.
 */
START_TEST(wire_ready_iff_unchanged)
{
	static char in[9000], want[3 * sizeof(in) + 16];
	unsigned seed = 777u + (unsigned)_i;
	int ready = 0, not_ready = 0;

	for (int round = 0; round < 200; round++) {
		size_t len = 0, target = (size_t)rand_r(&seed) % 8000;
		while (len < target) {
			size_t text = (size_t)rand_r(&seed) % (rand_r(&seed) % 8 == 0 ? 300 : 90);
			for (size_t k = 0; k < text; k++)
				in[len++] = (char)('a' + rand_r(&seed) % 26);
			in[len++] = '\r', in[len++] = '\n';
		}
		if (rand_r(&seed) % 2 == 0 && len > 0) {
			size_t at = (size_t)rand_r(&seed) % len;
			switch (rand_r(&seed) % 5) {
			case 0:		/* a dot where a line starts (or a harmless one) */
				while (at > 0 && in[at - 1] != '\n')
					at--;
				if (in[at] != '\r')
					in[at] = '.';
				break;
			case 1:
				in[at] = '\n';
				break;
			case 2:
				in[at] = '\r';
				break;
			case 3:		/* one line over 998 */
				if (len + 1000 < sizeof(in)) {
					memset(in + len, 'y', 999);
					len += 999;
					in[len++] = '\r', in[len++] = '\n';
				}
				break;
			default:
				len -= 1 + (size_t)rand_r(&seed) % 2;
				break;
			}
		}
		struct ref_state r = { .bol = true };
		size_t wn = 0;
		for (size_t k = 0; k < len; k++)
			wn += ref_octet(&r, want + wn, (unsigned char)in[k]);
		if (r.cr || !r.bol)
			want[wn++] = '\r', want[wn++] = '\n';
		bool unchanged = wn == len && memcmp(want, in, len) == 0;
		bool got = wire_ready(in, len);
		ck_assert_msg(got == unchanged, "seed %d round %d: ready %d, unchanged %d",
		    _i, round, got, unchanged);
		if (got)
			ready++;
		else
			not_ready++;
	}
	/* the generator exercises both answers */
	ck_assert_int_gt(ready, 20);
	ck_assert_int_gt(not_ready, 20);
}
END_TEST

/* the driver sent a wire-ready body itself: only the final dot follows */
START_TEST(body_verbatim_then_dot)
{
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt r = { "a@b.example", 0, NULL };
	struct smtpc_msg m = { .sender = "s@x.example", .size = 3, .rcpts = &r, .n_rcpts = 1 };
	const char *err;

	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "250 ok\r\n250 ok\r\n354 go\r\n");
	bool body = false;
	for (size_t i = 0; i < nev; i++)
		body = body || evs[i].type == SMTPC_EV_BODY;
	ck_assert(body);
	smtpc_body_verbatim(c);
	smtpc_body_end(c);
	ck_assert_str_eq(take(c), ".\r\n");
	feed(c, "250 queued\r\n");
	bool sent = false;
	for (size_t i = 0; i < nev; i++)
		sent = sent || (evs[i].type == SMTPC_EV_RCPT && evs[i].status == SMTPC_SENT);
	ck_assert(sent);
	smtpc_free(c);
}
END_TEST

START_TEST(big_body_streams)
{
	/* 10 MB (just under the server's SIZE) through in 64 KB chunks while the "socket" takes everything */
	struct smtpc *c = ready_client(SMTPC_SMTP, full_ehlo);
	struct smtpc_rcpt r = { "a@b.example", 0, NULL };
	struct smtpc_msg m = { .sender = "s@x.example", .size = 10000000, .rcpts = &r,
	    .n_rcpts = 1 };
	const char *err;
	static char chunk[65536];
	size_t total = 0, len;

	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = i % 80 == 79 ? '\n' : (i % 80 == 0 ? '.' : 'a');
	smtpc_send(c, &m, &err);
	take(c);
	feed(c, "250 ok\r\n250 ok\r\n354 go\r\n");
	for (int i = 0; i < 160; i++) {
		smtpc_body(c, chunk, sizeof(chunk));
		smtpc_output(c, &len);
		ck_assert_uint_le(len, 3 * sizeof(chunk) + 8);
		total += len;
		smtpc_output_consume(c, len);
	}
	smtpc_body_end(c);
	smtpc_output(c, &len);
	total += len;
	/* per chunk 819 LFs (each gains a CR) and 819 dots after an LF (stuffed); the
	   first chunk's leading dot too; the unterminated last line gets CRLF, then
	   ".\r\n" */
	ck_assert_uint_eq(total, (size_t)160 * (65536 + 819 + 819) + 1 + 2 + 3);
	smtpc_free(c);
}
END_TEST

/*
 * STARTTLS and AUTH as transcripts: what the server says, what the engine must
 * write back (exactly: a password never before TLS), the last event, and for
 * CLOSED its enhanced code and text.
 */
enum tls_act { ACT_NONE, ACT_TLS_DONE, ACT_FAIL };

struct tls_step {
	const char *server;
	const char *client;
	int ev;			/* last event type, -1: none */
	enum tls_act act;	/* after the feed, before the output is taken */
	const char *dsn;	/* CLOSED */
	const char *text;	/* CLOSED: a substring of its text */
};

struct tls_case {
	const char *name;
	bool starttls, require_tls, auth;
	struct tls_step steps[8];
};

#define GREET { "220 mx.remote.example ESMTP\r\n", "EHLO relay.example.test\r\n", -1, \
	ACT_NONE, NULL, NULL }
#define EHLO_TLS_AUTH { "250-mx.remote.example\r\n250-SIZE 1000\r\n250-STARTTLS\r\n" \
	"250 AUTH PLAIN LOGIN\r\n", "STARTTLS\r\n", -1, ACT_NONE, NULL, NULL }
#define GO_TLS { "220 2.0.0 Ready to start TLS\r\n", "EHLO relay.example.test\r\n", \
	SMTPC_EV_STARTTLS, ACT_TLS_DONE, NULL, NULL }
#define PEER "mx.remote.example[192.0.2.1]:25"

static const struct tls_case tls_cases[] = {
	{ "starttls then AUTH PLAIN", true, false, true, {
		GREET, EHLO_TLS_AUTH, GO_TLS,
		{ "250-mx.remote.example\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n",
		  "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n", -1, ACT_NONE, NULL, NULL },
		{ "235 2.7.0 Authentication successful\r\n", "", SMTPC_EV_READY,
		  ACT_NONE, NULL, NULL } } },
	{ "AUTH LOGIN when only LOGIN is offered", true, true, true, {
		GREET, EHLO_TLS_AUTH, GO_TLS,
		{ "250-mx.remote.example\r\n250 AUTH=LOGIN\r\n", "AUTH LOGIN\r\n", -1,
		  ACT_NONE, NULL, NULL },
		{ "334 VXNlcm5hbWU6\r\n", "dXNlcg==\r\n", -1, ACT_NONE, NULL, NULL },
		{ "334 UGFzc3dvcmQ6\r\n", "c2VjcmV0\r\n", -1, ACT_NONE, NULL, NULL },
		{ "235 2.7.0 ok\r\n", "", SMTPC_EV_READY, ACT_NONE, NULL, NULL } } },
	{ "535 defers with the server's reply", true, false, true, {
		GREET, EHLO_TLS_AUTH, GO_TLS,
		{ "250-mx.remote.example\r\n250 AUTH PLAIN\r\n",
		  "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n", -1, ACT_NONE, NULL, NULL },
		{ "535 5.7.8 Error: authentication failed\r\n", "QUIT\r\n",
		  SMTPC_EV_CLOSED, ACT_NONE, "4.7.8", "SASL authentication failed; "
		  "server " PEER " said: 535 5.7.8 Error: authentication failed" } } },
	{ "no mechanism we speak", true, false, true, {
		GREET, EHLO_TLS_AUTH, GO_TLS,
		{ "250-mx.remote.example\r\n250 AUTH CRAM-MD5 GSSAPI\r\n", "QUIT\r\n",
		  SMTPC_EV_CLOSED, ACT_NONE, "4.7.0", "no mechanism available" } } },
	{ "encrypt: STARTTLS not offered", true, true, false, {
		GREET,
		{ "250-mx.remote.example\r\n250 PIPELINING\r\n", "QUIT\r\n",
		  SMTPC_EV_CLOSED, ACT_NONE, "4.7.4",
		  "TLS is required, but was not offered by host " PEER } } },
	{ "AUTH never in clear", true, false, true, {
		GREET,
		{ "250-mx.remote.example\r\n250 AUTH PLAIN LOGIN\r\n", "QUIT\r\n",
		  SMTPC_EV_CLOSED, ACT_NONE, "4.7.4",
		  "TLS is required, but was not offered by host " PEER } } },
	{ "encrypt after HELO fallback", true, true, false, {
		GREET,
		{ "502 5.5.1 what\r\n", "HELO relay.example.test\r\n", -1, ACT_NONE,
		  NULL, NULL },
		{ "250 mx.remote.example\r\n", "QUIT\r\n", SMTPC_EV_CLOSED, ACT_NONE,
		  "4.7.4", "was not offered" } } },
	{ "may: not offered, on in clear", true, false, false, {
		GREET,
		{ "250-mx.remote.example\r\n250 PIPELINING\r\n", "", SMTPC_EV_READY,
		  ACT_NONE, NULL, NULL } } },
	{ "may: refused, on in clear", true, false, false, {
		GREET, EHLO_TLS_AUTH,
		{ "454 4.7.0 TLS not available due to local problem\r\n", "",
		  SMTPC_EV_READY, ACT_NONE, NULL, NULL } } },
	{ "encrypt: refused", true, true, false, {
		GREET, EHLO_TLS_AUTH,
		{ "554 5.7.0 no\r\n", "QUIT\r\n", SMTPC_EV_CLOSED, ACT_NONE, "4.7.0",
		  "TLS is required, but host " PEER " refused to start TLS: 5.7.0 no" } } },
	{ "octets in clear after the 220", true, false, false, {
		GREET, EHLO_TLS_AUTH,
		{ "220 go ahead\r\n250 injected\r\n", "", SMTPC_EV_CLOSED, ACT_NONE,
		  "4.5.0", "octets after the 220 reply to STARTTLS" } } },
	{ "none: STARTTLS offered, not used", false, false, false, {
		GREET,
		{ "250-mx.remote.example\r\n250 STARTTLS\r\n", "", SMTPC_EV_READY,
		  ACT_NONE, NULL, NULL } } },
	{ "handshake or certificate refused by the driver", true, true, false, {
		GREET, EHLO_TLS_AUTH,
		{ "220 2.0.0 go\r\n", "", SMTPC_EV_CLOSED, ACT_FAIL, "4.7.5",
		  "Server certificate not verified" } } },
	{ "after TLS: no second STARTTLS, ready", true, true, false, {
		GREET, EHLO_TLS_AUTH, GO_TLS,
		{ "250-mx.remote.example\r\n250 STARTTLS\r\n", "", SMTPC_EV_READY,
		  ACT_NONE, NULL, NULL } } },
};

START_TEST(tls_transcripts)
{
	const struct tls_case *tc = &tls_cases[_i];
	struct smtpc_params p;

	smtpc_params_default(&p);
	p.helo_name = "relay.example.test";
	p.peer = PEER;
	p.starttls = tc->starttls;
	p.require_tls = tc->require_tls;
	if (tc->auth) {
		p.auth_user = "user";
		p.auth_pass = "secret";
	}
	struct smtpc *c = smtpc_new(&p);
	for (size_t k = 0; k < 8 && tc->steps[k].server != NULL; k++) {
		const struct tls_step *st = &tc->steps[k];
		feed(c, st->server);
		if (st->act == ACT_TLS_DONE) {
			ck_assert_msg(!smtpc_tls(c), "%s: TLS before the handshake", tc->name);
			ck_assert_uint_gt(smtpc_timeout(c), 0);
			smtpc_tls_done(c);
			ck_assert(smtpc_tls(c));
		} else if (st->act == ACT_FAIL) {
			ck_assert_int_eq(evs[nev - 1].type, SMTPC_EV_STARTTLS);
			smtpc_fail(c, "4.7.5", "Server certificate not verified");
			drain(c);
		}
		ck_assert_msg(strcmp(take(c), st->client) == 0, "%s step %zu: sent '%s'",
		    tc->name, k, outbuf);
		if (st->ev < 0) {
			ck_assert_msg(nev == 0 || st->act != ACT_NONE, "%s step %zu: event %d",
			    tc->name, k, nev ? (int)evs[0].type : -1);
			continue;
		}
		ck_assert_msg(nev > 0 && (int)evs[nev - 1].type == st->ev,
		    "%s step %zu: last event %d", tc->name, k, nev ? (int)evs[nev - 1].type : -1);
		if (st->ev == SMTPC_EV_CLOSED) {
			ck_assert(evs[nev - 1].error);
			ck_assert_str_eq(evs[nev - 1].dsn, st->dsn);
			ck_assert_msg(strstr(evs[nev - 1].text, st->text) != NULL,
			    "%s: text '%s'", tc->name, evs[nev - 1].text);
			ck_assert(smtpc_closed(c));
		}
		if (st->ev == SMTPC_EV_READY)
			ck_assert_int_eq(smtpc_authenticated(c), tc->auth);
	}
	smtpc_free(c);
}
END_TEST

/* after the handshake, what the server said before TLS is forgotten: SIZE from
   the first EHLO no longer limits; a message goes through the TLS session */
START_TEST(tls_forgets_the_clear_ehlo)
{
	struct smtpc_params p;
	struct smtpc_msg m = msg3();
	const char *err;

	smtpc_params_default(&p);
	p.helo_name = "relay.example.test";
	p.starttls = true;
	struct smtpc *c = smtpc_new(&p);
	feed(c, "220 mx ESMTP\r\n");
	take(c);
	feed(c, "250-mx\r\n250-SIZE 10\r\n250 STARTTLS\r\n");
	ck_assert_str_eq(take(c), "STARTTLS\r\n");
	ck_assert_uint_eq(smtpc_size_limit(c), 10);
	feed(c, "220 go\r\n");
	ck_assert_uint_eq(nev, 1);
	ck_assert_int_eq(evs[0].type, SMTPC_EV_STARTTLS);
	/* a driver that has not finished its handshake sends nothing */
	ck_assert_int_eq(smtpc_send(c, &m, &err), -1);
	smtpc_tls_done(c);
	ck_assert_uint_eq(smtpc_size_limit(c), 0);
	ck_assert_str_eq(take(c), "EHLO relay.example.test\r\n");
	feed(c, "250 mx\r\n");
	ck_assert_int_eq(evs[0].type, SMTPC_EV_READY);
	ck_assert_int_eq(smtpc_send(c, &m, &err), 0);
	ck_assert_ptr_nonnull(strstr(take(c), "MAIL FROM:<s@example.test>\r\n"));
	smtpc_free(c);
}
END_TEST

/* LMTP never does STARTTLS or AUTH, whatever the parameters say */
START_TEST(lmtp_no_tls)
{
	struct smtpc_params p;

	smtpc_params_default(&p);
	p.proto = SMTPC_LMTP;
	p.starttls = p.require_tls = true;
	p.auth_user = "user";
	p.auth_pass = "secret";
	struct smtpc *c = smtpc_new(&p);
	feed(c, "220 lmtp\r\n");
	take(c);
	feed(c, "250-lmtp\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
	ck_assert_str_eq(take(c), "");
	ck_assert_int_eq(evs[0].type, SMTPC_EV_READY);
	smtpc_free(c);
}
END_TEST

static Suite *
deliver_smtpc_suite(void)
{
	Suite *s = suite_create("deliver_smtpc");
	TCase *tc = tcase_create("smtpc");

	tcase_add_test(tc, pipelined_transaction);
	tcase_add_test(tc, one_command_per_round_trip);
	tcase_add_test(tc, helo_fallback);
	tcase_add_test(tc, lmtp_per_recipient_after_dot);
	tcase_add_test(tc, lmtp_no_helo_fallback_no_loop_check);
	tcase_add_test(tc, size_refused_early);
	tcase_add_test(tc, reply_421_defers_the_rest);
	tcase_add_test(tc, lost_connection_after_dot);
	tcase_add_test(tc, timeout_in_data);
	tcase_add_test(tc, rset_and_reuse);
	tcase_add_test(tc, mail_rejected_pipelined);
	tcase_add_test(tc, mail_deferred_unpipelined);
	tcase_add_test(tc, all_rcpts_rejected_pipelined_354);
	tcase_add_test(tc, multiline_reply_flattened);
	tcase_add_test(tc, greeting_refused);
	tcase_add_test(tc, loop_detected);
	tcase_add_loop_test(tc, hostile_replies, 0, sizeof(hostile) / sizeof(hostile[0]));
	tcase_add_test(tc, reply_limits);
	tcase_add_test(tc, send_refuses_bad_messages);
	tcase_add_test(tc, bad_dsn_params_dropped);
	tcase_add_loop_test(tc, dot_stuffing, 0, sizeof(bodies) / sizeof(bodies[0]));
	tcase_add_test(tc, long_lines_folded);
	tcase_add_test(tc, big_body_streams);
	tcase_add_loop_test(tc, tls_transcripts, 0, sizeof(tls_cases) / sizeof(tls_cases[0]));
	tcase_add_test(tc, tls_forgets_the_clear_ehlo);
	tcase_add_test(tc, lmtp_no_tls);
	tcase_add_loop_test(tc, body_matches_reference, 0, 25);
	tcase_add_loop_test(tc, wire_ready_cases, 0, sizeof(wire_cases) / sizeof(wire_cases[0]));
	tcase_add_test(tc, wire_ready_line_length);
	tcase_add_test(tc, has_8bit_every_position);
	tcase_add_loop_test(tc, wire_ready_iff_unchanged, 0, 10);
	tcase_add_test(tc, body_verbatim_then_dot);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(deliver_smtpc_suite)
