#!/usr/bin/env python3
"""The throughput half of bench/smtp.sh: drives Postfix and relayvisor-smtpd with
smtp-source, interleaved (the order alternates every round), and prints msgs/s and
server CPU ms per message for each case, the medians over the rounds and the
ratios. Only ratios taken in one run mean anything (BENCH-NOTES.md).

relayvisor-smtpd is started fresh, on an empty spool, for every measured run, as
Postfix's queue is drained after every run: neither server carries a growing queue
from one run into the next. Postfix's CPU includes its whole process tree (master,
smtpd, cleanup, trivial-rewrite, qmgr, discard, postlogd), measured after its queue
has drained, so the delivery that `discard:` does is charged to the run that
caused it; relayvisor has no delivery yet.
"""
import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proctree  # noqa: E402

CASES = [
    # name, smtp-source args, count option, what the log must show per message
    ("accept 1 KB", ["-l", "1024", "-t", "u@local.test"], "n1k", "accepted"),
    ("accept 100 KB", ["-l", "102400", "-t", "u@local.test"], "n100k", "accepted"),
    ("relay refused", ["-A", "-t", "v@remote.example"], "nrej", "refused"),
    # the client is bench/tls_source.c (smtp-source has no TLS), built by
    # bench/smtp.sh: STARTTLS with a full handshake on every connection, then
    # one 1 KB message
    ("STARTTLS 1 KB", ["-l", "1024", "-t", "u@local.test"], "ntls", "accepted"),
]

QUEUED = re.compile(rb"/smtpd\[\d+\]: \w+: client=")
REFUSED = re.compile(rb"Relay access denied")


def wait_greeting(host, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                if s.recv(512).startswith(b"220"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit("bench: nothing greets on %s:%d" % (host, port))


def count_in(path, rx):
    try:
        with open(path, "rb") as f:
            return len(rx.findall(f.read()))
    except FileNotFoundError:
        return 0


class Postfix:
    name = "postfix"

    def __init__(self, a):
        self.port, self.queue, self.log = a.pf_port, a.pf_queue, a.pf_log
        with open(os.path.join(self.queue, "pid", "master.pid")) as f:
            self.pid = int(f.read().split()[0])

    def start(self):
        return self.pid

    def stop(self):
        pass

    def settle(self, timeout=30.0):
        """Wait until the queue is empty: what was accepted has been delivered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = False
            for sub in ("maildrop", "incoming", "active", "deferred"):
                for _, _, files in os.walk(os.path.join(self.queue, sub)):
                    if files:
                        busy = True
                        break
                if busy:
                    break
            if not busy:
                return
            time.sleep(0.05)
        print("bench: warning: postfix queue not drained after %.0fs" % timeout)


class Relayvisor:
    name = "relayvisor"

    def __init__(self, a):
        self.a = a
        self.port, self.log = a.rv_port, a.rv_log
        self.proc = None

    def start(self):
        shutil.rmtree(self.a.rv_spool, ignore_errors=True)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.a.rv_bin, "-c", self.a.rv_conf, "--instance",
                                      self.a.rv_instance], stdout=logf, stderr=logf)
        logf.close()
        with open(self.a.rv_pidfile, "w") as f:
            f.write("%d\n" % self.proc.pid)
        wait_greeting("127.0.0.1", self.port)
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def settle(self):
        pass


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]		# idle + iowait
    return sum(v) - idle, sum(v)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_case(server, case, n, sessions, tls_source):
    name, args, _, expect = case
    pid = server.start()
    rx = QUEUED if expect == "accepted" else REFUSED
    before = count_in(server.log, rx)
    client = [tls_source] if name.startswith("STARTTLS") else ["smtp-source"]
    cmd = client + ["-s", str(sessions), "-m", str(n), "-f", "s@bench.example",
           "-M", "bench.example"] + args + ["127.0.0.1:%d" % server.port]
    c0 = proctree.tree_cpu_seconds(pid)
    k0, m0 = children_cpu(), machine_busy()
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=90)
    except subprocess.TimeoutExpired:
        server.stop()
        raise SystemExit("bench: smtp-source against %s (%s) took over 90 s"
                         % (server.name, name))
    t1 = time.monotonic()
    k1, m1 = children_cpu(), machine_busy()
    server.settle()
    c1 = proctree.tree_cpu_seconds(pid)
    server.stop()
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise SystemExit("bench: smtp-source against %s (%s) failed: %s"
                         % (server.name, name, err[-1] if err else p.returncode))
    got = count_in(server.log, rx) - before
    if got != n:
        # the log shows what the server really did; a relay test the server
        # accepted, or an accept test it refused, must not produce figures
        raise SystemExit("bench: %s %s: %d of %d messages %s in its log"
                         % (server.name, name, got, n, expect))
    busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
    return n / (t1 - t0), (c1 - c0) * 1000.0 / n, (k1 - k0) * 1000.0 / n, busy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--n1k", type=int, default=2000)
    ap.add_argument("--n100k", type=int, default=600)
    ap.add_argument("--nrej", type=int, default=3000)
    ap.add_argument("--ntls", type=int, default=1000)
    ap.add_argument("--pf-port", type=int, required=True)
    ap.add_argument("--pf-queue", required=True)
    ap.add_argument("--pf-log", required=True)
    ap.add_argument("--rv-bin", required=True)
    ap.add_argument("--rv-conf", required=True)
    ap.add_argument("--rv-instance", required=True)
    ap.add_argument("--rv-port", type=int, required=True)
    ap.add_argument("--rv-spool", required=True)
    ap.add_argument("--rv-log", required=True)
    ap.add_argument("--rv-pidfile", required=True)
    ap.add_argument("--tls-source", required=True)
    a = ap.parse_args()

    servers = [Postfix(a), Relayvisor(a)]
    res = {}
    for r in range(a.rounds):
        for case in CASES:
            order = servers if (r % 2 == 0) else servers[::-1]
            for srv in order:
                rate, cpu, ccpu, busy = run_case(srv, case, getattr(a, case[2]),
                                                 a.sessions, a.tls_source)
                res.setdefault((case[0], srv.name), []).append((rate, cpu, ccpu, busy))
                print("  round %d  %-14s %-10s %8.0f msgs/s %7.3f CPU ms/msg"
                      "  (smtp-source %.3f ms/msg, machine %3.0f%% busy)"
                      % (r + 1, case[0], srv.name, rate, cpu, ccpu, busy * 100),
                      flush=True)

    print()
    print("median of %d rounds, %d sessions, one message per connection; CPU is the"
          " server's process tree; client = smtp-source's CPU; busy = all cores"
          % (a.rounds, a.sessions))
    print("%-14s %-12s %10s %12s %12s %6s" % ("case", "server", "msgs/s", "CPU ms/msg",
                                              "client ms", "busy"))
    for case in CASES:
        med = {}
        for srv in servers:
            runs = res[(case[0], srv.name)]
            med[srv.name] = tuple(statistics.median(x[i] for x in runs)
                                  for i in range(4))
            m = med[srv.name]
            print("%-14s %-12s %10.0f %12.3f %12.3f %5.0f%%"
                  % (case[0], srv.name, m[0], m[1], m[2], m[3] * 100))
        pf, rv = med["postfix"], med["relayvisor"]
        print("%-14s %-12s %9.2fx %11.2fx" % ("", "rv/postfix", rv[0] / pf[0],
                                               rv[1] / pf[1] if pf[1] else float("nan")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
