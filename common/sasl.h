/*
 * The server side of SMTP AUTH (RFC 4954) for PLAIN (RFC 4616) and LOGIN, as a
 * state machine fed one line at a time. It checks nothing itself: it yields the
 * (user, password) pair for the auth process to check, and the SMTP replies to
 * send on the way (334 challenges, 501/504/500 errors with enhanced codes).
 *
 * The session uses it like this:
 *
 *   AUTH <args>    -> sasl_start(s, args)         args: "PLAIN [ir]" / "LOGIN [ir]"
 *   each line      -> sasl_feed(s, line)          while the session is in its
 *                                                 AUTH state (no command parsing)
 *   every step returns one of
 *     SASL_CONTINUE  send sasl_reply() ("334 ..."), read the next line raw
 *     SASL_CHECK     ask the auth process about sasl_user()/sasl_password();
 *                    its answer gives "235 2.7.0" or "535 5.7.8" (the session's)
 *     SASL_ERROR     send sasl_reply() (501/500/504/535), AUTH is over, nothing
 *                    changed; the session counts it as a failed AUTH
 *   then sasl_reset() (wipes the password) before any next AUTH.
 *
 * Limits come first: a line longer than SASL_LINE_MAX is refused before decoding
 * ("500 5.5.6"), and decoded names and passwords have their own maxima. Base64 is
 * checked strictly (alphabet, padding, length) and decoded by OpenSSL's EVP.
 */
#ifndef RELAYVISOR_SASL_H
#define RELAYVISOR_SASL_H

#include <stdbool.h>
#include <stddef.h>

#define SASL_USER_MAX 255	/* octets of an authcid / authzid / LOGIN user */
#define SASL_PASS_MAX 1023	/* octets of a password */
/* a response line (base64, without CRLF): enough for the longest valid PLAIN */
#define SASL_LINE_MAX (((SASL_USER_MAX * 2 + SASL_PASS_MAX + 2 + 2) / 3) * 4)

enum sasl_mech { SASL_MECH_NONE, SASL_MECH_PLAIN, SASL_MECH_LOGIN };

enum sasl_status { SASL_CONTINUE, SASL_CHECK, SASL_ERROR };

struct sasl {
	enum sasl_mech mech;
	int state;
	const char *reply;
	char user[SASL_USER_MAX + 1];
	char authzid[SASL_USER_MAX + 1];
	char password[SASL_PASS_MAX + 1];
};

/* the mechanisms for the EHLO line: "AUTH PLAIN LOGIN" */
#define SASL_EHLO_MECHS "PLAIN LOGIN"

void sasl_init(struct sasl *s);
/* args: what follows "AUTH " on the command line (without CRLF) */
enum sasl_status sasl_start(struct sasl *s, const char *args, size_t len);
/* one client line during the exchange (without CRLF) */
enum sasl_status sasl_feed(struct sasl *s, const char *line, size_t len);
/* the reply for CONTINUE and ERROR, without CRLF */
const char *sasl_reply(const struct sasl *s);
/* after SASL_CHECK: the authentication identity and its password (NUL-free,
   no control characters in the user), and the mechanism's name ("PLAIN") */
const char *sasl_user(const struct sasl *s);
const char *sasl_password(const struct sasl *s);
const char *sasl_mech_name(enum sasl_mech m);
enum sasl_mech sasl_mech(const struct sasl *s);
/* wipe the credentials; ready for another AUTH */
void sasl_reset(struct sasl *s);

/* base64 helpers (EVP): -1 when not strict base64 or the result exceeds cap */
int sasl_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap,
    size_t *outlen);
/* into out (cap >= 4 * ceil(len / 3) + 1), NUL-terminated; returns its length */
size_t sasl_b64_encode(const void *in, size_t len, char *out, size_t cap);

#endif
