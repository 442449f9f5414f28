/*
 * The I/O layer under every protocol (model: OpenSMTPD ioev.c/iobuf.c): a
 * non-blocking, buffered connection on a libev loop. The protocol code (the
 * SMTP session, the control server, the SMTP client of the delivery agents)
 * never sees the socket: it reads from the input buffer, appends to the output
 * buffer, and is told what happened through one callback with an event.
 *
 *   socket --read--> [engine] --> input buffer  --io_data/io_drop--> protocol
 *   socket <-write-- [engine] <-- output buffer <--io_write/io_printf-- protocol
 *
 * The engine is where TLS sits: the plain socket (io_fill() and io_drain() in
 * io.c call read() and write()), or, after io_start_tls(), a tls_conn
 * (common/tls.h, an engine on memory BIOs) in between: the read side reads at
 * most tls_conn_feed_room() octets, tls_conn_feed()s them and moves
 * tls_conn_read() plaintext into the input buffer; the write side
 * tls_conn_write()s the output buffer and send()s what tls_conn_take() gives;
 * the watchers follow tls_conn_pending(). The buffers, limits and events are
 * the same with or without TLS; the protocol above never sees ciphertext.
 *
 * Limits first: the input buffer never holds more than in_max octets (reading
 * pauses until the protocol takes some), the output buffer refuses to grow
 * past out_max (io_write fails with ENOBUFS), so a peer can neither flood us
 * nor make us queue without end by not reading. Idle connections hold no
 * buffers (10 000 idle SMTP clients must stay small).
 *
 * Events (the callback may io_free() the connection; io.c touches nothing of
 * it afterwards):
 *   IO_CONNECTED     io_connect() completed
 *   IO_DATAIN        new octets are in the input buffer
 *   IO_LOWAT         a write from the watcher left io_out_pending() <= lowat
 *                    (lowat 0: the output is flushed)
 *   IO_EOF           the peer closed its sending side (half-close): what is
 *                    buffered can still be read and replies can still be sent
 *   IO_TIMEOUT       no octet moved either way for io_set_timeout() seconds
 *   IO_ERROR         the connection failed (io_errno(): ECONNRESET, EPIPE,
 *                    ECONNREFUSED...; EPROTO for a TLS failure, whose reason
 *                    io_tls_error() gives); nothing more is read or written
 *   IO_TLSREADY      the TLS handshake io_start_tls() began completed: from
 *                    now on every octet either way goes through TLS
 * Calls made by the protocol (io_flush, io_write) never fire the callback:
 * they return -1 with errno instead, so no protocol code runs re-entrantly.
 *
 * A connection made with fd -1 is a memory pipe for unit tests and the fd -1
 * session mode: io_feed() puts octets in the input buffer, output stays in
 * the output buffer (io_out_data) until the test takes it.
 *
 * STARTTLS (RFC 3207, CVE-2011-0411): octets the client pipelined after the
 * STARTTLS command were sent in clear and must not be read as if they came
 * through TLS; io_discard_input() drops them before the handshake starts.
 */
#ifndef RELAYVISOR_IO_H
#define RELAYVISOR_IO_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct io;

enum io_event {
	IO_CONNECTED,
	IO_DATAIN,
	IO_LOWAT,
	IO_EOF,
	IO_TIMEOUT,
	IO_ERROR,
	IO_TLSREADY,
};

typedef void io_cb(struct io *io, enum io_event ev, void *arg);

/* defaults: input 16 KiB, output 256 KiB, low water 0, no timeout */
#define IO_IN_MAX_DEFAULT 16384
#define IO_OUT_MAX_DEFAULT (256 * 1024)

/* a connection on fd (made non-blocking; the io closes it when freed), or a
   memory pipe for fd -1; loop may be NULL for fd -1. NULL: out of memory */
struct io *io_new(struct ev_loop *loop, int fd, io_cb *cb, void *arg);
/* stop every watcher, drain what the kernel still holds for us (so close()
   sends no RST that could destroy our last reply), close the fd, free */
void io_free(struct io *io);
int io_fd(const struct io *io);
const char *io_event_name(enum io_event ev);

void io_set_limits(struct io *io, size_t in_max, size_t out_max);
void io_set_lowat(struct io *io, size_t lowat);
/* inactivity timeout in seconds, restarted by every octet moved; 0: none */
void io_set_timeout(struct io *io, double secs);
/* stop or resume reading from the socket (input stays buffered) */
void io_set_read(struct io *io, bool on);

/* non-blocking connect of an fd made with socket(): IO_CONNECTED or IO_ERROR
   follows; -1 with errno when it failed at once */
int io_connect(struct io *io, const struct sockaddr *sa, socklen_t salen);

/* input: what is buffered, and taking it */
const char *io_data(const struct io *io, size_t *len);
size_t io_datalen(const struct io *io);
void io_drop(struct io *io, size_t n);
/* drop every buffered input octet (STARTTLS); returns how many */
size_t io_discard_input(struct io *io);
/* the peer closed its side (IO_EOF came, or io_feed_eof for fd -1) */
bool io_eof(const struct io *io);
/* fd -1: octets as if read; returns how many fitted under in_max */
size_t io_feed(struct io *io, const void *buf, size_t len);
void io_feed_eof(struct io *io);

/* output: append (-1 with errno ENOBUFS over out_max, ENOMEM) */
int io_write(struct io *io, const void *buf, size_t len);
int io_printf(struct io *io, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * output: len octets of the file fd from offset off, after what the buffer
 * holds now and before what is written later, sent with sendfile(2) (no copy
 * through this process: a sealed memfd's body goes from its pages to the
 * socket). The io keeps its own descriptor (the caller may close fd at once);
 * the file must not shrink meanwhile. Only a plain socket connection without
 * a segment already pending takes one: -1 with ENOTSUP otherwise (TLS, fd -1),
 * and the caller writes the octets itself.
 */
int io_write_file(struct io *io, int fd, off_t off, size_t len);
size_t io_out_pending(const struct io *io);
/* the unsent output (fd -1: everything written) and dropping it */
const char *io_out_data(const struct io *io, size_t *len);
void io_out_drop(struct io *io, size_t n);
/* write what the socket takes now; the rest goes when it is writable.
   0: all written or waiting; -1 with errno: the connection failed */
int io_flush(struct io *io);
/* half-close our side once the output is flushed (shutdown SHUT_WR) */
void io_shutdown(struct io *io);

/* the errno of the failure IO_ERROR reported (or io_flush returned) */
int io_errno(const struct io *io);

/*
 * TLS, server side (STARTTLS after its 220, or implicit TLS at once): what the
 * output buffer holds now is still sent in clear, everything after through
 * TLS on ctx (referenced for as long as the connection lives). The input
 * buffer must be empty (io_discard_input first): octets already read came in
 * clear. IO_TLSREADY or IO_ERROR follows. -1 with errno: EINVAL (fd -1, TLS
 * already on, input or a file segment pending), ENOMEM.
 */
struct tls_ctx;
int io_start_tls(struct io *io, struct tls_ctx *ctx);
/* the same, client side (outbound STARTTLS of the delivery agents): the
   ClientHello goes at once; servername is SNI and, with a verify context, the
   name the certificate must match */
int io_start_tls_client(struct io *io, struct tls_ctx *ctx, const char *servername);
/* the same, offering session s (tls.h; NULL: none) for resumption */
struct tls_session;
int io_start_tls_client_resume(struct io *io, struct tls_ctx *ctx,
    const char *servername, struct tls_session *s);
/* client, once active: the session to resume next time (a new reference, or
   NULL), and whether this handshake resumed one */
struct tls_session *io_tls_session(const struct io *io);
bool io_tls_reused(const struct io *io);
/* TLS is on and its handshake done */
bool io_tls_active(const struct io *io);
/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" once active */
void io_tls_describe(const struct io *io, char *buf, size_t len);
/* client side, once active: what the server's certificate proved (enum
   tls_peer_trust of common/tls.h: Anonymous, Untrusted, Trusted, Verified) */
int io_tls_peer_trust(const struct io *io);
/* why the TLS handshake or a record failed (after IO_ERROR with EPROTO) */
const char *io_tls_error(const struct io *io);

#endif
