"""Shared helpers for the integration tests: temporary configuration directories,
free loopback ports, starting the real binaries and waiting for them, and running
the real clients (swaks, smtplib, smtp-source). Every test talks to 127.0.0.0/8 or
::1 only."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

# Logs of what the current test ran, for the report of a failing test (run.py):
# every ConfDir is registered; its *.log files are read at failure time, or from
# the snapshot taken when the directory was removed.
_confdirs = []		# live ConfDirs
_snapshots = []		# (label, text) of ConfDirs removed during the current test
LOG_TAIL_LINES = 40


def test_started(test_id):
    del _snapshots[:]


def _tails_of(top):
    out = []
    for dirpath, _dirs, files in os.walk(top):
        for name in sorted(files):
            if not name.endswith(".log") and ".log." not in name:
                continue
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    size = f.tell()
                    f.seek(max(0, size - 16384))
                    lines = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            if lines:
                out.append((path, "\n".join(lines[-LOG_TAIL_LINES:])))
    return out


def log_tails():
    """Text: the tail of every log of the live and just-removed ConfDirs."""
    parts = list(_snapshots)
    for c in _confdirs:
        parts.extend(_tails_of(c.top))
    if not parts:
        return ""
    text = "\n---- log tails (last %d lines each) ----\n" % LOG_TAIL_LINES
    for label, body in parts:
        text += "== %s\n%s\n" % (label, body)
    return text


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("RV_BIN") or os.path.join(ROOT, "bin")
SMTPD = os.path.join(BIN, "relayvisor-smtpd")
SUPERVISOR = os.path.join(BIN, "relayvisord")
CTL = os.path.join(BIN, "relayvisorctl")


_handed_out = set()


def free_port(host="127.0.0.1"):
    """A port nothing listens on now, never one this suite run handed out before:
    the kernel may give the same ephemeral port to two binds in a row, and two
    listen addresses of one test must not collide."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_port(host, port, timeout=5.0):
    """Wait until something accepts on host:port and sends a greeting line."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect((host, port))
                s.recv(512)
                return True
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing serves %s:%d" % (host, port))


class ConfDir:
    """A temporary configuration directory with var/ beside it."""

    def __init__(self, files):
        self.top = tempfile.mkdtemp(prefix="rv-test-")
        os.chmod(self.top, 0o755)
        self.dir = os.path.join(self.top, "conf.d")
        os.mkdir(self.dir)
        self.var = os.path.join(self.top, "var")
        for name, text in files.items():
            self.write(name, text)
        _confdirs.append(self)

    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def cleanup(self):
        if self in _confdirs:
            _confdirs.remove(self)
            _snapshots.extend(_tails_of(self.top))
        shutil.rmtree(self.top, ignore_errors=True)


def server_yaml(top, hostname="mx.test.example", extra=""):
    return """server:
  hostname: %s
  spool: %s/var/spool
  control: %s/var/run/relayvisor.sock
  logs: %s/var/log
  local_domains: [example.test]
%s""" % (hostname, top, top, top, extra)


def stop_process(proc, sig=signal.SIGTERM, timeout=5):
    """Signal a process, SIGKILL it after timeout seconds; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Smtpd:
    """relayvisor-smtpd started standalone (it binds the instance's addresses)."""

    def __init__(self, confdir, instance, env=None, wait=None):
        self.log = open(os.path.join(confdir.top, "smtpd-%s.log" % instance), "ab+")
        self.logpath = self.log.name
        e = dict(os.environ)
        if env:
            e.update(env)
        self.proc = subprocess.Popen([SMTPD, "-c", confdir.dir, "--instance", instance],
                                     stdout=self.log, stderr=self.log, env=e)
        if wait:
            # the caller gets no object to stop when this raises: stop it here
            try:
                wait_port(*wait)
            except BaseException:
                self.stop()
                raise

    def logtext(self):
        with open(self.logpath, "r", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=5):
        code = stop_process(self.proc, sig, timeout)
        self.log.close()
        return code


def swaks(*args, timeout=20):
    """Runs swaks; returns (exit code, transcript)."""
    p = subprocess.run(["swaks", "--hide-informational", "--timeout", "10", *args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


def split_received(stored):
    """The stored message split after the Received: header the listener prepends
    (with its folded continuation lines): (header, rest)."""
    if stored[:9].lower() != b"received:":
        raise AssertionError("stored message does not start with Received: %r"
                             % stored[:120])
    pos = 0
    while True:
        nl = stored.find(b"\n", pos)
        if nl < 0:
            raise AssertionError("unterminated Received: header")
        pos = nl + 1
        if stored[pos:pos + 1] not in (b" ", b"\t"):
            return stored[:pos], stored[pos:]


def ctl(*args, timeout=20, check=False):
    p = subprocess.run([CTL, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("relayvisorctl %s: %d\n%s" % (" ".join(args), p.returncode,
                                                         p.stdout.decode()))
    return p.returncode, p.stdout.decode(errors="replace")


class Dialog:
    """A raw SMTP conversation over a socket, for what smtplib will not send
    (bare LF, overlong lines, pipelined batches)."""

    def __init__(self, host, port, timeout=10):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect((host, port))
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def reply(self):
        """One whole (possibly multi-line) reply: (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % (b"".join(lines) + self.buf))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                break
        text = b"\n".join(lines).decode(errors="replace")
        return int(lines[-1][:3]), text

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closed the connection (EOF) within timeout."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


class TestCase(unittest.TestCase):
    """Base class: self.conf and cleanup of everything started."""

    def setUp(self):
        self._rv_cleanups = []

    def tearDown(self):
        for fn in reversed(self._rv_cleanups):
            try:
                fn()
            except Exception:
                pass

    def later(self, fn):
        self._rv_cleanups.append(fn)
        return fn
