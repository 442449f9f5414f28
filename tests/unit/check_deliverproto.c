/*
 * common/deliverproto: the qmgr <-> delivery agent messages. Round trips, every
 * truncation and trailing octet refused, limits and out-of-range values, and the
 * transport over a real SOCK_SEQPACKET pair: the body as a sealed memfd the agent
 * cannot write, and packets with the wrong descriptors refused.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/deliverproto.h"
#include "tests/unit/testmain.h"

static struct deliverproto_job job;

static void
sample_job(void)
{
	memset(&job, 0, sizeof(job));
	job.id = 0x0a0b0c0d;
	strcpy(job.nexthop, "smtp:[127.0.0.1]:2525");
	strcpy(job.qid, "0123456789ABCDEFGHIJ");
	strcpy(job.sender, "alice@lan.example");
	job.size = 1234;
	job.eightbit = true;
	job.ret = DELIVERPROTO_RET_HDRS;
	strcpy(job.envid, "env+2Bid");
	job.n_rcpts = 2;
	job.rcpts[0].idx = 0;
	job.rcpts[0].notify = 4 | 8;
	strcpy(job.rcpts[0].addr, "bob@remote.example");
	strcpy(job.rcpts[0].orcpt, "rfc822;bob@remote.example");
	job.rcpts[1].idx = 7;
	strcpy(job.rcpts[1].addr, "carol@remote.example");
}

START_TEST(test_job_round_trip)
{
	static unsigned char buf[DELIVERPROTO_MSG_MAX + 1];
	static struct deliverproto_job back;
	const char *error;
	sample_job();
	int n = deliverproto_job_encode(&job, buf, sizeof(buf), &error);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(deliverproto_type(buf, (size_t)n), DELIVERPROTO_JOB);
	ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_uint_eq(back.id, 0x0a0b0c0d);
	ck_assert_str_eq(back.nexthop, "smtp:[127.0.0.1]:2525");
	ck_assert_str_eq(back.qid, job.qid);
	ck_assert_str_eq(back.sender, "alice@lan.example");
	ck_assert_uint_eq(back.size, 1234);
	ck_assert(back.eightbit);
	ck_assert_int_eq(back.ret, DELIVERPROTO_RET_HDRS);
	ck_assert_str_eq(back.envid, "env+2Bid");
	ck_assert_uint_eq(back.n_rcpts, 2);
	ck_assert_uint_eq(back.rcpts[0].notify, 12);
	ck_assert_str_eq(back.rcpts[0].orcpt, "rfc822;bob@remote.example");
	ck_assert_uint_eq(back.rcpts[1].idx, 7);
	ck_assert_str_eq(back.rcpts[1].addr, "carol@remote.example");
	ck_assert_str_eq(back.rcpts[1].orcpt, "");
	/* the header on the wire */
	static const unsigned char head[] = { 'R', 'D', 1, 1, 0x0a, 0x0b, 0x0c, 0x0d };
	ck_assert(memcmp(buf, head, sizeof(head)) == 0);
	/* every truncation, and one octet more, is refused */
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)i, &back, &error), -1);
	buf[n] = 0;
	ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)n + 1, &back, &error), -1);
	ck_assert_str_eq(error, "trailing octets after a delivery message");
	/* a result is not a job, and a wrong version is no message */
	buf[3] = DELIVERPROTO_RESULT;
	ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)n, &back, &error), -1);
	ck_assert_str_eq(error, "unexpected delivery message type");
	buf[3] = DELIVERPROTO_JOB;
	buf[2] = 2;
	ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)n, &back, &error), -1);
	ck_assert_int_eq(deliverproto_type(buf, (size_t)n), 0);
}
END_TEST

START_TEST(test_job_limits)
{
	static unsigned char buf[DELIVERPROTO_MSG_MAX];
	static struct deliverproto_job back;
	const char *error;
	sample_job();
	/* 50 recipients with every field at its limit fit in one packet */
	job.n_rcpts = DELIVERPROTO_RCPTS_MAX;
	memset(job.nexthop, 'n', DELIVERPROTO_NEXTHOP_MAX);
	job.nexthop[DELIVERPROTO_NEXTHOP_MAX] = '\0';
	for (size_t i = 0; i < job.n_rcpts; i++) {
		memset(job.rcpts[i].addr, 'a', DELIVERPROTO_ADDR_MAX);
		job.rcpts[i].addr[DELIVERPROTO_ADDR_MAX] = '\0';
		memset(job.rcpts[i].orcpt, 'o', DELIVERPROTO_ORCPT_MAX);
		job.rcpts[i].orcpt[DELIVERPROTO_ORCPT_MAX] = '\0';
	}
	int n = deliverproto_job_encode(&job, buf, sizeof(buf), &error);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_uint_eq(back.n_rcpts, DELIVERPROTO_RCPTS_MAX);
	/* 0 and 51 recipients, a bad NOTIFY: refused by the encoder */
	job.n_rcpts = 0;
	ck_assert_int_eq(deliverproto_job_encode(&job, buf, sizeof(buf), &error), -1);
	job.n_rcpts = DELIVERPROTO_RCPTS_MAX + 1;
	ck_assert_int_eq(deliverproto_job_encode(&job, buf, sizeof(buf), &error), -1);
	sample_job();
	job.rcpts[1].notify = 0x10;
	ck_assert_int_eq(deliverproto_job_encode(&job, buf, sizeof(buf), &error), -1);
	/* the decoder refuses the same values when a peer sends them anyway */
	sample_job();
	n = deliverproto_job_encode(&job, buf, sizeof(buf), &error);
	ck_assert_int_gt(n, 0);
	size_t idx_at = (size_t)n - (4 + 1 + 2 + strlen(job.rcpts[1].addr) + 2);
	ck_assert_uint_eq(buf[idx_at + 3], 7);	/* the last recipient's idx 7 */
	buf[idx_at + 4] = 0x20;			/* its NOTIFY */
	ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)n, &back, &error), -1);
	/* an empty recipient address */
	sample_job();
	job.rcpts[1].addr[0] = '\0';
	n = deliverproto_job_encode(&job, buf, sizeof(buf), &error);
	ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)n, &back, &error), -1);
	/* a NUL inside a string */
	sample_job();
	n = deliverproto_job_encode(&job, buf, sizeof(buf), &error);
	unsigned char *at = memmem(buf, (size_t)n, "alice", 5);
	ck_assert_ptr_nonnull(at);
	at[2] = '\0';
	ck_assert_int_eq(deliverproto_job_decode(buf, (size_t)n, &back, &error), -1);
}
END_TEST

static struct deliverproto_result
sample_result(void)
{
	struct deliverproto_result r = { 0 };
	r.id = 99;
	r.idx = 3;
	r.status = DELIVERPROTO_BOUNCED;
	r.code = 550;
	strcpy(r.dsn, "5.1.1");
	strcpy(r.relay, "mx.remote.example[192.0.2.1]:25");
	strcpy(r.text, "host mx.remote.example[192.0.2.1] said: 550 5.1.1 no such user "
	    "(in reply to RCPT TO command)");
	r.conn_ms = 12;
	r.xmit_ms = 34;
	return r;
}

START_TEST(test_result_round_trip)
{
	unsigned char buf[DELIVERPROTO_MSG_MAX];
	struct deliverproto_result r = sample_result(), back;
	const char *error;
	int n = deliverproto_result_encode(&r, buf, sizeof(buf), &error);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(deliverproto_type(buf, (size_t)n), DELIVERPROTO_RESULT);
	ck_assert_int_eq(deliverproto_result_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_uint_eq(back.id, 99);
	ck_assert_uint_eq(back.idx, 3);
	ck_assert_int_eq(back.status, DELIVERPROTO_BOUNCED);
	ck_assert(!back.conn_failed);
	ck_assert_uint_eq(back.code, 550);
	ck_assert_str_eq(back.dsn, "5.1.1");
	ck_assert_str_eq(back.relay, r.relay);
	ck_assert_str_eq(back.text, r.text);
	ck_assert_uint_eq(back.conn_ms, 12);
	ck_assert_uint_eq(back.xmit_ms, 34);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(deliverproto_result_decode(buf, (size_t)i, &back, &error), -1);

	/* a verdict its status code contradicts, a bad status code, a control
	   octet in the text, a code over 599: all refused */
	struct deliverproto_result bad = sample_result();
	strcpy(bad.dsn, "2.0.0");
	n = deliverproto_result_encode(&bad, buf, sizeof(buf), &error);
	ck_assert_int_eq(deliverproto_result_decode(buf, (size_t)n, &back, &error), -1);
	bad = sample_result();
	strcpy(bad.dsn, "5.1");
	n = deliverproto_result_encode(&bad, buf, sizeof(buf), &error);
	ck_assert_int_eq(deliverproto_result_decode(buf, (size_t)n, &back, &error), -1);
	bad = sample_result();
	strcpy(bad.text, "550 evil\r\nQID: removed");
	n = deliverproto_result_encode(&bad, buf, sizeof(buf), &error);
	ck_assert_int_eq(deliverproto_result_decode(buf, (size_t)n, &back, &error), -1);
	bad = sample_result();
	bad.code = 600;
	ck_assert_int_eq(deliverproto_result_encode(&bad, buf, sizeof(buf), &error), -1);
	/* a deferral for a failed connection */
	bad = sample_result();
	bad.status = DELIVERPROTO_DEFERRED;
	bad.conn_failed = true;
	bad.code = 0;
	strcpy(bad.dsn, "4.4.1");
	strcpy(bad.relay, "none");
	n = deliverproto_result_encode(&bad, buf, sizeof(buf), &error);
	ck_assert_int_eq(deliverproto_result_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert(back.conn_failed);
	ck_assert(!back.dsn_passed);
	ck_assert_int_eq(back.status, DELIVERPROTO_DEFERRED);
	/* sent to a next hop that took the DSN request over (RFC 3461 5.2.2) */
	bad = sample_result();
	bad.status = DELIVERPROTO_SENT;
	bad.code = 250;
	strcpy(bad.dsn, "2.0.0");
	bad.dsn_passed = true;
	n = deliverproto_result_encode(&bad, buf, sizeof(buf), &error);
	ck_assert_int_eq(deliverproto_result_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert(back.dsn_passed);
	ck_assert(!back.conn_failed);
	/* an unknown flag bit is refused: the flags octet follows the status octet
	   after the 8-octet header and the u32 index */
	buf[8 + 4 + 1] |= 4;
	ck_assert_int_eq(deliverproto_result_decode(buf, (size_t)n, &back, &error), -1);
}
END_TEST

START_TEST(test_done_round_trip)
{
	unsigned char buf[64];
	struct deliverproto_done d = { .id = 5, .handshake_ok = true, .loop = false }, back;
	const char *error;
	int n = deliverproto_done_encode(&d, buf, sizeof(buf), &error);
	ck_assert_int_eq(n, 9);
	ck_assert_int_eq(deliverproto_done_decode(buf, (size_t)n, &back, &error), 0);
	ck_assert_uint_eq(back.id, 5);
	ck_assert(back.handshake_ok);
	ck_assert(!back.loop);
	buf[8] = 4;
	ck_assert_int_eq(deliverproto_done_decode(buf, (size_t)n, &back, &error), -1);
	ck_assert_int_eq(deliverproto_done_decode(buf, 8, &back, &error), -1);
}
END_TEST

START_TEST(test_transport_body)
{
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	const char *error;
	static const char body[] = "Subject: t\r\n\r\nhello\r\n";
	int mfd = deliverproto_body_memfd(body, sizeof(body) - 1, &error);
	ck_assert_int_ge(mfd, 0);
	static unsigned char buf[DELIVERPROTO_MSG_MAX];
	sample_job();
	job.size = sizeof(body) - 1;
	int n = deliverproto_job_encode(&job, buf, sizeof(buf), &error);
	ck_assert_int_eq(deliverproto_send(sp[0], buf, (size_t)n, mfd), 0);
	close(mfd);

	static unsigned char in[DELIVERPROTO_MSG_MAX];
	int got = -1;
	ssize_t m = deliverproto_recv(sp[1], in, sizeof(in), &got);
	ck_assert_int_eq(m, n);
	ck_assert_int_ge(got, 0);
	ck_assert_int_eq(fcntl(got, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	static struct deliverproto_job back;
	ck_assert_int_eq(deliverproto_job_decode(in, (size_t)m, &back, &error), 0);
	ck_assert_int_eq(deliverproto_body_check(got, back.size, &error), 0);
	ck_assert_int_eq(deliverproto_body_check(got, back.size + 1, &error), -1);
	/* the agent reads it, and cannot change it */
	char rd[64] = { 0 };
	ck_assert_int_eq(pread(got, rd, sizeof(rd), 0), (ssize_t)sizeof(body) - 1);
	ck_assert_str_eq(rd, body);
	ck_assert_int_eq(pwrite(got, "X", 1, 0), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(ftruncate(got, 1), -1);
	close(got);

	/* an unsealed memfd or a plain file does not pass the check */
	int raw = memfd_create("raw", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_eq(write(raw, "abc", 3), 3);
	ck_assert_int_eq(deliverproto_body_check(raw, 3, &error), -1);
	close(raw);

	/* a packet without a descriptor, then one with two: refused, both closed */
	ck_assert_int_eq(deliverproto_send(sp[0], "RD", 2, -1), 0);
	m = deliverproto_recv(sp[1], in, sizeof(in), &got);
	ck_assert_int_eq(m, 2);
	ck_assert_int_eq(got, -1);
	int two[2] = { sp[0], sp[0] };
	union {
		char b[CMSG_SPACE(sizeof(two))];
		struct cmsghdr a;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = { (void *)"x", 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
	    .msg_controllen = sizeof(u.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(two));
	memcpy(CMSG_DATA(c), two, sizeof(two));
	ck_assert_int_eq(sendmsg(sp[0], &mh, 0), 1);
	int before = dup(0);
	close(before);
	errno = 0;
	ck_assert_int_eq(deliverproto_recv(sp[1], in, sizeof(in), &got), -1);
	ck_assert_int_eq(errno, EPROTO);
	ck_assert_int_eq(got, -1);
	int after = dup(0);
	ck_assert_int_eq(after, before);	/* nothing leaked */
	close(after);

	/* a packet bigger than the buffer is refused, not cut */
	ck_assert_int_eq(deliverproto_send(sp[0], buf, (size_t)n, -1), 0);
	errno = 0;
	ck_assert_int_eq(deliverproto_recv(sp[1], in, 16, &got), -1);
	ck_assert_int_eq(errno, EMSGSIZE);

	/* end of file */
	close(sp[0]);
	ck_assert_int_eq(deliverproto_recv(sp[1], in, sizeof(in), &got), 0);
	close(sp[1]);
}
END_TEST

static Suite *
deliverproto_suite(void)
{
	Suite *s = suite_create("deliverproto");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_job_round_trip);
	tcase_add_test(tc, test_job_limits);
	tcase_add_test(tc, test_result_round_trip);
	tcase_add_test(tc, test_done_round_trip);
	tcase_add_test(tc, test_transport_body);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(deliverproto_suite)
