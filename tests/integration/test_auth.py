"""SMTP AUTH end to end (issue 13): relayvisord runs relayvisor-auth next to a
listener; real clients (swaks, raw dialogs) authenticate with PLAIN and LOGIN
over STARTTLS against a password file written by `relayvisorctl passwd --stdin`.

Covered: 235/535 replies and the Postfix-format log lines (fail2ban's stock
postfix[mode=auth] filter run by fail2ban-regex with our daemon name), AUTH
neither offered nor accepted before TLS (538), auth_plaintext_loopback, three
failures closing the session with 421, the delay of a client with failures in a
later session, the cancel, 503s, MAIL AUTH=, sender_login_match, the client=
line, a changed password file picked up by `reload` without restarting the auth
process (and a broken one keeping the old users), the auth process killed -9
(454 4.7.0 while it is away, 235 once it is back), relayvisorctl passwd's default
file, and a real Dovecot as the backend."""
import base64
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import dovecot
import harness
from harness import ConfDir, Dialog, free_port, server_yaml, swaks
from test_supervisor import PROFILES, Sup, TestCase, instance_yaml
from test_tls import make_cert, starttls

PASSWORD = "alice secret"


def b64(s):
    return base64.b64encode(s.encode()).decode()


def set_password(path, user, password, confdir=None):
    args = [harness.CTL] + (["-c", confdir] if confdir else []) + \
        ["passwd", "--stdin", user] + ([path] if path else [])
    return subprocess.run(args, input=(password + "\n").encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)


class AuthTest(TestCase):

    def start(self, extra="", profile="locked-down", passwd_lines=None, auth=None,
              profiles=PROFILES):
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        self.cert, self.key = make_cert(self.conf.top)
        self.users = os.path.join(self.conf.top, "users")
        if passwd_lines:
            with open(self.users, "w") as f:
                f.write(passwd_lines)
            os.chmod(self.users, 0o600)
        p = set_password(self.users, "alice", PASSWORD)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.port = free_port()
        auth = auth or "  auth:\n    passwd_file: %s\n" % self.users
        self.conf.write("10-server.yaml", server_yaml(self.conf.top, extra=auth))
        self.conf.write("20-profiles.yaml", profiles)
        tls = "tls: {cert: %s, key: %s}\n" % (self.cert, self.key)
        self.conf.write("30-instances.yaml", "instances:\n" +
                        instance_yaml("sub", self.port, profile, tls + extra))
        self.sup = Sup(self.conf)
        self.later(self.sup.stop)
        self.wait_log("sub", r"connected to the auth process", "the auth connection")

    def log(self, name):
        path = os.path.join(self.conf.top, "var", "log", name + ".log")
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, name, pattern, what, timeout=10.0, count=1):
        return self.sup.wait_for(
            lambda: len(re.findall(pattern, self.log(name))) >= count,
            timeout=timeout, what=what)

    def dialog(self, tls=True):
        d = Dialog("127.0.0.1", self.port, timeout=20)
        self.later(d.close)
        self.assertEqual(d.reply()[0], 220)
        code, text = d.cmd("EHLO client.example")
        self.assertEqual(code, 250, text)
        if tls:
            self.assertEqual(d.cmd("STARTTLS")[0], 220)
            starttls(d)
            code, text = d.cmd("EHLO client.example")
            self.assertEqual(code, 250, text)
        return d, text

    def plain(self, d, user="alice", password=PASSWORD):
        return d.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (user, password)))

    def swaks_auth(self, mech, password=PASSWORD, *more):
        return swaks("--server", "127.0.0.1:%d" % self.port, "--tls", "--auth", mech,
                     "--auth-user", "alice", "--auth-password", password,
                     "--from", "alice@example.test", "--to", "bob@example.test", *more)

    def auth_pid(self):
        return self.sup.state("auth")[1]

    # ---- the exchange ----

    def test_swaks_plain_and_login_over_starttls(self):
        self.start()
        status = self.sup.ctl("status")[1]
        self.assertRegex(status, r"(?m)^auth\s+RUNNING\s+pid \d+")
        self.assertIn("auth", self.sup.ctl("avail")[1])
        for mech in ("PLAIN", "LOGIN"):
            code, out = self.swaks_auth(mech)
            self.assertEqual(code, 0, out)
            self.assertIn("250-AUTH PLAIN LOGIN", out)
            self.assertIn("235 2.7.0 Authentication successful", out)
            self.assertRegex(out, r"250 2\.0\.0 Ok: queued as")
        self.wait_log("sub", r"\w+: client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN, "
                      r"sasl_username=alice\n", "the PLAIN client= line")
        self.wait_log("sub", r"\w+: client=unknown\[127\.0\.0\.1\], sasl_method=LOGIN, "
                      r"sasl_username=alice\n", "the LOGIN client= line")
        self.wait_log("sub", r"disconnect from unknown\[127\.0\.0\.1\] ehlo=2 "
                      r"starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1", "the counters")

    def test_implicit_tls_and_stats(self):
        self.start(extra="tls_mode: implicit")
        code, out = swaks("--server", "127.0.0.1:%d" % self.port, "--tlsc",
                          "--auth", "PLAIN", "--auth-user", "alice",
                          "--auth-password", PASSWORD, "--from", "alice@example.test",
                          "--to", "bob@example.test")
        self.assertEqual(code, 0, out)
        self.assertIn("235 2.7.0", out)
        code, out = self.sup.ctl("stats")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"(?m)^auth\s+1\s+1\s+0\s+0\s")

    def test_wrong_password_is_535_and_logged_for_fail2ban(self):
        self.start()
        for mech in ("PLAIN", "LOGIN"):
            code, out = self.swaks_auth(mech, "not it")
            self.assertNotEqual(code, 0, out)
            self.assertIn("535 5.7.8", out)
            self.assertNotIn("queued as", out)
        d, _ = self.dialog()
        code, text = self.plain(d, "nobody", "x")
        self.assertEqual(code, 535, text)
        for mech in ("PLAIN", "LOGIN", "PLAIN"):
            self.wait_log("sub", r"warning: unknown\[127\.0\.0\.1\]: SASL %s authentication "
                          r"failed: authentication failure\n" % mech, "the failure line")
        if shutil.which("fail2ban-regex") is None:
            self.skipTest("fail2ban-regex not installed")
        logpath = os.path.join(self.conf.top, "var", "log", "sub.log")
        p = subprocess.run(["fail2ban-regex", "-o", "<ip>|<msg>", logpath,
                            "postfix[mode=auth, _daemon=relayvisor/\\S+]"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        hits = [l for l in p.stdout.decode().splitlines() if l.strip()]
        self.assertEqual(len(hits), 3, p.stdout.decode())
        for line in hits:
            ip, _, msg = line.partition("|")
            self.assertEqual(ip, "127.0.0.1")
            self.assertIn("authentication failed", msg)
        # and the filter we ship (contrib/), in auth mode
        fdir = os.path.join(self.conf.top, "fail2ban", "filter.d")
        os.makedirs(fdir)
        os.symlink("/etc/fail2ban/filter.d/common.conf", os.path.join(fdir, "common.conf"))
        shutil.copy(os.path.join(harness.ROOT, "contrib", "fail2ban", "filter.d",
                                 "relayvisor.conf"), fdir)
        p = subprocess.run(["fail2ban-regex", "-o", "<ip>", logpath,
                            os.path.join(fdir, "relayvisor.conf") + "[mode=auth]"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertEqual(p.stdout.decode().split(), ["127.0.0.1"] * 3)

    def test_no_auth_before_tls(self):
        self.start()
        d, text = self.dialog(tls=False)
        self.assertNotIn("AUTH", text)
        code, text = self.plain(d)
        self.assertEqual(code, 538, text)
        self.assertIn("5.7.11 Encryption required for requested authentication "
                      "mechanism", text)
        code, out = swaks("--server", "127.0.0.1:%d" % self.port, "--auth", "PLAIN",
                          "--auth-user", "alice", "--auth-password", PASSWORD,
                          "--from", "alice@example.test", "--to", "bob@example.test")
        self.assertNotEqual(code, 0, out)
        # no 235 reply line (the bare digits can be in the port swaks names)
        self.assertNotRegex(out, r"(?m)^<\S*\s+235[ -]")

    def test_plaintext_loopback(self):
        self.start(extra="auth_plaintext_loopback: true")
        d, text = self.dialog(tls=False)
        self.assertIn("250-AUTH PLAIN LOGIN", text)
        code, text = self.plain(d)
        self.assertEqual(code, 235, text)
        code, out = swaks("--server", "127.0.0.1:%d" % self.port, "--auth", "LOGIN",
                          "--auth-user", "alice", "--auth-password", PASSWORD,
                          "--from", "alice@example.test", "--to", "bob@example.test")
        self.assertEqual(code, 0, out)

    def test_exchange_errors(self):
        self.start()
        d, text = self.dialog()
        self.assertIn("250-AUTH PLAIN LOGIN", text)
        code, text = d.cmd("AUTH LOGIN")
        self.assertEqual((code, text), (334, "334 VXNlcm5hbWU6"))
        code, text = d.cmd("*")
        self.assertEqual(code, 501, text)
        code, text = d.cmd("AUTH CRAM-MD5")
        self.assertEqual(code, 504, text)
        self.assertEqual(d.cmd("MAIL FROM:<alice@example.test>")[0], 250)
        code, text = self.plain(d)
        self.assertEqual(code, 503, text)
        self.assertIn("MAIL transaction in progress", text)
        self.assertEqual(d.cmd("RSET")[0], 250)
        code, text = self.plain(d)
        self.assertEqual(code, 235, text)
        code, text = self.plain(d)
        self.assertEqual(code, 503, text)
        self.assertIn("already authenticated", text)
        code, text = d.cmd("MAIL FROM:<alice@example.test> AUTH=alice+40example.test")
        self.assertEqual(code, 250, text)
        self.assertEqual(d.cmd("RSET")[0], 250)
        self.assertEqual(d.cmd("MAIL FROM:<alice@example.test> AUTH=<>")[0], 250)
        self.assertEqual(d.cmd("RSET")[0], 250)
        code, text = d.cmd("MAIL FROM:<alice@example.test> AUTH=bad+zz")
        self.assertEqual(code, 501, text)

    # ---- brute force ----

    def test_three_failures_close_and_the_client_waits_next_time(self):
        self.start()
        d, _ = self.dialog()
        self.assertEqual(self.plain(d, password="guess 1")[0], 535)
        self.assertEqual(self.plain(d, password="guess 2")[0], 535)
        code, text = self.plain(d, password="guess 3")
        self.assertEqual(code, 535, text)
        code, text = d.reply()
        self.assertEqual(code, 421, text)
        self.assertIn("4.7.0", text)
        self.assertTrue(d.closed(10))
        # the same address in a new session: the right password, but checked
        # only after the delay its 3 failures earned (0.5s doubling: 2s)
        delayed = len(re.findall(r"AUTH delayed", self.log("sub")))
        d, _ = self.dialog()
        t0 = time.monotonic()
        code, text = self.plain(d)
        waited = time.monotonic() - t0
        self.assertEqual(code, 235, text)
        self.assertGreaterEqual(waited, 1.9)
        self.wait_log("sub", r"unknown\[127\.0\.0\.1\]: AUTH delayed 2s after 3 failures",
                      "the delay line")
        # a success clears the address: no delay for the next session
        d2, _ = self.dialog()
        self.assertEqual(self.plain(d2)[0], 235)
        self.assertEqual(len(re.findall(r"AUTH delayed", self.log("sub"))), delayed + 1)

    # ---- policy ----

    def test_sender_login_match(self):
        profiles = PROFILES + "  own:\n    lan: []\n    sender_login_match: true\n"
        self.start(profile="own",
                   passwd_lines="alice:!:alice@example.test,@sales.example.test\n",
                   profiles=profiles)
        d, _ = self.dialog()
        self.assertEqual(self.plain(d)[0], 235)
        for sender in ("alice@example.test", "anyone@sales.example.test", ""):
            code, text = d.cmd("MAIL FROM:<%s>" % sender)
            self.assertEqual(code, 250, (sender, text))
            self.assertEqual(d.cmd("RSET")[0], 250)
        code, text = d.cmd("MAIL FROM:<bob@example.test>")
        self.assertEqual(code, 553, text)
        self.assertEqual(text, "553 5.7.1 <bob@example.test>: Sender address rejected: "
                         "not owned by user alice")
        self.wait_log("sub", r"NOQUEUE: reject: MAIL from unknown\[127\.0\.0\.1\]: 553 "
                      r"5\.7\.1 <bob@example\.test>: Sender address rejected: not owned "
                      r"by user alice;", "the reject line")
        # without AUTH the profile checks nothing
        d, _ = self.dialog()
        self.assertEqual(d.cmd("MAIL FROM:<bob@example.test>")[0], 250)

    # ---- the auth process ----

    def test_reload_picks_up_a_changed_file_without_restart(self):
        self.start()
        pid = self.auth_pid()
        self.assertGreater(pid, 0)
        p = set_password(self.users, "alice", "new secret")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = set_password(self.users, "carol", "carol pw")
        self.assertEqual(p.returncode, 0, p.stderr)
        code, out = self.sup.ctl("reload")
        self.assertEqual(code, 0, out)
        self.wait_log("auth", r"password file \S+ reloaded: 2 users", "the reload")
        self.assertEqual(self.auth_pid(), pid)
        d, _ = self.dialog()
        self.assertEqual(self.plain(d)[0], 535)
        self.assertEqual(self.plain(d, password="new secret")[0], 235)
        d, _ = self.dialog()
        self.assertEqual(self.plain(d, "carol", "carol pw")[0], 235)
        # a broken file: logged FILE:LINE, the users of before stay
        with open(self.users, "a") as f:
            f.write("dave:$1$legacy$md5hash\n")
        code, out = self.sup.ctl("reload")
        self.wait_log("auth", re.escape(self.users) + r":3: ", "the FILE:LINE error")
        self.wait_log("auth", r"password file not reloaded: the previous 2 users stay",
                      "the kept table")
        d, _ = self.dialog()
        self.assertEqual(self.plain(d, "carol", "carol pw")[0], 235)
        self.assertEqual(self.auth_pid(), pid)

    def test_a_symlinked_password_file_is_refused(self):
        self.start()
        link = os.path.join(self.conf.top, "users-link")
        os.symlink(self.users, link)
        self.conf.write("10-server.yaml", server_yaml(
            self.conf.top, extra="  auth:\n    passwd_file: %s\n" % link))
        self.sup.ctl("reload")
        self.wait_log("auth", r"users-link: .*symbolic link: refused", "the refusal",
                      timeout=20)

    def test_auth_process_killed(self):
        self.start()
        pid = self.auth_pid()
        os.kill(pid, signal.SIGKILL)
        self.wait_log("sub", r"auth process: connection lost", "the lost connection")
        # keep it away for the test (it would be back within a second)
        self.sup.ctl("stop", "auth")
        self.sup.wait_for(lambda: self.sup.state("auth")[0] == "STOPPED",
                          what="auth STOPPED")
        # every connection the listener got (a quick restart may have given it
        # one before the stop) is gone again
        self.sup.wait_for(lambda: len(re.findall(r"auth process: connection lost",
                                                 self.log("sub"))) >=
                          len(re.findall(r"connected to the auth process",
                                         self.log("sub"))),
                          what="the listener without an auth connection")
        d, _ = self.dialog()
        code, text = self.plain(d)
        self.assertEqual(code, 454, text)
        self.assertIn("4.7.0 Temporary authentication failure", text)
        # (it may have come back and gone again before the stop: count from here)
        before = len(re.findall(r"connected to the auth process", self.log("sub")))
        self.assertEqual(self.sup.ctl("start", "auth")[0], 0)
        self.wait_log("sub", r"connected to the auth process", "the new connection",
                      count=before + 1)
        code, text = self.plain(d)
        self.assertEqual(code, 235, text)
        # the 454 is no guess: fail2ban's filter must not count it
        self.assertNotRegex(self.log("sub"), r"SASL PLAIN authentication failed")

    def test_ctl_passwd_default_file(self):
        self.start()
        p = set_password(None, "erin", "erin pw", confdir=self.conf.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(self.users) as f:
            self.assertRegex(f.read(), r"(?m)^erin:\$y\$")
        bare = ConfDir({"10-server.yaml": server_yaml(self.conf.top)})
        self.later(bare.cleanup)
        p = set_password(None, "erin", "erin pw", confdir=bare.dir)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"names no server.auth.passwd_file", p.stderr)


@unittest.skipUnless(dovecot.available(), "dovecot-core not installed (scripts/deps.sh) or not root")
class DovecotBackendTest(AuthTest):
    """The listener's AUTH answered by a real Dovecot through relayvisor-auth."""

    def test_dovecot_backend(self):
        top = tempfile.mkdtemp(prefix="rv-dovecot-")
        os.chmod(top, 0o755)
        self.later(lambda: shutil.rmtree(top, ignore_errors=True))
        p = set_password(os.path.join(top, "users"), "alice", PASSWORD)
        self.assertEqual(p.returncode, 0, p.stderr)
        # the auth process connects as the confined user: a socket anyone may use
        dv = dovecot.AuthDovecot(os.path.join(top, "dovecot"), os.path.join(top, "users"),
                                 mode="0666")
        self.later(dv.stop)
        sock = dv.socket
        self.start(auth="  auth:\n    dovecot: %s\n" % sock)
        self.wait_log("auth", r"connected to dovecot", "the Dovecot connection")
        code, out = self.swaks_auth("PLAIN")
        self.assertEqual(code, 0, out)
        self.assertIn("235 2.7.0", out)
        code, out = self.swaks_auth("LOGIN", "wrong")
        self.assertIn("535 5.7.8", out)
        d, _ = self.dialog()
        self.assertEqual(self.plain(d)[0], 235)


# only the Dovecot test runs in the subclass
for _name in list(vars(AuthTest)):
    if _name.startswith("test_"):
        setattr(DovecotBackendTest, _name, None)


if __name__ == "__main__":
    unittest.main()
