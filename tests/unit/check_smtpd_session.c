/*
 * The SMTP session without sockets: sessions made with fd -1 are fed octets
 * and their queued replies are compared with transcripts. The spool is a real
 * one in a temporary directory; smtpd_commit() stands for one loop pass, so
 * the tests also show that "250 ... queued as" comes only after the commit.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/spool.h"
#include "instances/authc.h"
#include "instances/session.h"
#include "instances/smtpd.h"
#include "tests/unit/testmain.h"

static char tmpdir[64];
static struct config *cfg;
static struct spool *sp;
static struct smtpd *sd;

static const char *
conf_yaml(void)
{
	static char buf[4096];
	snprintf(buf, sizeof(buf),
	    "server:\n"
	    "  hostname: mx.test.example\n"
	    "  spool: %s/spool\n"
	    "  local_domains: [example.test]\n"
	    "lan: [127.0.0.1, \"::1\"]\n"
	    "profiles:\n"
	    "  p: {}\n"
	    "instances:\n"
	    "  t:\n"
	    "    listen: [\"127.0.0.1:2525\"]\n"
	    "    profile: p\n"
	    "    max_recipients: 2\n"
	    "    max_errors: 3\n"
	    "    recipient_overshoot_limit: 4\n"
	    "    max_message_size: 2K\n"
	    "  acl:\n"
	    "    listen: [\"127.0.0.1:2526\"]\n"
	    "    profile: p\n"
	    "    access: lan\n"
	    "  tiny:\n"
	    "    listen: [\"127.0.0.1:2527\"]\n"
	    "    profile: p\n"
	    "    max_connections: 5\n"
	    "    max_errors: 3\n"
	    "  authy:\n"
	    "    listen: [\"127.0.0.1:2528\"]\n"
	    "    profile: p\n"
	    "    auth_plaintext_loopback: true\n", tmpdir);
	return buf;
}

static void
setup_instance(const char *name)
{
	const char *names[] = { "a.yaml" };
	const char *bufs[] = { conf_yaml() };
	struct config_diags diags;
	const char *err;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_smtpd_session.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	bufs[0] = conf_yaml();
	memset(&diags, 0, sizeof(diags));
	cfg = config_load(config_source_from_buffers(tmpdir, names, bufs, 1), &diags);
	if (diags.n_errors > 0)
		config_diags_print(&diags, stderr);
	ck_assert_uint_eq(diags.n_errors, 0);
	config_diags_free(&diags);
	ck_assert_int_eq(spool_open(cfg->server.spool, 0, &sp, &err), 0);
	sd = smtpd_new(NULL, cfg, config_instance(cfg, name));
	ck_assert_ptr_nonnull(sd);
	smtpd_set_spool(sd, sp);
}

static void
setup(void)
{
	log_init("check_smtpd_session", true);
	setup_instance("t");
}

static void
setup_acl(void)
{
	log_init("check_smtpd_session", true);
	setup_instance("acl");
}

/* an instance offering AUTH in clear to loopback clients, with a client of an
   auth process that is never reached (no transcript gets that far) */
static void
setup_auth(void)
{
	log_init("check_smtpd_session", true);
	setup_instance("authy");
	sd->authc = authc_new(NULL, 10);
	sd->authfail = authfail_new();
}

static void teardown(void);

static void
teardown_auth(void)
{
	struct authc *c = sd->authc;
	struct authfail *f = sd->authfail;
	teardown();
	authc_free(c);
	authfail_free(f);
}

static void
setup_tiny(void)
{
	log_init("check_smtpd_session", true);
	setup_instance("tiny");
}

static void
teardown(void)
{
	char cmd[128];

	smtpd_free(sd);
	spool_close(sp);
	config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct session *
open_session(const char *ip)
{
	struct sockaddr_storage ss;
	socklen_t len;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
		len = sizeof(*s4);
	}
	struct session *s = session_new(sd, -1, (struct sockaddr *)&ss, len);
	ck_assert_ptr_nonnull(s);
	session_start(s);
	return s;
}

static void
feed(struct session *s, const char *text)
{
	session_feed(s, text, strlen(text));
}

/* the queued output as a string, and cleared */
static char *
take(struct session *s)
{
	size_t len;
	const char *p = session_output(s, &len);
	char *r = strndup(p, len);
	session_output_clear(s);
	return r;
}

/*
 * Compare the replies with "|"-separated line prefixes: every line must start
 * with its prefix, and the number of lines must match (no reply lost, none
 * doubled).
 */
static void
expect(const char *out, const char *want, const char *what)
{
	char *w = strdup(want), *save = NULL;
	const char *p = out;
	int n = 0;

	for (char *tok = strtok_r(w, "|", &save); tok != NULL;
	    tok = strtok_r(NULL, "|", &save), n++) {
		const char *eol = strstr(p, "\r\n");
		ck_assert_msg(eol != NULL, "%s: reply %d (%s) missing; output:\n%s", what,
		    n, tok, out);
		ck_assert_msg(strncmp(p, tok, strlen(tok)) == 0,
		    "%s: reply %d is \"%.*s\", want \"%s\"", what, n, (int)(eol - p), p, tok);
		p = eol + 2;
	}
	ck_assert_msg(*p == '\0', "%s: unexpected extra output \"%s\"", what, p);
	free(w);
}

static const struct {
	const char *client;
	const char *input;
	const char *replies;
	bool closed;
} transcripts[] = {
	{ "127.0.0.1", "EHLO c\r\nQUIT\r\n",
	    "220 mx.test.example ESMTP|250-mx.test.example|250-PIPELINING|250-SIZE 2048|"
	    "250-8BITMIME|250-DSN|250 ENHANCEDSTATUSCODES|221 2.0.0", true },
	{ "127.0.0.1", "HELO c\r\n", "220 |250 mx.test.example", false },
	{ "127.0.0.1", "EHLO\r\nHELO\r\n", "220 |501 5.5.4|501 5.5.4", false },
	/* order of commands */
	{ "127.0.0.1", "MAIL FROM:<a@example.test>\r\n", "220 |503 5.5.1", false },
	{ "127.0.0.1", "EHLO c\r\nRCPT TO:<postmaster@example.test>\r\n",
	    "220 |250-|250-|250-|250-|250-|250 |503 5.5.1", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nDATA\r\n", "220 |250 |250 2.1.0|503 5.5.1",
	    false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\n",
	    "220 |250 |250 2.1.0|503 5.5.1", false },
	{ "127.0.0.1", "HELO c\r\nDATA\r\n", "220 |250 |503 5.5.1", false },
	/* the other commands */
	{ "127.0.0.1", "HELO c\r\nNOOP\r\nRSET\r\nVRFY x\r\nEXPN x\r\nHELP\r\nFOO\r\nQUIT\r\n",
	    "220 |250 |250 2.0.0|250 2.0.0|252 2.5.2|502 5.5.1|214 2.0.0|500 5.5.2|221 2.0.0",
	    true },
	{ "127.0.0.1", "noop\r\nquit\r\n", "220 |250 2.0.0|221 2.0.0", true },
	/* MAIL parameters */
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> SIZE=2049\r\n",
	    "220 |250 |552 5.3.4", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> SIZE=2048 BODY=8BITMIME\r\n",
	    "220 |250 |250 2.1.0", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> BODY=7BIT\r\n",
	    "220 |250 |250 2.1.0", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> BODY=9BIT\r\n",
	    "220 |250 |501 5.5.4", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> FOO=1\r\n",
	    "220 |250 |555 5.5.4", false },
	/* RFC 3461 DSN parameters: accepted, and refused with exact replies */
	{ "127.0.0.1", "EHLO c\r\nMAIL FROM:<a@example.test> RET=HDRS ENVID=abc+2B1\r\n"
	    "RCPT TO:<postmaster@example.test> NOTIFY=SUCCESS,FAILURE,DELAY "
	    "ORCPT=rfc822;postmaster+40example.test\r\n"
	    "RCPT TO:<abuse@example.test> notify=never\r\n",
	    "220 |250-|250-|250-|250-|250-|250 |250 2.1.0|250 2.1.5|250 2.1.5", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> ENVID=yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy ret=full\r\n",
	    "220 |250 |250 2.1.0", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> RET=FULL RET=HDRS\r\n",
	    "220 |250 |501 5.5.4 Duplicate RET parameter\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> RET=ALL\r\n",
	    "220 |250 |501 5.5.4 Bad RET parameter syntax\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> ENVID=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
	    "220 |250 |501 5.5.4 ENVID parameter too long\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> ENVID=a=b\r\n",
	    "220 |250 |501 5.5.4 Bad ENVID parameter syntax\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> ENVID=a+2\r\n",
	    "220 |250 |501 5.5.4 Bad ENVID parameter syntax\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> ENVID=a ENVID=b\r\n",
	    "220 |250 |501 5.5.4 Duplicate ENVID parameter\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test>\r\n"
	    "RCPT TO:<postmaster@example.test> NOTIFY=NEVER,SUCCESS\r\n",
	    "220 |250 |250 2.1.0|501 5.5.4 NOTIFY=NEVER cannot be combined with other "
	    "NOTIFY values\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test>\r\n"
	    "RCPT TO:<postmaster@example.test> NOTIFY=SUCCESS NOTIFY=DELAY\r\n",
	    "220 |250 |250 2.1.0|501 5.5.4 Duplicate NOTIFY parameter\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test>\r\n"
	    "RCPT TO:<postmaster@example.test> NOTIFY=SUCCESS,,DELAY\r\n",
	    "220 |250 |250 2.1.0|501 5.5.4 Bad NOTIFY parameter syntax\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test>\r\n"
	    "RCPT TO:<postmaster@example.test> NOTIFY=SOMETIMES\r\n",
	    "220 |250 |250 2.1.0|501 5.5.4 Bad NOTIFY parameter syntax\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test>\r\n"
	    "RCPT TO:<postmaster@example.test> ORCPT=x400;abc\r\n",
	    "220 |250 |250 2.1.0|501 5.5.4 Bad ORCPT parameter syntax\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test>\r\n"
	    "RCPT TO:<postmaster@example.test> ORCPT=rfc822;a ORCPT=rfc822;b\r\n",
	    "220 |250 |250 2.1.0|501 5.5.4 Duplicate ORCPT parameter\r", false },
	{ "127.0.0.1", "EHLO c\r\nMAIL FROM:<a@example.test>\r\n"
	    "RCPT TO:<postmaster@example.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
	    "RCPT TO:<abuse@example.test> ORCPT=rfc822;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
	    "220 |250-|250-|250-|250-|250-|250 |250 2.1.0|250 2.1.5|"
	    "501 5.5.4 ORCPT parameter too long\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test>\r\n"
	    "RCPT TO:<postmaster@example.test> FOO=1\r\n",
	    "220 |250 |250 2.1.0|555 5.5.4 Unsupported option: FOO=1\r", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a b@>\r\n", "220 |250 |501 5.1.7", false },
	{ "127.0.0.1", "HELO c\r\nMAIL TO:<a@example.test>\r\n", "220 |250 |501 5.5.4", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<>\r\n",
	    "220 |250 |250 2.1.0|501 5.1.3", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test\r\n",
	    "220 |250 |250 2.1.0|501 5.1.3", false },
	/* the relay decision */
	{ "192.0.2.7", "HELO c\r\nMAIL FROM:<s@x.example>\r\nRCPT TO:<v@remote.example>\r\n"
	    "DATA\r\n",
	    "220 |250 |250 2.1.0|554 5.7.1 <v@remote.example>: Relay access denied|"
	    "554 5.5.1", false },
	{ "192.0.2.7", "HELO c\r\nMAIL FROM:<s@x.example>\r\nRCPT TO:<PostMaster>\r\n",
	    "220 |250 |250 2.1.0|250 2.1.5", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<s@x.example>\r\nRCPT TO:<v@remote.example>\r\n",
	    "220 |250 |250 2.1.0|250 2.1.5", false },
	{ "2001:db8::1", "HELO c\r\nMAIL FROM:<s@x.example>\r\nRCPT TO:<v@remote.example>\r\n",
	    "220 |250 |250 2.1.0|554 5.7.1", false },
	{ "::1", "HELO c\r\nMAIL FROM:<s@x.example>\r\nRCPT TO:<v@remote.example>\r\n",
	    "220 |250 |250 2.1.0|250 2.1.5", false },
	/* limits */
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\n"
	    "RCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n",
	    "220 |250 |250 2.1.0|250 2.1.5|250 2.1.5|452 4.5.3", false },
	/* recipients over max_recipients are not the client's fault up to the
	   overshoot limit (4 here): the transaction goes on with those accepted */
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\n"
	    "RCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n"
	    "RCPT TO:<d@example.test>\r\nRCPT TO:<e@example.test>\r\n"
	    "RCPT TO:<f@example.test>\r\nDATA\r\nx\r\n.\r\n",
	    "220 |250 |250 2.1.0|250 2.1.5|250 2.1.5|452 4.5.3|452 4.5.3|452 4.5.3|"
	    "452 4.5.3|354 |250 2.0.0 Ok: queued as", false },
	/* past it each one counts: 3 errors, then the next command gets 421 */
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\n"
	    "RCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n"
	    "RCPT TO:<d@example.test>\r\nRCPT TO:<e@example.test>\r\n"
	    "RCPT TO:<f@example.test>\r\nRCPT TO:<g@example.test>\r\n"
	    "RCPT TO:<h@example.test>\r\nRCPT TO:<i@example.test>\r\nDATA\r\n",
	    "220 |250 |250 2.1.0|250 2.1.5|250 2.1.5|452 4.5.3|452 4.5.3|452 4.5.3|"
	    "452 4.5.3|452 4.5.3|452 4.5.3|452 4.5.3|421 4.7.0", true },
	/* one mailbox given again (case, trailing dot, quoting) is stored once and
	   does not use up max_recipients */
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\n"
	    "RCPT TO:<A@EXAMPLE.TEST.>\r\nRCPT TO:<\"a\"@Example.Test>\r\n"
	    "RCPT TO:<b@example.test>\r\n",
	    "220 |250 |250 2.1.0|250 2.1.5|250 2.1.5|250 2.1.5|250 2.1.5", false },
	/* RFC 1870: a SIZE beyond any limit is 552, not a syntax error */
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> SIZE=18446744073709551615\r\n"
	    "MAIL FROM:<a@example.test> SIZE=18446744073709551616\r\n"
	    "MAIL FROM:<a@example.test> SIZE=0000000000000000000000000000000000000000000001\r\n",
	    "220 |250 |552 5.3.4|552 5.3.4|250 2.1.0", false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> SIZE=999999999999999999999999\r\n"
	    "MAIL FROM:<a@example.test> SIZE=\r\nMAIL FROM:<a@example.test> SIZE=1x\r\n",
	    "220 |250 |552 5.3.4|501 5.5.4|501 5.5.4", false },
	{ "127.0.0.1", "FOO\r\nBAR\r\nBAZ\r\nNOOP\r\nNOOP\r\n",
	    "220 |500 5.5.2|500 5.5.2|500 5.5.2|421 4.7.0", true },
	/* AUTH without server.auth: not offered, refused like Postfix */
	{ "127.0.0.1", "EHLO c\r\nAUTH PLAIN AGEAYg==\r\n",
	    "220 |250-mx.test.example|250-PIPELINING|250-SIZE 2048|250-8BITMIME|"
	    "250-DSN|250 ENHANCEDSTATUSCODES|503 5.5.1 Error: authentication not enabled", false },
	/* MAIL's AUTH= (RFC 4954 section 5): xtext or <>, accepted without AUTH */
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<a@example.test> AUTH=<>\r\nRSET\r\n"
	    "MAIL FROM:<a@example.test> AUTH=a+40b.example\r\nRSET\r\n"
	    "MAIL FROM:<a@example.test> AUTH=a+4\r\nMAIL FROM:<a@example.test> AUTH=\r\n"
	    "MAIL FROM:<a@example.test> AUTH=a+4g\r\n",
	    "220 |250 |250 2.1.0|250 2.0.0|250 2.1.0|250 2.0.0|501 5.5.4|501 5.5.4|501 5.5.4",
	    false },
	/* bare line endings in commands end the session */
	{ "127.0.0.1", "HELO c\nNOOP\r\n", "220 |521 5.5.2", true },
	{ "127.0.0.1", "HELO c\r\nNO\rOP\r\nNOOP\r\n", "220 |250 |521 5.5.2", true },
};

static const struct {
	const char *client;
	const char *input;
	const char *replies;
	bool closed;
} auth_transcripts[] = {
	/* offered in clear to loopback only (auth_plaintext_loopback) */
	{ "127.0.0.1", "EHLO c\r\nAUTH LOGIN\r\n*\r\n",
	    "220 |250-mx.test.example|250-PIPELINING|250-SIZE|250-8BITMIME|"
	    "250-AUTH PLAIN LOGIN|250-DSN|250 ENHANCEDSTATUSCODES|334 VXNlcm5hbWU6|501 5.7.0",
	    false },
	{ "::1", "EHLO c\r\nAUTH PLAIN\r\n*\r\n",
	    "220 |250-|250-|250-|250-|250-AUTH PLAIN LOGIN|250-DSN|250 |334 |501 5.7.0", false },
	{ "192.0.2.7", "EHLO c\r\nAUTH PLAIN AGEAYg==\r\n",
	    "220 |250-mx.test.example|250-PIPELINING|250-SIZE|250-8BITMIME|"
	    "250-DSN|250 ENHANCEDSTATUSCODES|538 5.7.11 Encryption required for requested "
	    "authentication mechanism", false },
	/* order and syntax */
	{ "127.0.0.1", "AUTH PLAIN\r\n", "220 |503 5.5.1 Error: send HELO/EHLO first",
	    false },
	{ "127.0.0.1", "HELO c\r\nMAIL FROM:<>\r\nAUTH PLAIN\r\n",
	    "220 |250 |250 2.1.0|503 5.5.1 Error: MAIL transaction in progress", false },
	{ "127.0.0.1", "HELO c\r\nAUTH\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!!\r\n",
	    "220 |250 |501 5.5.4|504 5.5.4|501 5.5.2", false },
	/* the exchange reads raw lines: a command inside it is a response */
	{ "127.0.0.1", "HELO c\r\nAUTH LOGIN\r\nHELO c\r\nNOOP\r\n",
	    "220 |250 |334 VXNlcm5hbWU6|501 5.5.2|250 2.0.0", false },
	/* the third failed AUTH closes the session */
	{ "127.0.0.1", "EHLO c\r\nAUTH LOGIN\r\n*\r\nAUTH LOGIN\r\n*\r\n"
	    "AUTH LOGIN\r\n*\r\nNOOP\r\n",
	    "220 |250-|250-|250-|250-|250-|250-|250 |334 |501 5.7.0|334 |501 5.7.0|334 |501 5.7.0|"
	    "421 4.7.0 mx.test.example Error: too many failed authentications", true },
};

START_TEST(test_auth_transcript)
{
	struct session *s = open_session(auth_transcripts[_i].client);
	char what[32];

	snprintf(what, sizeof(what), "auth transcript %d", _i);
	feed(s, auth_transcripts[_i].input);
	char *out = take(s);
	expect(out, auth_transcripts[_i].replies, what);
	ck_assert_msg(session_closed(s) == auth_transcripts[_i].closed, "%s: closed %d",
	    what, session_closed(s));
	free(out);
	session_free(s);
}
END_TEST

START_TEST(test_transcript)
{
	struct session *s = open_session(transcripts[_i].client);
	char what[32];

	snprintf(what, sizeof(what), "transcript %d", _i);
	feed(s, transcripts[_i].input);
	smtpd_commit(sd);
	char *out = take(s);
	expect(out, transcripts[_i].replies, what);
	ck_assert_msg(session_closed(s) == transcripts[_i].closed, "%s: closed %d", what,
	    session_closed(s));
	free(out);
	session_free(s);
}
END_TEST

/* the same transcripts, one octet at a time: same replies */
START_TEST(test_transcript_bytewise)
{
	struct session *s = open_session(transcripts[_i].client);
	const char *in = transcripts[_i].input;
	char what[48];

	snprintf(what, sizeof(what), "bytewise transcript %d", _i);
	for (size_t i = 0; in[i] != '\0'; i++)
		session_feed(s, in + i, 1);
	smtpd_commit(sd);
	char *out = take(s);
	expect(out, transcripts[_i].replies, what);
	free(out);
	session_free(s);
}
END_TEST

static const char tx_text[] =
    "EHLO client.example\r\n"
    "MAIL FROM:<s@x.example> BODY=8BITMIME\r\n"
    "RCPT TO:<postmaster@example.test>\r\n"
    "DATA\r\n"
    "Subject: hi\r\n"
    "\r\n"
    "..stuffed\r\n"
    "line . with a dot\r\n"
    ".\r\n"
    "QUIT\r\n";
static const char tx_body[] = "Subject: hi\r\n\r\n.stuffed\r\nline . with a dot\r\n";
static const char tx_replies[] =
    "220 |250-|250-|250-|250-|250-|250 |250 2.1.0|250 2.1.5|354 |250 2.0.0 Ok: queued as |"
    "221 2.0.0";

/* the stored body: our Received: header, then exactly the client's text */
static void
check_spooled(const char *out, const char *want_body)
{
	const char *q = strstr(out, "queued as ");
	ck_assert_ptr_nonnull(q);
	char qid[SPOOL_QID_MAX + 1];
	snprintf(qid, sizeof(qid), "%.*s", (int)strcspn(q + 10, "\r"), q + 10);
	char *body;
	size_t len;
	const char *err;
	ck_assert_int_eq(spool_body(sp, qid, &body, &len, &err), 0);
	ck_assert_msg(strncmp(body, "Received: from client.example (unknown [127.0.0.1])\r\n"
	    "\tby mx.test.example (relayvisor) with ESMTP id ", 97) == 0, "%.*s",
	    (int)len, body);
	ck_assert(strstr(body, "\tfor <postmaster@example.test>; ") != NULL);
	size_t wl = strlen(want_body);
	ck_assert_uint_gt(len, wl);
	ck_assert_msg(memcmp(body + len - wl, want_body, wl) == 0, "body: %.*s",
	    (int)len, body);
	/* the Received: header is followed directly by the client's text */
	const char *eoh = strstr(body, "\r\nSubject: hi");
	ck_assert_ptr_nonnull(eoh);
	ck_assert_uint_eq((size_t)(eoh + 2 - body) + wl, len);
	free(body);
}

/* PIPELINING: a whole transaction in one write; 250 only after the commit */
START_TEST(test_pipelined_commit)
{
	struct session *s = open_session("127.0.0.1");

	feed(s, tx_text);
	char *before = take(s);
	expect(before, "220 |250-|250-|250-|250-|250-|250 |250 2.1.0|250 2.1.5|354 ", "before commit");
	ck_assert(!session_closed(s));
	ck_assert_uint_eq(spool_pending(sp), 1);
	uint64_t commits = spool_commit_count(sp);
	smtpd_commit(sd);
	ck_assert_uint_eq(spool_commit_count(sp), commits + 1);
	char *after = take(s);
	expect(after, "250 2.0.0 Ok: queued as |221 2.0.0", "after commit");
	ck_assert(session_closed(s));
	char *all;
	ck_assert_int_ne(asprintf(&all, "%s%s", before, after), -1);
	check_spooled(all, tx_body);
	free(all);
	free(before);
	free(after);
	session_free(s);
}
END_TEST

/* the transaction split in two at every position: same replies, same message */
START_TEST(test_split_everywhere)
{
	size_t len = strlen(tx_text);

	for (size_t cut = 0; cut <= len; cut++) {
		struct session *s = open_session("127.0.0.1");
		session_feed(s, tx_text, cut);
		smtpd_commit(sd);
		session_feed(s, tx_text + cut, len - cut);
		smtpd_commit(sd);
		char *out = take(s);
		char what[32];
		snprintf(what, sizeof(what), "cut %zu", cut);
		expect(out, tx_replies, what);
		check_spooled(out, tx_body);
		free(out);
		session_free(s);
	}
}
END_TEST

/* many sessions finishing in one pass: one commit answers them all */
START_TEST(test_group_commit)
{
	enum { N = 20 };
	struct session *s[N];
	uint64_t commits = spool_commit_count(sp);

	for (int i = 0; i < N; i++) {
		s[i] = open_session("127.0.0.1");
		feed(s[i], tx_text);
	}
	ck_assert_uint_eq(spool_pending(sp), N);
	smtpd_commit(sd);
	ck_assert_uint_eq(spool_commit_count(sp), commits + 1);
	for (int i = 0; i < N; i++) {
		char *out = take(s[i]);
		expect(out, tx_replies, "group");
		free(out);
		session_free(s[i]);
	}
	ck_assert_uint_eq(sd->stats.accepted, N);
}
END_TEST

/* two transactions pipelined back to back: both queued, replies in order */
START_TEST(test_two_transactions)
{
	struct session *s = open_session("127.0.0.1");
	static const char text[] =
	    "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\nDATA\r\none\r\n.\r\n"
	    "MAIL FROM:<>\r\nRCPT TO:<b@example.test>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n";

	feed(s, text);
	for (int i = 0; i < 3; i++)
		smtpd_commit(sd);
	char *out = take(s);
	expect(out, "220 |250-|250-|250-|250-|250-|250 |250 2.1.0|250 2.1.5|354 |250 2.0.0 Ok: "
	    "queued as |250 2.1.0|250 2.1.5|354 |250 2.0.0 Ok: queued as |221 2.0.0", "two");
	ck_assert(session_closed(s));
	free(out);
	session_free(s);
}
END_TEST

/* SMTP smuggling: a bare LF "end of data" neither ends the message nor starts a
   second transaction; the session is refused and nothing is queued */
static const char *const smuggle[] = {
	"DATA\r\nSubject: a\r\n\r\nx\n.\nMAIL FROM:<evil@x.example>\r\n",
	"DATA\r\nSubject: a\r\n\r\nx\r\n.\nMAIL FROM:<evil@x.example>\r\n",
	"DATA\r\nSubject: a\r\n\r\nx\n.\r\nMAIL FROM:<evil@x.example>\r\n",
	"DATA\r\nSubject: a\r\n\r\nx\r.\r\nMAIL FROM:<evil@x.example>\r\n",
	"DATA\r\nSubject: a\r\n\r\nx\r\n.\rMAIL FROM:<evil@x.example>\r\n",
};

START_TEST(test_smuggling)
{
	struct session *s = open_session("127.0.0.1");

	feed(s, "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\n");
	feed(s, smuggle[_i]);
	feed(s, "RCPT TO:<b@example.test>\r\nDATA\r\nevil\r\n.\r\n");
	smtpd_commit(sd);
	char *out = take(s);
	expect(out, "220 |250 |250 2.1.0|250 2.1.5|354 |521 5.5.2", "smuggle");
	ck_assert(session_closed(s));
	ck_assert_uint_eq(spool_pending(sp), 0);
	ck_assert_uint_eq(sd->stats.accepted, 0);
	free(out);
	session_free(s);
}
END_TEST

/* a command line of 513 octets is refused before parsing; 512 is served */
START_TEST(test_line_limit)
{
	struct session *s = open_session("127.0.0.1");
	char line[1200];

	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	memcpy(line + 510, "\r\n", 3);		/* 512 with CRLF */
	feed(s, line);
	memcpy(line + 510, "xx\r\n", 5);	/* 514 */
	feed(s, line);
	memset(line, 'y', 1100);		/* arrives in two parts */
	line[1100] = '\0';
	feed(s, line);
	feed(s, "yyy\r\nNOOP\r\n");
	char *out = take(s);
	expect(out, "220 |250 2.0.0|500 5.5.0|500 5.5.0|250 2.0.0", "line limit");
	free(out);
	session_free(s);
}
END_TEST

static void
send_message(struct session *s, const char *text)
{
	feed(s, "HELO client.example\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n");
	feed(s, text);
	feed(s, ".\r\n");
	smtpd_commit(sd);
}

/* over max_message_size (2K) during DATA: read to the end, then 552 */
START_TEST(test_data_too_big)
{
	struct session *s = open_session("127.0.0.1");
	char text[4200];

	for (size_t i = 0; i < 4100; i += 41)
		memcpy(text + i, "0123456789012345678901234567890123456789\r\n" + 1, 41);
	text[4100] = '\0';
	memcpy(text + 4098, "\r\n", 3);
	send_message(s, text);
	feed(s, "NOOP\r\n");
	char *out = take(s);
	expect(out, "220 |250 |250 2.1.0|250 2.1.5|354 |552 5.3.4|250 2.0.0", "too big");
	ck_assert_uint_eq(sd->stats.accepted, 0);
	free(out);
	session_free(s);
}
END_TEST

/*
 * A body of some 150 KB through the growing message buffer, decoded straight
 * into it, fed in chunks of every size from 1 to 3001 octets: CRLFs, a CR
 * alone at the end of a chunk and dot-stuffed lines land on every edge of the
 * buffer's room. Stored exactly as sent, unstuffed.
 */
START_TEST(test_big_body_every_edge)
{
	static char text[200000], body[200000];
	size_t tn = 0, bn = 0;

	tn += (size_t)snprintf(text, sizeof(text), "EHLO client.example\r\n"
	    "MAIL FROM:<s@x.example>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\n");
	bn += (size_t)snprintf(body, sizeof(body), "Subject: hi\r\n\r\n");
	for (size_t i = 0; bn < 150000; i++) {
		char line[160];
		size_t n = (i * 37) % 120;
		for (size_t k = 0; k < n; k++)
			line[k] = (char)('a' + (i + k) % 26);
		if (i % 7 == 3)
			line[0] = '.', n = n == 0 ? 1 : n;
		memcpy(body + bn, line, n);
		bn += n;
		body[bn++] = '\r', body[bn++] = '\n';
	}
	memcpy(text + tn, "Subject: hi\r\n\r\n", 15);
	tn += 15;
	for (size_t k = 15; k < bn; k++) {
		if (body[k] == '.' && body[k - 1] == '\n')
			text[tn++] = '.';	/* stuffed on the wire */
		text[tn++] = body[k];
	}
	memcpy(text + tn, ".\r\nQUIT\r\n", 9);
	tn += 9;
	body[bn] = '\0';

	struct session *s = open_session("127.0.0.1");
	size_t chunk = 1;
	for (size_t off = 0; off < tn; off += chunk, chunk = chunk % 3001 + 1) {
		if (chunk > tn - off)
			chunk = tn - off;
		session_feed(s, text + off, chunk);
	}
	smtpd_commit(sd);
	char *out = take(s);
	expect(out, "220 |250-|250-|250-|250-|250-|250 |250 2.1.0|250 2.1.5|354 |"
	    "250 2.0.0 Ok: queued as |221 2.0.0", "big body");
	check_spooled(out, body);
	free(out);
	session_free(s);
}
END_TEST

/* a mail loop: more than 50 Received: headers */
START_TEST(test_too_many_hops)
{
	struct session *s = open_session("127.0.0.1");
	char text[2048];
	size_t off = 0;
	int hops = _i == 0 ? 50 : 51;

	for (int i = 0; i < hops; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, "Received: %d\r\n", i);
	snprintf(text + off, sizeof(text) - off, "\r\nx\r\n");
	send_message(s, text);
	char *out = take(s);
	expect(out, _i == 0 ? "220 |250 |250 2.1.0|250 2.1.5|354 |250 2.0.0" :
	    "220 |250 |250 2.1.0|250 2.1.5|354 |554 5.4.6", "hops");
	free(out);
	session_free(s);
}
END_TEST

/* the session dies while its message waits for the commit */
START_TEST(test_gone_before_commit)
{
	struct session *s = open_session("127.0.0.1");
	uint64_t commits = spool_commit_count(sp);

	send_message(s, "x\r\n");	/* commits: one message */
	feed(s, "MAIL FROM:<>\r\nRCPT TO:<a@example.test>\r\nDATA\r\ny\r\n.\r\n");
	ck_assert_uint_eq(spool_pending(sp), 1);
	session_free(s);
	smtpd_commit(sd);	/* must not call back into the freed session */
	ck_assert_uint_eq(spool_pending(sp), 0);
	ck_assert_uint_eq(spool_commit_count(sp), commits + 2);
}
END_TEST

/* a client that half-closes after pipelining still gets its replies */
START_TEST(test_eof_after_pipeline)
{
	struct session *s = open_session("127.0.0.1");

	feed(s, tx_text);
	session_feed_eof(s);
	ck_assert(!session_closed(s));
	smtpd_commit(sd);
	char *out = take(s);
	expect(out, tx_replies, "eof");
	ck_assert(session_closed(s));
	free(out);
	session_free(s);
}
END_TEST

START_TEST(test_timeout)
{
	struct session *s = open_session("127.0.0.1");

	feed(s, "HELO c\r\n");
	session_timeout(s);
	char *out = take(s);
	expect(out, "220 |250 |421 4.4.2 mx.test.example Error: timeout exceeded", "timeout");
	ck_assert(session_closed(s));
	free(out);
	session_free(s);
}
END_TEST

/* graceful stop: an idle session gets 421 4.3.2 at its next command, an open
   transaction is finished first */
START_TEST(test_stopping)
{
	struct session *a = open_session("127.0.0.1");
	struct session *b = open_session("127.0.0.1");

	feed(a, "HELO c\r\n");
	feed(b, "HELO c\r\nMAIL FROM:<>\r\n");
	sd->stopping = true;
	feed(a, "NOOP\r\n");
	feed(b, "RCPT TO:<a@example.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n");
	smtpd_commit(sd);
	char *oa = take(a), *ob = take(b);
	expect(oa, "220 |250 |421 4.3.2", "idle");
	expect(ob, "220 |250 |250 2.1.0|250 2.1.5|354 |250 2.0.0|421 4.3.2", "busy");
	ck_assert(session_closed(a));
	ck_assert(session_closed(b));
	free(oa);
	free(ob);
	session_free(a);
	session_free(b);
}
END_TEST

/* access: lan refuses an outside client at the greeting */
START_TEST(test_access_denied)
{
	struct session *s = open_session("192.0.2.7");
	char *out = take(s);

	expect(out, "554 5.7.1 <unknown[192.0.2.7]>: Client host rejected: Access denied",
	    "access");
	ck_assert(session_closed(s));
	ck_assert_uint_eq(sd->stats.refused, 1);
	free(out);
	session_free(s);
	s = open_session("127.0.0.1");
	out = take(s);
	expect(out, "220 ", "lan");
	free(out);
	session_free(s);
}
END_TEST

START_TEST(test_stats)
{
	char buf[256];
	struct session *s = open_session("192.0.2.7");

	feed(s, "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<v@remote.example>\r\n");
	smtpd_stats_format(sd, buf, sizeof(buf));
	ck_assert_str_eq(buf, "STATS connections=0 active=1 accepted=0 relay_refused=1 "
	    "refused=0 bytes=0");
	session_free(s);
}
END_TEST

/* the session's log lines as Postfix writes them (stderr captured) */
static char *
capture_log(const char *client, const char *input)
{
	char path[] = "/tmp/check_smtpd_log.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	int saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	struct session *s = open_session(client);
	feed(s, input);
	smtpd_commit(sd);
	session_feed_eof(s);
	session_free(s);
	ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
	close(saved);
	off_t len = lseek(fd, 0, SEEK_END);
	char *text = calloc(1, (size_t)len + 1);
	ck_assert_int_eq(pread(fd, text, (size_t)len, 0), len);
	close(fd);
	unlink(path);
	return text;
}

static const struct {
	const char *client;
	const char *input;
	const char *lines[4];
} log_cases[] = {
	{ "192.0.2.7", "EHLO h\r\nMAIL FROM:<s@x.example>\r\nRCPT TO:<v@remote.example>\r\n"
	    "DATA\r\nQUIT\r\n", {
		": connect from unknown[192.0.2.7]\n",
		": NOQUEUE: reject: RCPT from unknown[192.0.2.7]: 554 5.7.1 <v@remote.example>: "
		"Relay access denied; from=<s@x.example> to=<v@remote.example> proto=ESMTP "
		"helo=<h>\n",
		": disconnect from unknown[192.0.2.7] ehlo=1 mail=1 rcpt=0/1 data=0/1 quit=1 "
		"commands=3/5\n" } },
	{ "2001:db8::1", "HELO h\r\nMAIL FROM:<>\r\nRCPT TO:<v@remote.example>\r\n", {
		": connect from unknown[2001:db8::1]\n",
		": NOQUEUE: reject: RCPT from unknown[2001:db8::1]: 554 5.7.1 <v@remote.example>: "
		"Relay access denied; from=<> to=<v@remote.example> proto=SMTP helo=<h>\n",
		": lost connection after RCPT from unknown[2001:db8::1]\n",
		": disconnect from unknown[2001:db8::1] helo=1 mail=1 rcpt=0/1 commands=2/3\n" } },
	/* an IPv4-mapped client is shown (and treated) as the IPv4 address */
	{ "::ffff:127.0.0.1", "", {
		": connect from unknown[127.0.0.1]\n",
		": lost connection after CONNECT from unknown[127.0.0.1]\n",
		": disconnect from unknown[127.0.0.1] commands=0/0\n" } },
	{ "127.0.0.1", "EHLO h\r\nMAIL FROM:<s@x.example> SIZE=99999\r\nQUIT\r\n", {
		": NOQUEUE: reject: MAIL from unknown[127.0.0.1]: 552 5.3.4 Message size exceeds "
		"fixed limit; from=<s@x.example> proto=ESMTP helo=<h>\n",
		": disconnect from unknown[127.0.0.1] ehlo=1 mail=0/1 quit=1 commands=2/3\n" } },
};

START_TEST(test_log_lines)
{
	char *log = capture_log(log_cases[_i].client, log_cases[_i].input);
	const char *p = log;
	for (int i = 0; i < 4 && log_cases[_i].lines[i] != NULL; i++) {
		const char *hit = strstr(p, log_cases[_i].lines[i]);
		ck_assert_msg(hit != NULL, "missing (in order) \"%s\" in:\n%s",
		    log_cases[_i].lines[i], log);
		p = hit + 1;
	}
	free(log);
}
END_TEST

/* a NUL anywhere in a command line is a syntax error: what follows it is not
   ignored (here a SIZE over the limit, or a second command) */
static const struct {
	const char *in;
	size_t len;
	const char *replies;
} nul_cases[] = {
	{ "HELO c\r\nMAIL FROM:<a@example.test>\0 SIZE=99999999999\r\n", 54,
	    "220 |250 |500 5.5.2" },
	{ "HELO c\r\nNOOP\0\r\nNOOP\r\n", 21, "220 |250 |500 5.5.2|250 2.0.0" },
	{ "HELO c\0\r\n", 9, "220 |500 5.5.2" },
};

START_TEST(test_nul_in_command)
{
	struct session *s = open_session("127.0.0.1");

	session_feed(s, nul_cases[_i].in, nul_cases[_i].len);
	char *out = take(s);
	expect(out, nul_cases[_i].replies, "nul");
	free(out);
	session_free(s);
}
END_TEST

/* junk commands (NOOP, RSET, VRFY, HELP): 100 are free, then each is an error;
   under stress (4 of max_connections 5 open) only one is, also for a session
   opened before the stress began */
START_TEST(test_junk_limit)
{
	struct session *a = open_session("127.0.0.1");
	char buf[8192] = "";

	for (int i = 0; i < 100; i++)
		strcat(buf, i % 2 ? "NOOP\r\n" : "RSET\r\n");
	feed(a, buf);
	feed(a, "VRFY x\r\nHELP\r\nNOOP\r\nNOOP\r\n");
	char *out = take(a);
	ck_assert_ptr_nonnull(strstr(out, "252 2.5.2 Cannot VRFY user"));
	ck_assert_ptr_nonnull(strstr(out, "214 2.0.0"));
	ck_assert_msg(strstr(out, "421 4.7.0") != NULL, "%s", out);
	ck_assert(session_closed(a));
	free(out);
	session_free(a);

	struct session *early = open_session("127.0.0.1");
	feed(early, "NOOP\r\nNOOP\r\n");
	free(take(early));
	struct session *more[3];
	for (int i = 0; i < 3; i++)
		more[i] = open_session("127.0.0.1");
	/* stress now: the next junk command is an error, the 3rd ends it */
	feed(early, "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n");
	out = take(early);
	expect(out, "250 2.0.0|250 2.0.0|250 2.0.0|421 4.7.0", "stress junk");
	free(out);
	session_free(early);
	for (int i = 0; i < 3; i++)
		session_free(more[i]);
}
END_TEST

/* duplicates are stored once: the queued message has one recipient */
START_TEST(test_rcpt_dedup)
{
	char *log = capture_log("127.0.0.1", "EHLO h\r\nMAIL FROM:<s@x.example>\r\n"
	    "RCPT TO:<a@example.test>\r\nRCPT TO:<A@EXAMPLE.TEST.>\r\nDATA\r\nx\r\n.\r\n"
	    "QUIT\r\n");
	ck_assert_msg(strstr(log, ", nrcpt=1 (queue active)\n") != NULL, "%s", log);
	ck_assert_msg(strstr(log, "rcpt=2 data=1") != NULL, "%s", log);
	free(log);
}
END_TEST

/* Received: header and "QID: client=" / "QID: from=" lines of an accepted message */
START_TEST(test_log_queued)
{
	char *log = capture_log("127.0.0.1", tx_text);
	const char *c = strstr(log, ": client=unknown[127.0.0.1]\n");
	ck_assert_msg(c != NULL, "%s", log);
	const char *f = strstr(log, ": from=<s@x.example>, size=");
	ck_assert_msg(f != NULL && f > c, "%s", log);
	ck_assert(strstr(f, ", nrcpt=1 (queue active)\n") != NULL);
	ck_assert(strstr(log, "ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n") != NULL);
	free(log);
}
END_TEST

static Suite *
smtpd_session_suite(void)
{
	Suite *s = suite_create("smtpd_session");
	TCase *tc = tcase_create("session");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	size_t nt = sizeof(transcripts) / sizeof(transcripts[0]);
	tcase_add_loop_test(tc, test_transcript, 0, (int)nt);
	tcase_add_loop_test(tc, test_transcript_bytewise, 0, (int)nt);
	tcase_add_test(tc, test_pipelined_commit);
	tcase_add_test(tc, test_split_everywhere);
	tcase_add_test(tc, test_group_commit);
	tcase_add_test(tc, test_two_transactions);
	tcase_add_loop_test(tc, test_smuggling, 0, sizeof(smuggle) / sizeof(smuggle[0]));
	tcase_add_test(tc, test_line_limit);
	tcase_add_test(tc, test_data_too_big);
	tcase_add_loop_test(tc, test_too_many_hops, 0, 2);
	tcase_add_test(tc, test_gone_before_commit);
	tcase_add_test(tc, test_eof_after_pipeline);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_stopping);
	tcase_add_test(tc, test_stats);
	tcase_add_loop_test(tc, test_log_lines, 0, sizeof(log_cases) / sizeof(log_cases[0]));
	tcase_add_test(tc, test_log_queued);
	tcase_add_loop_test(tc, test_nul_in_command, 0,
	    sizeof(nul_cases) / sizeof(nul_cases[0]));
	tcase_add_test(tc, test_rcpt_dedup);
	suite_add_tcase(s, tc);

	TCase *acl = tcase_create("access");
	tcase_add_checked_fixture(acl, setup_acl, teardown);
	TCase *tiny = tcase_create("stress");
	tcase_add_checked_fixture(tiny, setup_tiny, teardown);
	tcase_add_test(tiny, test_junk_limit);
	tcase_add_test(tiny, test_big_body_every_edge);
	suite_add_tcase(s, tiny);
	tcase_add_test(acl, test_access_denied);
	suite_add_tcase(s, acl);
	TCase *auth = tcase_create("auth");
	tcase_add_checked_fixture(auth, setup_auth, teardown_auth);
	tcase_add_loop_test(auth, test_auth_transcript, 0,
	    sizeof(auth_transcripts) / sizeof(auth_transcripts[0]));
	suite_add_tcase(s, auth);
	return s;
}

CHECK_MAIN(smtpd_session_suite)
