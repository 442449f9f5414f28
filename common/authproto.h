/*
 * What a listener and the auth process say to each other. Both ends include this
 * header (Postfix master_proto.h), so they cannot drift apart.
 *
 * Why a process of its own: checking a password costs tens of milliseconds
 * (yescrypt) and must never stall a listener's event loop, and password hashes
 * must never be readable by a process that talks to the network. The auth process
 * (a service kind of the supervisor, confined like a listener) holds the password
 * file or the Dovecot auth connection; a listener only asks and gets an answer.
 *
 * Transport: one SOCK_SEQPACKET socketpair per listener process and auth process
 * life, made by the supervisor and handed to both over their notify sockets
 * (supervisor/authhand.c; a standalone listener may inherit its end as
 * RELAYVISOR_AUTH_FD). The supervisor keeps no copy, so a listener sees the auth
 * process die as the end of its socket. One message
 * per packet, at most AUTHPROTO_MSG_MAX octets. Requests carry an id chosen by the
 * listener; answers come back with that id, in any order (a Dovecot backend
 * answers out of order), so one listener has many requests outstanding. A listener
 * that gets no answer within its own timeout answers the client "454 4.7.0" and
 * drops the id; a late answer to a forgotten id is ignored.
 *
 * Encoding (all integers big-endian; a string is a u16 length and that many
 * octets, no NUL inside):
 *   header   'R' 'A' version(1) type(u8) id(u32)
 *   REQUEST  mech(u8: 1 PLAIN, 2 LOGIN) flags(u8: bit 0 = over TLS)
 *            client-ip(str) local-ip(str) user(str) password(str)
 *   ANSWER   result(u8: 0 ok, 1 fail, 2 tempfail) reserved(u8 = 0)
 *            user(str: canonical name) reason(str: for the log, "" when ok)
 *            count(u16) address(str) * count: the user's allowed MAIL FROM
 *            patterns for sender_login_match ("user@domain", "@domain")
 * Anything else (bad magic, version, type, lengths, trailing octets) is refused by
 * the decoder; a listener treats a refused answer as tempfail, and the auth
 * process closes the connection of a listener that sends a refused request.
 */
#ifndef RELAYVISOR_AUTHPROTO_H
#define RELAYVISOR_AUTHPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sasl.h"

#define AUTHPROTO_ENV_FD "RELAYVISOR_AUTH_FD"
#define AUTHPROTO_VERSION 1
#define AUTHPROTO_MSG_MAX 8192
#define AUTHPROTO_IP_MAX 63		/* text form, IPv6 with zone fits */
#define AUTHPROTO_REASON_MAX 255
#define AUTHPROTO_ADDRS_MAX 64
#define AUTHPROTO_ADDR_MAX 263		/* a pattern: "local@domain" */
#define AUTHPROTO_ADDRS_BYTES 4096	/* all of one answer's addresses */

enum authproto_type { AUTHPROTO_REQUEST = 1, AUTHPROTO_ANSWER = 2 };
enum authproto_result { AUTHPROTO_OK = 0, AUTHPROTO_FAIL = 1, AUTHPROTO_TEMPFAIL = 2 };

struct authproto_request {
	uint32_t id;
	enum sasl_mech mech;
	bool secured;
	char client[AUTHPROTO_IP_MAX + 1];
	char local[AUTHPROTO_IP_MAX + 1];
	char user[SASL_USER_MAX + 1];
	char password[SASL_PASS_MAX + 1];
};

struct authproto_answer {
	uint32_t id;
	enum authproto_result result;
	char user[SASL_USER_MAX + 1];
	char reason[AUTHPROTO_REASON_MAX + 1];
	size_t naddrs;
	size_t addrs_len;
	char addrs[AUTHPROTO_ADDRS_BYTES];	/* naddrs NUL-terminated strings */
};

/* into buf (AUTHPROTO_MSG_MAX is always enough for a valid message): the length,
   or -1 with *error_r when a field is over its limit */
int authproto_request_encode(const struct authproto_request *r, void *buf, size_t cap,
    const char **error_r);
int authproto_answer_encode(const struct authproto_answer *a, void *buf, size_t cap,
    const char **error_r);
/* one packet; -1 with *error_r when it is not exactly one valid message */
int authproto_request_decode(const void *buf, size_t len, struct authproto_request *r,
    const char **error_r);
int authproto_answer_decode(const void *buf, size_t len, struct authproto_answer *a,
    const char **error_r);

/* answer building: add an address (-1 when over a limit) */
int authproto_answer_add_addr(struct authproto_answer *a, const char *addr);
/* walk the addresses: first with prev == NULL, NULL at the end */
const char *authproto_answer_next_addr(const struct authproto_answer *a, const char *prev);
/* wipe the password of a request once it is sent or checked */
void authproto_request_wipe(struct authproto_request *r);
const char *authproto_result_name(enum authproto_result r);

#endif
