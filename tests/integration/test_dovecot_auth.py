"""common/dovecot_auth against a real Dovecot (Debian dovecot-core): the test starts
its own Dovecot in the foreground with a private configuration under a temporary
directory (passwd-file passdb, auth-client socket in that directory, no network
listener), and drives the module through build/tests/dovecot_auth_probe. The
password file is written by `relayvisorctl passwd`, so the yescrypt hashes we write
are the ones Dovecot verifies."""
import os
import shutil
import subprocess
import tempfile
import unittest

import dovecot
import harness


def probe_path():
    for d in (os.path.join(os.path.dirname(harness.BIN), "tests"),
              os.path.join(harness.ROOT, "build", "tests")):
        p = os.path.join(d, "dovecot_auth_probe")
        if os.access(p, os.X_OK):
            return p
    raise AssertionError("dovecot_auth_probe not built (make unit-bins)")


@unittest.skipUnless(dovecot.available(), "dovecot-core not installed (scripts/deps.sh) or not root")
class DovecotAuthTest(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.top = tempfile.mkdtemp(prefix="rv-dovecot-")
        os.chmod(self.top, 0o755)
        self.later(lambda: shutil.rmtree(self.top, ignore_errors=True))
        users = os.path.join(self.top, "users")
        for user, pw in (("alice", "alice pw"), ("bob", "bob pw")):
            p = subprocess.run([harness.CTL, "passwd", "--stdin", user, users],
                               input=(pw + "\n").encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout)
        self.dv = dovecot.AuthDovecot(os.path.join(self.top, "dovecot"), users)
        self.later(self.dv.stop)
        self.socket = self.dv.socket

    def dovecot_log(self):
        return self.dv.log()

    def probe(self, *creds):
        p = subprocess.run([probe_path(), self.socket, *creds], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode() + self.dovecot_log())
        answers = {}
        for line in p.stdout.decode().splitlines():
            words = line.split(" ", 3)
            answers[int(words[0])] = (words[1], words[2])
        return answers

    def test_plain_ok_fail_unknown_multiplexed(self):
        got = self.probe("alice:alice pw", "bob:alice pw", "nobody:x", "bob:bob pw",
                         "alice:alice p")
        self.assertEqual(got, {1: ("ok", "alice"), 2: ("fail", "bob"),
                               3: ("fail", "nobody"), 4: ("ok", "bob"),
                               5: ("fail", "alice")}, self.dovecot_log())

    def test_many_outstanding(self):
        creds = []
        for i in range(60):
            creds.append("alice:alice pw" if i % 3 == 0 else "bob:wrong %d" % i)
        got = self.probe(*creds)
        self.assertEqual(len(got), 60)
        for i in range(60):
            want = ("ok", "alice") if i % 3 == 0 else ("fail", "bob")
            self.assertEqual(got[i + 1], want, i)

    def test_password_with_odd_octets(self):
        # colons, backslashes, "user=" travel inside base64: never a field of their
        # own (Dovecot itself refuses a password with a tab: "illegal chars")
        users = os.path.join(self.top, "users")
        p = subprocess.run([harness.CTL, "passwd", "--stdin", "carol", users],
                           input=b"b:c\\d user=root\n", stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout)
        os.chmod(users, 0o644)
        got = self.probe("carol:b:c\\d user=root", "carol:b")
        self.assertEqual(got, {1: ("ok", "carol"), 2: ("fail", "carol")},
                         self.dovecot_log())


if __name__ == "__main__":
    unittest.main()
