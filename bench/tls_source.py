#!/usr/bin/env python3
"""smtp-source with STARTTLS (smtp-source speaks no TLS): SESSIONS concurrent
sessions, MESSAGES messages, each on its own connection: greeting, EHLO,
STARTTLS, handshake, EHLO, MAIL, RCPT, DATA of SIZE octets, QUIT. The same
options as smtp-source for what bench/smtp_runs.py passes:

    tls_source.py -s 20 -m 2000 -l 1024 -f s@x -M helo -t u@local.test HOST:PORT

No certificate is checked (the bench's is self-signed); TLS 1.2 minimum, the
client's default ciphers, no session resumption (every connection pays a full
handshake, as the first message of a new client does). Exit 1 on any reply
that is not the expected one."""
import argparse
import asyncio
import ssl
import sys


async def reply(r):
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3]), line


async def expect(r, code):
    got, line = await reply(r)
    if got != code:
        raise RuntimeError("expected %d, got %r" % (code, line))


async def one(host, port, ctx, a, body):
    r, w = await asyncio.open_connection(host, port)
    try:
        await expect(r, 220)
        w.write(b"EHLO %s\r\n" % a.helo)
        await expect(r, 250)
        w.write(b"STARTTLS\r\n")
        await expect(r, 220)
        await w.start_tls(ctx, server_hostname=None)
        w.write(b"EHLO %s\r\n" % a.helo)
        await expect(r, 250)
        w.write(b"MAIL FROM:<%s>\r\n" % a.sender)
        await expect(r, 250)
        w.write(b"RCPT TO:<%s>\r\n" % a.rcpt)
        await expect(r, 250)
        w.write(b"DATA\r\n")
        await expect(r, 354)
        w.write(body)
        await expect(r, 250)
        w.write(b"QUIT\r\n")
        await expect(r, 221)
    finally:
        w.close()
        try:
            await w.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-s", dest="sessions", type=int, default=1)
    ap.add_argument("-m", dest="messages", type=int, default=1)
    ap.add_argument("-l", dest="size", type=int, default=1024)
    ap.add_argument("-f", dest="sender", default="s@bench.example")
    ap.add_argument("-M", dest="helo", default="bench.example")
    ap.add_argument("-t", dest="rcpt", default="u@local.test")
    ap.add_argument("server")
    a = ap.parse_args()
    a.sender, a.helo, a.rcpt = a.sender.encode(), a.helo.encode(), a.rcpt.encode()
    host, port = a.server.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    line = b"X" * 78 + b"\r\n"
    text = b"Subject: bench\r\n\r\n" + line * max(1, a.size // len(line))
    body = text + b".\r\n"
    left = [a.messages]

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            await one(host, int(port), ctx, a, body)

    await asyncio.gather(*(worker() for _ in range(min(a.sessions, a.messages))))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except Exception as e:  # a failed run must not produce figures
        print("tls_source: %s" % e, file=sys.stderr)
        sys.exit(1)
