"""The shipped submission instance, as `make run` starts it: scripts/demo-secrets.sh
makes its certificate and demo user once (idempotent, private modes, the password
printed once), and the listener on 127.0.0.1:2587 (a free port here) takes mail
only the way a mail client should send it: STARTTLS first (530 5.7.0 before), and
relaying only after AUTH (530 5.7.0 Authentication required otherwise, to any
client, the LAN included), while mail for local users still needs none. Real
clients: swaks with --tls, Python's ssl for the certificate."""
import hashlib
import os
import re
import smtplib
import socket
import ssl
import stat
import subprocess

from harness import CTL, ROOT, ConfDir, TestCase, swaks
from test_audit import demo_secrets, shipped
from test_supervisor import Sup

SCRIPT = os.path.join(ROOT, "scripts", "demo-secrets.sh")


def auth_enabled():
    """The shipped submission file names its password file (server.auth)."""
    with open(os.path.join(ROOT, "conf.d", "30-submission.yaml")) as f:
        return re.search(r"(?m)^server:\n(  #.*\n)*  auth:", f.read()) is not None


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class DemoSecrets(TestCase):

    def setUp(self):
        super().setUp()
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        self.var = os.path.join(self.conf.top, "var")

    def test_made_once_with_private_modes(self):
        out = demo_secrets(self.var)
        m = re.search(r"user demo, password ([0-9a-f]{24}) \(kept in (\S+)\)", out)
        self.assertTrue(m, out)
        self.assertIn("self-signed certificate for mail.example.test", out)
        pw_file = os.path.join(self.var, "auth", "demo-password")
        self.assertEqual(m.group(2), pw_file)
        with open(pw_file) as f:
            self.assertEqual(f.read(), m.group(1) + "\n")
        for path, mode in (("tls/key.pem", 0o600), ("auth/demo-password", 0o600),
                           ("auth/passwd", 0o600), ("tls", 0o700), ("auth", 0o700)):
            st = os.stat(os.path.join(self.var, path))
            self.assertEqual(stat.S_IMODE(st.st_mode), mode, path)
            self.assertEqual(st.st_uid, os.geteuid(), path)
        # the state directory keeps the mode mkdir gives it
        self.assertEqual(stat.S_IMODE(os.stat(self.var).st_mode) & 0o055, 0o055)
        with open(os.path.join(self.var, "auth", "passwd")) as f:
            self.assertRegex(f.read(), r"^demo:\$y\$[^:\n]+\n$")
        # the certificate: self-signed for the configuration's host name
        p = subprocess.run(["openssl", "x509", "-in",
                            os.path.join(self.var, "tls", "cert.pem"), "-noout",
                            "-subject", "-issuer", "-ext", "subjectAltName"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        text = p.stdout.decode()
        self.assertEqual(p.returncode, 0, text)
        self.assertIn("subject=CN = mail.example.test", text)
        self.assertIn("issuer=CN = mail.example.test", text)
        self.assertIn("DNS:localhost", text)
        # the key belongs to the certificate
        pub = [subprocess.run(["openssl", kind, "-in", os.path.join(self.var, "tls", f),
                               *opts], stdout=subprocess.PIPE, timeout=30).stdout
               for kind, f, opts in (("x509", "cert.pem", ["-noout", "-pubkey"]),
                                     ("pkey", "key.pem", ["-pubout"]))]
        self.assertTrue(pub[0].startswith(b"-----BEGIN PUBLIC KEY-----"), pub)
        self.assertEqual(pub[0], pub[1])

        # idempotent: nothing made again, nothing printed, nothing changed
        files = ["tls/cert.pem", "tls/key.pem", "auth/passwd", "auth/demo-password"]
        before = {f: digest(os.path.join(self.var, f)) for f in files}
        self.assertEqual(demo_secrets(self.var), "")
        self.assertEqual(before, {f: digest(os.path.join(self.var, f)) for f in files})

        # a lost key: a new certificate and key, the demo user untouched
        os.unlink(os.path.join(self.var, "tls", "key.pem"))
        out = demo_secrets(self.var)
        self.assertIn("self-signed certificate", out)
        self.assertNotIn("password", out)
        self.assertNotEqual(digest(os.path.join(self.var, "tls", "cert.pem")),
                            before["tls/cert.pem"])
        self.assertEqual(digest(os.path.join(self.var, "auth", "passwd")),
                         before["auth/passwd"])
        self.assertEqual(sorted(os.listdir(os.path.join(self.var, "tls"))),
                         ["cert.pem", "key.pem"])       # no temporary left behind

    def test_other_users_kept(self):
        # a password file an administrator already filled: demo is added, the
        # others stay as they were
        os.makedirs(os.path.join(self.var, "auth"))
        path = os.path.join(self.var, "auth", "passwd")
        p = subprocess.run([CTL, "passwd", "--stdin", "alice", path], input=b"s3cret\n",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout)
        with open(path) as f:
            alice = f.read()
        demo_secrets(self.var)
        with open(path) as f:
            text = f.read()
        self.assertTrue(text.startswith(alice), text)
        self.assertRegex(text, r"(?m)^demo:\$y\$")

    def test_fails_loudly_without_relayvisorctl(self):
        p = subprocess.run(["sh", SCRIPT, self.var], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60,
                           env=dict(os.environ, RELAYVISORCTL="/nonexistent/ctl"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("/nonexistent/ctl is missing", p.stdout.decode())
        self.assertFalse(os.path.exists(os.path.join(self.var, "auth", "demo-password")))


class ShippedSubmission(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.conf = ConfDir({})
        try:
            cls.ports = shipped(cls.conf)
            cls.sup = Sup(cls.conf)
        except BaseException:
            cls.conf.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.sup.stop()
        cls.conf.cleanup()

    def swaks(self, *args):
        return swaks("--server", "127.0.0.1:%d" % self.ports["submission"], *args)

    def test_status_and_certificate(self):
        code, out = self.sup.ctl("status", "submission")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"^submission\s+RUNNING")
        # the listener presents the certificate demo-secrets.sh made
        with socket.create_connection(("127.0.0.1", self.ports["submission"]), 10) as s:
            f = s.makefile("rwb")
            self.assertTrue(f.readline().startswith(b"220 "))
            f.write(b"EHLO client.example\r\n")
            f.flush()
            ehlo = []
            while True:
                line = f.readline()
                ehlo.append(line)
                if line[3:4] != b"-":
                    break
            self.assertIn(b"250-STARTTLS\r\n", ehlo)
            f.write(b"STARTTLS\r\n")
            f.flush()
            self.assertTrue(f.readline().startswith(b"220 "))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(s) as t:
                der = t.getpeercert(binary_form=True)
        with open(os.path.join(self.conf.top, "var", "tls", "cert.pem")) as f:
            self.assertEqual(der, ssl.PEM_cert_to_DER_cert(f.read()))

    def test_tls_required_before_mail(self):
        code, out = self.swaks("--from", "demo@example.test", "--to", "bob@example.test",
                               "--quit-after", "MAIL")
        self.assertNotEqual(code, 0, out)
        self.assertIn("530 5.7.0 Must issue a STARTTLS command first", out)

    def test_relaying_needs_auth(self):
        # over TLS, without AUTH: told to authenticate, from the LAN too
        code, out = self.swaks("--tls", "--from", "demo@example.test",
                               "--to", "stranger@remote.example")
        self.assertNotEqual(code, 0, out)
        self.assertIn("530 5.7.0 <stranger@remote.example>: Authentication required", out)
        log = self.sup.logtext()
        self.assertIn("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 530 5.7.0 "
                      "<stranger@remote.example>: Authentication required", log)
        # a 530 relay refusal is counted as a relay refusal
        code, stats = self.sup.ctl("stats", "submission")
        self.assertEqual(code, 0, stats)
        head, row = stats.splitlines()[:2]
        cols = dict(zip(head.split(), row.split()))
        self.assertGreaterEqual(int(cols["RELAY_REFUSED"]), 1, stats)
        # nothing was queued for it
        code, q = self.sup.ctl("queue")
        self.assertNotIn("stranger@remote.example", q)

    def test_authenticated_user_relays(self):
        self.assertTrue(auth_enabled(), "conf.d/30-submission.yaml names no server.auth")
        with open(os.path.join(self.conf.top, "var", "auth", "demo-password")) as f:
            pw = f.read().strip()
        # AUTH is not offered before TLS
        code, out = self.swaks("--quit-after", "EHLO")
        self.assertNotIn("AUTH", out)
        for mech in ("PLAIN", "LOGIN"):
            code, out = self.swaks("--tls", "--auth", mech, "--auth-user", "demo",
                                   "--auth-password", pw, "--from", "demo@example.test",
                                   "--to", "friend@remote.example")
            self.assertEqual(code, 0, out)
            self.assertRegex(out, r"250 2\.0\.0 Ok: queued as \w+")
        code, out = self.swaks("--tls", "--auth", "PLAIN", "--auth-user", "demo",
                               "--auth-password", pw + "x", "--from", "demo@example.test",
                               "--to", "friend@remote.example")
        self.assertNotEqual(code, 0, out)
        self.assertIn("535 5.7.8", out)
        self.assertIn("sasl_username=demo", self.sup.logtext())

    def test_local_mail_needs_no_auth(self):
        code, out = self.swaks("--tls", "--from", "someone@remote.example",
                               "--to", "bob@example.test")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"250 2\.0\.0 Ok: queued as \w+")
