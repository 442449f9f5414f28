#!/usr/bin/env python3
"""The memory half of bench/smtp.sh: opens N concurrent SMTP sessions that read
their greeting and then sit idle, spread over source addresses 127.0.0.2-127.0.0.K
so no client exceeds max_per_client; then reports the listener's PSS
(/proc/PID/smaps_rollup) and how long a fresh client from 127.0.0.1 waits for its
greeting meanwhile. Prints "key value" lines that smtp.sh turns into its table."""
import argparse
import os
import resource
import selectors
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proctree  # noqa: E402


def open_idle(host, port, n, sources, wave, timeout):
    """Returns (sockets greeted with 220, count of other outcomes)."""
    sel = selectors.DefaultSelector()
    greeted, failed = [], 0
    i = 0
    while i < n:
        batch = {}
        for _ in range(min(wave, n - i)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((sources[i % len(sources)], 0))
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, 115):		# EINPROGRESS
                s.close()
                failed += 1
            else:
                batch[s] = b""
                sel.register(s, selectors.EVENT_READ)
            i += 1
        deadline = time.monotonic() + timeout
        while batch and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                s = key.fileobj
                try:
                    d = s.recv(512)
                except OSError:
                    d = b""
                if d:
                    batch[s] += d
                    if b"\r\n" not in batch[s]:
                        continue
                sel.unregister(s)
                if batch.pop(s).startswith(b"220"):
                    greeted.append(s)
                else:
                    s.close()
                    failed += 1
        for s in batch:
            sel.unregister(s)
            s.close()
            failed += 1
    sel.close()
    return greeted, failed


def greeting_wait(host, port, timeout=5.0):
    """ms until a fresh client has its 220 line; inf when it gets none in time"""
    t0 = time.monotonic()
    buf = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            while b"\r\n" not in buf:
                d = s.recv(512)
                if not d:
                    break
                buf += d
            t1 = time.monotonic()
            s.sendall(b"QUIT\r\n")
    except OSError:
        return float("inf")
    if not buf.startswith(b"220"):
        return float("inf")
    return (t1 - t0) * 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--last-source", type=int, default=50)
    ap.add_argument("--wave", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=20)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < a.sessions + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sources = ["127.0.0.%d" % k for k in range(2, a.last_source + 1)]
    host = "127.0.0.1"

    base = proctree.pss_kib(a.pid)
    idle_before = [greeting_wait(host, a.port) for _ in range(a.samples)]
    if max(idle_before) == float("inf"):
        raise SystemExit("bench: the listener does not greet a client before the test")
    t0 = time.monotonic()
    socks, failed = open_idle(host, a.port, a.sessions, sources, a.wave, 15.0)
    t_open = time.monotonic() - t0
    time.sleep(0.5)		# let the listener settle after the burst
    pss = proctree.pss_kib(a.pid)
    waits = [greeting_wait(host, a.port) for _ in range(a.samples)]
    # the idle sessions must still be there (a listener that dropped them would
    # look cheap)
    alive = 0
    for s in socks:
        try:
            s.setblocking(False)
            d = s.recv(1, socket.MSG_PEEK)
            alive += 0 if d == b"" else 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for s in socks:
        s.close()

    print("idle_sessions_requested %d" % a.sessions)
    print("idle_sessions_greeted %d" % len(socks))
    print("idle_sessions_failed %d" % failed)
    print("idle_sessions_alive_at_end %d" % alive)
    print("open_seconds %.2f" % t_open)
    print("pss_idle_listener_kib %d" % base)
    print("pss_with_sessions_kib %d" % pss)
    print("pss_per_session_bytes %.0f" % ((pss - base) * 1024.0 / max(1, len(socks))))
    print("greeting_ms_unloaded_median %.2f" % statistics.median(idle_before))
    print("greeting_ms_median %.2f" % statistics.median(waits))
    print("greeting_ms_max %.2f" % max(waits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
