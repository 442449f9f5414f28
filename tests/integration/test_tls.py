"""STARTTLS and implicit TLS (issue 13) with the real relayvisord and listener:
swaks --tls and --tlsc, posttls-finger in both modes, the CVE-2011-0411
injection test, the RFC 3207 reset after the handshake, require_tls, and a
renewed certificate picked up by `reload` while a TLS session stays open.
Certificates are made by the openssl command in the test's directory."""
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import unittest

from harness import ConfDir, Dialog, free_port, swaks
from test_supervisor import PROFILES, Sup, TestCase, instance_yaml
from harness import server_yaml

POSTTLS_FINGER = shutil.which("posttls-finger") or "/usr/sbin/posttls-finger"
TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")


def make_cert(directory, cn="mx.test.example", stem=""):
    """A self-signed certificate and its key: (cert path, key path)."""
    cert = os.path.join(directory, stem + "cert.pem")
    key = os.path.join(directory, stem + "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + cn],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return cert, key


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def starttls(d):
    """Dialog d after 220 to STARTTLS: wrap its socket (no plaintext is buffered)."""
    assert d.buf == b"", d.buf
    d.s = client_ctx().wrap_socket(d.s, server_hostname="mx.test.example")


class TlsTest(TestCase):

    def start(self, instances):
        """instances: list of (name, port, profile, extra); a certificate in
        the test directory is cert.pem/key.pem."""
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        self.cert, self.key = make_cert(self.conf.top)
        body = "instances:\n" + "".join(instance_yaml(*i) for i in instances)
        self.conf.write("10-server.yaml", server_yaml(self.conf.top))
        self.conf.write("20-profiles.yaml", PROFILES)
        self.conf.write("30-instances.yaml", body.replace("@CERT@", self.cert)
                        .replace("@KEY@", self.key))
        self.sup = Sup(self.conf)
        self.later(self.sup.stop)    # RUNNING: its sockets are bound and served

    def tls_extra(self, more=""):
        return "tls: {cert: @CERT@, key: @KEY@}\n" + more

    def listener_log(self, name):
        path = os.path.join(self.conf.top, "var", "log", name + ".log")
        with open(path, errors="replace") as f:
            return f.read()

    def wait_log(self, name, pattern, what):
        return self.sup.wait_for(lambda: re.search(pattern, self.listener_log(name)),
                                 what=what)

    # ---- STARTTLS ----

    def test_swaks_starttls_delivers_and_logs_postfix_line(self):
        port = free_port()
        self.start([("sub", port, "locked-down", self.tls_extra())])
        code, out = swaks("--server", "127.0.0.1:%d" % port, "--tls",
                          "--from", "a@example.test", "--to", "b@example.test")
        self.assertEqual(code, 0, out)
        self.assertIn("250-STARTTLS", out)
        self.assertIn("220 2.0.0 Ready to start TLS", out)
        self.assertRegex(out, r"250 2\.0\.0 Ok: queued as")
        # the EHLO after the handshake does not offer STARTTLS again
        after = out.split("Ready to start TLS", 1)[1]
        self.assertNotIn("STARTTLS", after.split("MAIL FROM", 1)[0].replace(
            "STARTTLS\n", ""))
        self.wait_log("sub", r"Anonymous TLS connection established from "
                      r"unknown\[127\.0\.0\.1\]: TLSv1\.[23] with cipher \S+ "
                      r"\(\d+/\d+ bits\)", "the TLS log line")

    def test_no_certificate_no_starttls(self):
        port = free_port()
        self.start([("plain", port, "locked-down", "")])
        d = Dialog("127.0.0.1", port)
        self.later(d.close)
        self.assertEqual(d.reply()[0], 220)
        code, text = d.cmd("EHLO client.example")
        self.assertEqual(code, 250)
        self.assertNotIn("STARTTLS", text)
        self.assertEqual(d.cmd("STARTTLS")[0], 502)
        code, out = swaks("--server", "127.0.0.1:%d" % port, "--tls",
                          "--from", "a@example.test", "--to", "b@example.test")
        self.assertNotEqual(code, 0)
        self.assertIn("STARTTLS", out)

    def test_require_tls_refuses_mail_in_clear(self):
        port = free_port()
        self.start([("sub", port, "locked-down", self.tls_extra("require_tls: true"))])
        d = Dialog("127.0.0.1", port)
        self.later(d.close)
        d.reply()
        d.cmd("EHLO client.example")
        code, text = d.cmd("MAIL FROM:<a@example.test>")
        self.assertEqual(code, 530, text)
        self.assertIn("5.7.0 Must issue a STARTTLS command first", text)
        self.assertEqual(d.cmd("STARTTLS")[0], 220)
        starttls(d)
        d.cmd("EHLO client.example")
        self.assertEqual(d.cmd("MAIL FROM:<a@example.test>")[0], 250)
        code, out = swaks("--server", "127.0.0.1:%d" % port, "--tls",
                          "--from", "a@example.test", "--to", "b@example.test")
        self.assertEqual(code, 0, out)

    def test_pipelined_plaintext_after_starttls_is_discarded(self):
        """CVE-2011-0411: STARTTLS and NOOP in one write; the NOOP came in clear
        and is never answered, the first reply in TLS is the one to our EHLO."""
        port = free_port()
        self.start([("sub", port, "locked-down", self.tls_extra())])
        d = Dialog("127.0.0.1", port)
        self.later(d.close)
        d.reply()
        d.cmd("EHLO client.example")
        d.send(b"STARTTLS\r\nNOOP\r\n")
        code, text = d.reply()
        self.assertEqual(code, 220, text)
        starttls(d)
        d.send(b"EHLO after.example\r\n")
        code, text = d.reply()
        self.assertEqual(code, 250, text)
        self.assertTrue(text.startswith("250-mx.test.example"), text)
        self.assertIn("PIPELINING", text)
        self.assertEqual(d.cmd("QUIT")[0], 221)
        self.wait_log("sub", r"6 octets pipelined after STARTTLS discarded",
                      "the discard log line")
        self.assertNotRegex(self.listener_log("sub"), r"noop=[1-9]")

    def test_handshake_resets_the_session(self):
        """RFC 3207 4.2: after TLS, the EHLO before it is forgotten."""
        port = free_port()
        self.start([("sub", port, "locked-down", self.tls_extra())])
        d = Dialog("127.0.0.1", port)
        self.later(d.close)
        d.reply()
        d.cmd("EHLO client.example")
        self.assertEqual(d.cmd("STARTTLS")[0], 220)
        starttls(d)
        code, text = d.cmd("MAIL FROM:<a@example.test>")
        self.assertEqual(code, 503, text)
        self.assertIn("send HELO/EHLO first", text)
        code, text = d.cmd("STARTTLS")
        self.assertEqual(code, 554, text)
        code, text = d.cmd("EHLO again.example")
        self.assertNotIn("STARTTLS", text)

    def test_garbage_handshake_is_logged_and_closed(self):
        port = free_port()
        self.start([("sub", port, "locked-down", self.tls_extra())])
        d = Dialog("127.0.0.1", port)
        self.later(d.close)
        d.reply()
        d.cmd("EHLO client.example")
        self.assertEqual(d.cmd("STARTTLS")[0], 220)
        d.send(b"this is not a TLS ClientHello\r\n" * 4)
        self.assertTrue(d.closed(10))
        self.wait_log("sub", r"SSL_accept error from unknown\[127\.0\.0\.1\]: ",
                      "the SSL_accept error line")

    # ---- implicit TLS ----

    def test_swaks_implicit_tls(self):
        port = free_port()
        self.start([("smtps", port, "locked-down",
                     self.tls_extra("tls_mode: implicit"))])
        code, out = swaks("--server", "127.0.0.1:%d" % port, "--tlsc",
                          "--from", "a@example.test", "--to", "b@example.test")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"<~  220 mx\.test\.example ESMTP")
        self.assertNotIn("STARTTLS", out)
        self.assertRegex(out, r"250 2\.0\.0 Ok: queued as")
        # a client speaking clear SMTP gets no greeting in clear
        d = Dialog("127.0.0.1", port, timeout=2)
        self.later(d.close)
        d.send(b"EHLO clear.example\r\n")
        self.assertTrue(d.closed(10))
        self.assertNotIn(b"220", d.buf)

    def test_posttls_finger_both_modes(self):
        p1, p2 = free_port(), free_port()
        self.start([("sub", p1, "locked-down", self.tls_extra()),
                    ("smtps", p2, "locked-down", self.tls_extra("tls_mode: implicit"))])
        # its own main.cf: no system Postfix configuration is needed
        pf = os.path.join(self.conf.top, "postfix")
        os.mkdir(pf)
        with open(os.path.join(pf, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.6\n")
        env = dict(os.environ, MAIL_CONFIG=pf)
        for port, extra in ((p1, []), (p2, ["-w"])):
            p = subprocess.run([POSTTLS_FINGER, "-c", "-l", "may", *extra,
                                "[127.0.0.1]:%d" % port], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30, env=env)
            out = p.stdout.decode(errors="replace")
            self.assertRegex(out, r"(Untrusted|Anonymous) TLS connection established "
                             r"to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.[23]" % port,
                             out)

    @unittest.skipUnless(TESTSSL, "testssl.sh not installed (scripts/deps.sh)")
    def test_testssl_protocols_and_cipher_categories(self):
        """testssl.sh against the STARTTLS listener, protocols and cipher
        categories only (-p -s: about ten seconds): no SSLv2/3, TLS 1.0 or 1.1,
        no NULL, anonymous, export, LOW, 3DES or CBC suites."""
        port = free_port()
        self.start([("sub", port, "locked-down", self.tls_extra())])
        p = subprocess.run([TESTSSL, "--starttls", "smtp", "-p", "-s", "--quiet",
                            "--color", "0", "--warnings", "off",
                            "127.0.0.1:%d" % port], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = p.stdout.decode(errors="replace")
        lines = {}
        for line in out.splitlines():
            m = re.match(r"^ (SSLv2|SSLv3|TLS 1(?:\.[123])?|NULL|Anonymous NULL|Export|"
                         r"LOW|Triple DES|Obsolete CBC|Strong encryption)\b.*?\s{2,}"
                         r"(not offered|offered)", line)
            if m:
                lines[m.group(1)] = m.group(2)
        for name in ("SSLv2", "SSLv3", "TLS 1", "TLS 1.1", "NULL", "Anonymous NULL",
                     "Export", "LOW", "Triple DES", "Obsolete CBC"):
            self.assertEqual(lines.get(name), "not offered", "%s\n%s" % (name, out))
        for name in ("TLS 1.2", "TLS 1.3", "Strong encryption"):
            self.assertEqual(lines.get(name), "offered", "%s\n%s" % (name, out))

    # ---- reload ----

    def test_renewed_certificate_on_reload_keeps_open_session(self):
        port = free_port()
        self.start([("sub", port, "locked-down", self.tls_extra())])
        old_fp = self.peer_fingerprint(port)
        # a session open in TLS on the old certificate
        d = Dialog("127.0.0.1", port)
        self.later(d.close)
        d.reply()
        d.cmd("EHLO client.example")
        self.assertEqual(d.cmd("STARTTLS")[0], 220)
        starttls(d)
        d.cmd("EHLO client.example")
        self.assertEqual(d.cmd("MAIL FROM:<a@example.test>")[0], 250)
        # certbot renews in place; its deploy hook reloads
        make_cert(self.conf.top, cn="renewed.test.example")
        code, out = self.sup.ctl("reload")
        self.assertEqual(code, 0, out)
        self.wait_log("sub", r"TLS certificate reloaded", "the reload line")
        new_fp = self.peer_fingerprint(port)
        self.assertNotEqual(old_fp, new_fp)
        with open(self.cert) as f:
            pem = f.read()
        self.assertEqual(new_fp, hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())
        # the open session goes on to its end on the old one
        self.assertEqual(d.cmd("RCPT TO:<b@example.test>")[0], 250)
        self.assertEqual(d.cmd("DATA")[0], 354)
        code, text = d.cmd("Subject: t\r\n\r\nbody\r\n.")
        self.assertEqual(code, 250, text)
        self.assertEqual(d.cmd("QUIT")[0], 221)
        # the process was not replaced
        self.assertEqual(self.sup.state("sub")[0], "RUNNING")

    def test_unreadable_certificate_refuses_reload(self):
        port = free_port()
        self.start([("sub", port, "locked-down", self.tls_extra())])
        before = self.peer_fingerprint(port)
        with open(self.key, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
        code, out = self.sup.ctl("reload")
        self.assertNotEqual(code, 0, out)
        self.assertIn("CANT_REREAD", out)
        self.assertIn(self.key, out)
        self.assertEqual(self.peer_fingerprint(port), before)

    def test_missing_key_at_start_is_fatal_with_its_name(self):
        """The supervisor cannot read the key: the listener exits 78 (not
        respawned) and the log says which file and why."""
        port = free_port()
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        missing = os.path.join(self.conf.top, "nokey.pem")
        cert, _ = make_cert(self.conf.top)
        self.conf.write("10-server.yaml", server_yaml(self.conf.top))
        self.conf.write("20-profiles.yaml", PROFILES)
        self.conf.write("30-instances.yaml", "instances:\n" + instance_yaml(
            "sub", port, "locked-down", "tls: {cert: %s, key: %s}" % (cert, missing)))
        self.sup = Sup(self.conf, wait=False)
        self.later(self.sup.stop)
        self.sup.wait_for(lambda: os.path.exists(self.sup.sock) and
                          self.sup.state("sub")[0] == "FATAL", what="sub FATAL")
        self.assertIn("tls key %s: No such file or directory" % missing,
                      self.sup.logtext())
        self.assertIn("exit 78", self.sup.logtext())

    def peer_fingerprint(self, port):
        d = Dialog("127.0.0.1", port)
        try:
            d.reply()
            d.cmd("EHLO fp.example")
            self.assertEqual(d.cmd("STARTTLS")[0], 220)
            starttls(d)
            return hashlib.sha256(d.s.getpeercert(binary_form=True)).hexdigest()
        finally:
            d.close()


if __name__ == "__main__":
    unittest.main()
