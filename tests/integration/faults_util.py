"""Helpers for test_faults.py: a standalone listener with resource limits, the
spool read back through relayvisorctl, short messages with unique tokens, and a
crowd of slow clients driven from one thread."""
import os
import random
import resource
import selectors
import socket
import subprocess
import threading
import time

import harness
from harness import CTL, SMTPD

SANITIZED = os.environ.get("RV_SANITIZED") == "1"


def scaled(normal, sanitized):
    """A count for this build: smaller under ASan/UBSan, the same property asserted."""
    return sanitized if SANITIZED else normal


def raise_nofile(want):
    """Raise this process's soft RLIMIT_NOFILE to want (capped by the hard limit);
    returns the previous soft limit so the caller can restore it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return soft


class Listener:
    """relayvisor-smtpd -c DIR --instance NAME, optionally under RLIMIT_NOFILE n
    (soft and hard, so the listener cannot raise it back)."""

    def __init__(self, conf, instance, nofile=None):
        self.logpath = os.path.join(conf.top, "smtpd-%s.log" % instance)
        self.log = open(self.logpath, "ab+")
        pre = None
        if nofile is not None:
            def pre():
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen([SMTPD, "-c", conf.dir, "--instance", instance],
                                     stdout=self.log, stderr=self.log, preexec_fn=pre)

    def alive(self):
        return self.proc.poll() is None

    def logtext(self):
        with open(self.logpath, "r", errors="replace") as f:
            return f.read()

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode


# ---- messages (make_message, dot_stuff: messages.py) -----------------------

from messages import dot_stuff, make_message  # noqa: F401 (re-exported)


def make_big_message(token, size):
    """A cheap large message (about size octets), unique by token."""
    head = ("From: s@client.example\r\nTo: u@example.test\r\nSubject: big %s\r\n"
            "X-Test-Token: %s\r\n\r\n" % (token, token)).encode()
    line = (token + " ").encode() * (70 // (len(token) + 1) + 1)
    line = line[:70] + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


# ---- the spool, through relayvisorctl (like mailq and postcat) ------------

def queue_list(confdir):
    """{qid: (size, text)} from `relayvisorctl queue`; text is the message's line
    and its recipients' lines below it (one a line, indented, like mailq)"""
    p = subprocess.run([CTL, "-c", confdir, "queue"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise AssertionError("relayvisorctl queue: %d\n%s" % (p.returncode, out))
    res = {}
    last = None
    for line in out.splitlines():
        if line.startswith("--") or line == "Mail queue is empty":
            continue
        if line[:1].isspace() and last is not None:
            res[last] = (res[last][0], res[last][1] + "\n" + line)
            continue
        f = line.split()
        last = f[0]
        res[f[0]] = (int(f[1]), line)
    return res


def queue_show(confdir, qid):
    """(rc, envelope text, stored message octets)"""
    p = subprocess.run([CTL, "-c", confdir, "queue", "show", qid], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    out = p.stdout
    i = out.find(b"\n\n")
    if p.returncode != 0 or i < 0:
        return p.returncode or 1, p.stderr.decode(errors="replace") + out.decode(
            errors="replace"), None
    return 0, out[:i].decode(errors="replace"), out[i + 2:]


def strip_received(stored):
    """The stored message without the Received: header the listener prepends."""
    return harness.split_received(stored)[1]


def same_body(stored, sent):
    """The stored message (after Received:) is the sent one, CRLF or LF kept."""
    rest = strip_received(stored)
    if b"\r\n" not in rest:
        sent = sent.replace(b"\r\n", b"\n")
    return rest == sent


def show_all(confdir, qids, batch=400):
    """queue_show for many QIDs: `queue show QID` commands fed to one interactive
    relayvisorctl per batch (a process per message is too slow under ASan). The
    output of each command lies between two prompts; our messages never hold the
    prompt text. Returns {qid: (rc, envelope, stored)} like queue_show."""
    qids = list(qids)
    res = {}
    prompt = b"relayvisor> "
    for i in range(0, len(qids), batch):
        part = qids[i:i + batch]
        cmds = "".join("queue show %s\n" % q for q in part).encode()
        p = subprocess.run([CTL, "-c", confdir], input=cmds, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        chunks = p.stdout.split(prompt)
        # chunks[0] precedes the first prompt; the last follows the EOF prompt
        if p.returncode != 0 or len(chunks) != len(part) + 2:
            raise AssertionError("relayvisorctl (interactive): rc %d, %d outputs for %d "
                                 "commands: %s" % (p.returncode, len(chunks) - 2,
                                                   len(part), p.stderr.decode()))
        for q, out in zip(part, chunks[1:-1]):
            j = out.find(b"\n\n")
            if j < 0:
                res[q] = (1, out.decode(errors="replace"), None)
            else:
                res[q] = (0, out[:j].decode(errors="replace"), out[j + 2:])
    return res


# ---- one SMTP transaction over a raw socket --------------------------------

class SmtpError(Exception):
    """The listener answered, but not as expected."""


def read_reply(f):
    """One (possibly multi-line) reply line from a socket file; EOFError when the
    connection ends before a whole reply."""
    while True:
        line = f.readline()
        if not line.endswith(b"\n"):
            raise EOFError("connection closed mid-reply: %r" % line)
        if line[3:4] != b"-":
            return line.rstrip(b"\r\n")


# ---- many slow clients on one thread ----------------------------------------

class Crowd:
    """n clients connected to host:port from 127.0.0.2..127.0.0.50; each sends its
    first byte at once and then, if trickle, one more byte every period seconds
    (never a whole line). Records for each: greeting, later replies, EOF."""

    def __init__(self, host, port, n, trickle, period=0.5, text=b"EHLO trickle.example"):
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.data = {}
        self.eof = {}
        self.eof_at = {}
        self.sent = {}
        self.connected_at = {}
        self.trickle = trickle
        self.period = period
        self.text = text.replace(b"\r", b"").replace(b"\n", b"") * 50
        self.halt = threading.Event()
        self.errors = []
        self.thread = None
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.socks.append(s)
                s.bind(("127.0.0.%d" % (2 + i % 49), 0))
                s.settimeout(10)
                s.connect((host, port))
                self.connected_at[s] = time.monotonic()
                s.setblocking(False)
                self.data[s] = b""
                self.eof[s] = False
                self.sent[s] = 0
                self.sel.register(s, selectors.EVENT_READ)
        except BaseException:
            self.close()
            raise
        self.t0 = time.monotonic()
        for s in self.socks:
            self._send_next(s)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send_next(self, s):
        if self.eof[s]:
            return
        try:
            s.send(self.text[self.sent[s]:self.sent[s] + 1])
            self.sent[s] += 1
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass		# closed by the listener: EOF is seen by the reader

    def _run(self):
        next_tick = time.monotonic() + self.period
        while not self.halt.is_set():
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                try:
                    d = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    d = b""
                    self.errors.append(repr(e))
                if d:
                    self.data[s] += d
                else:
                    self.eof[s] = True
                    self.eof_at[s] = time.monotonic()
                    self.sel.unregister(s)
            if self.trickle and time.monotonic() >= next_tick:
                next_tick += self.period
                for s in self.socks:
                    self._send_next(s)

    def count(self, pred):
        return sum(1 for s in self.socks if pred(s))

    def close(self):
        self.halt.set()
        if self.thread is not None and self.thread.is_alive():
            self.thread.join(5)
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.sel.close()


def greeting_time(host, port, timeout=5.0):
    """Seconds from connect() to a whole 220 greeting line, for a fresh client."""
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as s:
        buf = b""
        while b"\r\n" not in buf:
            d = s.recv(512)
            if not d:
                raise EOFError("closed before the greeting: %r" % buf)
            buf += d
        dt = time.monotonic() - t0
        if not buf.startswith(b"220 "):
            raise AssertionError("greeting: %r" % buf)
        s.sendall(b"QUIT\r\n")
        return dt


def rng_from_env():
    seed = int(os.environ.get("RV_SEED", "0")) or time.time_ns()
    return random.Random(seed), seed
