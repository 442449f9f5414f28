"""Postfix's smtp-source, a real MTA-grade client, against the standalone listener:
many concurrent sessions, one message per connection and many per connection, every
accepted message in the queue exactly once; and relay attempts from outside the LAN
refused one by one without a single queue entry."""
import os
import re
import shutil
import subprocess
import unittest

from harness import ConfDir, Smtpd, TestCase, ctl, free_port, server_yaml

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


class SmtpSource(TestCase):
    def setUp(self):
        super().setUp()
        if not os.access(SMTP_SOURCE, os.X_OK):
            self.skipTest("smtp-source not installed (postfix package)")
        self.lan_port, self.out_port = free_port(), free_port()
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        self.conf.write("a.yaml", server_yaml(self.conf.top) + """lan: [127.0.0.1]
profiles:
  lan-relay: {}
  locked-down:
    lan: []
instances:
  lan:
    listen: ["127.0.0.1:%d"]
    profile: lan-relay
  internet:
    listen: ["127.0.0.1:%d"]
    profile: locked-down
""" % (self.lan_port, self.out_port))
        for name, port in (("lan", self.lan_port), ("internet", self.out_port)):
            d = Smtpd(self.conf, name, wait=("127.0.0.1", port))
            self.later(d.stop)
            setattr(self, name, d)

    def source(self, port, *args):
        p = subprocess.run([SMTP_SOURCE, "-M", "client.test", *args, "127.0.0.1:%d" % port],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        return p.returncode, p.stdout.decode(errors="replace")

    def queue(self):
        rc, out = ctl("-c", self.conf.dir, "queue")
        self.assertEqual(rc, 0, out)
        # a message's line with its recipients' lines (indented, like mailq)
        msgs = []
        for l in out.splitlines():
            if re.match(r"^[0-9A-V]{20} ", l):
                msgs.append(l)
            elif l[:1].isspace() and msgs:
                msgs[-1] += "\n" + l
        return msgs

    def test_concurrent_sessions_all_queued_once(self):
        rc, out = self.source(self.lan_port, "-s", "10", "-m", "200", "-l", "3000",
                              "-f", "me@example.test", "-t", "friend@remote.example")
        self.assertEqual(rc, 0, out)
        rc, out = self.source(self.lan_port, "-d", "-s", "4", "-m", "100", "-l", "70000",
                              "-f", "me@example.test", "-t", "you@example.test")
        self.assertEqual(rc, 0, out)
        q = self.queue()
        self.assertEqual(len(q), 300)
        self.assertEqual(len({l.split()[0] for l in q}), 300)     # QIDs unique
        self.assertEqual(sum("<friend@remote.example>" in l for l in q), 200)
        self.assertEqual(sum("<you@example.test>" in l for l in q), 100)
        log = self.lan.logtext()
        self.assertEqual(len(re.findall(r": from=<me@example.test>, size=\d+, nrcpt=1 "
                                        r"\(queue active\)", log)), 300)

    def test_relay_attempts_refused_nothing_queued(self):
        rc, out = self.source(self.out_port, "-A", "-s", "5", "-m", "100",
                              "-f", "spammer@remote.example", "-t", "victim@remote.example")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.queue(), [])
        log = self.internet.logtext()
        self.assertEqual(log.count("554 5.7.1 <victim@remote.example>: Relay access denied"),
                         100)
        self.assertNotIn("queued as", log)


if __name__ == "__main__":
    unittest.main()
