#!/usr/bin/env python3
"""The measuring half of bench/relay.sh: N messages submitted by a LAN client
(smtp-source) and relayed to smtp-sink as relayhost, relayvisor (relayvisord with
its listener, qmgr and delivery agent) against Postfix with the same relayhost,
interleaved (the order alternates every round). A run ends when the server's log
shows every message delivered (status=sent) and removed from its queue; msgs/s is
N over that time, CPU ms/msg is the server's whole process tree (proctree.py).
The load generator's CPU per message (smtp-source and smtp-sink) and how busy the
machine was are printed too: on a 2-core machine they bound what any server can
reach, and they are the same for both servers.
"""
import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proctree  # noqa: E402

SENT = re.compile(rb"status=sent")


class Counter:
    """status=sent lines in a log, read incrementally: re-reading whole logs
    every poll took a core's worth of CPU from the servers being measured once
    the logs reached megabytes"""

    def __init__(self):
        self.pos, self.n, self.rest = {}, {}, {}

    def count(self, path):
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if self.pos.get(path, (st.st_ino, 0))[0] != st.st_ino or \
                        st.st_size < self.pos.get(path, (0, 0))[1]:
                    self.pos[path], self.rest[path] = (st.st_ino, 0), b""  # rotated
                f.seek(self.pos.get(path, (st.st_ino, 0))[1])
                data = self.rest.get(path, b"") + f.read()
                self.pos[path] = (st.st_ino, f.tell())
        except FileNotFoundError:
            return self.n.get(path, 0)
        cut = data.rfind(b"\n") + 1
        self.rest[path] = data[cut:]
        self.n[path] = self.n.get(path, 0) + len(SENT.findall(data[:cut]))
        return self.n[path]


COUNTER = Counter()


class Postfix:
    name = "postfix"

    def __init__(self, a):
        self.port, self.log = a.pf_port, a.pf_log
        with open(os.path.join(a.pf_queue, "pid", "master.pid")) as f:
            self.pid = int(f.read().split()[0])

    def logs(self):
        return [self.log]


class Relayvisor:
    name = "relayvisor"

    def __init__(self, a):
        self.port, self.pid, self.logdir = a.rv_port, a.rv_pid, a.rv_logs

    def logs(self):
        return [os.path.join(self.logdir, f) for f in os.listdir(self.logdir)
                if f.endswith(".log")]


def delivered(server):
    return sum(COUNTER.count(p) for p in server.logs())


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def run(server, size, n, sessions, timeout, sink_pid):
    before = delivered(server)
    c0 = proctree.tree_cpu_seconds(server.pid)
    g0 = children_cpu() + proctree.tree_cpu_seconds(sink_pid)
    m0 = machine_busy()
    t0 = time.monotonic()
    p = subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(n), "-l", str(size),
                        "-f", "lan@bench.example", "-t", "friend@remote.example",
                        "-M", "bench.example", "127.0.0.1:%d" % server.port],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit("bench: smtp-source against %s failed: %s"
                         % (server.name, p.stderr.decode(errors="replace")[-300:]))
    deadline = time.monotonic() + timeout
    while delivered(server) - before < n:
        if time.monotonic() > deadline:
            raise SystemExit("bench: %s delivered %d of %d within %d s"
                             % (server.name, delivered(server) - before, n, timeout))
        time.sleep(0.02)
    t1 = time.monotonic()
    c1 = proctree.tree_cpu_seconds(server.pid)
    g1 = children_cpu() + proctree.tree_cpu_seconds(sink_pid)
    m1 = machine_busy()
    busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
    return n / (t1 - t0), (c1 - c0) * 1000.0 / n, (g1 - g0) * 1000.0 / n, busy


def main():
    ap = argparse.ArgumentParser()
    for k in ("pf-port", "rv-port", "rv-pid", "sink-pid", "rounds", "sessions", "n1k",
              "n100k"):
        ap.add_argument("--" + k, type=int, required=True)
    for k in ("pf-queue", "pf-log", "rv-logs"):
        ap.add_argument("--" + k, required=True)
    a = ap.parse_args()
    servers = [Postfix(a), Relayvisor(a)]
    cases = [("relay 1 KB", 1024, a.n1k), ("relay 100 KB", 102400, a.n100k)]
    res = {}
    for r in range(a.rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        for name, size, n in cases:
            for s in order:
                rate, cpu, gen, busy = run(s, size, n, a.sessions, 300, a.sink_pid)
                res.setdefault((name, s.name), []).append((rate, cpu, gen, busy))
                print("round %d  %-13s %-10s %8.1f msgs/s %7.2f CPU ms/msg  (load "
                      "generator %.2f ms/msg, machine %3.0f%% busy)"
                      % (r + 1, name, s.name, rate, cpu, gen, busy * 100), flush=True)
    print()
    print("| case | Postfix msgs/s | relayvisor msgs/s | ratio | Postfix CPU ms/msg "
          "| relayvisor CPU ms/msg | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _ in cases:
        pf = res[(name, "postfix")]
        rv = res[(name, "relayvisor")]
        pr = statistics.median(x[0] for x in pf)
        rr = statistics.median(x[0] for x in rv)
        pc = statistics.median(x[1] for x in pf)
        rc = statistics.median(x[1] for x in rv)
        print("| %s | %.1f | %.1f | %.2f× | %.2f | %.2f | %.2f× |"
              % (name, pr, rr, rr / pr, pc, rc, rc / pc))
    print()
    print("load generator (smtp-source + smtp-sink) CPU ms/msg, median: "
          + ", ".join("%s: postfix %.2f, relayvisor %.2f" % (
              name, statistics.median(x[2] for x in res[(name, "postfix")]),
              statistics.median(x[2] for x in res[(name, "relayvisor")]))
              for name, _, _ in cases))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
