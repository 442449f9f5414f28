/*
 * common/tls: contexts from in-memory PEM and sealed memfds, the engine on BIO
 * pairs (full handshakes and data both ways, in memory), refused old protocols
 * and weak ciphers, session tickets, no renegotiation, context swap on reload,
 * and the client's verify modes.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/tls.h"
#include "tests/unit/testmain.h"
#include "tests/unit/tlscerts.h"

#define HOST "mail.example.test"

static struct testcert ca, leaf, leaf2, other_ca, other_leaf, rsa_leaf;
static char *pem, *pem2, *pem_other, *pem_rsa;
static size_t pem_len, pem2_len, pem_other_len, pem_rsa_len;
static char cafile[] = "/tmp/rv-check-tls-ca-XXXXXX";

static void
setup(void)
{
	ca = testcert_make("Test CA", NULL);
	leaf = testcert_make(HOST, &ca);
	leaf2 = testcert_make(HOST, &ca);
	other_ca = testcert_make("Other CA", NULL);
	other_leaf = testcert_make(HOST, &other_ca);
	rsa_leaf = testcert_make_key(HOST, &ca, true);
	pem = testcert_pem(&leaf, &ca, true, &pem_len);
	pem_rsa = testcert_pem(&rsa_leaf, &ca, true, &pem_rsa_len);
	pem2 = testcert_pem(&leaf2, &ca, true, &pem2_len);
	pem_other = testcert_pem(&other_leaf, NULL, true, &pem_other_len);
	int fd = mkstemp(cafile);
	size_t n;
	char *c = testcert_pem(&ca, NULL, false, &n);
	if (fd == -1 || write(fd, c, n) != (ssize_t)n)
		abort();
	close(fd);
	free(c);
}

static void
teardown(void)
{
	unlink(cafile);
	free(pem);
	free(pem2);
	free(pem_other);
	free(pem_rsa);
	testcert_free(&rsa_leaf);
	testcert_free(&ca);
	testcert_free(&leaf);
	testcert_free(&leaf2);
	testcert_free(&other_ca);
	testcert_free(&other_leaf);
}

static struct tls_ctx *
server_ctx(const char *p, size_t len)
{
	struct tls_ctx *ctx = NULL;
	const char *error = NULL;
	if (tls_server_ctx_new(p, len, &ctx, &error) != 0)
		ck_abort_msg("server ctx: %s", error);
	return ctx;
}

/* ciphertext from one engine to the other; how much moved */
static size_t
move(struct tls_conn *from, struct tls_conn *to)
{
	char buf[TLS_CONN_BUFSIZE];
	size_t room = tls_conn_feed_room(to);
	size_t n = tls_conn_take(from, buf, room < sizeof(buf) ? room : sizeof(buf));
	ck_assert_uint_eq(tls_conn_feed(to, buf, n), n);
	return n;
}

/* both handshakes to their end; returns 0 when both completed */
static int
handshake(struct tls_conn *cl, struct tls_conn *sv)
{
	for (int i = 0; i < 50; i++) {
		int a = tls_conn_handshake(cl);
		int b = tls_conn_handshake(sv);
		size_t moved = move(cl, sv) + move(sv, cl);
		if (a == TLS_DONE && b == TLS_DONE)
			return 0;
		if (a == TLS_ERROR || b == TLS_ERROR)
			return -1;
		if (moved == 0 && a != TLS_WANT_WRITE && b != TLS_WANT_WRITE)
			return -1;	/* stuck */
	}
	return -1;
}

static void
pair(struct tls_ctx *cctx, struct tls_ctx *sctx, const char *name,
    struct tls_conn **cl, struct tls_conn **sv)
{
	const char *error = NULL;
	*cl = tls_conn_client(cctx, name, &error);
	ck_assert_msg(*cl != NULL, "client: %s", error);
	*sv = tls_conn_server(sctx, &error);
	ck_assert_msg(*sv != NULL, "server: %s", error);
}

/* send len octets from a to b through both engines, check they arrive intact */
static void
transfer(struct tls_conn *a, struct tls_conn *b, size_t len)
{
	unsigned char *out = malloc(len), *in = malloc(len);
	for (size_t i = 0; i < len; i++)
		out[i] = (unsigned char)(i * 7 + len);
	size_t sent = 0, got = 0;
	int rounds = 0;
	bool partial = false;
	while (got < len) {
		ck_assert_int_lt(rounds++, 100000);
		if (sent < len) {
			ssize_t n = tls_conn_write(a, out + sent, len - sent);
			if (n != TLS_WANT_WRITE)
				ck_assert_int_gt(n, 0);
			if (n > 0 && (size_t)n < len - sent)
				partial = true;
			if (n > 0)
				sent += (size_t)n;
		}
		move(a, b);
		ssize_t r = 0;
		while (got < len && (r = tls_conn_read(b, in + got, len - got)) > 0)
			got += (size_t)r;
		if (got < len)
			ck_assert_int_eq(r, TLS_WANT_READ);
		move(b, a);	/* TLS 1.3 tickets, key updates */
		ck_assert_uint_le(tls_conn_pending(a), TLS_CONN_BUFSIZE);
	}
	ck_assert(memcmp(in, out, len) == 0);
	/* a megabyte cannot fit the bounded buffers: the writer must have been held */
	if (len > 2 * TLS_CONN_BUFSIZE)
		ck_assert(partial);
	free(out);
	free(in);
}

START_TEST(test_handshake_and_data)
{
	struct tls_ctx *sctx = server_ctx(pem, pem_len), *cctx;
	const char *error;
	ck_assert_int_eq(tls_client_ctx_new(TLS_CLIENT_VERIFY, cafile, &cctx, &error), 0);
	struct tls_conn *cl, *sv;
	pair(cctx, sctx, HOST, &cl, &sv);
	ck_assert(!tls_conn_established(sv));
	/* the server speaks only when spoken to */
	ck_assert_int_eq(tls_conn_handshake(sv), TLS_WANT_READ);
	ck_assert_uint_eq(tls_conn_pending(sv), 0);
	ck_assert_int_eq(handshake(cl, sv), 0);
	ck_assert(tls_conn_established(cl) && tls_conn_established(sv));
	char d[200];
	tls_conn_describe(sv, d, sizeof(d));
	ck_assert_msg(strncmp(d, "TLSv1.3 with cipher TLS_", 24) == 0, "%s", d);
	ck_assert_int_eq(tls_conn_peer_trust(cl), TLS_PEER_VERIFIED);
	ck_assert_str_eq(tls_peer_trust_name(tls_conn_peer_trust(cl)), "Verified");

	const char *ehlo = "EHLO client.example\r\n";
	ck_assert_int_eq(tls_conn_write(cl, ehlo, strlen(ehlo)), (ssize_t)strlen(ehlo));
	move(cl, sv);
	char buf[100];
	ssize_t n = tls_conn_read(sv, buf, sizeof(buf));
	ck_assert_int_eq(n, (ssize_t)strlen(ehlo));
	ck_assert(memcmp(buf, ehlo, (size_t)n) == 0);
	ck_assert_int_eq(tls_conn_read(sv, buf, sizeof(buf)), TLS_WANT_READ);
	transfer(sv, cl, 1000);
	transfer(cl, sv, 1024 * 1024);
	transfer(sv, cl, 1024 * 1024);

	/* close_notify: the reader sees the end, not an error */
	tls_conn_close(cl);
	ck_assert_uint_gt(tls_conn_pending(cl), 0);
	move(cl, sv);
	ck_assert_int_eq(tls_conn_read(sv, buf, sizeof(buf)), TLS_CLOSED);
	tls_conn_free(cl);
	tls_conn_free(sv);
	tls_ctx_unref(cctx);
	tls_ctx_unref(sctx);
}
END_TEST

/* a plain OpenSSL client on its own BIO pair, to speak what our client never would */
struct raw {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *net;
};

static void
raw_new(struct raw *r, int maxver, const char *ciphers)
{
	r->ctx = SSL_CTX_new(TLS_client_method());
	ck_assert_ptr_nonnull(r->ctx);
	SSL_CTX_set_min_proto_version(r->ctx, 0);
	SSL_CTX_set_security_level(r->ctx, 0);
	if (maxver)
		ck_assert(SSL_CTX_set_max_proto_version(r->ctx, maxver));
	if (ciphers != NULL)
		ck_assert(SSL_CTX_set_cipher_list(r->ctx, ciphers));
	r->ssl = SSL_new(r->ctx);
	BIO *inner;
	ck_assert(BIO_new_bio_pair(&inner, 0, &r->net, 0));
	SSL_set_bio(r->ssl, inner, inner);
	SSL_set_connect_state(r->ssl);
}

static void
raw_free(struct raw *r)
{
	SSL_free(r->ssl);
	BIO_free(r->net);
	SSL_CTX_free(r->ctx);
}

/* drive a raw client against a server engine; 0 when both finished the handshake */
static int
raw_handshake(struct raw *r, struct tls_conn *sv, int *server_status)
{
	char buf[TLS_CONN_BUFSIZE];
	int sret = TLS_WANT_READ;
	for (int i = 0; i < 50; i++) {
		int cret = SSL_do_handshake(r->ssl);
		int n = BIO_read(r->net, buf, sizeof(buf));
		if (n > 0)
			ck_assert_uint_eq(tls_conn_feed(sv, buf, (size_t)n), (size_t)n);
		sret = tls_conn_handshake(sv);
		size_t m = tls_conn_take(sv, buf, sizeof(buf));
		if (m > 0)
			ck_assert_int_eq(BIO_write(r->net, buf, (int)m), (int)m);
		*server_status = sret;
		if (cret == 1 && sret == TLS_DONE)
			return 0;
		if (sret == TLS_ERROR)
			return -1;
		if (cret <= 0 && SSL_get_error(r->ssl, cret) != SSL_ERROR_WANT_READ)
			return -1;
	}
	return -1;
}

static const struct {
	int version;
	const char *name;
} old_versions[] = {
	{ SSL3_VERSION, "SSLv3" },
	{ TLS1_VERSION, "TLSv1" },
	{ TLS1_1_VERSION, "TLSv1.1" },
};

START_TEST(test_old_protocols_refused_openssl)
{
	struct tls_ctx *sctx = server_ctx(pem, pem_len);
	const char *error;
	struct tls_conn *sv = tls_conn_server(sctx, &error);
	struct raw r;
	raw_new(&r, old_versions[_i].version, "ALL:@SECLEVEL=0");
	int st;
	ck_assert_int_eq(raw_handshake(&r, sv, &st), -1);
	ck_assert(!tls_conn_established(sv));
	/* SSLv3 is not even built into Debian's OpenSSL: the client gives up before
	   sending; TLS 1.0/1.1 reach the server, which refuses them */
	if (old_versions[_i].version != SSL3_VERSION) {
		ck_assert_int_eq(st, TLS_ERROR);
		ck_assert_msg(strstr(tls_conn_error(sv), "protocol") != NULL, "%s",
		    tls_conn_error(sv));
	}
	raw_free(&r);
	tls_conn_free(sv);
	tls_ctx_unref(sctx);
	ERR_clear_error();
}
END_TEST

/* a hand-made ClientHello of the given legacy version: the server must answer with
   a fatal protocol_version alert, whatever client library says so */
START_TEST(test_old_protocols_refused_wire)
{
	unsigned char hello[] = {
		0x16, 0x03, 0x00, 0x00, 0x2d,		/* record: handshake, len 45 */
		0x01, 0x00, 0x00, 0x29,			/* ClientHello, len 41 */
		0x03, 0x00,				/* client_version */
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
		17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
		0x00,					/* session id */
		0x00, 0x02, 0xc0, 0x2f,			/* ECDHE-RSA-AES128-GCM-SHA256 */
		0x01, 0x00,				/* compression: null */
	};
	int v = old_versions[_i].version;
	hello[10] = (unsigned char)(v & 0xff);
	hello[2] = (unsigned char)(v == SSL3_VERSION ? 0 : 1);
	struct tls_ctx *sctx = server_ctx(pem, pem_len);
	const char *error;
	struct tls_conn *sv = tls_conn_server(sctx, &error);
	ck_assert_uint_eq(tls_conn_feed(sv, hello, sizeof(hello)), sizeof(hello));
	ck_assert_int_eq(tls_conn_handshake(sv), TLS_ERROR);
	unsigned char out[64];
	size_t n = tls_conn_take(sv, out, sizeof(out));
	ck_assert_uint_eq(n, 7);
	ck_assert_int_eq(out[0], 0x15);	/* alert */
	ck_assert_int_eq(out[5], 2);	/* fatal */
	/* protocol_version; an SSLv3 record layer gets handshake_failure */
	ck_assert_int_eq(out[6], v == SSL3_VERSION ? 40 : 70);
	tls_conn_free(sv);
	tls_ctx_unref(sctx);
}
END_TEST

/* TLS 1.2 suites a client may offer alone: each is refused by the server */
static const char *weak_ciphers[] = {
	"AES128-SHA",			/* RSA key exchange, CBC */
	"ECDHE-RSA-AES128-SHA",		/* CBC */
	"ECDHE-ECDSA-AES128-SHA",	/* CBC */
	"DES-CBC3-SHA",
	"aNULL",
	"eNULL",
	"RC4",
	"EXP",
	"DHE-RSA-AES128-SHA256",	/* CBC */
	"ECDHE-RSA-AES256-SHA384",	/* CBC */
};

/* each suite against an ECDSA and an RSA certificate (_i / 2 is the suite) */
START_TEST(test_weak_ciphers_refused)
{
	struct tls_ctx *sctx = _i % 2 ? server_ctx(pem_rsa, pem_rsa_len) :
	    server_ctx(pem, pem_len);
	const char *cipher = weak_ciphers[_i / 2];
	const char *error;
	struct tls_conn *sv = tls_conn_server(sctx, &error);
	struct raw r;
	r.ctx = NULL;
	/* a suite this OpenSSL does not know cannot be offered at all: nothing to test */
	SSL_CTX *probe = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_security_level(probe, 0);
	int known = SSL_CTX_set_cipher_list(probe, cipher);
	SSL_CTX_free(probe);
	ERR_clear_error();
	if (known) {
		raw_new(&r, TLS1_2_VERSION, cipher);
		int st;
		ck_assert_int_eq(raw_handshake(&r, sv, &st), -1);
		ck_assert(!tls_conn_established(sv));
		raw_free(&r);
	}
	tls_conn_free(sv);
	tls_ctx_unref(sctx);
	ERR_clear_error();
}
END_TEST

START_TEST(test_tls12_suite)
{
	struct tls_ctx *sctx = server_ctx(pem, pem_len);
	const char *error;
	struct tls_conn *sv = tls_conn_server(sctx, &error);
	struct raw r;
	raw_new(&r, TLS1_2_VERSION, NULL);
	int st;
	ck_assert_int_eq(raw_handshake(&r, sv, &st), 0);
	char d[200];
	tls_conn_describe(sv, d, sizeof(d));
	/* server preference: ECDHE with AES-256-GCM before anything the client lists */
	ck_assert_str_eq(d, "TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits)");
	ck_assert(!SSL_get_current_compression(r.ssl));
	{
		/* an RSA certificate gets ECDHE-RSA with AES-GCM */
		struct tls_ctx *rctx = server_ctx(pem_rsa, pem_rsa_len);
		struct tls_conn *rsv = tls_conn_server(rctx, &error);
		struct raw rr;
		raw_new(&rr, TLS1_2_VERSION, NULL);
		ck_assert_int_eq(raw_handshake(&rr, rsv, &st), 0);
		tls_conn_describe(rsv, d, sizeof(d));
		ck_assert_str_eq(d, "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)");
		raw_free(&rr);
		tls_conn_free(rsv);
		tls_ctx_unref(rctx);
	}

	/* renegotiation: the client asks, the server never performs it */
	char buf[TLS_CONN_BUFSIZE];
	ck_assert(SSL_renegotiate(r.ssl));
	for (int i = 0; i < 10; i++) {
		(void)SSL_do_handshake(r.ssl);
		int n = BIO_read(r.net, buf, sizeof(buf));
		if (n > 0)
			tls_conn_feed(sv, buf, (size_t)n);
		(void)tls_conn_read(sv, buf, sizeof(buf));
		size_t m = tls_conn_take(sv, buf, sizeof(buf));
		if (m > 0)
			BIO_write(r.net, buf, (int)m);
	}
	ck_assert_int_eq(SSL_renegotiate_pending(r.ssl), 1);
	ck_assert_int_eq(SSL_num_renegotiations(r.ssl), 1);
	raw_free(&r);
	tls_conn_free(sv);
	tls_ctx_unref(sctx);
	ERR_clear_error();
}
END_TEST

/* session tickets: a second connection resumes the first one's session */
START_TEST(test_session_ticket_resumption)
{
	struct tls_ctx *sctx = server_ctx(pem, pem_len);
	const char *error;
	struct raw r;
	int st;
	raw_new(&r, TLS1_2_VERSION, NULL);
	struct tls_conn *sv = tls_conn_server(sctx, &error);
	ck_assert_int_eq(raw_handshake(&r, sv, &st), 0);
	SSL_SESSION *sess = SSL_get1_session(r.ssl);
	ck_assert_ptr_nonnull(sess);
	ck_assert(SSL_SESSION_has_ticket(sess));
	ck_assert(!SSL_session_reused(r.ssl));
	/* a clean close, or OpenSSL marks the session not resumable */
	SSL_shutdown(r.ssl);
	tls_conn_free(sv);
	SSL_free(r.ssl);
	BIO_free(r.net);

	SSL_CTX *keep = r.ctx;
	r.ssl = SSL_new(keep);
	BIO *inner;
	ck_assert(BIO_new_bio_pair(&inner, 0, &r.net, 0));
	SSL_set_bio(r.ssl, inner, inner);
	SSL_set_connect_state(r.ssl);
	ck_assert(SSL_set_session(r.ssl, sess));
	sv = tls_conn_server(sctx, &error);
	ck_assert_int_eq(raw_handshake(&r, sv, &st), 0);
	ck_assert(SSL_session_reused(r.ssl));
	SSL_SESSION_free(sess);
	raw_free(&r);
	tls_conn_free(sv);
	tls_ctx_unref(sctx);
}
END_TEST

/* the client side keeps the server's newest session (a TLS 1.3 ticket comes
   after the handshake, with data) and offers it on the next connection */
START_TEST(test_client_session_resumed)
{
	struct tls_ctx *sctx = server_ctx(pem, pem_len), *cctx;
	const char *error;
	struct tls_conn *cl, *sv;
	ck_assert_int_eq(tls_client_ctx_new(TLS_CLIENT_VERIFY, cafile, &cctx, &error), 0);
	pair(cctx, sctx, HOST, &cl, &sv);
	ck_assert_int_eq(handshake(cl, sv), 0);
	ck_assert(!tls_conn_reused(cl));
	transfer(sv, cl, 100);		/* the ticket travels with the reply */
	struct tls_session *s = tls_conn_session(cl);
	ck_assert_ptr_nonnull(s);
	/* a clean close, or OpenSSL marks the session not resumable */
	tls_conn_close(cl);
	tls_conn_free(cl);
	tls_conn_free(sv);

	pair(cctx, sctx, HOST, &cl, &sv);
	ck_assert_int_eq(tls_conn_set_session(cl, s), 0);
	ck_assert_msg(handshake(cl, sv) == 0, "%s / %s", tls_conn_error(cl),
	    tls_conn_error(sv));
	ck_assert(tls_conn_reused(cl));
	ck_assert_int_eq(tls_conn_peer_trust(cl), TLS_PEER_VERIFIED);
	transfer(cl, sv, 100);
	tls_conn_free(cl);
	tls_conn_free(sv);

	/* without a session: a full handshake */
	pair(cctx, sctx, HOST, &cl, &sv);
	ck_assert_int_eq(tls_conn_set_session(cl, NULL), 0);
	ck_assert_int_eq(handshake(cl, sv), 0);
	ck_assert(!tls_conn_reused(cl));
	tls_conn_free(cl);
	tls_conn_free(sv);
	tls_session_free(s);
	tls_ctx_unref(cctx);
	tls_ctx_unref(sctx);
}
END_TEST

START_TEST(test_memfd)
{
	const char *error = NULL;
	int fd = tls_pem_memfd(pem, pem_len, &error);
	ck_assert_msg(fd >= 0, "%s", error);
	/* sealed: neither written, truncated nor grown, nor unsealed */
	ck_assert_int_eq(write(fd, "x", 1), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(ftruncate(fd, 10), -1);
	ck_assert_int_eq(pwrite(fd, "x", 1, 0), -1);
	ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, 0), -1);
	ck_assert_ptr_eq(mmap(NULL, pem_len, PROT_WRITE, MAP_SHARED, fd, 0), MAP_FAILED);
	char *back;
	size_t len;
	ck_assert_int_eq(tls_pem_read_fd(fd, &back, &len, &error), 0);
	ck_assert_uint_eq(len, pem_len);
	ck_assert(memcmp(back, pem, len) == 0);
	tls_pem_free(back, len);
	struct tls_ctx *ctx = NULL;
	ck_assert_int_eq(tls_server_ctx_from_fd(fd, &ctx, &error), 0);
	tls_ctx_unref(ctx);
	close(fd);

	/* an unsealed memfd or a plain file could change under us: refused */
	fd = memfd_create("x", MFD_ALLOW_SEALING);
	ck_assert_int_eq(write(fd, pem, pem_len), (ssize_t)pem_len);
	ck_assert_int_eq(tls_server_ctx_from_fd(fd, &ctx, &error), -1);
	ck_assert_str_eq(error, "the certificate descriptor is not a sealed memfd");
	close(fd);
	fd = open(cafile, O_RDONLY);
	ck_assert_int_eq(tls_server_ctx_from_fd(fd, &ctx, &error), -1);
	close(fd);
}
END_TEST

START_TEST(test_pem_errors)
{
	struct tls_ctx *ctx = NULL;
	const char *error = NULL;
	size_t n;
	/* certificate without key */
	char *nokey = testcert_pem(&leaf, &ca, false, &n);
	ck_assert_int_eq(tls_server_ctx_new(nokey, n, &ctx, &error), -1);
	ck_assert_str_eq(error, "no private key (-----BEGIN PRIVATE KEY-----) in the PEM data");
	free(nokey);
	/* key only */
	const char *k = strstr(pem, "-----BEGIN PRIVATE KEY-----");
	ck_assert_ptr_nonnull(k);
	ck_assert_int_eq(tls_server_ctx_new(k, strlen(k), &ctx, &error), -1);
	ck_assert_str_eq(error, "no certificate (-----BEGIN CERTIFICATE-----) in the PEM data");
	/* the key of another certificate */
	struct testcert mix = { other_leaf.key, leaf.cert };
	char *mixed = testcert_pem(&mix, NULL, true, &n);
	ck_assert_int_eq(tls_server_ctx_new(mixed, n, &ctx, &error), -1);
	ck_assert_str_eq(error, "the private key does not match the certificate");
	free(mixed);
	/* an encrypted key is not prompted for */
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, leaf.cert);
	PEM_write_bio_PKCS8PrivateKey(b, leaf.key, EVP_aes_128_cbc(), "pw", 2, NULL, NULL);
	char *data;
	long len = BIO_get_mem_data(b, &data);
	ck_assert_int_eq(tls_server_ctx_new(data, (size_t)len, &ctx, &error), -1);
	ck_assert_str_eq(error, "cannot read the private key (encrypted keys are not supported)");
	BIO_free(b);
	ck_assert_int_eq(tls_server_ctx_new("garbage\n", 8, &ctx, &error), -1);
	ck_assert_int_eq(tls_server_ctx_new("", 0, &ctx, &error), -1);
	ck_assert_int_eq(ERR_peek_error(), 0);
}
END_TEST

/* the client saw this certificate */
static bool
saw(struct tls_conn *cl, X509 *x)
{
	unsigned char got[32], want[32];
	unsigned int n;
	ck_assert(tls_conn_peer_sha256(cl, got));
	ck_assert(X509_digest(x, EVP_sha256(), want, &n));
	return memcmp(got, want, 32) == 0;
}

/* reload: sessions on the old certificate go on; new ones get the new one */
START_TEST(test_swap_keeps_sessions)
{
	struct tls_ctx *slot = server_ctx(pem, pem_len), *cctx;
	const char *error;
	ck_assert_int_eq(tls_client_ctx_new(TLS_CLIENT_VERIFY, cafile, &cctx, &error), 0);
	struct tls_conn *cl, *sv;
	pair(cctx, slot, HOST, &cl, &sv);
	ck_assert_int_eq(handshake(cl, sv), 0);

	/* a session mid-handshake on the old context as well */
	struct tls_conn *cl2, *sv2;
	pair(cctx, slot, HOST, &cl2, &sv2);
	ck_assert_int_eq(tls_conn_handshake(cl2), TLS_WANT_READ);
	move(cl2, sv2);

	int fd = tls_pem_memfd(pem2, pem2_len, &error);
	struct tls_ctx *fresh;
	ck_assert_int_eq(tls_server_ctx_from_fd(fd, &fresh, &error), 0);
	close(fd);
	tls_ctx_swap(&slot, fresh);
	ck_assert_ptr_eq(slot, fresh);

	transfer(cl, sv, 5000);
	transfer(sv, cl, 5000);
	ck_assert_int_eq(handshake(cl2, sv2), 0);
	transfer(cl2, sv2, 100);

	struct tls_conn *cl3, *sv3;
	pair(cctx, slot, HOST, &cl3, &sv3);
	ck_assert_int_eq(handshake(cl3, sv3), 0);
	/* which certificate each client saw */
	ck_assert(saw(cl, leaf.cert) && saw(cl2, leaf.cert));
	ck_assert(saw(cl3, leaf2.cert) && !saw(cl3, leaf.cert));
	ck_assert(!tls_conn_peer_sha256(sv3, (unsigned char[32]){ 0 }));
	tls_conn_free(cl);
	tls_conn_free(sv);
	tls_conn_free(cl2);
	tls_conn_free(sv2);	/* the last users of the old context: freed now (LSan) */
	tls_conn_free(cl3);
	tls_conn_free(sv3);
	tls_ctx_unref(slot);
	tls_ctx_unref(cctx);
}
END_TEST

static const struct {
	enum tls_client_mode mode;
	bool cafile;
	const char *name;	/* name asked */
	int which;		/* 0: our CA's leaf, 1: another CA's */
	int ok;			/* handshake completes */
	enum tls_peer_trust trust;
} clients[] = {
	{ TLS_CLIENT_VERIFY, true, HOST, 0, 1, TLS_PEER_VERIFIED },
	{ TLS_CLIENT_VERIFY, true, "other.example.test", 0, 0, 0 },
	{ TLS_CLIENT_VERIFY, true, HOST, 1, 0, 0 },
	{ TLS_CLIENT_ENCRYPT, true, HOST, 0, 1, TLS_PEER_VERIFIED },
	{ TLS_CLIENT_ENCRYPT, true, "other.example.test", 0, 1, TLS_PEER_TRUSTED },
	{ TLS_CLIENT_ENCRYPT, true, HOST, 1, 1, TLS_PEER_UNTRUSTED },
	{ TLS_CLIENT_MAY, false, HOST, 0, 1, TLS_PEER_UNTRUSTED },
	{ TLS_CLIENT_MAY, true, NULL, 0, 1, TLS_PEER_TRUSTED },
	{ TLS_CLIENT_MAY, true, "other.example.test", 1, 1, TLS_PEER_UNTRUSTED },
};

START_TEST(test_client_modes)
{
	struct tls_ctx *sctx = clients[_i].which == 0 ? server_ctx(pem, pem_len) :
	    server_ctx(pem_other, pem_other_len);
	struct tls_ctx *cctx;
	const char *error;
	ck_assert_int_eq(tls_client_ctx_new(clients[_i].mode,
	    clients[_i].cafile ? cafile : NULL, &cctx, &error), 0);
	ck_assert_int_eq(tls_ctx_client_mode(cctx), clients[_i].mode);
	struct tls_conn *cl, *sv;
	pair(cctx, sctx, clients[_i].name, &cl, &sv);
	int r = handshake(cl, sv);
	if (clients[_i].ok) {
		ck_assert_msg(r == 0, "%s", tls_conn_error(cl));
		ck_assert_int_eq(tls_conn_peer_trust(cl), clients[_i].trust);
	} else {
		ck_assert_int_eq(r, -1);
		ck_assert_msg(strstr(tls_conn_error(cl), "certificate verif") != NULL,
		    "%s", tls_conn_error(cl));
	}
	tls_conn_free(cl);
	tls_conn_free(sv);
	tls_ctx_unref(cctx);
	tls_ctx_unref(sctx);
}
END_TEST

START_TEST(test_client_ctx_errors)
{
	struct tls_ctx *ctx;
	const char *error;
	ck_assert_int_eq(tls_client_ctx_new(TLS_CLIENT_VERIFY, NULL, &ctx, &error), -1);
	ck_assert_str_eq(error, "tls verify needs a CA file");
	ck_assert_int_eq(tls_client_ctx_new(TLS_CLIENT_MAY, "/nonexistent/ca.pem", &ctx,
	    &error), -1);
	ck_assert_str_eq(error, "cannot load CA file /nonexistent/ca.pem");
}
END_TEST

/* garbage from the network: an error, never a crash or a hang */
START_TEST(test_garbage_input)
{
	struct tls_ctx *sctx = server_ctx(pem, pem_len);
	const char *error;
	struct tls_conn *sv = tls_conn_server(sctx, &error);
	const char *plain = "EHLO plaintext.example\r\n";
	tls_conn_feed(sv, plain, strlen(plain));
	ck_assert_int_eq(tls_conn_handshake(sv), TLS_ERROR);
	ck_assert_str_ne(tls_conn_error(sv), "no error");
	/* a full input buffer takes no more */
	char big[TLS_CONN_BUFSIZE + 100];
	memset(big, 0x16, sizeof(big));
	struct tls_conn *sv2 = tls_conn_server(sctx, &error);
	ck_assert_uint_eq(tls_conn_feed(sv2, big, sizeof(big)), TLS_CONN_BUFSIZE);
	ck_assert_uint_eq(tls_conn_feed(sv2, big, 10), 0);
	ck_assert_uint_eq(tls_conn_feed_room(sv2), 0);
	tls_conn_free(sv);
	tls_conn_free(sv2);
	tls_ctx_unref(sctx);
}
END_TEST

static Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_handshake_and_data);
	tcase_add_loop_test(tc, test_old_protocols_refused_openssl, 0, 3);
	tcase_add_loop_test(tc, test_old_protocols_refused_wire, 0, 3);
	tcase_add_loop_test(tc, test_weak_ciphers_refused, 0,
	    2 * sizeof(weak_ciphers) / sizeof(weak_ciphers[0]));
	tcase_add_test(tc, test_tls12_suite);
	tcase_add_test(tc, test_session_ticket_resumption);
	tcase_add_test(tc, test_client_session_resumed);
	tcase_add_test(tc, test_memfd);
	tcase_add_test(tc, test_pem_errors);
	tcase_add_test(tc, test_swap_keeps_sessions);
	tcase_add_loop_test(tc, test_client_modes, 0, sizeof(clients) / sizeof(clients[0]));
	tcase_add_test(tc, test_client_ctx_errors);
	tcase_add_test(tc, test_garbage_input);
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(tls_suite)
