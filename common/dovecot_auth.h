/*
 * The client side of Dovecot's authentication protocol (auth-client socket,
 * protocol 1.2), as Postfix's smtpd_sasl_type = dovecot speaks it: one connection,
 * many requests outstanding, answers matched by id. No I/O here: the owner (the
 * auth process, on its event loop) moves octets between this and the socket.
 *
 *   connect to Dovecot's auth-client socket, then
 *   dovecot_auth_output()/_consume()   octets to write (VERSION and CPID first)
 *   dovecot_auth_feed()                octets read; -1: protocol violation, close
 *   dovecot_auth_request()             a (user, password) check; returns its id
 *                                      (queued until Dovecot's handshake is DONE)
 *   dovecot_auth_next_reply()          finished requests: id, OK / FAIL / TEMPFAIL
 *   dovecot_auth_disconnected()        connection lost: every outstanding request
 *                                      turns TEMPFAIL; ready for a new connection
 *
 * The conversation (client lines C, server lines S, fields separated by TAB):
 *   C: VERSION 1 2          C: CPID <our pid>
 *   S: VERSION 1 2          S: MECH PLAIN plaintext ...   S: SPID, CUID, COOKIE
 *   S: DONE
 *   C: AUTH <id> PLAIN service=smtp nologin lip=<ip> rip=<ip> [secured] resp=<b64>
 *   S: OK <id> user=alice   |   FAIL <id> [user=..] [reason=..] [temp]   |   CONT <id> ..
 * LOGIN is sent as PLAIN too (we hold user and password by then). A CONT answer
 * (Dovecot wants another round, which PLAIN never needs) is a TEMPFAIL.
 *
 * Limits: a server line over DOVECOT_AUTH_LINE_MAX is a protocol violation; at most
 * DOVECOT_AUTH_REQUESTS_MAX requests outstanding; output buffered up to
 * DOVECOT_AUTH_OUT_MAX.
 */
#ifndef RELAYVISOR_DOVECOT_AUTH_H
#define RELAYVISOR_DOVECOT_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "common/sasl.h"

#define DOVECOT_AUTH_LINE_MAX 16384
#define DOVECOT_AUTH_REQUESTS_MAX 1024
#define DOVECOT_AUTH_OUT_MAX (1024 * 1024)

struct dovecot_auth;

enum dovecot_auth_result { DOVECOT_AUTH_OK, DOVECOT_AUTH_FAIL, DOVECOT_AUTH_TEMPFAIL };

struct dovecot_auth_params {
	const char *user, *password;
	const char *service;	/* "smtp" when NULL */
	const char *local_ip, *remote_ip;	/* may be NULL */
	bool secured;		/* the client is on TLS (or trusted) */
};

struct dovecot_auth_reply {
	unsigned id;
	enum dovecot_auth_result result;
	char user[SASL_USER_MAX + 1];	/* Dovecot's name for the user, or the asked one */
	char reason[256];		/* Dovecot's reason=, control characters as '?' */
};

struct dovecot_auth *dovecot_auth_new(unsigned long pid);
void dovecot_auth_free(struct dovecot_auth *da);

size_t dovecot_auth_output(const struct dovecot_auth *da, const char **data);
void dovecot_auth_consume(struct dovecot_auth *da, size_t n);
int dovecot_auth_feed(struct dovecot_auth *da, const void *buf, size_t len,
    const char **error_r);
/* Dovecot's handshake is complete and it offers PLAIN */
bool dovecot_auth_ready(const struct dovecot_auth *da);

/* the request's id (> 0), or 0 with *error_r (limits, bad parameters) */
unsigned dovecot_auth_request(struct dovecot_auth *da, const struct dovecot_auth_params *p,
    const char **error_r);
bool dovecot_auth_next_reply(struct dovecot_auth *da, struct dovecot_auth_reply *r);
/* forget a request (the caller timed it out); a late answer is ignored */
void dovecot_auth_cancel(struct dovecot_auth *da, unsigned id);
size_t dovecot_auth_outstanding(const struct dovecot_auth *da);
void dovecot_auth_disconnected(struct dovecot_auth *da);

#endif
