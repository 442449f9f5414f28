/*
 * The listener's side of SMTP AUTH: the client of the auth process
 * (common/authproto.h) and the per-client failure table that slows down
 * password guessing.
 *
 * authc: one SOCK_SEQPACKET connection to relayvisor-auth, handed over by
 * relayvisord ("AUTH" on the notify socket, again after every restart of the
 * auth process) or inherited as RELAYVISOR_AUTH_FD. Requests carry an id; the
 * answers come back in any order and go to the callback of that id. A request
 * not answered within the timeout, every request outstanding when the
 * connection ends, and any request made while there is no connection are
 * answered TEMPFAIL (the session says "454 4.7.0"). Callbacks run from the
 * event loop (never inside authc_request), so a session can settle in them.
 *
 * authfail: failed AUTHs per client address, counted across sessions of this
 * process (Postfix's anvil would count them host-wide). Bounded (the oldest
 * entry is reused when full) and forgetting (an address with no failure for
 * AUTHFAIL_EXPIRE seconds starts again from zero). A client with N failures
 * waits authfail_delay() before its next AUTH is even checked: 0.5 s doubling
 * per failure, capped at AUTHFAIL_DELAY_MAX; a success clears the address.
 */
#ifndef RELAYVISOR_AUTHC_H
#define RELAYVISOR_AUTHC_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "common/authproto.h"

struct authc;

/* a->result says OK, FAIL or TEMPFAIL; a is valid during the call only */
typedef void authc_done_fn(void *arg, const struct authproto_answer *a);

struct authc *authc_new(struct ev_loop *loop, double timeout);
void authc_free(struct authc *c);
/* a new connection to the auth process (the old one, if any, is closed and
   its requests answered TEMPFAIL) */
void authc_set_fd(struct authc *c, int fd);
bool authc_connected(const struct authc *c);
/* send r (its id is set here; the password is wiped); the id, or 0 when it
   could not be sent: the caller answers TEMPFAIL itself */
uint32_t authc_request(struct authc *c, struct authproto_request *r, authc_done_fn *fn,
    void *arg);
/* forget a request (its session ended); a late answer is ignored */
void authc_cancel(struct authc *c, uint32_t id);

#define AUTHFAIL_SLOTS 4096
#define AUTHFAIL_EXPIRE 900		/* seconds without a failure: forgotten */
#define AUTHFAIL_DELAY_MAX 30.0

struct authfail;
struct authfail *authfail_new(void);
void authfail_free(struct authfail *t);
/* one more failure of ip at now; returns its count */
unsigned authfail_record(struct authfail *t, const char *ip, time_t now);
/* its failures (0 when unknown or expired) */
unsigned authfail_count(struct authfail *t, const char *ip, time_t now);
/* how long its next AUTH waits, in seconds (0 for none) */
double authfail_delay(struct authfail *t, const char *ip, time_t now);
void authfail_clear(struct authfail *t, const char *ip);

#endif
