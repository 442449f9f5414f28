/*
 * Retry times, delay warnings, expiry and per-destination concurrency (sched.h).
 * Destinations sit in a chained hash table keyed by next-hop name.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "deliver/sched.h"

#define SCHED_BUCKETS 1024

struct sched_dest {
	struct sched_dest *next;
	char *name;
	unsigned window;
	unsigned active;
	unsigned consec_fail;	/* failed connections since the last success */
	unsigned cohort;	/* the window when that run of failures began */
	unsigned deaths;	/* times marked dead without a success in between */
	time_t dead_until;
	bool probing;		/* dead period over: one connection until a success */
	char dsn[16];		/* the last deferral: its status code */
	char reason[304];	/* and its text */
};

struct sched {
	struct sched_params p;
	unsigned active;
	struct sched_dest *tab[SCHED_BUCKETS];
};

void
sched_params_default(struct sched_params *p)
{
	p->retry_min = 300;
	p->retry_max = 3600;
	p->jitter = 0.15;
	p->delay_warning = 4 * 3600;
	p->max_lifetime = 5 * 86400;
	p->dest_init = 5;
	p->dest_max = 20;
	p->total_max = 100;
}

time_t
sched_retry_delay(const struct sched_params *p, unsigned failures, double rnd)
{
	double d = (double)p->retry_min;

	if (failures == 0)
		failures = 1;
	for (unsigned i = 1; i < failures && d < (double)p->retry_max; i++)
		d *= 2;
	if (d > (double)p->retry_max)
		d = (double)p->retry_max;
	if (rnd < 0 || rnd >= 1)
		rnd = 0.5;
	d *= 1.0 - p->jitter + 2.0 * p->jitter * rnd;
	if (d < 1)
		d = 1;
	return (time_t)(d + 0.5);
}

time_t
sched_next_try(const struct sched_params *p, time_t arrival, time_t now,
    unsigned failures, double rnd)
{
	time_t t = now + sched_retry_delay(p, failures, rnd);
	time_t end = arrival + p->max_lifetime;

	if (t > end)
		t = end > now ? end : now;
	return t;
}

bool
sched_warn_due(const struct sched_params *p, time_t arrival, time_t now, bool warned)
{
	if (warned || p->delay_warning <= 0)
		return false;
	if (p->delay_warning >= p->max_lifetime)
		return false;	/* the bounce comes first */
	return now - arrival >= p->delay_warning;
}

bool
sched_expired(const struct sched_params *p, time_t arrival, time_t now)
{
	return now - arrival >= p->max_lifetime;
}

struct sched *
sched_new(const struct sched_params *p)
{
	struct sched *s = xcalloc(1, sizeof(*s));

	s->p = *p;
	if (s->p.dest_init == 0)
		s->p.dest_init = 1;
	if (s->p.dest_max < s->p.dest_init)
		s->p.dest_max = s->p.dest_init;
	return s;
}

void
sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < SCHED_BUCKETS; i++) {
		struct sched_dest *d = s->tab[i], *n;
		for (; d != NULL; d = n) {
			n = d->next;
			free(d->name);
			free(d);
		}
	}
	free(s);
}

static size_t
sched_hash(const char *name)
{
	uint32_t h = 2166136261u;

	for (; *name != '\0'; name++)
		h = (h ^ (uint8_t)*name) * 16777619u;
	return h % SCHED_BUCKETS;
}

struct sched_dest *
sched_dest(struct sched *s, const char *name)
{
	size_t h = sched_hash(name);
	struct sched_dest *d;

	for (d = s->tab[h]; d != NULL; d = d->next)
		if (strcmp(d->name, name) == 0)
			return d;
	d = xcalloc(1, sizeof(*d));
	d->name = xstrdup(name);
	d->window = s->p.dest_init;
	d->next = s->tab[h];
	s->tab[h] = d;
	return d;
}

bool
sched_dest_dead(const struct sched_dest *d, time_t now, time_t *until_r)
{
	if (d->dead_until != 0 && now < d->dead_until) {
		if (until_r != NULL)
			*until_r = d->dead_until;
		return true;
	}
	return false;
}

bool
sched_may_connect(const struct sched *s, const struct sched_dest *d, time_t now)
{
	if (s->active >= s->p.total_max)
		return false;
	if (sched_dest_dead(d, now, NULL))
		return false;
	/* after a dead period: one probe at a time until one succeeds */
	if (d->deaths > 0 && d->active > 0)
		return false;
	return d->active < d->window;
}

void
sched_conn_start(struct sched *s, struct sched_dest *d)
{
	d->active++;
	s->active++;
}

void
sched_conn_done(struct sched *s, struct sched_dest *d, bool ok, time_t now, double rnd)
{
	if (d->active > 0)
		d->active--;
	if (s->active > 0)
		s->active--;
	if (ok) {
		d->consec_fail = 0;
		d->deaths = 0;
		d->dead_until = 0;
		if (d->window < s->p.dest_max)
			d->window++;
		return;
	}
	if (d->consec_fail++ == 0)
		d->cohort = d->deaths > 0 ? 1 : d->window;
	if (d->consec_fail >= d->cohort) {
		d->deaths++;
		d->dead_until = now + sched_retry_delay(&s->p, d->deaths, rnd);
		d->consec_fail = 0;
		d->window = s->p.dest_init;
		return;
	}
	d->window = d->window / 2 > 0 ? d->window / 2 : 1;
}

void
sched_dest_set_reason(struct sched_dest *d, const char *dsn, const char *text)
{
	snprintf(d->dsn, sizeof(d->dsn), "%s", dsn != NULL ? dsn : "");
	snprintf(d->reason, sizeof(d->reason), "%s", text != NULL ? text : "");
}

const char *
sched_dest_reason(const struct sched_dest *d, const char **dsn_r)
{
	*dsn_r = d->dsn;
	return d->reason;
}

unsigned
sched_dest_window(const struct sched_dest *d)
{
	return d->deaths > 0 ? 1 : d->window;
}

unsigned
sched_dest_active(const struct sched_dest *d)
{
	return d->active;
}

unsigned
sched_active(const struct sched *s)
{
	return s->active;
}

void
sched_revive(struct sched *s)
{
	for (size_t i = 0; i < SCHED_BUCKETS; i++)
		for (struct sched_dest *d = s->tab[i]; d != NULL; d = d->next) {
			if (d->deaths == 0 && d->dead_until == 0)
				continue;
			d->dead_until = 0;
			d->deaths = 0;
			d->consec_fail = 0;
			d->probing = false;
			d->window = s->p.dest_init;
		}
}

void
sched_gc(struct sched *s, time_t now)
{
	for (size_t i = 0; i < SCHED_BUCKETS; i++) {
		struct sched_dest **pp = &s->tab[i];
		while (*pp != NULL) {
			struct sched_dest *d = *pp;
			if (d->active == 0 && d->consec_fail == 0 && d->deaths == 0 &&
			    !sched_dest_dead(d, now, NULL)) {
				*pp = d->next;
				free(d->name);
				free(d);
			} else {
				pp = &d->next;
			}
		}
	}
}
