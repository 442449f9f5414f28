/*
 * libFuzzer target: a whole SMTP session fed arbitrary bytes through the session's
 * reader (session_feed on an fd -1 session, no sockets), with group commits into a
 * real spool. The first input octet picks the client (LAN or outside) and how the
 * rest is cut into reads, so the reader sees every split. Whatever arrives, every
 * line the server writes must be a well-formed reply: three digits, ' ' or '-',
 * CRLF-terminated, at most 512 octets (RFC 5321 4.5.3.1.5).
 *
 * The spool lives on /dev/shm (an fsync there costs nothing) and is wiped every
 * few thousand inputs so a long run does not fill memory.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/spool.h"
#include "instances/session.h"
#include "instances/smtpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static struct config *cfg;
static struct spool *sp;
static struct smtpd *sd;
static unsigned runs;

static void
fuzz_spool_reset(void)
{
	char cmd[128];
	const char *err;

	if (sp != NULL)
		spool_close(sp);
	snprintf(cmd, sizeof(cmd), "rm -rf %s/spool", dir);
	if (system(cmd) != 0)
		abort();
	if (spool_open(cfg->server.spool, 64 << 20, &sp, &err) == -1) {
		fprintf(stderr, "spool_open: %s\n", err);
		abort();
	}
	smtpd_set_spool(sd, sp);
}

static void
fuzz_cleanup(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

static void
fuzz_init(void)
{
	static char yaml[1024];
	const char *names[] = { "fuzz.yaml" };
	const char *bufs[] = { yaml };
	struct config_diags diags;

	/* the listener logs every session: run with -close_fd_mask=2 */
	log_init("fuzz_session", true);
	snprintf(dir, sizeof(dir), "/dev/shm/fuzz_session.XXXXXX");
	if (mkdtemp(dir) == NULL)
		abort();
	atexit(fuzz_cleanup);
	snprintf(yaml, sizeof(yaml),
	    "server:\n  hostname: mx.fuzz.example\n  spool: %s/spool\n"
	    "  local_domains: [example.test]\n"
	    "lan: [127.0.0.1]\n"
	    "profiles:\n  p:\n    always_relay_to: [\"@partner.example\"]\n"
	    "instances:\n  t:\n    listen: [\"127.0.0.1:2525\"]\n    profile: p\n"
	    "    max_recipients: 5\n    max_errors: 10\n    max_message_size: 8K\n", dir);
	memset(&diags, 0, sizeof(diags));
	cfg = config_load(config_source_from_buffers(dir, names, bufs, 1), &diags);
	if (cfg == NULL || diags.n_errors > 0)
		abort();
	config_diags_free(&diags);
	sd = smtpd_new(NULL, cfg, config_instance(cfg, "t"));
	if (sd == NULL)
		abort();
	fuzz_spool_reset();
}

/* every line: 3 digits, ' ' or '-', text, CRLF; <= 512 octets */
static void
fuzz_check_output(struct session *s)
{
	size_t len;
	const char *p = session_output(s, &len);
	const char *end = p + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL || nl == p || nl[-1] != '\r' || nl - p + 1 > 512)
			abort();
		if (nl - p < 5 || p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
		    p[2] < '0' || p[2] > '9' || (p[3] != ' ' && p[3] != '-'))
			abort();
		for (const char *q = p; q < nl - 1; q++)
			if (*q == '\r' || *q == '\0')
				abort();
		p = nl + 1;
	}
	session_output_clear(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (cfg == NULL)
		fuzz_init();
	if (size == 0)
		return 0;
	if (++runs % 4096 == 0)
		fuzz_spool_reset();

	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, (data[0] & 0x80) ? "192.0.2.7" : "127.0.0.1", &sin.sin_addr);
	size_t chunk = 1 + (data[0] & 0x7f);
	data++, size--;

	struct session *s = session_new(sd, -1, (struct sockaddr *)&sin, sizeof(sin));
	if (s == NULL)
		abort();
	session_start(s);
	fuzz_check_output(s);
	for (size_t off = 0; off < size && !session_closed(s); off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		session_feed(s, data + off, n);
		smtpd_commit(sd);	/* a loop pass: group commit, resume */
		fuzz_check_output(s);
	}
	if (!session_closed(s)) {
		session_feed_eof(s);
		smtpd_commit(sd);
		fuzz_check_output(s);
	}
	session_free(s);
	return 0;
}
