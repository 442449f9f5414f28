/*
 * DNS for delivery against a real dnsmasq (Debian dnsmasq-base) that this test starts
 * in the foreground on a free loopback port with a private configuration: MX records
 * with equal and different preferences, a domain without MX (implicit MX), a null
 * MX (RFC 7505), an MX host without address, NXDOMAIN, and a refusing upstream-less
 * zone (temporary failure). Nothing outside 127.0.0.1 is ever asked.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deliver/dns.h"
#include "tests/unit/testmain.h"

static pid_t dm_pid = -1;
static int dm_port;
static char dm_dir[64];
static char dm_server[64];

static int
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		abort();
	close(fd);
	return ntohs(sin.sin_port);
}

/* dnsmasq answers on TCP as soon as it serves */
static bool
dm_ready(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)dm_port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

static void
dm_start(void)
{
	char conf[128], arg[160];
	FILE *f;

	snprintf(dm_dir, sizeof(dm_dir), "/tmp/check_deliver_dns.XXXXXX");
	if (mkdtemp(dm_dir) == NULL)
		abort();
	for (int attempt = 0; attempt < 5; attempt++) {
		dm_port = free_port();
		snprintf(conf, sizeof(conf), "%s/dnsmasq.conf", dm_dir);
		if ((f = fopen(conf, "w")) == NULL)
			abort();
		fprintf(f,
		    "port=%d\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n"
		    "keep-in-foreground\npid-file=\nlog-facility=-\nlocal=/test/\n"
		    "mx-host=multi.test,mx1.multi.test,10\n"
		    "mx-host=multi.test,mx2.multi.test,10\n"
		    "mx-host=multi.test,mx3.multi.test,20\n"
		    "host-record=mx1.multi.test,127.0.0.11\n"
		    "host-record=mx2.multi.test,127.0.0.12,::1\n"
		    "host-record=mx3.multi.test,127.0.0.13\n"
		    "host-record=nomx.test,127.0.0.20\n"
		    "dns-rr=nullmx.test,15,000000\n"
		    "mx-host=deadmx.test,gone.deadmx.test,10\n"
		    "mx-host=literal.test,127.0.0.30,5\n",
		    dm_port);
		fclose(f);
		snprintf(arg, sizeof(arg), "--conf-file=%s", conf);
		dm_pid = fork();
		if (dm_pid == 0) {
			int null = open("/dev/null", O_WRONLY);
			dup2(null, 1);
			dup2(null, 2);
			execl("/usr/sbin/dnsmasq", "dnsmasq", arg, (char *)NULL);
			execlp("dnsmasq", "dnsmasq", arg, (char *)NULL);
			_exit(127);
		}
		/* wait for it to serve, or to die (port taken meanwhile: try another) */
		struct timespec t0, now;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (;;) {
			int st;
			if (dm_ready()) {
				snprintf(dm_server, sizeof(dm_server), "127.0.0.1:%d", dm_port);
				return;
			}
			if (waitpid(dm_pid, &st, WNOHANG) == dm_pid) {
				dm_pid = -1;
				break;
			}
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec - t0.tv_sec > 20) {
				kill(dm_pid, SIGKILL);
				waitpid(dm_pid, NULL, 0);
				dm_pid = -1;
				break;
			}
			usleep(10000);	/* polling a condition, bounded by the deadline */
		}
	}
	fprintf(stderr, "dnsmasq did not start\n");
}

static void
dm_stop(void)
{
	char cmd[128];

	if (dm_pid > 0) {
		kill(dm_pid, SIGTERM);
		waitpid(dm_pid, NULL, 0);
		dm_pid = -1;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dm_dir);
	if (dm_dir[0] != '\0' && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dm_dir);
}

struct got {
	bool called;
	int calls;
	enum dns_status status;
	bool mx_found;
	char error[400];
	size_t n;
	char name[16][256];
	int pref[16];
	enum dns_status hstatus[16];
	char addrs[16][256];	/* "a,b" */
	struct ev_loop *loop;
};

static void
got_cb(void *arg, const struct dns_result *r)
{
	struct got *g = arg;

	g->called = true;
	g->calls++;
	g->status = r->status;
	g->mx_found = r->mx_found;
	snprintf(g->error, sizeof(g->error), "%s", r->error);
	g->n = r->n_hosts < 16 ? r->n_hosts : 16;
	for (size_t i = 0; i < g->n; i++) {
		const struct dns_host *h = &r->hosts[i];
		snprintf(g->name[i], sizeof(g->name[i]), "%s", h->name);
		g->pref[i] = h->pref;
		g->hstatus[i] = h->status;
		g->addrs[i][0] = '\0';
		for (size_t k = 0; k < h->n_addrs; k++) {
			char buf[64];
			const struct sockaddr *sa = (const struct sockaddr *)&h->addrs[k].ss;
			if (sa->sa_family == AF_INET)
				inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
				    sizeof(buf));
			else
				inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr,
				    buf, sizeof(buf));
			if (k > 0)
				strcat(g->addrs[i], ",");
			strcat(g->addrs[i], buf);
		}
	}
	ev_break(g->loop, EVBREAK_ALL);
}

static void
watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w, (void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static long rand_value;
static long
fixed_rand(void)
{
	return rand_value;
}

/* run one lookup to completion; mx: dns_resolve_mx, else dns_resolve_host */
static void
lookup(const char *name, bool mx, struct dns_params *p, struct got *g)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	const char *servers[] = { dm_server };
	struct dns_params dp;
	const char *err;
	ev_timer wd;

	ck_assert_int_gt(dm_pid, 0);
	if (p == NULL) {
		memset(&dp, 0, sizeof(dp));
		p = &dp;
	}
	if (p->n_servers == 0) {
		p->servers = servers;
		p->n_servers = 1;
	}
	memset(g, 0, sizeof(*g));
	g->loop = loop;
	struct dns *d = dns_new(loop, p, &err);
	ck_assert_msg(d != NULL, "dns_new: %s", err);
	if (mx)
		dns_resolve_mx(d, name, got_cb, g);
	else
		dns_resolve_host(d, name, got_cb, g);
	ck_assert(!g->called);	/* never called back from inside dns_resolve_* */
	ev_timer_init(&wd, watchdog_cb, 60., 0.);
	ev_timer_start(loop, &wd);
	ev_run(loop, 0);
	ev_timer_stop(loop, &wd);
	dns_free(d);
	ev_loop_destroy(loop);
	ck_assert_msg(g->called, "%s: no answer", name);
	ck_assert_int_eq(g->calls, 1);
}

START_TEST(mx_order)
{
	struct got g;
	struct dns_params p;
	char first[2][256];

	for (int r = 0; r < 2; r++) {
		memset(&p, 0, sizeof(p));
		p.rand = fixed_rand;
		rand_value = r;
		lookup("multi.test", true, &p, &g);
		ck_assert_int_eq(g.status, DNS_OK);
		ck_assert(g.mx_found);
		ck_assert_uint_eq(g.n, 3);
		ck_assert_int_eq(g.pref[0], 10);
		ck_assert_int_eq(g.pref[1], 10);
		ck_assert_int_eq(g.pref[2], 20);
		ck_assert_str_eq(g.name[2], "mx3.multi.test");
		ck_assert_str_eq(g.addrs[2], "127.0.0.13");
		for (int i = 0; i < 2; i++) {
			if (strcmp(g.name[i], "mx2.multi.test") == 0)
				ck_assert_str_eq(g.addrs[i], "::1,127.0.0.12");	/* v6 first */
			else
				ck_assert_str_eq(g.addrs[i], "127.0.0.11");
		}
		snprintf(first[r], sizeof(first[r]), "%s", g.name[0]);
	}
	/* the shuffle among equals follows the random numbers */
	ck_assert_str_ne(first[0], first[1]);
}
END_TEST

START_TEST(mx_equal_preferences_vary)
{
	struct got g;
	int mx1_first = 0;

	for (int i = 0; i < 16; i++) {
		lookup("multi.test", true, NULL, &g);
		mx1_first += strcmp(g.name[0], "mx1.multi.test") == 0;
	}
	/* random(3): both orders show up (1 in 32 768 of failing by chance) */
	ck_assert_int_gt(mx1_first, 0);
	ck_assert_int_lt(mx1_first, 16);
}
END_TEST

START_TEST(implicit_mx)
{
	struct got g;

	lookup("nomx.test", true, NULL, &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert(!g.mx_found);
	ck_assert_uint_eq(g.n, 1);
	ck_assert_str_eq(g.name[0], "nomx.test");
	ck_assert_int_eq(g.pref[0], 0);
	ck_assert_str_eq(g.addrs[0], "127.0.0.20");
}
END_TEST

START_TEST(null_mx)
{
	struct got g;

	lookup("nullmx.test", true, NULL, &g);
	ck_assert_int_eq(g.status, DNS_NULLMX);
	ck_assert_uint_eq(g.n, 0);
	ck_assert_str_eq(g.error, "Domain nullmx.test does not accept mail (nullMX)");
}
END_TEST

START_TEST(nxdomain)
{
	struct got g;

	lookup("none.test.", true, NULL, &g);
	ck_assert_int_eq(g.status, DNS_NOTFOUND);
	ck_assert_str_eq(g.error, "Name service error for name=none.test type=MX: Host not found");
}
END_TEST

START_TEST(mx_host_without_address)
{
	struct got g;

	lookup("deadmx.test", true, NULL, &g);
	ck_assert_int_eq(g.status, DNS_NOTFOUND);
	ck_assert(g.mx_found);
	ck_assert_uint_eq(g.n, 1);
	ck_assert_int_eq(g.hstatus[0], DNS_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(g.error, "name=gone.deadmx.test"));
}
END_TEST

START_TEST(mx_pointing_at_address)
{
	struct got g;

	lookup("literal.test", true, NULL, &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_str_eq(g.addrs[0], "127.0.0.30");
}
END_TEST

START_TEST(refused_is_temporary)
{
	struct got g;

	/* outside local=/test/ and no upstream: dnsmasq refuses */
	lookup("example.com", true, NULL, &g);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	ck_assert_ptr_nonnull(strstr(g.error, "Host not found, try again"));
}
END_TEST

START_TEST(timeout_is_temporary)
{
	struct got g;
	struct dns_params p;
	char silent[64];
	const char *servers[] = { silent };
	/* a bound UDP socket that never answers */
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	snprintf(silent, sizeof(silent), "127.0.0.1:%u", ntohs(sin.sin_port));
	memset(&p, 0, sizeof(p));
	p.servers = servers;
	p.n_servers = 1;
	p.timeout_ms = 200;
	p.tries = 1;
	lookup("multi.test", true, &p, &g);
	ck_assert_int_eq(g.status, DNS_TEMPFAIL);
	close(fd);
}
END_TEST

START_TEST(host_lookup)
{
	struct got g;
	struct dns_params p;

	lookup("mx2.multi.test", false, NULL, &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert(!g.mx_found);
	ck_assert_str_eq(g.addrs[0], "::1,127.0.0.12");
	memset(&p, 0, sizeof(p));
	p.no_ipv6 = true;
	lookup("mx2.multi.test", false, &p, &g);
	ck_assert_str_eq(g.addrs[0], "127.0.0.12");
	lookup("gone.multi.test", false, NULL, &g);
	ck_assert_int_eq(g.status, DNS_NOTFOUND);
	/* an address needs no lookup, but still answers from the loop */
	lookup("127.0.0.5", false, NULL, &g);
	ck_assert_int_eq(g.status, DNS_OK);
	ck_assert_str_eq(g.addrs[0], "127.0.0.5");
}
END_TEST

static void
never_cb(void *arg, const struct dns_result *r)
{
	(void)arg, (void)r;
	ck_abort_msg("callback after cancel");
}

START_TEST(cancel_and_free)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	const char *servers[] = { dm_server };
	struct dns_params p = { .servers = servers, .n_servers = 1 };
	const char *err;
	struct got g;
	ev_timer wd;

	struct dns *d = dns_new(loop, &p, &err);
	ck_assert_ptr_nonnull(d);
	/* cancelled at once, and cancelled after its answers came in */
	struct dns_query *q1 = dns_resolve_mx(d, "multi.test", never_cb, NULL);
	dns_cancel(q1);
	struct dns_query *q2 = dns_resolve_host(d, "127.0.0.9", never_cb, NULL);
	memset(&g, 0, sizeof(g));
	g.loop = loop;
	dns_resolve_mx(d, "nomx.test", got_cb, &g);
	dns_cancel(q2);
	ev_timer_init(&wd, watchdog_cb, 60., 0.);
	ev_timer_start(loop, &wd);
	ev_run(loop, 0);
	ck_assert(g.called);
	/* pending at free: no callback, nothing leaked (the sanitizer pass checks) */
	dns_resolve_mx(d, "multi.test", never_cb, NULL);
	dns_resolve_mx(d, "example.com", never_cb, NULL);
	dns_free(d);
	ev_timer_stop(loop, &wd);
	ev_loop_destroy(loop);
}
END_TEST

START_TEST(bad_servers)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	const char *servers[] = { "not an address" };
	struct dns_params p = { .servers = servers, .n_servers = 1 };
	const char *err = NULL;

	ck_assert_ptr_null(dns_new(loop, &p, &err));
	ck_assert_ptr_nonnull(strstr(err, "dns_servers"));
	ev_loop_destroy(loop);
}
END_TEST

static Suite *
deliver_dns_suite(void)
{
	Suite *s = suite_create("deliver_dns");
	TCase *tc = tcase_create("dns");

	tcase_add_unchecked_fixture(tc, dm_start, dm_stop);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, mx_order);
	tcase_add_test(tc, mx_equal_preferences_vary);
	tcase_add_test(tc, implicit_mx);
	tcase_add_test(tc, null_mx);
	tcase_add_test(tc, nxdomain);
	tcase_add_test(tc, mx_host_without_address);
	tcase_add_test(tc, mx_pointing_at_address);
	tcase_add_test(tc, refused_is_temporary);
	tcase_add_test(tc, timeout_is_temporary);
	tcase_add_test(tc, host_lookup);
	tcase_add_test(tc, cancel_and_free);
	tcase_add_test(tc, bad_servers);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(deliver_dns_suite)
