/*
 * c-ares on libev (dns.h). c-ares tells us which sockets it wants watched
 * (ARES_OPT_SOCK_STATE_CB); each gets an ev_io, and one ev_timer follows
 * ares_timeout(). A lookup is a small two-phase job: MX (phase 1), then A and AAAA of
 * every host (phase 2); its result is delivered from a zero-delay timer so the
 * callback never runs inside dns_resolve_*().
 */
#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "deliver/dns.h"

#define DNS_ADDRS_PER_FAMILY 16

struct dns_sock {
	ev_io io;
	struct dns *d;
	struct dns_sock *next;
};

struct dns {
	struct ev_loop *loop;
	ares_channel ch;
	ev_timer timer;
	struct dns_sock *socks;
	struct dns_params p;
	struct dns_query *queries;	/* every live query, for dns_free */
	bool destroying;
};

struct dns_query {
	struct dns *d;
	struct dns_query *next, **prevp;
	dns_cb *cb;
	void *arg;
	unsigned pending;		/* c-ares queries in flight */
	bool cancelled, finished;
	char name[256];
	struct dns_result res;
	enum dns_status *s4, *s6;	/* per host: outcome of A and AAAA */
	ev_timer done;
};

struct dns_req {			/* the arg of one ares_query */
	struct dns_query *q;
	size_t host;
	int type;			/* ns_t_mx, ns_t_a, ns_t_aaaa */
};

static unsigned lib_users;

const char *
dns_status_name(enum dns_status st)
{
	switch (st) {
	case DNS_OK: return "ok";
	case DNS_NOTFOUND: return "Host not found";
	case DNS_NULLMX: return "null MX: domain accepts no mail";
	case DNS_TEMPFAIL: return "Host not found, try again";
	}
	return "?";
}

static enum dns_status
status_of_ares(int st)
{
	switch (st) {
	case ARES_SUCCESS: return DNS_OK;
	case ARES_ENOTFOUND:	/* NXDOMAIN */
	case ARES_ENODATA:	/* the name exists, no record of that type */
		return DNS_NOTFOUND;
	default:		/* SERVFAIL, REFUSED, timeout, bad answer, no memory */
		return DNS_TEMPFAIL;
	}
}

static void
dns_rearm(struct dns *d)
{
	struct timeval tv, *t;

	ev_timer_stop(d->loop, &d->timer);
	if (d->destroying)
		return;
	t = ares_timeout(d->ch, NULL, &tv);
	if (t == NULL)
		return;
	ev_timer_set(&d->timer, (double)t->tv_sec + (double)t->tv_usec / 1e6, 0.);
	ev_timer_start(d->loop, &d->timer);
}

static void
dns_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dns *d = w->data;

	(void)loop, (void)revents;
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_rearm(d);
}

static void
dns_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns_sock *s = (struct dns_sock *)w;
	struct dns *d = s->d;

	(void)loop;
	ares_process_fd(d->ch, (revents & EV_READ) ? w->fd : ARES_SOCKET_BAD,
	    (revents & EV_WRITE) ? w->fd : ARES_SOCKET_BAD);
	dns_rearm(d);
}

static void
dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock **pp, *s;

	for (pp = &d->socks; (s = *pp) != NULL; pp = &s->next)
		if (s->io.fd == fd)
			break;
	if (!readable && !writable) {
		if (s != NULL) {
			ev_io_stop(d->loop, &s->io);
			*pp = s->next;
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->d = d;
		s->next = d->socks;
		d->socks = s;
		ev_io_init(&s->io, dns_io_cb, fd, 0);
	}
	ev_io_stop(d->loop, &s->io);
	ev_io_set(&s->io, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	ev_io_start(d->loop, &s->io);
}

struct dns *
dns_new(struct ev_loop *loop, const struct dns_params *p, const char **error_r)
{
	struct ares_options o;
	struct dns *d;
	int st;

	if (lib_users++ == 0 && (st = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		lib_users--;
		*error_r = ares_strerror(st);
		return NULL;
	}
	d = xcalloc(1, sizeof(*d));
	d->loop = loop;
	d->p = *p;
	d->p.servers = NULL;
	if (d->p.timeout_ms == 0)
		d->p.timeout_ms = 3000;
	if (d->p.tries == 0)
		d->p.tries = 3;
	if (d->p.max_hosts == 0)
		d->p.max_hosts = 10;
	if (d->p.rand == NULL)
		d->p.rand = random;
	memset(&o, 0, sizeof(o));
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOCHECKRESP;
	o.timeout = (int)d->p.timeout_ms;
	o.tries = (int)d->p.tries;
	o.sock_state_cb = dns_sock_state_cb;
	o.sock_state_cb_data = d;
	st = ares_init_options(&d->ch, &o, ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS |
	    ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
	if (st != ARES_SUCCESS) {
		*error_r = ares_strerror(st);
		free(d);
		if (--lib_users == 0)
			ares_library_cleanup();
		return NULL;
	}
	if (p->n_servers > 0) {
		size_t len = 1;
		for (size_t i = 0; i < p->n_servers; i++)
			len += strlen(p->servers[i]) + 1;
		char *csv = xcalloc(len, 1);
		for (size_t i = 0; i < p->n_servers; i++) {
			if (i > 0)
				strcat(csv, ",");
			strcat(csv, p->servers[i]);
		}
		st = ares_set_servers_ports_csv(d->ch, csv);
		free(csv);
		if (st != ARES_SUCCESS) {
			*error_r = "bad dns_servers entry: expected ADDRESS, ADDRESS:PORT or "
			    "[IPv6]:PORT";
			ares_destroy(d->ch);
			free(d);
			if (--lib_users == 0)
				ares_library_cleanup();
			return NULL;
		}
	}
	ev_init(&d->timer, dns_timer_cb);
	d->timer.data = d;
	return d;
}

static void
query_free(struct dns_query *q)
{
	ev_timer_stop(q->d->loop, &q->done);
	*q->prevp = q->next;
	if (q->next != NULL)
		q->next->prevp = q->prevp;
	for (size_t i = 0; i < q->res.n_hosts; i++)
		free(q->res.hosts[i].addrs);
	free(q->res.hosts);
	free(q->s4);
	free(q->s6);
	free(q);
}

void
dns_free(struct dns *d)
{
	if (d == NULL)
		return;
	d->destroying = true;
	ares_destroy(d->ch);	/* runs every pending callback with ARES_EDESTRUCTION */
	while (d->queries != NULL)
		query_free(d->queries);
	while (d->socks != NULL) {
		struct dns_sock *s = d->socks;
		ev_io_stop(d->loop, &s->io);
		d->socks = s->next;
		free(s);
	}
	ev_timer_stop(d->loop, &d->timer);
	free(d);
	if (--lib_users == 0)
		ares_library_cleanup();
}

static void
done_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dns_query *q = w->data;

	(void)loop, (void)revents;
	if (!q->cancelled)
		q->cb(q->arg, &q->res);
	query_free(q);
}

static void
query_finish(struct dns_query *q)
{
	q->finished = true;
	if (q->cancelled) {
		query_free(q);
		return;
	}
	ev_timer_set(&q->done, 0., 0.);
	ev_timer_start(q->d->loop, &q->done);
}

static void
set_error(struct dns_query *q, const char *name, const char *type, enum dns_status st)
{
	if (q->res.error[0] != '\0')
		return;
	snprintf(q->res.error, sizeof(q->res.error),
	    "Name service error for name=%s type=%s: %s", name, type, dns_status_name(st));
}

static void ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen);

static void
issue(struct dns_query *q, size_t host, int type, const char *name)
{
	struct dns_req *r = xcalloc(1, sizeof(*r));

	r->q = q;
	r->host = host;
	r->type = type;
	q->pending++;
	ares_query(q->d->ch, name, ns_c_in, type, ares_cb, r);
}

static struct dns_host *
add_host(struct dns_query *q, const char *name, int pref)
{
	q->res.hosts = xreallocarray(q->res.hosts, q->res.n_hosts + 1, sizeof(*q->res.hosts));
	q->s4 = xreallocarray(q->s4, q->res.n_hosts + 1, sizeof(*q->s4));
	q->s6 = xreallocarray(q->s6, q->res.n_hosts + 1, sizeof(*q->s6));
	struct dns_host *h = &q->res.hosts[q->res.n_hosts];
	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->pref = pref;
	q->s4[q->res.n_hosts] = q->s6[q->res.n_hosts] = DNS_NOTFOUND;
	q->res.n_hosts++;
	return h;
}

static void
host_add_addr(struct dns_host *h, int family, const void *addr)
{
	struct dns_addr a;

	memset(&a, 0, sizeof(a));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		a.len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		a.len = sizeof(*sin6);
	}
	h->addrs = xreallocarray(h->addrs, h->n_addrs + 1, sizeof(*h->addrs));
	h->addrs[h->n_addrs++] = a;
}

/* phase 2 for every host: an address literal is taken as is */
static void
start_addresses(struct dns_query *q)
{
	for (size_t i = 0; i < q->res.n_hosts; i++) {
		struct dns_host *h = &q->res.hosts[i];
		unsigned char buf[16];
		if (inet_pton(AF_INET6, h->name, buf) == 1) {
			host_add_addr(h, AF_INET6, buf);
			continue;
		}
		if (inet_pton(AF_INET, h->name, buf) == 1) {
			host_add_addr(h, AF_INET, buf);
			continue;
		}
		if (!q->d->p.no_ipv6)
			issue(q, i, ns_t_aaaa, h->name);
		if (!q->d->p.no_ipv4)
			issue(q, i, ns_t_a, h->name);
	}
}

/* IPv6 before IPv4 within a host (the AAAA answer may come second) */
static void
order_addrs(struct dns_host *h)
{
	size_t k = 0;

	for (size_t i = 0; i < h->n_addrs; i++)
		if (h->addrs[i].ss.ss_family == AF_INET6) {
			struct dns_addr t = h->addrs[i];
			memmove(&h->addrs[k + 1], &h->addrs[k], (i - k) * sizeof(t));
			h->addrs[k++] = t;
		}
}

static void
finish_addresses(struct dns_query *q)
{
	bool ok = false, temp = false;

	for (size_t i = 0; i < q->res.n_hosts; i++) {
		struct dns_host *h = &q->res.hosts[i];
		order_addrs(h);
		if (h->n_addrs > 0)
			h->status = DNS_OK;
		else if (q->s4[i] == DNS_TEMPFAIL || q->s6[i] == DNS_TEMPFAIL)
			h->status = DNS_TEMPFAIL;
		else
			h->status = DNS_NOTFOUND;
		ok |= h->status == DNS_OK;
		temp |= h->status == DNS_TEMPFAIL;
	}
	q->res.status = ok ? DNS_OK : temp ? DNS_TEMPFAIL : DNS_NOTFOUND;
	if (ok)
		q->res.error[0] = '\0';
	else if (q->res.error[0] == '\0')
		set_error(q, q->name, "A", q->res.status);
}

/* sort by preference; shuffle each run of equal preferences */
static void
order_mx(struct dns_query *q)
{
	struct dns_host *h = q->res.hosts;
	size_t n = q->res.n_hosts;

	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && h[j - 1].pref > h[j].pref; j--) {
			struct dns_host t = h[j];
			h[j] = h[j - 1];
			h[j - 1] = t;
		}
	for (size_t a = 0; a < n;) {
		size_t b = a;
		while (b < n && h[b].pref == h[a].pref)
			b++;
		for (size_t i = b - 1; i > a; i--) {
			size_t j = a + (size_t)q->d->p.rand() % (i - a + 1);
			struct dns_host t = h[i];
			h[i] = h[j];
			h[j] = t;
		}
		a = b;
	}
	if (n > q->d->p.max_hosts)
		q->res.n_hosts = q->d->p.max_hosts;
}

static void
mx_answer(struct dns_query *q, int status, unsigned char *abuf, int alen)
{
	struct ares_mx_reply *mx = NULL;

	if (status == ARES_SUCCESS)
		status = ares_parse_mx_reply(abuf, alen, &mx);
	if (status == ARES_ENODATA) {
		/* no MX: the domain itself, preference 0 (RFC 5321 5.1) */
		add_host(q, q->name, 0);
		q->res.mx_found = false;
		start_addresses(q);
		return;
	}
	if (status != ARES_SUCCESS) {
		q->res.status = status_of_ares(status);
		set_error(q, q->name, "MX", q->res.status);
		return;
	}
	size_t n = 0, nnull = 0;
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next, n++)
		if (m->host[0] == '\0' || strcmp(m->host, ".") == 0)
			nnull++;
	if (nnull > 0 && n == 1) {
		q->res.status = DNS_NULLMX;
		snprintf(q->res.error, sizeof(q->res.error),
		    "Domain %s does not accept mail (nullMX)", q->name);
		ares_free_data(mx);
		return;
	}
	/* a null MX among real ones is a misconfiguration: use the real ones */
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
		if (m->host[0] != '\0' && strcmp(m->host, ".") != 0)
			add_host(q, m->host, m->priority);
	ares_free_data(mx);
	q->res.mx_found = true;
	order_mx(q);
	start_addresses(q);
}

static void
addr_answer(struct dns_query *q, struct dns_req *r, int status, unsigned char *abuf, int alen)
{
	struct dns_host *h = &q->res.hosts[r->host];

	if (status == ARES_SUCCESS) {
		int n = DNS_ADDRS_PER_FAMILY;
		if (r->type == ns_t_a) {
			struct ares_addrttl at[DNS_ADDRS_PER_FAMILY];
			status = ares_parse_a_reply(abuf, alen, NULL, at, &n);
			for (int i = 0; status == ARES_SUCCESS && i < n; i++)
				host_add_addr(h, AF_INET, &at[i].ipaddr);
		} else {
			struct ares_addr6ttl at[DNS_ADDRS_PER_FAMILY];
			status = ares_parse_aaaa_reply(abuf, alen, NULL, at, &n);
			for (int i = 0; status == ARES_SUCCESS && i < n; i++)
				host_add_addr(h, AF_INET6, &at[i].ip6addr);
		}
	}
	enum dns_status st = status_of_ares(status);
	if (r->type == ns_t_a)
		q->s4[r->host] = st;
	else
		q->s6[r->host] = st;
	if (st != DNS_OK)
		set_error(q, h->name, r->type == ns_t_a ? "A" : "AAAA", st);
}

static void
ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_req *r = arg;
	struct dns_query *q = r->q;

	(void)timeouts;
	q->pending--;
	if (status == ARES_EDESTRUCTION || q->d->destroying || q->cancelled) {
		free(r);
		if (q->cancelled && q->pending == 0 && !q->d->destroying)
			query_free(q);
		return;
	}
	if (r->type == ns_t_mx)
		mx_answer(q, status, abuf, alen);
	else
		addr_answer(q, r, status, abuf, alen);
	bool mx_phase = r->type == ns_t_mx;
	free(r);
	if (q->pending > 0)
		return;
	if (!mx_phase || q->res.status == DNS_OK)
		finish_addresses(q);
	query_finish(q);
}

static struct dns_query *
query_new(struct dns *d, const char *name, dns_cb *cb, void *arg)
{
	struct dns_query *q = xcalloc(1, sizeof(*q));
	size_t len = strlen(name);

	q->d = d;
	q->cb = cb;
	q->arg = arg;
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len >= sizeof(q->name))
		len = sizeof(q->name) - 1;
	memcpy(q->name, name, len);
	ev_init(&q->done, done_cb);
	q->done.data = q;
	q->next = d->queries;
	if (d->queries != NULL)
		d->queries->prevp = &q->next;
	d->queries = q;
	q->prevp = &d->queries;
	return q;
}

struct dns_query *
dns_resolve_mx(struct dns *d, const char *domain, dns_cb *cb, void *arg)
{
	struct dns_query *q = query_new(d, domain, cb, arg);

	q->pending++;		/* held until every query is issued */
	issue(q, 0, ns_t_mx, q->name);
	if (--q->pending == 0) {
		/* c-ares answered synchronously (e.g. no servers) */
		if (q->res.status == DNS_OK)
			finish_addresses(q);
		query_finish(q);
	}
	dns_rearm(d);
	return q;
}

struct dns_query *
dns_resolve_host(struct dns *d, const char *host, dns_cb *cb, void *arg)
{
	struct dns_query *q = query_new(d, host, cb, arg);
	struct hostent *he = NULL;

	add_host(q, q->name, 0);
	/* /etc/hosts first, as a native lookup would ("localhost" relayhosts) */
	if (inet_pton(AF_INET, q->name, &(struct in_addr){ 0 }) != 1 &&
	    inet_pton(AF_INET6, q->name, &(struct in6_addr){ 0 }) != 1) {
		bool found = false;
		int fams[2] = { AF_INET6, AF_INET };
		for (int f = 0; f < 2; f++) {
			if ((fams[f] == AF_INET6 && d->p.no_ipv6) ||
			    (fams[f] == AF_INET && d->p.no_ipv4))
				continue;
			if (ares_gethostbyname_file(d->ch, q->name, fams[f], &he) == ARES_SUCCESS) {
				for (char **a = he->h_addr_list; *a != NULL; a++)
					host_add_addr(&q->res.hosts[0], fams[f], *a);
				ares_free_hostent(he);
				found = true;
			}
		}
		if (found) {
			finish_addresses(q);
			query_finish(q);
			return q;
		}
	}
	q->pending++;
	start_addresses(q);
	if (--q->pending == 0) {
		finish_addresses(q);
		query_finish(q);
	}
	dns_rearm(d);
	return q;
}

void
dns_cancel(struct dns_query *q)
{
	if (q == NULL || q->cancelled)
		return;
	q->cancelled = true;
	if (q->pending == 0)
		query_free(q);
}
