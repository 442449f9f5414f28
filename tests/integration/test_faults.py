"""Fault injection against the real binaries (issue 5, point 2):

(a) kill -9 of a supervised listener, many rounds at random moments while clients
    send: every "250 ... queued as QID" is in the queue byte for byte, and every
    queued entry is whole (never a partial one);
(b) the spool on a tiny tmpfs: when it fills, "452 4.3.1" and never a 250 without
    storage; service resumes when space returns;
(c) the descriptor limit reached: new clients wait (or get a 421), open sessions
    finish their transaction, the listener recovers;
(d) hundreds of clients trickling one byte at a time do not keep a normal client
    from its greeting within 1 s, and the command timeout evicts them.

RV_SANITIZED=1 (the ASan/UBSan run of make check) scales the counts down; the
properties asserted are the same. RV_SEED fixes the random choices of (a)."""
import os
import random
import re
import resource
import select
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import CTL, SMTPD, SUPERVISOR, ConfDir, TestCase, free_port, server_yaml, wait_port
from faults_util import (Crowd, Listener, dot_stuff, greeting_time,
                         make_big_message, make_message, queue_list, raise_nofile,
                         read_reply, rng_from_env, same_body, scaled, show_all, queue_show)
from test_supervisor import Sup

QUEUED = re.compile(rb"^250 2\.0\.0 Ok: queued as (\S+)$")
TOKEN = re.compile(rb"X-Test-Token: (\S+)\r?\n")


def need_binaries(test, *paths):
    for p in paths:
        if not os.path.exists(p):
            test.skipTest("no %s" % p)


# ---- (a) kill -9 under the supervisor --------------------------------------

class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.msgs = {}		# token -> message
        self.acked = {}		# qid -> token
        self.ended = set()	# tokens whose final "." was sent, no reply seen
        self.cut = 0		# sessions the kill cut before their reply
        self.cut_in_data = 0	# ... of them inside DATA, before the final "."
        self.errors = []	# replies a live listener does not give


def kill_client(port, ledger, cid, stop, seed):
    rng = random.Random(seed)
    seq = 0
    while not stop.is_set():
        token = "tok-%d-%d" % (cid, seq)
        seq += 1
        msg = make_message(token, rng.choice([200, 800, 3000, 12000]), rng)
        with ledger.lock:
            ledger.msgs[token] = msg
        state = "connect"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                f = s.makefile("rb")

                def step(line, want, what):
                    if line is not None:
                        s.sendall(line)
                    r = read_reply(f)
                    if not r.startswith(want):
                        raise AssertionError("%s: %r" % (what, r))
                    return r
                state = "session"
                step(None, b"220", "greeting")
                step(b"EHLO client.example\r\n", b"250", "EHLO")
                step(b"MAIL FROM:<s@client.example>\r\n", b"250", "MAIL")
                step(b"RCPT TO:<u%d@example.test>\r\n" % cid, b"250", "RCPT")
                step(b"DATA\r\n", b"354", "DATA")
                state = "data"
                body = dot_stuff(msg)
                half = rng.randrange(len(body))
                s.sendall(body[:half])
                if rng.random() < 0.5:
                    time.sleep(rng.uniform(0.001, 0.006))	# kills land mid-DATA
                s.sendall(body[half:])
                state = "ended"
                r = step(b".\r\n", b"250", "end of DATA")
                m = QUEUED.match(r)
                if not m:
                    raise AssertionError("end of DATA: %r" % r)
                with ledger.lock:
                    ledger.acked[m.group(1).decode()] = token
                state = "acked"
                s.sendall(b"QUIT\r\n")
        except AssertionError as e:
            with ledger.lock:
                ledger.errors.append("%s (%s)" % (e, token))
            return
        except TimeoutError as e:
            # a listener that is alive must answer; a dead one closes the socket
            with ledger.lock:
                ledger.errors.append("no reply within 10 s in state %s: %s (%s)"
                                     % (state, e, token))
            return
        except (OSError, EOFError):
            with ledger.lock:
                if state in ("session", "data", "ended"):
                    ledger.cut += 1
                if state == "data":
                    ledger.cut_in_data += 1
                if state == "ended":
                    ledger.ended.add(token)


class KillUnderSupervisor(TestCase):
    ROUNDS = scaled(100, 40)
    CLIENTS = 4

    def test_a_kill9_rounds_lose_nothing(self):
        need_binaries(self, SMTPD, SUPERVISOR, CTL)
        rng, seed = rng_from_env()
        conf = ConfDir({})
        self.later(conf.cleanup)
        port = free_port()
        conf.write("relayvisor.yaml", server_yaml(conf.top) + """
lan: [127.0.0.1]
profiles:
  p: {}
instances:
  fi:
    listen: ["127.0.0.1:%d"]
    profile: p
    max_per_client: 200
    startsecs: 0
    startretries: 100
    backoff: {initial: 0.1s, max: 0.2s}
    stopwaitsecs: 5s
""" % port)
        sup = Sup(conf)
        self.later(sup.stop)

        def pid():
            code, out = sup.ctl("pid", "fi")
            return int(out) if code == 0 and out.strip().isdigit() else 0

        ledger = Ledger()
        stop = threading.Event()
        threads = [threading.Thread(target=kill_client, daemon=True,
                                    args=(port, ledger, c, stop, rng.random()))
                   for c in range(self.CLIENTS)]
        self.later(stop.set)
        for t in threads:
            t.start()
        t0 = time.monotonic()
        killed = []
        last = 0
        for rnd in range(self.ROUNDS):
            cur = sup.wait_for(lambda: (lambda p: p if p not in (0, last) else 0)(pid()),
                               timeout=10, what="listener respawned (round %d)" % rnd)
            time.sleep(rng.uniform(0.05, 0.15))
            try:
                os.kill(cur, signal.SIGKILL)
            except ProcessLookupError:
                pass
            killed.append(cur)
            last = cur
        elapsed = time.monotonic() - t0
        # the listener after the last kill is served by its successor
        sup.wait_for(lambda: sup.state("fi")[0] == "RUNNING" and sup.state("fi")[1] != last,
                     timeout=10, what="listener RUNNING after the last kill")
        stop.set()
        for t in threads:
            t.join(15)
            self.assertFalse(t.is_alive(), "a client hung")
        sup.stop()

        self.assertEqual(len(set(killed)), self.ROUNDS, "every round killed a new process")
        self.assertLess(elapsed, 45, "rounds took too long")
        self.assertEqual(ledger.errors, [], "replies a live listener must not give "
                         "(seed %d)" % seed)
        self.assertGreater(len(ledger.acked), self.ROUNDS, "too few messages acked")
        self.assertGreater(ledger.cut, self.ROUNDS // 4,
                           "kills did not land during sessions: the test proved nothing")
        print("\n  (a) %d kills in %.1fs, %d acked, %d sessions cut (%d in DATA, %d after "
              "the final dot), seed %d" % (len(killed), elapsed, len(ledger.acked),
                                          ledger.cut, ledger.cut_in_data,
                                          len(ledger.ended), seed), end=" ")

        listing = queue_list(conf.dir)
        missing = sorted(set(ledger.acked) - set(listing))
        self.assertEqual(missing, [], "acknowledged messages missing from the queue")
        shown = show_all(conf.dir, listing)
        # the one-shot command gives the same octets as the interactive batch
        for qid in rng.sample(sorted(listing), min(10, len(listing))):
            self.assertEqual(queue_show(conf.dir, qid), shown[qid],
                             "queue show %s: one-shot and interactive differ" % qid)
        seen = {}
        for qid, (size, line) in listing.items():
            rc, envelope, stored = shown[qid]
            self.assertEqual(rc, 0, "listed %s cannot be shown: %s" % (qid, envelope))
            m = TOKEN.search(stored)
            self.assertIsNotNone(m, "queued %s is none of ours (partial?): %r"
                                 % (qid, stored[:300]))
            token = m.group(1).decode()
            self.assertNotIn(token, seen, "message %s stored twice (%s, %s)"
                             % (token, seen.get(token), qid))
            seen[token] = qid
            if qid in ledger.acked:
                self.assertEqual(ledger.acked[qid], token, "QID %s holds another message"
                                 % qid)
            else:
                # committed, the 250 lost with the kill: only a message whose end
                # had been sent may be there
                self.assertIn(token, ledger.ended, "queued %s (%s) had not been sent "
                              "whole: a partial entry" % (qid, token))
            self.assertIn("s@client.example", envelope)
            self.assertTrue(same_body(stored, ledger.msgs[token]),
                            "body of %s (%s) differs from what was sent" % (qid, token))
            self.assertEqual(size, len(stored), "listing size of %s: %r, stored %d octets"
                             % (qid, line, len(stored)))


# ---- (b) a full spool --------------------------------------------------------

class FullSpool(TestCase):
    MSG = 200 * 1024

    def mount_tmpfs(self, path, size):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        os.makedirs(path, exist_ok=True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size,
                            "tmpfs", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if p.returncode != 0:
            self.skipTest("cannot mount a tmpfs: %s" % p.stdout.decode().strip())

        def umount():
            if subprocess.run(["umount", path], stderr=subprocess.DEVNULL).returncode:
                subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)
        self.later(umount)

    def send(self, port, msg):
        """One transaction: the final reply to the end of DATA (or of an earlier
        step that failed)."""
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            f = s.makefile("rb")
            for line, want in ((None, b"220"), (b"EHLO c.example\r\n", b"250"),
                               (b"MAIL FROM:<s@client.example>\r\n", b"250"),
                               (b"RCPT TO:<u@example.test>\r\n", b"250"),
                               (b"DATA\r\n", b"354")):
                if line:
                    s.sendall(line)
                r = read_reply(f)
                if not r.startswith(want):
                    return r
            s.sendall(dot_stuff(msg) + b".\r\n")
            r = read_reply(f)
            s.sendall(b"QUIT\r\n")
            return r

    def test_b_full_spool_452_and_resume(self):
        need_binaries(self, SMTPD, CTL)
        conf = ConfDir({})
        self.later(conf.cleanup)
        spool = os.path.join(conf.top, "var", "spool")
        self.mount_tmpfs(spool, "2m")
        ballast = os.path.join(spool, "ballast")
        with open(ballast, "wb") as f:
            f.write(b"\0" * (640 * 1024))
        port = free_port()
        conf.write("relayvisor.yaml", server_yaml(conf.top) + """
profiles:
  p: {}
instances:
  full:
    listen: ["127.0.0.1:%d"]
    profile: p
    max_message_size: 1M
""" % port)
        smtpd = Listener(conf, "full")
        self.later(smtpd.stop)		# before the umount
        wait_port("127.0.0.1", port)

        acked = {}		# qid -> message
        refused = []		# (token, reply)
        for i in range(30):
            token = "full-%d" % i
            msg = make_big_message(token, self.MSG)
            r = self.send(port, msg)
            m = QUEUED.match(r)
            if m:
                acked[m.group(1).decode()] = msg
                continue
            refused.append((token, r.decode(errors="replace")))
            if len(refused) >= 3:
                break
        # a body that cannot even be spilled to spool/tmp: the disk fills during
        # DATA rather than at the commit
        msg = make_big_message("full-big", 900 * 1024)
        r = self.send(port, msg)
        m = QUEUED.match(r)
        if m:
            acked[m.group(1).decode()] = msg
        else:
            refused.append(("full-big", r.decode(errors="replace")))
        self.assertTrue(smtpd.alive(), "the listener died on a full spool:\n"
                        + smtpd.logtext()[-2000:])
        self.assertGreater(len(acked), 0, "nothing was accepted before the spool filled")
        self.assertEqual(len(refused), 4, "the 2 MB spool never filled: %d accepted, "
                         "refused %r" % (len(acked), refused))
        for token, r in refused:
            self.assertTrue(r.startswith("45"), "a full spool is a temporary "
                            "failure, got %r for %s" % (r, token))
        print("\n  (b) %d x %d KB accepted, then %s" % (len(acked), self.MSG // 1024,
              "; ".join(r for _, r in refused)), end=" ")
        # no 250 without storage; nothing refused was stored
        listing = queue_list(conf.dir)
        self.assertEqual(sorted(set(acked) - set(listing)), [],
                         "acknowledged but not stored")
        for qid, msg in acked.items():
            rc, env, stored = queue_show(conf.dir, qid)
            self.assertEqual(rc, 0, env)
            self.assertTrue(same_body(stored, msg), "%s stored differently" % qid)
        stored_tokens = set()
        for qid in listing:
            rc, env, stored = queue_show(conf.dir, qid)
            self.assertEqual(rc, 0, env)
            stored_tokens.add(TOKEN.search(stored).group(1).decode())
        self.assertEqual(stored_tokens & {t for t, _ in refused}, set(),
                         "refused messages were stored")
        self.assertEqual(len(listing), len(acked), "entries nobody was told about")

        # space returns: service resumes, without a restart
        os.unlink(ballast)
        msg = make_big_message("full-after", self.MSG)
        r = self.send(port, msg)
        m = QUEUED.match(r)
        self.assertIsNotNone(m, "no 250 after space returned: %r" % r)
        rc, env, stored = queue_show(conf.dir, m.group(1).decode())
        self.assertEqual(rc, 0, env)
        self.assertTrue(same_body(stored, msg))
        self.assertTrue(smtpd.alive())
        self.assertEqual(os.listdir(os.path.join(spool, "tmp"))
                         if os.path.isdir(os.path.join(spool, "tmp")) else [], [],
                         "spill files left behind")
        # the reply names the cause (RFC 3463 4.3.1 "mail system full"), whether
        # the disk filled while the body was spilled or at the commit
        bad = [(t, r) for t, r in refused if not r.startswith("452 4.3.1 ")]
        self.assertEqual(bad, [], "a full spool must answer 452 4.3.1; listener log:\n%s"
                         % "\n".join(l for l in smtpd.logtext().splitlines()
                                     if "warning" in l)[-1500:])


# ---- (c) the descriptor limit ---------------------------------------------------

class DescriptorLimit(TestCase):
    NOFILE = 64
    EXTRA = 40		# connections beyond the descriptor limit

    def test_c_emfile_wait_finish_recover(self):
        need_binaries(self, SMTPD, CTL)
        conf = ConfDir({})
        self.later(conf.cleanup)
        port = free_port()
        conf.write("relayvisor.yaml", server_yaml(conf.top) + """
profiles:
  p: {}
instances:
  fd:
    listen: ["127.0.0.1:%d"]
    profile: p
    max_connections: 1000
    max_per_client: 1000
""" % port)
        smtpd = Listener(conf, "fd", nofile=self.NOFILE)
        self.later(smtpd.stop)
        wait_port("127.0.0.1", port)

        n = self.NOFILE + self.EXTRA
        socks = []

        def close_all():
            for s in socks:
                s.close()
        self.later(close_all)
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
        # who is greeted within 2 s; who waits
        bufs = {s: b"" for s in socks}
        eof = set()

        def poll(until, among):
            while time.monotonic() < until:
                live = [s for s in among if s not in eof and b"\r\n" not in bufs[s]]
                if not live:
                    return
                r, _, _ = select.select(live, [], [], 0.05)
                for s in r:
                    try:
                        d = s.recv(4096)
                    except ConnectionResetError:
                        d = b""
                    if d:
                        bufs[s] += d
                    else:
                        eof.add(s)
        poll(time.monotonic() + 2.0, socks)
        greeted = [s for s in socks if bufs[s].startswith(b"220 ")]
        refused = [s for s in socks if bufs[s].startswith(b"421 4.")]
        waiting = [s for s in socks if not bufs[s] and s not in eof]
        bad = [bufs[s] for s in socks if s not in greeted and s not in refused
               and s not in waiting]
        self.assertTrue(smtpd.alive(), smtpd.logtext()[-2000:])
        self.assertEqual(bad, [], "clients cut without a reply, or with another one")
        self.assertGreater(len(waiting) + len(refused), 0,
                           "the descriptor limit was never reached")
        self.assertGreater(len(greeted), self.NOFILE // 2, "too few sessions served")
        self.assertIn("Too many open files", smtpd.logtext())
        print("\n  (c) %d connections under %d fds: %d greeted, %d waiting, %d refused"
              % (n, self.NOFILE, len(greeted), len(waiting), len(refused)), end=" ")

        # the open sessions finish a whole transaction while fds are exhausted
        for i, s in enumerate(greeted):
            f = s.makefile("rb")
            for line, want in ((b"EHLO c.example\r\n", b"250"),
                               (b"MAIL FROM:<s@client.example>\r\n", b"250"),
                               (b"RCPT TO:<u@example.test>\r\n", b"250"),
                               (b"DATA\r\n", b"354"),
                               (b"Subject: fd %d\r\n\r\nbody %d\r\n.\r\n" % (i, i),
                                b"250 2.0.0 Ok: queued as"),
                               (b"QUIT\r\n", b"221")):
                s.sendall(line)
                r = read_reply(f)
                self.assertTrue(r.startswith(want), "open session %d: %r after %r"
                                % (i, r, line))
            f.close()
            s.close()
        # fds are free again: the waiting clients are served (or told 421)
        poll(time.monotonic() + 10.0, waiting)
        for s in waiting:
            self.assertTrue(bufs[s].startswith(b"220 ") or bufs[s].startswith(b"421 4."),
                            "a waiting client got %r%s" % (bufs[s], " and EOF"
                                                          if s in eof else ""))
        late = [s for s in waiting if bufs[s].startswith(b"220 ")]
        self.assertGreater(len(late), 0, "no waiting client was served after the "
                           "descriptors were freed")
        for s in late:
            s.sendall(b"NOOP\r\n")
            f = s.makefile("rb")
            self.assertTrue(read_reply(f).startswith(b"250"))
            f.close()
        for s in socks:
            s.close()
        # recovered: a new client has a whole transaction
        self.assertTrue(smtpd.alive())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rb")
            self.assertTrue(read_reply(f).startswith(b"220 "))
            for line, want in ((b"HELO c.example\r\n", b"250"),
                               (b"MAIL FROM:<s@client.example>\r\n", b"250"),
                               (b"RCPT TO:<u@example.test>\r\n", b"250"),
                               (b"DATA\r\n", b"354"),
                               (b"Subject: after\r\n\r\nafter\r\n.\r\n", b"250 2.0.0")):
                s.sendall(line)
                r = read_reply(f)
                self.assertTrue(r.startswith(want), "after recovery: %r" % r)
        # every 250 of this test is in the queue
        self.assertEqual(len(queue_list(conf.dir)), len(greeted) + 1)


# ---- (d) slow clients ------------------------------------------------------------

class SlowClients(TestCase):
    N = scaled(500, 200)
    TIMEOUT = 2.0

    def start(self, timeout):
        """the listener with timeouts.command (and .data) of timeout seconds"""
        need_binaries(self, SMTPD)
        old = raise_nofile(4096)
        self.later(lambda: resource.setrlimit(
            resource.RLIMIT_NOFILE, (old, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        self.port = free_port()
        self.conf.write("relayvisor.yaml", server_yaml(self.conf.top) + """
profiles:
  p: {}
instances:
  slow:
    listen: ["127.0.0.1:%d"]
    profile: p
    max_connections: 2000
    timeouts: {command: %gs, data: %gs}
""" % (self.port, timeout, timeout))
        self.smtpd = Listener(self.conf, "slow")
        self.later(self.smtpd.stop)
        wait_port("127.0.0.1", self.port)

    def crowd(self, n, trickle, period):
        c = Crowd("127.0.0.1", self.port, n, trickle, period)
        self.later(c.close)
        return c

    def test_d1_greeting_within_1s_among_tricklers(self):
        self.start(60)
        crowd = self.crowd(self.N, trickle=True, period=0.25)
        # every trickler has its greeting: they all hold a session
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and crowd.count(
                lambda s: b"\r\n" not in crowd.data[s] and not crowd.eof[s]):
            time.sleep(0.02)
        greeted = crowd.count(lambda s: crowd.data[s].startswith(b"220 "))
        self.assertEqual(greeted, self.N, "tricklers not all greeted")
        times = []
        for _ in range(8):
            times.append(greeting_time("127.0.0.1", self.port))
            time.sleep(0.1)
        self.assertTrue(self.smtpd.alive())
        self.assertEqual(crowd.count(lambda s: crowd.eof[s]), 0,
                         "tricklers lost their sessions during the measurement")
        sent = sum(crowd.sent.values())
        print("\n  (d1) %d tricklers (%d bytes sent), greeting times max %.3fs"
              % (self.N, sent, max(times)), end=" ")
        self.assertGreater(sent, self.N * 2, "the crowd did not trickle")
        self.assertLess(max(times), 1.0, "a fresh client waited too long for its "
                        "greeting: %r" % times)

    def test_d2_timeouts_evict_idle_and_trickling(self):
        self.start(self.TIMEOUT)
        half = self.N // 2
        idle = self.crowd(half, trickle=False, period=0)	# "E", then nothing
        trick = self.crowd(self.N - half, trickle=True, period=0.5)
        t0 = time.monotonic()
        slack = scaled(3.0, 6.0)
        evicted = lambda c: lambda s: (c.eof[s] and
                                       b"421 4.4.2 " in c.data[s])
        deadline = t0 + self.TIMEOUT + slack
        while time.monotonic() < deadline and (
                idle.count(evicted(idle)) < len(idle.socks)
                or trick.count(evicted(trick)) < len(trick.socks)):
            time.sleep(0.05)
        ni, nt = idle.count(evicted(idle)), trick.count(evicted(trick))
        print("\n  (d2) after %.1fs: idle evicted %d/%d, trickling evicted %d/%d"
              % (time.monotonic() - t0, ni, len(idle.socks), nt, len(trick.socks)), end=" ")
        self.assertTrue(self.smtpd.alive())
        # nobody was evicted before the timeout
        early = [c.eof_at[s] - c.connected_at[s] for c in (idle, trick) for s in c.socks
                 if s in c.eof_at and c.eof_at[s] - c.connected_at[s] < self.TIMEOUT - 0.3]
        self.assertEqual(early, [], "evicted before timeouts.command")
        self.assertEqual(ni, len(idle.socks), "idle clients not evicted with 421 4.4.2")
        # a command that takes longer than timeouts.command in total times out,
        # however slowly its bytes come (else a trickler holds its slot forever)
        self.assertEqual(nt, len(trick.socks), "trickling clients (a byte every 0.5 s, "
                         "never a whole command) not evicted %.0fs after their command "
                         "began with timeouts.command %.0fs" % (self.TIMEOUT + slack,
                                                                self.TIMEOUT))
        self.assertTrue(greeting_time("127.0.0.1", self.port) < 1.0)


if __name__ == "__main__":
    unittest.main()
