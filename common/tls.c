/*
 * TLS contexts from in-memory PEM and the non-blocking engine on a BIO pair (see
 * tls.h for how the I/O layer drives it). OpenSSL's error queue is shared by
 * every session of the process, so each call clears it first and turns what it
 * left into the connection's own error text.
 */
#include "common/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TLS_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

struct tls_ctx {
	SSL_CTX *ssl;
	int refs;
	bool server;
	enum tls_client_mode mode;
};

struct tls_conn {
	struct tls_ctx *ctx;
	SSL *ssl;
	BIO *net;		/* our end of the pair: ciphertext in and out */
	bool established;
	bool chain_bad;		/* verification saw an error other than the name */
	bool name_mismatch;
	bool name_asked;
	SSL_SESSION *session;	/* client: the latest the server gave us */
	char err[256];
};

static char ctx_err[512];

/* the first error OpenSSL queued, prefixed by what we were doing */
static const char *
ssl_error_text(char *buf, size_t len, const char *what)
{
	unsigned long e = ERR_get_error();
	char detail[200] = "unknown error";
	if (e != 0)
		ERR_error_string_n(e, detail, sizeof(detail));
	ERR_clear_error();
	snprintf(buf, len, "%s: %s", what, detail);
	return buf;
}

int
tls_pem_memfd(const void *pem, size_t len, const char **error_r)
{
	if (len > TLS_PEM_MAX) {
		*error_r = "certificate and key larger than 1 MB";
		return -1;
	}
	int fd = memfd_create("relayvisor-tls", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd == -1) {
		*error_r = "memfd_create failed";
		return -1;
	}
	const char *p = pem;
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, p + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			*error_r = "write to memfd failed";
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, TLS_SEALS) == -1) {
		*error_r = "sealing the memfd failed";
		close(fd);
		return -1;
	}
	return fd;
}

int
tls_pem_read_fd(int fd, char **pem_r, size_t *len_r, const char **error_r)
{
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals == -1 || (seals & TLS_SEALS) != TLS_SEALS) {
		*error_r = "the certificate descriptor is not a sealed memfd";
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == -1) {
		*error_r = "fstat of the certificate memfd failed";
		return -1;
	}
	if (st.st_size <= 0 || st.st_size > TLS_PEM_MAX) {
		*error_r = st.st_size <= 0 ? "the certificate memfd is empty" :
		    "certificate and key larger than 1 MB";
		return -1;
	}
	size_t len = (size_t)st.st_size;
	char *buf = malloc(len + 1);
	if (buf == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t n = pread(fd, buf + off, len - off, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			tls_pem_free(buf, len);
			*error_r = "reading the certificate memfd failed";
			return -1;
		}
		off += (size_t)n;
	}
	buf[len] = '\0';
	*pem_r = buf;
	*len_r = len;
	return 0;
}

void
tls_pem_free(char *pem, size_t len)
{
	if (pem == NULL)
		return;
	OPENSSL_cleanse(pem, len);
	free(pem);
}

/* a key that needs a passphrase is refused rather than prompted for */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

static struct tls_ctx *
ctx_wrap(SSL_CTX *ssl, bool server, enum tls_client_mode mode)
{
	struct tls_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->ssl = ssl;
	c->refs = 1;
	c->server = server;
	c->mode = mode;
	return c;
}

/* the leaf, its chain and the key from one bundle into ctx */
static int
ctx_load_pem(SSL_CTX *ctx, const void *pem, size_t len, const char **error_r)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL) {
		*error_r = ssl_error_text(ctx_err, sizeof(ctx_err), "BIO_new_mem_buf");
		return -1;
	}
	int ncert = 0, rc = -1;
	X509 *x;
	while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
		int ok = ncert == 0 ? SSL_CTX_use_certificate(ctx, x) :
		    SSL_CTX_add0_chain_cert(ctx, x);
		if (ncert == 0 || !ok)
			X509_free(x);
		if (!ok) {
			*error_r = ssl_error_text(ctx_err, sizeof(ctx_err),
			    "cannot use the certificate");
			goto out;
		}
		ncert++;
	}
	ERR_clear_error();	/* the end of the certificates is an "error" */
	if (ncert == 0) {
		*error_r = "no certificate (-----BEGIN CERTIFICATE-----) in the PEM data";
		goto out;
	}
	BIO_free(bio);
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
		*error_r = ssl_error_text(ctx_err, sizeof(ctx_err), "BIO_new_mem_buf");
		return -1;
	}
	EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (key == NULL) {
		ERR_clear_error();
		*error_r = memmem(pem, len, "PRIVATE KEY-----", 16) == NULL ?
		    "no private key (-----BEGIN PRIVATE KEY-----) in the PEM data" :
		    "cannot read the private key (encrypted keys are not supported)";
		goto out;
	}
	int ok = SSL_CTX_use_PrivateKey(ctx, key);
	EVP_PKEY_free(key);
	if (!ok) {
		int reason = ERR_GET_REASON(ERR_peek_error());
		if (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH) {
			ERR_clear_error();
			*error_r = "the private key does not match the certificate";
		} else {
			*error_r = ssl_error_text(ctx_err, sizeof(ctx_err),
			    "cannot use the key");
		}
		goto out;
	}
	if (!SSL_CTX_check_private_key(ctx)) {
		ERR_clear_error();
		*error_r = "the private key does not match the certificate";
		goto out;
	}
	rc = 0;
out:
	BIO_free(bio);
	return rc;
}

/* what every context of ours shares: versions, no compression, buffer modes */
static int
ctx_common(SSL_CTX *ctx, const char *ciphers, const char **error_r)
{
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, ciphers)) {
		*error_r = ssl_error_text(ctx_err, sizeof(ctx_err), "TLS settings");
		return -1;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	return 0;
}

int
tls_server_ctx_new(const void *pem, size_t len, struct tls_ctx **ctx_r,
    const char **error_r)
{
	ERR_clear_error();
	if (len == 0 || len > TLS_PEM_MAX) {
		*error_r = len == 0 ? "empty certificate data" :
		    "certificate and key larger than 1 MB";
		return -1;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = ssl_error_text(ctx_err, sizeof(ctx_err), "SSL_CTX_new");
		return -1;
	}
	static const unsigned char sid_ctx[] = "relayvisor";
	if (ctx_common(ctx, TLS_CIPHERS_SERVER, error_r) == -1)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET | SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_dh_auto(ctx, 1);
	if (ctx_load_pem(ctx, pem, len, error_r) == -1)
		goto fail;
	if ((*ctx_r = ctx_wrap(ctx, true, TLS_CLIENT_MAY)) == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -1;
}

int
tls_server_ctx_from_fd(int fd, struct tls_ctx **ctx_r, const char **error_r)
{
	char *pem;
	size_t len;
	if (tls_pem_read_fd(fd, &pem, &len, error_r) == -1)
		return -1;
	int r = tls_server_ctx_new(pem, len, ctx_r, error_r);
	tls_pem_free(pem, len);
	return r;
}

/* verification records what failed; only verify mode lets a failure end the
   handshake, the others just log the peer as Untrusted */
static int
verify_cb(int ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
	if (c == NULL)
		return ok;
	if (!ok) {
		if (X509_STORE_CTX_get_error(store) == X509_V_ERR_HOSTNAME_MISMATCH)
			c->name_mismatch = true;
		else
			c->chain_bad = true;
	}
	return c->ctx->mode == TLS_CLIENT_VERIFY ? ok : 1;
}

/* client: keep the server's newest session in the connection (no OpenSSL
   cache: the delivery agent keeps its own, by server and level) */
static int
client_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tls_conn *c = SSL_get_app_data(ssl);
	if (c == NULL)
		return 0;
	SSL_SESSION_free(c->session);
	c->session = sess;
	return 1;
}

int
tls_client_ctx_new(enum tls_client_mode mode, const char *cafile,
    struct tls_ctx **ctx_r, const char **error_r)
{
	ERR_clear_error();
	if (mode == TLS_CLIENT_VERIFY && cafile == NULL) {
		*error_r = "tls verify needs a CA file";
		return -1;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*error_r = ssl_error_text(ctx_err, sizeof(ctx_err), "SSL_CTX_new");
		return -1;
	}
	if (ctx_common(ctx, TLS_CIPHERS_CLIENT, error_r) == -1)
		goto fail;
	if (cafile != NULL && !SSL_CTX_load_verify_locations(ctx, cafile, NULL)) {
		snprintf(ctx_err, sizeof(ctx_err), "cannot load CA file %s", cafile);
		ERR_clear_error();
		*error_r = ctx_err;
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, client_new_session);
	if ((*ctx_r = ctx_wrap(ctx, false, mode)) == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -1;
}

enum tls_client_mode
tls_ctx_client_mode(const struct tls_ctx *ctx)
{
	return ctx->mode;
}

void
tls_ctx_ref(struct tls_ctx *ctx)
{
	ctx->refs++;
}

void
tls_ctx_unref(struct tls_ctx *ctx)
{
	if (ctx == NULL || --ctx->refs > 0)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

void
tls_ctx_swap(struct tls_ctx **slot, struct tls_ctx *fresh)
{
	struct tls_ctx *old = *slot;
	*slot = fresh;
	tls_ctx_unref(old);
}

static struct tls_conn *
conn_new(struct tls_ctx *ctx, const char **error_r)
{
	ERR_clear_error();
	struct tls_conn *c = calloc(1, sizeof(*c));
	BIO *inner = NULL;
	if (c == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	if ((c->ssl = SSL_new(ctx->ssl)) == NULL ||
	    !BIO_new_bio_pair(&inner, TLS_CONN_BUFSIZE, &c->net, TLS_CONN_BUFSIZE)) {
		*error_r = ssl_error_text(ctx_err, sizeof(ctx_err), "TLS session");
		SSL_free(c->ssl);
		free(c);
		return NULL;
	}
	SSL_set_bio(c->ssl, inner, inner);
	SSL_set_app_data(c->ssl, c);
	c->ctx = ctx;
	tls_ctx_ref(ctx);
	return c;
}

struct tls_conn *
tls_conn_server(struct tls_ctx *ctx, const char **error_r)
{
	struct tls_conn *c = conn_new(ctx, error_r);
	if (c != NULL)
		SSL_set_accept_state(c->ssl);
	return c;
}

struct tls_conn *
tls_conn_client(struct tls_ctx *ctx, const char *servername, const char **error_r)
{
	struct tls_conn *c = conn_new(ctx, error_r);
	if (c == NULL)
		return NULL;
	/* RFC 6066 3: no address literal as SNI; the name check takes both */
	unsigned char addr[16];
	bool literal = servername != NULL && (inet_pton(AF_INET, servername, addr) == 1 ||
	    inet_pton(AF_INET6, servername, addr) == 1);
	if (servername != NULL && ((!literal &&
	    !SSL_set_tlsext_host_name(c->ssl, servername)) ||
	    !SSL_set1_host(c->ssl, servername))) {
		*error_r = ssl_error_text(ctx_err, sizeof(ctx_err), "server name");
		tls_conn_free(c);
		return NULL;
	}
	c->name_asked = servername != NULL;
	SSL_set_connect_state(c->ssl);
	return c;
}

void
tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);
	BIO_free(c->net);
	SSL_SESSION_free(c->session);
	tls_ctx_unref(c->ctx);
	free(c);
}

struct tls_session *
tls_conn_session(const struct tls_conn *c)
{
	if (c->session == NULL || !SSL_SESSION_is_resumable(c->session) ||
	    !SSL_SESSION_up_ref(c->session))
		return NULL;
	return (struct tls_session *)c->session;
}

int
tls_conn_set_session(struct tls_conn *c, struct tls_session *s)
{
	ERR_clear_error();
	if (s == NULL || SSL_set_session(c->ssl, (SSL_SESSION *)s))
		return 0;
	ERR_clear_error();
	return -1;
}

bool
tls_conn_reused(const struct tls_conn *c)
{
	return SSL_session_reused(c->ssl) == 1;
}

void
tls_session_free(struct tls_session *s)
{
	SSL_SESSION_free((SSL_SESSION *)s);
}

size_t
tls_conn_feed(struct tls_conn *c, const void *buf, size_t len)
{
	size_t room = BIO_ctrl_get_write_guarantee(c->net);
	if (len > room)
		len = room;
	if (len == 0)
		return 0;
	int n = BIO_write(c->net, buf, (int)len);
	return n > 0 ? (size_t)n : 0;
}

size_t
tls_conn_feed_room(const struct tls_conn *c)
{
	return BIO_ctrl_get_write_guarantee(c->net);
}

size_t
tls_conn_pending(const struct tls_conn *c)
{
	return BIO_ctrl_pending(c->net);
}

size_t
tls_conn_take(struct tls_conn *c, void *buf, size_t cap)
{
	if (cap > TLS_CONN_BUFSIZE)
		cap = TLS_CONN_BUFSIZE;
	int n = cap > 0 ? BIO_read(c->net, buf, (int)cap) : 0;
	return n > 0 ? (size_t)n : 0;
}

/* an SSL_* result as one of our statuses, with the error text when fatal */
static int
conn_status(struct tls_conn *c, int ret, const char *what)
{
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_CLOSED;
	default:
		break;
	}
	long v = SSL_get_verify_result(c->ssl);
	if (ERR_peek_error() == 0 && v != X509_V_OK) {
		snprintf(c->err, sizeof(c->err), "%s: certificate verification failed: %s",
		    what, X509_verify_cert_error_string(v));
		return TLS_ERROR;
	}
	if (ERR_peek_error() == 0) {
		snprintf(c->err, sizeof(c->err), "%s: connection closed without close_notify",
		    what);
		return TLS_ERROR;
	}
	ssl_error_text(c->err, sizeof(c->err), what);
	return TLS_ERROR;
}

int
tls_conn_handshake(struct tls_conn *c)
{
	if (c->established)
		return TLS_DONE;
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->established = true;
		return TLS_DONE;
	}
	return conn_status(c, r, "TLS handshake");
}

bool
tls_conn_established(const struct tls_conn *c)
{
	return c->established;
}

ssize_t
tls_conn_read(struct tls_conn *c, void *buf, size_t cap)
{
	size_t got = 0;
	if (cap == 0)
		return 0;
	ERR_clear_error();
	int r = SSL_read_ex(c->ssl, buf, cap, &got);
	if (r == 1) {
		c->established = true;
		return (ssize_t)got;
	}
	return conn_status(c, r, "TLS read");
}

ssize_t
tls_conn_write(struct tls_conn *c, const void *buf, size_t len)
{
	size_t done = 0;
	if (len == 0)
		return 0;
	ERR_clear_error();
	int r = SSL_write_ex(c->ssl, buf, len, &done);
	if (r == 1) {
		c->established = true;
		return (ssize_t)done;
	}
	return conn_status(c, r, "TLS write");
}

void
tls_conn_close(struct tls_conn *c)
{
	ERR_clear_error();
	if (c->established)
		(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
}

const char *
tls_conn_error(const struct tls_conn *c)
{
	return c->err[0] ? c->err : "no error";
}

void
tls_conn_describe(const struct tls_conn *c, char *buf, size_t len)
{
	int alg = 0;
	int bits = SSL_get_cipher_bits(c->ssl, &alg);
	snprintf(buf, len, "%s with cipher %s (%d/%d bits)", SSL_get_version(c->ssl),
	    SSL_get_cipher_name(c->ssl), bits, alg);
}

enum tls_peer_trust
tls_conn_peer_trust(const struct tls_conn *c)
{
	if (SSL_get0_peer_certificate(c->ssl) == NULL)
		return TLS_PEER_ANONYMOUS;
	if (c->chain_bad || (SSL_get_verify_result(c->ssl) != X509_V_OK && !c->name_mismatch))
		return TLS_PEER_UNTRUSTED;
	if (c->name_asked && !c->name_mismatch)
		return TLS_PEER_VERIFIED;
	return TLS_PEER_TRUSTED;
}

const char *
tls_peer_trust_name(enum tls_peer_trust t)
{
	switch (t) {
	case TLS_PEER_ANONYMOUS:
		return "Anonymous";
	case TLS_PEER_UNTRUSTED:
		return "Untrusted";
	case TLS_PEER_TRUSTED:
		return "Trusted";
	case TLS_PEER_VERIFIED:
		return "Verified";
	}
	return "Untrusted";
}

bool
tls_conn_peer_sha256(const struct tls_conn *c, unsigned char out[32])
{
	X509 *x = SSL_get0_peer_certificate(c->ssl);
	unsigned int n = 0;
	return x != NULL && X509_digest(x, EVP_sha256(), out, &n) && n == 32;
}
