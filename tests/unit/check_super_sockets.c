/*
 * The supervisor's sockets (supervisor/sockets.c): which listen addresses count
 * as the same socket across a reload, listening sockets' options, and the
 * control socket's mode and stale-file handling.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/sock.h"
#include "supervisor/sockets.h"
#include "tests/unit/testmain.h"
#include "tests/unit/testutil.h"

static struct sockaddr_storage
addr(const char *ip, unsigned port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &v6->sin6_addr), 1);
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
	}
	return ss;
}

static const struct {
	const char *a;
	unsigned pa;
	const char *b;
	unsigned pb;
	bool same;
} pairs[] = {
	{ "127.0.0.1", 25, "127.0.0.1", 25, true },
	{ "127.0.0.1", 25, "127.0.0.1", 2525, false },
	{ "127.0.0.1", 25, "127.0.0.2", 25, false },
	{ "::1", 25, "::1", 25, true },
	{ "::1", 25, "::2", 25, false },
	{ "::ffff:127.0.0.1", 25, "127.0.0.1", 25, false },	/* other family */
	{ "0.0.0.0", 25, "127.0.0.1", 25, false },
};

START_TEST(test_same_addr)
{
	struct sockaddr_storage a = addr(pairs[_i].a, pairs[_i].pa);
	struct sockaddr_storage b = addr(pairs[_i].b, pairs[_i].pb);
	ck_assert_int_eq(sock_same_addr(&a, &b), pairs[_i].same);
	ck_assert_int_eq(sock_same_addr(&b, &a), pairs[_i].same);
}
END_TEST

static const char *const listens[] = { "127.0.0.1", "::1" };

START_TEST(test_listen_options)
{
	struct listen_addr la;
	memset(&la, 0, sizeof(la));
	la.text = "test";
	la.ss = addr(listens[_i], 0);
	la.sslen = la.ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6);
	const char *error = NULL;
	int fd = sock_listen(&la, &error);
	if (fd == -1 && la.ss.ss_family == AF_INET6)
		return;		/* no IPv6 on this machine */
	ck_assert_msg(fd >= 0, "%s", error);
	int v = 0;
	socklen_t len = sizeof(v);
	ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &v, &len), 0);
	ck_assert_int_eq(v, 1);
	ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len), 0);
	ck_assert_int_eq(v, 1);
	if (la.ss.ss_family == AF_INET6) {
		ck_assert_int_eq(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len), 0);
		ck_assert_int_eq(v, 1);
	}
	/* the same address again while it listens: refused, with the address */
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&got, &gl), 0);
	la.ss = got;
	ck_assert_int_eq(sock_listen(&la, &error), -1);
	ck_assert_ptr_nonnull(strstr(error, "bind test: Address already in use"));
	close(fd);
}
END_TEST

START_TEST(test_control_socket)
{
	char *dir = testutil_tmpdir("ctlsock");
	char path[128];
	snprintf(path, sizeof(path), "%s/c.sock", dir);
	/* a stale file from a crash is replaced */
	FILE *fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fclose(fp);
	const char *error = NULL;
	int fd = sock_control(path, NULL, &error);
	ck_assert_msg(fd >= 0, "%s", error);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	/* a live one is not taken over */
	ck_assert_int_eq(sock_control(path, NULL, &error), -1);
	ck_assert_ptr_nonnull(strstr(error, "another relayvisord"));
	ck_assert_int_eq(sock_control(path, "no-such-group-rv", &error), -1);
	close(fd);
	testutil_rmtree(dir);
}
END_TEST

static Suite *
super_sockets_suite(void)
{
	Suite *s = suite_create("super_sockets");
	TCase *tc = tcase_create("sockets");
	tcase_add_loop_test(tc, test_same_addr, 0, (int)(sizeof(pairs) / sizeof(pairs[0])));
	tcase_add_loop_test(tc, test_listen_options, 0,
	    (int)(sizeof(listens) / sizeof(listens[0])));
	tcase_add_test(tc, test_control_socket);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(super_sockets_suite)
