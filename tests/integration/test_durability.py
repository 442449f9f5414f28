"""kill -9 of the listener at random moments, many of them during DATA, never loses
a message that got "250 2.0.0 Ok: queued as QID" and never leaves a partial one
(DESIGN.md section 7).

Client threads send distinct messages (each carries a unique token; sizes from a
few hundred octets to a few hundred KB so that both in-memory and spilled bodies
are hit; some clients dribble their DATA in chunks so that kills land mid-DATA),
record every QID they are given, and note for every other message whether its
terminating CRLF.CRLF was sent. Over several rounds the listener is killed with
SIGKILL and restarted. Then the queue, read through `relayvisorctl queue` and
`relayvisorctl queue show QID` (which read the spool directly, like mailq and
postcat), must hold:
  - every acknowledged message, byte for byte: the Received: header the listener
    prepends, then the message as sent after dot-unstuffing;
  - nothing else but whole messages whose end had been sent when the listener
    died (committed but not yet acknowledged): never a message whose DATA had not
    been finished, never a truncated or mixed body.
QIDs are unique and sort by arrival across restarts."""
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from messages import dot_stuff, make_message
from harness import (CTL, SMTPD, ConfDir, Smtpd, TestCase, ctl, free_port, server_yaml,
                     split_received)

INSTANCE = "dur"
ROUNDS = 6
CLIENTS = 8
QUEUED = re.compile(rb"^250 2\.0\.0 Ok: queued as (\S+)\r$", re.M)
TOKEN = re.compile(rb"X-Test-Token: (tok-\d+-\d+-\d+)")


class Unexpected(Exception):
    pass


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.msgs = {}		# token -> message bytes
        self.acked = {}		# qid -> token
        self.ended = set()	# tokens whose final "." was (being) sent, not acked
        self.partial = set()	# tokens whose DATA was cut before the final "."
        self.refused = set()	# tokens refused at the end of DATA: must be absent
        self.errors = []	# replies that were not what a live listener sends
        self.round_qids = {}	# round -> [qid]


def client(host, port, ledger, rnd, cid, stop, seed):
    rng = random.Random(seed)
    dribble = cid % 2 == 1
    seq = 0
    while not stop.is_set():
        token = "tok-%d-%d-%d" % (rnd, cid, seq)
        seq += 1
        size = rng.choice([300, 2000, 20000, 90000, 300000])
        msg = make_message(token, size, rng, rich=True)
        with ledger.lock:
            ledger.msgs[token] = msg
        state = "before"
        s = None
        try:
            s = socket.create_connection((host, port), timeout=5)
            # the final "." goes in its own write: no Nagle wait for an ACK
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = s.makefile("rb")

            def reply():
                while True:
                    line = f.readline()
                    if not line.endswith(b"\n"):
                        raise EOFError		# the listener died mid-reply
                    if line[3:4] != b"-":
                        return line

            def expect(prefix, what):
                line = reply()
                if not line.startswith(prefix):
                    raise Unexpected("%s: %r" % (what, line))

            expect(b"220", "greeting")
            s.sendall(b"EHLO client.example\r\n")
            expect(b"250", "EHLO")
            s.sendall(b"MAIL FROM:<sender@client.example>\r\n")
            expect(b"250", "MAIL")
            s.sendall(b"RCPT TO:<u%d@example.test>\r\n" % cid)
            expect(b"250", "RCPT")
            s.sendall(b"DATA\r\n")
            expect(b"354", "DATA")
            state = "data"
            body = dot_stuff(msg)
            if dribble:
                step = max(1, len(body) // 8)
                for off in range(0, len(body), step):
                    s.sendall(body[off:off + step])
                    time.sleep(0.004)
            else:
                s.sendall(body)
            # from here on the server may have the whole message
            state = "ended"
            s.sendall(b".\r\n")
            line = reply()
            m = QUEUED.match(line)
            if not m:
                state = "refused"
                raise Unexpected("end of DATA: %r" % line)
            with ledger.lock:
                ledger.acked[m.group(1).decode()] = token
                ledger.round_qids.setdefault(rnd, []).append(m.group(1).decode())
            state = "acked"
            s.sendall(b"QUIT\r\n")
        except Unexpected as e:
            # the listener answered, and not as it should: a failure, not a kill
            with ledger.lock:
                ledger.errors.append("%s (%s)" % (e, token))
                if state == "refused":
                    ledger.refused.add(token)
                elif state == "data":
                    ledger.partial.add(token)
            break
        except (OSError, EOFError):
            with ledger.lock:
                if state == "data":
                    ledger.partial.add(token)
                elif state == "ended":
                    ledger.ended.add(token)
            if state != "acked":
                break
        finally:
            if s is not None:
                s.close()


def parse_show(out):
    """relayvisorctl queue show: envelope lines, a blank line, the message"""
    i = out.find(b"\n\n")
    if i < 0:
        raise AssertionError("no blank line after the envelope: %r" % out[:300])
    return out[:i].decode(errors="replace"), out[i + 2:]


class Durability(TestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(SMTPD):
            self.skipTest("no %s" % SMTPD)
        self.conf = ConfDir({})
        self.addCleanup(self.conf.cleanup)
        self.port = free_port()
        self.conf.write("relayvisor.yaml", server_yaml(self.conf.top) + """
lan: [127.0.0.1]
profiles:
  p:
    lan: [127.0.0.1]
instances:
  %s:
    listen: ["127.0.0.1:%d"]
    profile: p
    max_per_client: 100
    max_message_size: 2M
""" % (INSTANCE, self.port))

    def start(self):
        smtpd = Smtpd(self.conf, INSTANCE, wait=("127.0.0.1", self.port))
        self.addCleanup(smtpd.stop)
        return smtpd

    def queue_list(self):
        rc, out = ctl("-c", self.conf.dir, "queue")
        self.assertEqual(rc, 0, "relayvisorctl queue: %d\n%s" % (rc, out))
        return out

    def queue_show(self, qid):
        p = subprocess.run([CTL, "-c", self.conf.dir, "queue", "show", qid],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        return p.returncode, p.stdout, p.stderr.decode(errors="replace")

    def test_kill9_during_data(self):
        if not os.path.exists(CTL):
            self.skipTest("no %s (relayvisorctl queue reads the spool)" % CTL)
        ledger = Ledger()
        rng = random.Random(int(os.environ.get("RV_SEED", "0")) or time.time_ns())
        t_start = time.monotonic()
        for rnd in range(ROUNDS):
            smtpd = self.start()
            stop = threading.Event()
            threads = [threading.Thread(target=client, args=(
                "127.0.0.1", self.port, ledger, rnd, c, stop, rng.random()), daemon=True)
                for c in range(CLIENTS)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 1.2))
            smtpd.proc.send_signal(signal.SIGKILL)
            smtpd.proc.wait()
            stop.set()
            for t in threads:
                t.join(10)
                self.assertFalse(t.is_alive(), "a client hung after the kill")
        self.assertLess(time.monotonic() - t_start, 30)

        # a restarted listener starts over the crashed spool and still works
        smtpd = self.start()
        tmpdir = os.path.join(self.conf.top, "var", "spool", "tmp")
        if os.path.isdir(tmpdir):
            self.assertEqual(os.listdir(tmpdir), [], "spill files of dead listeners "
                             "were not swept at start")
        smtpd.stop()

        self.assertEqual(ledger.errors, [], "unexpected replies")
        self.assertGreater(len(ledger.acked), ROUNDS * 5, "too few messages acked")
        self.assertGreater(len(ledger.partial), 0, "no kill landed during DATA; "
                           "the test proved nothing")
        # QIDs unique (dict would have collapsed duplicates) and sorted by arrival
        all_qids = [q for r in range(ROUNDS) for q in ledger.round_qids.get(r, [])]
        self.assertEqual(len(all_qids), len(set(all_qids)), "duplicate QIDs")
        rounds = [sorted(ledger.round_qids[r]) for r in sorted(ledger.round_qids)]
        for a, b in zip(rounds, rounds[1:]):
            self.assertLess(a[-1], b[0], "QIDs of a later run sort before an earlier one")

        listing = self.queue_list()
        present = {}
        for line in listing.splitlines():
            fields = line.split()
            if fields and not line[:1].isspace():    # not a recipient line
                present.setdefault(fields[0], line)
        missing = [q for q in ledger.acked if q not in present]
        self.assertEqual(missing, [], "acknowledged messages missing from the queue")

        by_token = {}
        for qid, line in present.items():
            rc, out, err = self.queue_show(qid)
            if rc != 0:
                # a header or summary line of the listing, not a message
                self.assertNotIn(qid, ledger.acked, "queue show %s: %s" % (qid, err))
                continue
            envelope, stored = parse_show(out)
            m = TOKEN.search(stored)
            self.assertIsNotNone(m, "queued message %s is none of ours (partial?): %r"
                                 % (qid, stored[:300]))
            token = m.group(1).decode()
            self.assertNotIn(token, by_token, "message %s stored twice" % token)
            by_token[token] = qid
            if qid in ledger.acked:
                self.assertEqual(ledger.acked[qid], token, "QID %s holds another "
                                 "message" % qid)
            else:
                self.assertIn(token, ledger.ended, "queued message %s (%s) had not been "
                              "completely sent: a partial entry" % (qid, token))
            self.assertIn("sender@client.example", envelope)
            self.assertRegex(envelope, r"u\d@example\.test")
            _, rest = split_received(stored)
            sent = ledger.msgs[token]
            if b"\r\n" not in rest:
                sent = sent.replace(b"\r\n", b"\n")	# the spool keeps LF endings
            self.assertEqual(len(rest), len(sent), "length differs for %s (%s)"
                             % (qid, token))
            self.assertTrue(rest == sent, "body of %s (%s) differs from what was sent"
                            % (qid, token))
            # the listing's size is the stored message's
            self.assertIn(" %d " % len(stored), " %s " % line,
                          "queue listing size for %s: %r, stored %d octets"
                          % (qid, line, len(stored)))
        self.assertEqual(ledger.refused & set(by_token), set(),
                         "messages refused at the end of DATA were queued")
        # every acknowledged message was found and compared above
        self.assertEqual(set(ledger.acked) - set(by_token.values()), set())


if __name__ == "__main__":
    unittest.main()
