"""relayvisor-smtpd limits against the real binary, each with a small configured
value: connection caps (instance and per client), command and data timeouts, the
error count, line length, message size (SIZE= and during DATA), recipients, the
access list, the hop count; and output backpressure (a client that sends
thousands of pipelined commands gets every reply exactly once)."""
import socket
import threading
import time
import unittest

from harness import ConfDir, Dialog, Smtpd, free_port, server_yaml, swaks, wait_port
from test_smtp_session import dialog_from, wait_log


class LimitsTest(unittest.TestCase):
    SPECS = {
        "conns": "max_connections: 2",
        "perclient": "max_per_client: 2",
        "timeouts": "timeouts: {command: 1s, data: 1s}",
        "small": "max_errors: 3\n    max_recipients: 2\n    max_message_size: 4K",
        "acl": "access: lan",
        "v6": "max_per_client: 1\n    timeouts: {command: 1s, data: 1s}",
    }

    @classmethod
    def write_conf(cls):
        insts = ""
        for name, spec in cls.SPECS.items():
            if name == "v6":
                listen = '"[::1]:%d"' % cls.p6
            else:
                listen = '"127.0.0.1:%d"' % cls.ports[name]
            insts += "  %s:\n    listen: [%s]\n    profile: p\n    %s\n" % (name, listen, spec)
        cls.conf.write("10-limits.yaml", server_yaml(cls.conf.top) +
                       'lan: [127.0.0.1, "::1"]\nprofiles:\n  p: {}\ninstances:\n' + insts)

    @classmethod
    def setUpClass(cls):
        cls.conf = ConfDir({})
        cls.ports = {name: free_port("127.0.0.1") for name in cls.SPECS}
        cls.p6 = free_port("::1")
        cls.smtpd = {}
        try:
            for name in cls.SPECS:
                # a free port can be taken by someone else before we bind it: retry
                for attempt in range(3):
                    cls.write_conf()
                    wait = ("::1", cls.p6) if name == "v6" else ("127.0.0.1", cls.ports[name])
                    s = Smtpd(cls.conf, name)
                    try:
                        wait_port(*wait, timeout=10)
                        cls.smtpd[name] = s
                        break
                    except TimeoutError:
                        s.stop()
                        if attempt == 2:
                            raise
                        if name == "v6":
                            cls.p6 = free_port("::1")
                        else:
                            cls.ports[name] = free_port("127.0.0.1")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in cls.smtpd.values():
            s.stop()
        cls.conf.cleanup()

    def dialog(self, name, greet=True):
        d = Dialog("127.0.0.1", self.ports[name])
        self.addCleanup(d.close)
        if greet:
            code, text = d.reply()
            self.assertEqual(code, 220, text)
        return d

    # --- connections --------------------------------------------------------

    def test_max_connections(self):
        a, b = self.dialog("conns"), self.dialog("conns")
        c = self.dialog("conns", greet=False)
        code, text = c.reply()
        self.assertEqual(text, "421 4.7.0 Too many connections")
        self.assertTrue(c.closed())
        # the first two are served; once one leaves, a new client is welcome
        self.assertEqual(a.cmd("NOOP")[0], 250)
        self.assertEqual(b.cmd("QUIT")[0], 221)
        self.assertTrue(b.closed())
        wait_log(self.smtpd["conns"], r"disconnect from .* quit=1")
        d = self.dialog("conns")
        self.assertEqual(d.cmd("NOOP")[0], 250)

    def test_max_per_client(self):
        a, b = self.dialog("perclient"), self.dialog("perclient")
        c = self.dialog("perclient", greet=False)
        code, text = c.reply()
        self.assertEqual(code, 421)
        self.assertTrue(text.startswith("421 4.7.0 Too many connections"), text)
        self.assertTrue(c.closed())
        # another client address is counted on its own
        other = dialog_from("127.0.0.1", self.ports["perclient"], "127.0.0.3")
        self.addCleanup(other.close)
        self.assertEqual(other.reply()[0], 220)
        log = wait_log(self.smtpd["perclient"], r"Connection concurrency limit exceeded")
        self.assertRegex(log, r"warning: Connection concurrency limit exceeded: 3 from "
                         r"unknown\[127\.0\.0\.1\]")
        self.assertEqual(a.cmd("NOOP")[0], 250)
        self.assertEqual(b.cmd("NOOP")[0], 250)

    def test_max_per_client_ipv6(self):
        a = Dialog("::1", self.p6)
        self.addCleanup(a.close)
        self.assertEqual(a.reply()[0], 220)
        b = Dialog("::1", self.p6)
        self.addCleanup(b.close)
        self.assertEqual(b.reply()[0], 421)
        self.assertTrue(b.closed())

    def test_access_list(self):
        d = dialog_from("127.0.0.1", self.ports["acl"], "127.0.0.2")
        self.addCleanup(d.close)
        code, text = d.reply()
        self.assertEqual(code, 554)
        self.assertTrue(text.startswith("554 5.7.1 "), text)
        self.assertIn("Access denied", text)
        self.assertTrue(d.closed())
        log = wait_log(self.smtpd["acl"], r"disconnect from unknown\[127\.0\.0\.2\]")
        self.assertIn("NOQUEUE: reject: CONNECT from unknown[127.0.0.2]: 554 5.7.1 "
                      "<unknown[127.0.0.2]>: Client host rejected: Access denied", log)
        ok = self.dialog("acl")
        self.assertEqual(ok.cmd("NOOP")[0], 250)

    # --- timeouts ----------------------------------------------------------

    def test_command_timeout(self):
        d = self.dialog("timeouts")
        d.cmd("EHLO c")
        t0 = time.monotonic()
        code, text = d.reply()
        self.assertEqual(text, "421 4.4.2 mx.test.example Error: timeout exceeded")
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)
        self.assertTrue(d.closed())
        wait_log(self.smtpd["timeouts"], r"timeout after EHLO from unknown\[127\.0\.0\.1\]")

    def test_data_timeout(self):
        d = self.dialog("timeouts")
        d.cmd("EHLO c")
        d.cmd("MAIL FROM:<s@x.example>")
        d.cmd("RCPT TO:<postmaster@example.test>")
        self.assertEqual(d.cmd("DATA")[0], 354)
        d.send("Subject: slow\r\n\r\npartial line")
        code, text = d.reply()
        self.assertEqual(code, 421)
        self.assertIn("4.4.2", text)
        self.assertTrue(d.closed())
        log = wait_log(self.smtpd["timeouts"], r"timeout after DATA from unknown\[127\.0\.0\.1\]")
        self.assertNotIn("queue active", log)

    def test_timeout_ipv6(self):
        d = Dialog("::1", self.p6)
        self.addCleanup(d.close)
        d.reply()
        code, text = d.reply()
        self.assertEqual(code, 421)
        wait_log(self.smtpd["v6"], r"timeout after CONNECT from unknown\[::1\]")

    def test_lost_connection(self):
        d = self.dialog("timeouts")
        d.cmd("EHLO c")
        d.cmd("MAIL FROM:<s@x.example>")
        d.cmd("RCPT TO:<postmaster@example.test>")
        d.close()
        wait_log(self.smtpd["timeouts"],
                 r"lost connection after RCPT from unknown\[127\.0\.0\.1\]")

    # --- per session -------------------------------------------------------

    def test_max_errors(self):
        d = self.dialog("small")
        for i in range(3):
            self.assertEqual(d.cmd("BOGUS%d" % i)[0], 500)
        code, text = d.cmd("NOOP")
        self.assertEqual(text, "421 4.7.0 mx.test.example Error: too many errors")
        self.assertTrue(d.closed())
        wait_log(self.smtpd["small"], r"too many errors after UNKNOWN from unknown\[127")

    def test_line_too_long(self):
        d = self.dialog("small")
        ok = "NOOP " + "x" * (512 - 7)
        self.assertEqual(len(ok) + 2, 512)
        self.assertEqual(d.cmd(ok)[0], 250)
        code, text = d.cmd(ok + "x")
        self.assertEqual(text[:9], "500 5.5.0")
        code, text = d.cmd("NOOP " + "y" * 5000)
        self.assertEqual(text[:9], "500 5.5.0")
        self.assertEqual(d.cmd("NOOP")[0], 250)

    def test_max_recipients(self):
        d = self.dialog("small")
        d.cmd("EHLO c")
        d.cmd("MAIL FROM:<s@x.example>")
        self.assertEqual(d.cmd("RCPT TO:<a@example.test>")[0], 250)
        self.assertEqual(d.cmd("RCPT TO:<b@example.test>")[0], 250)
        self.assertEqual(d.cmd("RCPT TO:<c@example.test>")[1][:9], "452 4.5.3")

    def test_size(self):
        d = self.dialog("small")
        code, text = d.cmd("EHLO c")
        self.assertIn("250-SIZE 4096", text)
        self.assertEqual(d.cmd("MAIL FROM:<s@x.example> SIZE=4097")[1][:9], "552 5.3.4")
        self.assertEqual(d.cmd("MAIL FROM:<s@x.example> SIZE=100")[0], 250)
        d.cmd("RCPT TO:<a@example.test>")
        self.assertEqual(d.cmd("DATA")[0], 354)
        # the size announced was a lie: read to the end, then refuse
        d.send("Subject: big\r\n\r\n" + ("z" * 78 + "\r\n") * 100)
        code, text = d.cmd(".")
        self.assertEqual(text[:9], "552 5.3.4")
        self.assertEqual(d.cmd("NOOP")[0], 250)
        rc, out = swaks("--server", "127.0.0.1", "--port", str(self.ports["small"]),
                        "--to", "postmaster@example.test", "--body", "y" * 5000)
        self.assertIn("552 5.3.4", out)

    def test_too_many_hops(self):
        d = self.dialog("small")
        d.cmd("EHLO c")
        for hops, want in ((50, 250), (51, 554)):
            d.cmd("MAIL FROM:<s@x.example>")
            d.cmd("RCPT TO:<a@example.test>")
            self.assertEqual(d.cmd("DATA")[0], 354)
            d.send("".join("Received: from h%d by h%d\r\n" % (i, i + 1) for i in range(hops)))
            code, text = d.cmd("\r\nloop\r\n.")
            self.assertEqual(code, want, text)
            if want == 554:
                self.assertEqual(text[:9], "554 5.4.6")

    def test_backpressure(self):
        """400 000 pipelined HELOs from a client with a tiny receive buffer that
        reads late: the listener's writes block (EAGAIN), it stops reading, and
        still every reply comes exactly once, in order. (Not NOOPs: past 100 they
        count as errors, Postfix's smtpd_junk_command_limit.)"""
        n = 400000
        d = Dialog.__new__(Dialog)
        d.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(d.s.close)
        d.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        d.s.settimeout(30)
        d.s.connect(("127.0.0.1", self.ports["small"]))
        d.buf = b""
        self.assertEqual(d.reply()[0], 220)
        sender = threading.Thread(target=d.send, args=("HELO c\r\n" * n + "QUIT\r\n",))
        sender.start()
        time.sleep(0.3)		# let the listener's output fill up first
        got = []
        while True:
            chunk = d.s.recv(65536)
            if not chunk:
                break
            got.append(chunk)
        sender.join()
        lines = b"".join(got).split(b"\r\n")
        self.assertEqual(lines.count(b"250 mx.test.example"), n)
        self.assertEqual(lines[-2:], [b"221 2.0.0 Bye", b""])
        self.assertEqual(len(lines), n + 2)

if __name__ == "__main__":
    unittest.main()
