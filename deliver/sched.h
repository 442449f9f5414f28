/*
 * Scheduling arithmetic of the queue manager, with no clock and no randomness of its
 * own: the caller passes `now` and a uniform random number in [0, 1), so every
 * decision is a pure function a unit test can pin down.
 *
 * - Retry: a recipient deferred for the n-th time (n >= 1) is tried again after
 *   retry_min * 2^(n-1), capped at retry_max, times a factor in [1 - jitter,
 *   1 + jitter] (default 5 min doubling to 1 h, +-15 %). Postfix has no jitter; a flush
 *   after an outage then stampedes the destination.
 * - Delay warning once after delay_warning (0: never), give up after max_lifetime,
 *   both counted from the message's arrival.
 * - Concurrency per destination (next hop): a window that starts at dest_init, grows
 *   by one per successful connection up to dest_max, and halves (not below 1) per
 *   failed one; when as many consecutive connections failed as the window allowed when
 *   the run of failures began (a
 *   whole cohort, Postfix's failed_cohort_limit = 1) the destination is dead for a
 *   backoff period (the retry formula on the number of times it died in a row), then
 *   probed by a single connection. total_max caps all connections together.
 *
 * The qmgr keeps one struct sched; before it hands a batch for destination D to an
 * agent it asks sched_may_connect(s, d, now) and calls sched_conn_start(); when the
 * agent reports the connection's end, sched_conn_done(s, d, ok, now, rnd).
 * "ok" means the destination answered (greeting and EHLO went through, whatever the
 * recipients' fate); "failed" means connect refused, timeout, 421 or greeting 4xx/5xx.
 */
#ifndef RELAYVISOR_SCHED_H
#define RELAYVISOR_SCHED_H

#include <stdbool.h>
#include <time.h>

struct sched_params {
	time_t retry_min;	/* 300 */
	time_t retry_max;	/* 3600 */
	double jitter;		/* 0.15: factor in [1 - jitter, 1 + jitter] */
	time_t delay_warning;	/* 4 h; 0 = no delay warnings */
	time_t max_lifetime;	/* 5 d */
	unsigned dest_init;	/* 5 */
	unsigned dest_max;	/* 20 */
	unsigned total_max;	/* 100 */
};

void sched_params_default(struct sched_params *p);

/* delay before attempt n+1 after the n-th failure (n >= 1; 0 counts as 1) */
time_t sched_retry_delay(const struct sched_params *p, unsigned failures, double rnd);
/* now + sched_retry_delay(), but never past the give-up time (arrival + lifetime),
   so the last attempt happens before the message expires */
time_t sched_next_try(const struct sched_params *p, time_t arrival, time_t now,
    unsigned failures, double rnd);
/* a delay warning is due (the caller keeps the "already warned" flag) */
bool sched_warn_due(const struct sched_params *p, time_t arrival, time_t now, bool warned);
/* the message is too old: bounce what is not final ("4.4.7 message expired") */
bool sched_expired(const struct sched_params *p, time_t arrival, time_t now);

struct sched;
struct sched_dest;

struct sched *sched_new(const struct sched_params *p);
void sched_free(struct sched *s);
/* the destination's record (created on first use); name is the next hop, e.g.
   "smtp:[mx.example]:25" or "smtp:example.com" */
struct sched_dest *sched_dest(struct sched *s, const char *name);
/* may one more connection to d start now (window, dead marking, total cap)? */
bool sched_may_connect(const struct sched *s, const struct sched_dest *d, time_t now);
void sched_conn_start(struct sched *s, struct sched_dest *d);
void sched_conn_done(struct sched *s, struct sched_dest *d, bool ok, time_t now, double rnd);
/* the destination is marked dead (its recipients wait without an attempt, counted
   as deferred "destination is dead") until *until_r */
bool sched_dest_dead(const struct sched_dest *d, time_t now, time_t *until_r);
/* why the destination last deferred mail: its status code ("4.4.1") and text
   ("connect to ...: Connection refused"), kept so the recipients that wait while
   it is dead can say why, as Postfix's "delivery temporarily suspended: ...";
   both "" when none */
void sched_dest_set_reason(struct sched_dest *d, const char *dsn, const char *text);
const char *sched_dest_reason(const struct sched_dest *d, const char **dsn_r);
unsigned sched_dest_window(const struct sched_dest *d);
unsigned sched_dest_active(const struct sched_dest *d);
unsigned sched_active(const struct sched *s);
/* an administrator's flush: every destination marked dead may be tried again at
   once, with a fresh window (Postfix's qmgr "flush dead" on postqueue -f) */
void sched_revive(struct sched *s);
/* forget idle destinations that are neither dead nor carrying failures (memory) */
void sched_gc(struct sched *s, time_t now);

#endif
