/*
 * TLS for relayvisor (OpenSSL 3): contexts built from PEM held in memory, and a
 * non-blocking engine that never touches a socket, for the buffered I/O layer to
 * put under a session (OpenSMTPD io_accept_tls / io_connect_tls).
 *
 * Keys travel as a sealed memfd: the supervisor reads the certificate chain and
 * the key (as root, files a listener must never open), tls_pem_memfd() seals them,
 * the listener inherits the fd and tls_server_ctx_from_fd() builds its context
 * before it is confined. On reload it gets a new fd and tls_ctx_swap() replaces the
 * context: sessions already in TLS keep the old one (each engine holds a
 * reference) until they end.
 *
 * The engine (struct tls_conn) is driven by the I/O layer like this:
 *
 *   socket readable  -> read() into a buffer, tls_conn_feed() the ciphertext
 *                       (it may accept less when its input buffer is full: keep
 *                       the rest and feed it after the next tls_conn_read)
 *   then             -> tls_conn_handshake() until TLS_DONE, afterwards
 *                       tls_conn_read() plaintext for the session
 *   session output   -> tls_conn_write() plaintext (partial writes are normal)
 *   after every call -> tls_conn_take() the ciphertext it produced and write() it
 *                       to the socket; poll for writable while tls_conn_pending()
 *   TLS_WANT_READ    -> nothing to do until more ciphertext is fed
 *   TLS_WANT_WRITE   -> the engine's output buffer is full: take() and send first
 *   TLS_CLOSED       -> the peer sent close_notify: no more plaintext comes
 *   TLS_ERROR        -> fatal; tls_conn_error() says why (a log line); the
 *                       pending ciphertext may hold an alert worth sending
 *
 * Both buffers are bounded (TLS_CONN_BUFSIZE each way), so a peer cannot grow a
 * session's memory through the engine. The engine keeps no reference to caller
 * buffers between calls: the I/O layer may move its buffers freely.
 */
#ifndef RELAYVISOR_TLS_H
#define RELAYVISOR_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* a PEM bundle (chain + key) larger than this is refused */
#define TLS_PEM_MAX (1024 * 1024)
/* ciphertext buffered inside an engine, each direction */
#define TLS_CONN_BUFSIZE (64 * 1024)
/* TLS 1.2 suites: forward secrecy and AEAD only, ECDHE before DHE (TLS 1.3 suites
   are OpenSSL's defaults, all AEAD) */
#define TLS_CIPHERS_SERVER							\
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"		\
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"		\
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"		\
	"DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305:"			\
	"DHE-RSA-AES128-GCM-SHA256"
/* outbound: the same preference, then whatever else is not weak, since a
   receiving MTA with only CBC suites is still better encrypted than not */
#define TLS_CIPHERS_CLIENT							\
	TLS_CIPHERS_SERVER ":HIGH:!aNULL:!eNULL:!EXPORT:!RC4:!3DES:!DES:!MD5:!PSK:!SRP:!DSS:!CAMELLIA:!ARIA"

struct tls_ctx;
struct tls_conn;

/* delivery.tls: may (opportunistic, any certificate), encrypt (TLS required, any
   certificate), verify (TLS required, chain to the CA file and the host name) */
enum tls_client_mode { TLS_CLIENT_MAY, TLS_CLIENT_ENCRYPT, TLS_CLIENT_VERIFY };

enum tls_status {
	TLS_DONE = 0,		/* handshake complete / operation done */
	TLS_WANT_READ = -2,
	TLS_WANT_WRITE = -3,
	TLS_CLOSED = -4,
	TLS_ERROR = -1,
};

/* What a client learnt of the server's certificate (Postfix's TLS log words) */
enum tls_peer_trust {
	TLS_PEER_ANONYMOUS,	/* no certificate */
	TLS_PEER_UNTRUSTED,	/* chain not verified */
	TLS_PEER_TRUSTED,	/* chain verified, name not matched (or none asked) */
	TLS_PEER_VERIFIED,	/* chain verified and the name matched */
};

/*
 * Sealed memfds for key material. tls_pem_memfd: a memfd holding len bytes,
 * sealed against write, shrink, grow and further sealing; -1 with *error_r.
 * tls_pem_read_fd: the bytes of such an fd (refused when not sealed that way, or
 * larger than TLS_PEM_MAX); the caller frees with tls_pem_free (wipes them).
 */
int tls_pem_memfd(const void *pem, size_t len, const char **error_r);
int tls_pem_read_fd(int fd, char **pem_r, size_t *len_r, const char **error_r);
void tls_pem_free(char *pem, size_t len);
/* tls: {cert, key}: both files as one bundle (tls_pem_free it); a file that is
   not regular, is writable by others than its owner or is owned by another user
   than root or us is refused (common/tls_files.c) */
int tls_pem_load_files(const char *cert, const char *key, char **pem_r,
    size_t *len_r, const char **error_r);
/* the same, checked by building a server context, as a sealed memfd */
int tls_pem_files_memfd(const char *cert, const char *key, const char **error_r);

/*
 * A server context from one PEM bundle: the certificate first, then its chain, and
 * the private key (any order after the certificate; an encrypted key is refused).
 * TLS 1.2 minimum, TLS_CIPHERS_SERVER with the server's preference, session
 * tickets on, compression and renegotiation off. -1 with *error_r (a static
 * buffer, valid until the next call).
 */
int tls_server_ctx_new(const void *pem, size_t len, struct tls_ctx **ctx_r,
    const char **error_r);
/* the same from a sealed memfd (tls_pem_memfd); the fd stays open */
int tls_server_ctx_from_fd(int fd, struct tls_ctx **ctx_r, const char **error_r);
/* outbound context; cafile is required for TLS_CLIENT_VERIFY and used (when given)
   by the others to tell Trusted from Untrusted */
int tls_client_ctx_new(enum tls_client_mode mode, const char *cafile,
    struct tls_ctx **ctx_r, const char **error_r);
enum tls_client_mode tls_ctx_client_mode(const struct tls_ctx *ctx);

void tls_ctx_ref(struct tls_ctx *ctx);
void tls_ctx_unref(struct tls_ctx *ctx);
/* reload: *slot becomes fresh (whose reference the slot takes over); the old
   context is released, and freed once the last session using it ends */
void tls_ctx_swap(struct tls_ctx **slot, struct tls_ctx *fresh);

/* an engine on ctx (which it references); servername: SNI and, in verify mode, the
   name the certificate must match (NULL: none). NULL with *error_r. */
struct tls_conn *tls_conn_server(struct tls_ctx *ctx, const char **error_r);
struct tls_conn *tls_conn_client(struct tls_ctx *ctx, const char *servername,
    const char **error_r);
void tls_conn_free(struct tls_conn *c);

/* ciphertext from the network: returns how much was taken (0 when full) */
size_t tls_conn_feed(struct tls_conn *c, const void *buf, size_t len);
/* how much tls_conn_feed would take now (read no more than this from the socket) */
size_t tls_conn_feed_room(const struct tls_conn *c);
/* ciphertext for the network: bytes waiting, and up to cap of them */
size_t tls_conn_pending(const struct tls_conn *c);
size_t tls_conn_take(struct tls_conn *c, void *buf, size_t cap);

/* drives the handshake: TLS_DONE, TLS_WANT_READ, TLS_WANT_WRITE or TLS_ERROR */
int tls_conn_handshake(struct tls_conn *c);
bool tls_conn_established(const struct tls_conn *c);
/* plaintext: > 0 octets, or TLS_WANT_READ, TLS_WANT_WRITE, TLS_CLOSED, TLS_ERROR */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t cap);
ssize_t tls_conn_write(struct tls_conn *c, const void *buf, size_t len);
/* queue our close_notify (then take() it out) */
void tls_conn_close(struct tls_conn *c);
/* the last error, for a log line */
const char *tls_conn_error(const struct tls_conn *c);
/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" (Postfix's words) */
void tls_conn_describe(const struct tls_conn *c, char *buf, size_t len);
/* client side, after the handshake */
enum tls_peer_trust tls_conn_peer_trust(const struct tls_conn *c);
const char *tls_peer_trust_name(enum tls_peer_trust t);	/* "Verified", ... */
/*
 * Client session resumption (Postfix's smtp_tls_session_cache): the latest session
 * the server handed this connection (a TLS 1.3 ticket arrives after the handshake,
 * with the first reply), for the caller's cache of sessions by server and TLS
 * level. tls_conn_session: a new reference, NULL when there is none to resume;
 * tls_conn_set_session: before the handshake (the session stays the caller's);
 * tls_conn_reused: the handshake resumed one.
 */
struct tls_session;
struct tls_session *tls_conn_session(const struct tls_conn *c);
int tls_conn_set_session(struct tls_conn *c, struct tls_session *s);
bool tls_conn_reused(const struct tls_conn *c);
void tls_session_free(struct tls_session *s);
/* SHA-256 of the peer's certificate (Postfix's fingerprint= in verbose logs);
   false when the peer sent none */
bool tls_conn_peer_sha256(const struct tls_conn *c, unsigned char out[32]);

#endif
