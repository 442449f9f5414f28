/*
 * tls_source: smtp-source with STARTTLS (smtp-source speaks no TLS), in C with
 * OpenSSL so that the client is not what limits the bench (the Python client it
 * replaces used more CPU per message than either server). SESSIONS worker
 * processes take messages from a shared counter until MESSAGES are sent, each on
 * its own connection: greeting, EHLO, STARTTLS, a full handshake, EHLO, MAIL,
 * RCPT, DATA of SIZE octets, QUIT. The same options as smtp-source for what
 * bench/smtp_runs.py passes:
 *
 *     tls_source -s 20 -m 2000 -l 1024 -f s@x -M helo -t u@local.test HOST:PORT
 *
 * No certificate is checked (the bench's is self-signed); TLS 1.2 minimum, the
 * library's default ciphers; no session cache and no tickets, so every
 * connection pays a full handshake, against every server alike. Exit 1, with
 * the reason on stderr, on any reply that is not the expected one.
 *
 * Built by bench/smtp.sh: cc -O2 -o tls_source bench/tls_source.c -lssl -lcrypto
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct conn {
	int fd;
	SSL *ssl;
	char buf[4096];
	size_t off, len;
};

static const char *helo = "bench.example", *sender = "s@bench.example",
    *rcpt = "u@local.test";
static char *body;
static size_t body_len;
static struct sockaddr_in server;
static SSL_CTX *ctx;

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "tls_source: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
send_all(struct conn *c, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n;
		if (c->ssl != NULL) {
			int k = SSL_write(c->ssl, p, len > 1 << 30 ? 1 << 30 : (int)len);
			if (k <= 0)
				die("SSL_write: %s", ERR_error_string(ERR_get_error(), NULL));
			n = k;
		} else {
			n = send(c->fd, p, len, MSG_NOSIGNAL);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				die("send: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
}

static void
fill(struct conn *c)
{
	if (c->off > 0) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->len == sizeof(c->buf))
		die("reply line too long");
	ssize_t n;
	if (c->ssl != NULL) {
		int k = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len));
		n = k > 0 ? k : 0;
	} else {
		do
			n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		while (n == -1 && errno == EINTR);
	}
	if (n <= 0)
		die("connection closed while waiting for a reply");
	c->len += (size_t)n;
}

/* the code of the next complete reply (all its lines read) */
static int
reply(struct conn *c, char *last, size_t lastlen)
{
	for (;;) {
		char *start = c->buf + c->off;
		char *nl = memchr(start, '\n', c->len - c->off);
		if (nl == NULL) {
			fill(c);
			continue;
		}
		size_t n = (size_t)(nl - start) + 1;
		c->off += n;
		if (n < 4)
			die("malformed reply");
		if (start[3] == '-')
			continue;
		snprintf(last, lastlen, "%.*s", (int)(n > 200 ? 200 : n - 1), start);
		return atoi(start);
	}
}

static void
expect(struct conn *c, int code)
{
	char line[256];
	int got = reply(c, line, sizeof(line));
	if (got != code)
		die("expected %d, got \"%s\"", code, line);
}

static void
cmd(struct conn *c, int code, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		die("command too long");
	send_all(c, line, (size_t)n);
	expect(c, code);
}

static void
one_message(void)
{
	struct conn c = { .fd = -1 };
	c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c.fd == -1)
		die("socket: %s", strerror(errno));
	int one = 1;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c.fd, (struct sockaddr *)&server, sizeof(server)) == -1)
		die("connect: %s", strerror(errno));
	expect(&c, 220);
	cmd(&c, 250, "EHLO %s\r\n", helo);
	cmd(&c, 220, "STARTTLS\r\n");
	if (c.off != c.len)
		die("octets after the STARTTLS reply");
	if ((c.ssl = SSL_new(ctx)) == NULL || SSL_set_fd(c.ssl, c.fd) != 1)
		die("SSL_new failed");
	if (SSL_connect(c.ssl) != 1)
		die("handshake: %s", ERR_error_string(ERR_get_error(), NULL));
	if (SSL_session_reused(c.ssl))
		die("a session was resumed");
	cmd(&c, 250, "EHLO %s\r\n", helo);
	cmd(&c, 250, "MAIL FROM:<%s>\r\n", sender);
	cmd(&c, 250, "RCPT TO:<%s>\r\n", rcpt);
	cmd(&c, 354, "DATA\r\n");
	send_all(&c, body, body_len);
	expect(&c, 250);
	cmd(&c, 221, "QUIT\r\n");
	SSL_shutdown(c.ssl);
	SSL_free(c.ssl);
	close(c.fd);
}

static void
usage(void)
{
	fprintf(stderr, "usage: tls_source [-s sessions] [-m messages] [-l size] "
	    "[-f sender] [-M helo] [-t rcpt] HOST:PORT\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	long sessions = 1, messages = 1, size = 1024;
	int ch;

	while ((ch = getopt(argc, argv, "s:m:l:f:M:t:")) != -1) {
		switch (ch) {
		case 's': sessions = strtol(optarg, NULL, 10); break;
		case 'm': messages = strtol(optarg, NULL, 10); break;
		case 'l': size = strtol(optarg, NULL, 10); break;
		case 'f': sender = optarg; break;
		case 'M': helo = optarg; break;
		case 't': rcpt = optarg; break;
		default: usage();
		}
	}
	if (optind + 1 != argc || sessions < 1 || sessions > 1000 || messages < 1 ||
	    size < 0 || size > 100L * 1024 * 1024)
		usage();
	char *host = argv[optind], *colon = strrchr(host, ':');
	if (colon == NULL)
		usage();
	*colon = '\0';
	server.sin_family = AF_INET;
	server.sin_port = htons((unsigned short)strtol(colon + 1, NULL, 10));
	if (inet_pton(AF_INET, host, &server.sin_addr) != 1)
		die("%s: not an IPv4 address", host);

	/* the message: as bench/tls_source.py and smtp-source -l build it */
	static const char line[] =
	    "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n";
	size_t nlines = (size_t)size / (sizeof(line) - 1);
	if (nlines == 0)
		nlines = 1;
	static const char head[] = "Subject: bench\r\n\r\n";
	body_len = sizeof(head) - 1 + nlines * (sizeof(line) - 1) + 3;
	if ((body = malloc(body_len)) == NULL)
		die("out of memory");
	char *p = body;
	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	for (size_t i = 0; i < nlines; i++, p += sizeof(line) - 1)
		memcpy(p, line, sizeof(line) - 1);
	memcpy(p, ".\r\n", 3);

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);

	/* the next message to send, shared by the workers */
	long *next = mmap(NULL, sizeof(*next), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (next == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	*next = 0;
	if (sessions > messages)
		sessions = messages;
	pid_t *kids = calloc((size_t)sessions, sizeof(*kids));
	if (kids == NULL)
		die("out of memory");
	for (long i = 0; i < sessions; i++) {
		pid_t pid = fork();
		if (pid == -1) {
			for (long k = 0; k < i; k++)
				kill(kids[k], SIGTERM);
			die("fork: %s", strerror(errno));
		}
		if (pid == 0) {
			while (__atomic_fetch_add(next, 1, __ATOMIC_RELAXED) < messages)
				one_message();
			_exit(0);
		}
		kids[i] = pid;
	}
	int failed = 0;
	for (long i = 0; i < sessions; i++) {
		int st;
		while (waitpid(kids[i], &st, 0) == -1 && errno == EINTR)
			;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			if (!failed)	/* the others would go on against a broken server */
				for (long k = 0; k < sessions; k++)
					if (k != i)
						kill(kids[k], SIGTERM);
			failed = 1;
		}
	}
	free(kids);
	free(body);
	SSL_CTX_free(ctx);
	return failed;
}
