"""relayvisor-smtpd sessions against the real binary on loopback, over IPv4 and
[::1]: swaks and smtplib transactions, the relay decision as the client sees it,
PIPELINING with a whole transaction in one write, SMTP smuggling, the Postfix log
lines, the spool content (through `relayvisorctl queue`), the supervised start
contract of common/childproto.h, the graceful stop and exit code 78."""
import os
import re
import signal
import smtplib
import socket
import subprocess
import time
import unittest

from harness import (CTL, SMTPD, ConfDir, Dialog, Smtpd, TestCase, ctl, free_port,
                     server_yaml, swaks, wait_port)

QUEUED = re.compile(r"250 2\.0\.0 Ok: queued as (\w+)")


def conf_text(top, p4, p6, s4, s6):
    return server_yaml(top) + """lan: [127.0.0.1, "::1"]
profiles:
  lanrelay:
    relay_nonlocal_senders: true
  nolan:
    lan: []
instances:
  main:
    listen: ["127.0.0.1:%d", "[::1]:%d"]
    profile: lanrelay
  strict:
    listen: ["127.0.0.1:%d", "[::1]:%d"]
    profile: nolan
""" % (p4, p6, s4, s6)


def dialog_from(host, port, source):
    """A Dialog whose client address is source (another loopback address)."""
    d = Dialog.__new__(Dialog)
    d.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    d.s.settimeout(10)
    d.s.bind((source, 0))
    d.s.connect((host, port))
    d.buf = b""
    return d


def wait_log(smtpd, pattern, timeout=5.0):
    """The log text once pattern (a regex) appears in it, else the assertion fails."""
    deadline = time.monotonic() + timeout
    while True:
        text = smtpd.logtext()
        if re.search(pattern, text, re.M):
            return text
        if time.monotonic() > deadline:
            raise AssertionError("log never matched %r:\n%s" % (pattern, text))
        time.sleep(0.05)


class SessionTest(TestCase):
    def setUp(self):
        super().setUp()
        self.p4 = free_port("127.0.0.1")
        self.p6 = free_port("::1")
        self.conf = ConfDir({})
        self.addCleanup(self.conf.cleanup)
        self.s4 = free_port("127.0.0.1")
        self.s6 = free_port("::1")
        self.conf.write("10-main.yaml", conf_text(self.conf.top, self.p4, self.p6,
                                                  self.s4, self.s6))
        self.smtpd = Smtpd(self.conf, "main")
        self.addCleanup(self.smtpd.stop)
        wait_port("127.0.0.1", self.p4, timeout=10)

    def strict(self):
        """The instance whose profile trusts no network."""
        s = Smtpd(self.conf, "strict")
        self.addCleanup(s.stop)
        wait_port("127.0.0.1", self.s4, timeout=10)
        return s, self.s4, self.s6

    def queue_show(self, qid):
        if not os.access(CTL, os.X_OK):
            self.skipTest("relayvisorctl not built")
        rc, out = ctl("-c", self.conf.dir, "queue", "show", qid)
        self.assertEqual(rc, 0, out)
        return out

    # --- clients -----------------------------------------------------------

    def test_swaks_local_delivery(self):
        rc, out = swaks("--server", "127.0.0.1", "--port", str(self.p4),
                        "--from", "s@x.example", "--to", "postmaster@example.test")
        self.assertEqual(rc, 0, out)
        m = QUEUED.search(out)
        self.assertIsNotNone(m, out)
        qid = m.group(1)
        # the session's own disconnect line: an earlier probe connection (the
        # readiness check) logs a disconnect too, before this one is written
        log = wait_log(self.smtpd, r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 ")
        self.assertIn("connect from unknown[127.0.0.1]", log)
        self.assertIn("%s: client=unknown[127.0.0.1]" % qid, log)
        self.assertRegex(log, r"%s: from=<s@x\.example>, size=\d+, nrcpt=1 \(queue active\)"
                         % qid)
        self.assertIn("disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1"
                      " commands=5", log)
        self.assertTrue(os.path.isdir(os.path.join(self.conf.var, "spool")))

    def test_swaks_lan_relay(self):
        rc, out = swaks("--server", "127.0.0.1", "--port", str(self.p4),
                        "--from", "s@x.example", "--to", "v@remote.example")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, QUEUED)

    def test_outside_refused_swaks(self):
        """127.0.0.2 is outside the LAN: relaying refused, postmaster accepted."""
        rc, out = swaks("--server", "127.0.0.1", "--port", str(self.p4),
                        "--local-interface", "127.0.0.2",
                        "--from", "s@x.example", "--to", "v@remote.example")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("554 5.7.1 <v@remote.example>: Relay access denied", out)
        log = wait_log(self.smtpd, r"disconnect from unknown\[127\.0\.0\.2\]")
        self.assertIn("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 "
                      "<v@remote.example>: Relay access denied; from=<s@x.example> "
                      "to=<v@remote.example> proto=ESMTP helo=<", log)
        self.assertRegex(log, r"disconnect from unknown\[127\.0\.0\.2\] ehlo=1 mail=1 "
                         r"rcpt=0/1 (data=0/1 )?quit=1 commands=\d/\d")
        rc, out = swaks("--server", "127.0.0.1", "--port", str(self.p4),
                        "--local-interface", "127.0.0.2",
                        "--from", "s@x.example", "--to", "postmaster@example.test")
        self.assertEqual(rc, 0, out)

    def test_smtplib_ipv6(self):
        with smtplib.SMTP("::1", self.p6, timeout=10) as c:
            code, msg = c.ehlo("client.example")
            self.assertEqual(code, 250)
            refused = c.sendmail("s@x.example", ["postmaster@example.test",
                                                 "v@remote.example"],
                                 b"Subject: v6\r\n\r\nhello over IPv6\r\n")
            self.assertEqual(refused, {})
        log = wait_log(self.smtpd, r"disconnect from unknown\[::1\]")
        self.assertIn("connect from unknown[::1]", log)
        self.assertRegex(log, r"\w+: client=unknown\[::1\]")

    def test_outside_refused_ipv6(self):
        s, p, p6 = self.strict()
        with smtplib.SMTP("::1", p6, timeout=10) as c:
            c.ehlo("client.example")
            c.mail("s@x.example")
            code, msg = c.rcpt("v@remote.example")
            self.assertEqual(code, 554)
            self.assertIn(b"5.7.1 <v@remote.example>: Relay access denied", msg)
            code, msg = c.rcpt("PostMaster@Example.Test.")
            self.assertEqual(code, 250, msg)
        log = wait_log(s, r"disconnect from unknown\[::1\]")
        self.assertIn("NOQUEUE: reject: RCPT from unknown[::1]: 554 5.7.1", log)

    def test_smtplib_message_stored(self):
        body = (b"Subject: stored\r\n\r\n..leading dot\r\n.\r\nx\r\n"
                + b"L" * 1500 + b"\r\n")
        with smtplib.SMTP("127.0.0.1", self.p4, timeout=10) as c:
            c.ehlo("client.example")
            code, msg = c.docmd("MAIL FROM:<s@x.example> SIZE=%d" % len(body))
            self.assertEqual(code, 250)
            c.rcpt("postmaster@example.test")
            code, msg = c.data(body)
            self.assertEqual(code, 250, msg)
            qid = QUEUED.search("250 " + msg.decode()).group(1)
        shown = self.queue_show(qid).replace("\r\n", "\n")
        self.assertIn("sender: s@x.example", shown)
        self.assertIn("rcpt: postmaster@example.test", shown)
        self.assertIn("Received: from client.example (unknown [127.0.0.1])\n"
                      "\tby mx.test.example (relayvisor) with ESMTP id %s\n"
                      "\tfor <postmaster@example.test>; " % qid, shown)
        # smtplib stuffs leading dots, the listener removes exactly one; the
        # 1500-octet line is kept whole, as Postfix keeps it
        self.assertIn("\nSubject: stored\n\n..leading dot\n.\nx\n" + "L" * 1500 + "\n",
                      shown)

    # --- protocol ----------------------------------------------------------

    def test_greeting_and_ehlo(self):
        for host, port in (("127.0.0.1", self.p4), ("::1", self.p6)):
            d = Dialog(host, port)
            code, text = d.reply()
            self.assertEqual(code, 220)
            self.assertEqual(text, "220 mx.test.example ESMTP relayvisor")
            code, text = d.cmd("EHLO client.example")
            self.assertEqual(code, 250)
            lines = text.split("\n")
            self.assertEqual(lines[0], "250-mx.test.example")
            self.assertEqual(lines[1:], ["250-PIPELINING", "250-SIZE 10485760",
                                         "250-8BITMIME", "250-DSN",
                                         "250 ENHANCEDSTATUSCODES"])
            self.assertEqual(d.cmd("HELP")[1][:10], "214 2.0.0 ")
            self.assertEqual(d.cmd("VRFY root")[1][:10], "252 2.5.2 ")
            self.assertEqual(d.cmd("EXPN staff")[1][:10], "502 5.5.1 ")
            self.assertEqual(d.cmd("FROB")[1][:10], "500 5.5.2 ")
            self.assertEqual(d.cmd("QUIT")[1][:10], "221 2.0.0 ")
            self.assertTrue(d.closed())
            d.close()

    def test_order_errors(self):
        d = Dialog("127.0.0.1", self.p4)
        d.reply()
        self.assertEqual(d.cmd("MAIL FROM:<s@x.example>")[1][:9], "503 5.5.1")
        d.cmd("EHLO c")
        self.assertEqual(d.cmd("RCPT TO:<postmaster@example.test>")[1][:9], "503 5.5.1")
        self.assertEqual(d.cmd("DATA")[1][:9], "503 5.5.1")
        self.assertEqual(d.cmd("MAIL FROM:<s@x.example> SIZE=10485761")[1][:9], "552 5.3.4")
        self.assertEqual(d.cmd("MAIL FROM:<s@x.example> X-FOO=1")[1][:9], "555 5.5.4")
        self.assertEqual(d.cmd("MAIL FROM:<s@@>")[1][:9], "501 5.1.7")
        self.assertEqual(d.cmd("MAIL FROM:<s@x.example> BODY=8BITMIME")[1][:9], "250 2.1.0")
        self.assertEqual(d.cmd("MAIL FROM:<s@x.example>")[1][:9], "503 5.5.1")
        self.assertEqual(d.cmd("RCPT TO:<v@remote")[1][:9], "501 5.1.3")
        self.assertEqual(d.cmd("RSET")[1][:9], "250 2.0.0")
        self.assertEqual(d.cmd("NOOP")[1][:9], "250 2.0.0")
        d.close()

    def test_pipelined_whole_transaction(self):
        """Two transactions and QUIT in one write: every reply once, in order."""
        for host, port in (("127.0.0.1", self.p4), ("::1", self.p6)):
            d = Dialog(host, port)
            d.reply()
            batch = ("EHLO client.example\r\n"
                     "MAIL FROM:<s@x.example>\r\nRCPT TO:<postmaster@example.test>\r\n"
                     "RCPT TO:<nobody@remote.example>\r\nDATA\r\n"
                     "Subject: one\r\n\r\nfirst\r\n.\r\n"
                     "MAIL FROM:<s@x.example>\r\nRCPT TO:<a@example.test>\r\nDATA\r\n"
                     "Subject: two\r\n\r\n..second\r\n.\r\n"
                     "NOOP\r\nQUIT\r\n")
            d.send(batch)
            codes = []
            while True:
                try:
                    code, text = d.reply()
                except EOFError:
                    break
                codes.append((code, text.split("\n")[-1]))
            want = [250, 250, 250, 250, 354, 250, 250, 250, 354, 250, 250, 221]
            self.assertEqual([c for c, _ in codes], want, codes)
            queued = [t for c, t in codes if QUEUED.match(t)]
            self.assertEqual(len(queued), 2, codes)
            self.assertNotEqual(queued[0], queued[1])
            self.assertEqual(d.buf, b"")
            d.close()

    def test_bare_lf_refused(self):
        """SMTP smuggling: <LF>.<LF> neither ends the message nor starts another."""
        for smuggle in (b"x\n.\n", b"x\r\n.\n", b"x\n.\r\n", b"x\r.\r\n"):
            d = Dialog("127.0.0.1", self.p4)
            d.reply()
            d.cmd("EHLO c")
            d.cmd("MAIL FROM:<s@x.example>")
            d.cmd("RCPT TO:<postmaster@example.test>")
            self.assertEqual(d.cmd("DATA")[0], 354)
            d.send(b"Subject: smuggle\r\n\r\n" + smuggle +
                   b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@remote.example>\r\n"
                   b"DATA\r\nevil\r\n.\r\n")
            code, text = d.reply()
            self.assertEqual(code, 521, text)
            self.assertIn("5.5.2", text)
            self.assertTrue(d.closed())
            self.assertEqual(d.buf, b"")
            d.close()
        log = self.smtpd.logtext()
        self.assertNotIn("queue active", log)
        self.assertNotIn("evil", log)

    def test_bare_lf_command(self):
        d = Dialog("127.0.0.1", self.p4)
        d.reply()
        d.send("EHLO c\n")
        code, text = d.reply()
        self.assertEqual(code, 521)
        self.assertTrue(d.closed())

    # --- process -------------------------------------------------------------

    def test_sigterm_graceful(self):
        d = Dialog("127.0.0.1", self.p4)
        d.reply()
        d.cmd("EHLO c")
        busy = Dialog("127.0.0.1", self.p4)
        busy.reply()
        busy.cmd("EHLO c")
        busy.cmd("MAIL FROM:<s@x.example>")
        self.smtpd.proc.send_signal(signal.SIGTERM)
        wait_log(self.smtpd, r"stopping: 2 sessions open")
        # no longer accepting
        with self.assertRaises(OSError):
            Dialog("127.0.0.1", self.p4, timeout=2).reply()
        # an open transaction is finished, then refused like the idle session
        busy.cmd("RCPT TO:<postmaster@example.test>")
        self.assertEqual(busy.cmd("DATA")[0], 354)
        code, text = busy.cmd("x\r\n.")
        self.assertEqual(code, 250, text)
        self.assertEqual(busy.cmd("NOOP")[1][:9], "421 4.3.2")
        self.assertEqual(self.smtpd.proc.poll(), None)
        code, text = d.cmd("NOOP")
        self.assertEqual(text, "421 4.3.2 Service shutting down")
        self.assertTrue(d.closed())
        self.assertEqual(self.smtpd.proc.wait(10), 0)

    def test_exit_78(self):
        p = subprocess.run([SMTPD, "-c", self.conf.dir, "--instance", "nosuch"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        self.assertEqual(p.returncode, 78, p.stdout)
        bad = ConfDir({"a.yaml": "server: {hostname: x}\ninstances: {i: {bogus: 1}}\n"})
        self.addCleanup(bad.cleanup)
        p = subprocess.run([SMTPD, "-c", bad.dir, "--instance", "i"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        self.assertEqual(p.returncode, 78, p.stdout)
        self.assertIn(b"a.yaml:", p.stdout)

    def test_supervised_start(self):
        """LISTEN_FDS / LISTEN_PID, READY and STATS over the notify socket."""
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        port = lsock.getsockname()[1]
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.addCleanup(parent.close)
        lfd, cfd = lsock.fileno(), child.fileno()

        # close_fds runs after preexec_fn and would close 4: Python fds are
        # non-inheritable anyway, only the dup2 copies reach the listener
        def fds():
            # via fresh descriptors: one of the two may already be 3 or 4
            a, b = os.dup(lfd), os.dup(cfd)
            os.dup2(a, 3)
            os.dup2(b, 4)
        env = dict(os.environ, LISTEN_FDS="1", RELAYVISOR_NOTIFY_FD="4")
        log = open(os.path.join(self.conf.top, "supervised.log"), "wb")
        self.addCleanup(log.close)
        # LISTEN_PID must be the child's own pid: the shell execs the listener
        proc = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', SMTPD, "-c",
                                 self.conf.dir, "--instance", "strict"],
                                env=env, preexec_fn=fds, close_fds=False,
                                stdout=log, stderr=log)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        lsock.close()
        child.close()
        parent.settimeout(10)
        self.assertEqual(parent.recv(512), b"READY")
        d = Dialog("127.0.0.1", port)
        self.assertEqual(d.reply()[0], 220)
        d.cmd("EHLO c")
        d.cmd("MAIL FROM:<s@x.example>")
        self.assertEqual(d.cmd("RCPT TO:<v@remote.example>")[0], 554)
        parent.send(b"STATS")
        stats = parent.recv(512).decode()
        self.assertRegex(stats, r"^STATS connections=1 active=1 accepted=0 relay_refused=1 "
                         r"refused=0 bytes=0$")
        d.cmd("QUIT")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)


if __name__ == "__main__":
    unittest.main()
