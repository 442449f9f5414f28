"""relayvisorctl passwd: --stdin, the two prompts on a terminal (a pty) without echo,
the file's other lines and mode kept, refusals that change nothing. Hashes are
checked with libxcrypt through Python's crypt module."""
import os
import pty
import select
import shutil
import subprocess
import tempfile
import time
import warnings

import harness

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # noqa: E402  (libxcrypt, as the daemon uses)


def passwd_stdin(user, path, password, *extra):
    p = subprocess.run([harness.CTL, "passwd", "--stdin", *extra, user, path],
                       input=password.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def read_lines(path):
    with open(path) as f:
        return f.read().split("\n")


class PasswdTest(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="rv-passwd-")
        self.later(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.path = os.path.join(self.dir, "passwd")

    def hash_of(self, user):
        for line in read_lines(self.path):
            if line.startswith(user + ":"):
                return line.split(":")[1]
        self.fail("%s not in %s" % (user, read_lines(self.path)))

    def test_stdin_creates_and_changes(self):
        code, out, err = passwd_stdin("alice", self.path, "s3cret pass\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(out, "alice: password set in %s\n" % self.path)
        self.assertEqual(os.stat(self.path).st_mode & 0o7777, 0o600)
        h = self.hash_of("alice")
        self.assertTrue(h.startswith("$y$"), h)
        self.assertEqual(crypt.crypt("s3cret pass", h), h)
        self.assertNotEqual(crypt.crypt("s3cret pas", h), h)

        # hand-made lines around it, a group-readable mode: all kept
        with open(self.path, "w") as f:
            f.write("# our users\nalice:%s:alice@example.test,@alice.example\n"
                    "bob:%s\n" % (h, crypt.crypt("bobpw", crypt.mksalt(crypt.METHOD_SHA512))))
        os.chmod(self.path, 0o640)
        before = read_lines(self.path)
        code, out, err = passwd_stdin("alice", self.path, "new one\r\n")
        self.assertEqual(code, 0, err)
        after = read_lines(self.path)
        self.assertEqual(after[0], "# our users")
        self.assertEqual(after[2], before[2])
        h2 = self.hash_of("alice")
        self.assertNotEqual(h2, h)
        self.assertEqual(crypt.crypt("new one", h2), h2)
        self.assertTrue(after[1].endswith(":alice@example.test,@alice.example"), after[1])
        self.assertEqual(os.stat(self.path).st_mode & 0o7777, 0o640)
        self.assertEqual(sorted(os.listdir(self.dir)), ["passwd"])

    def test_refusals_change_nothing(self):
        code, _, err = passwd_stdin("alice", self.path, "first\n")
        self.assertEqual(code, 0, err)
        with open(self.path) as f:
            text = f.read()
        for user, pw, want_code, want in [
                ("alice", "\n", 1, "empty password"),
                ("alice", "", 1, "no password line on stdin"),
                ("alice", "x" * 1100 + "\n", 1, "longer than 1023 octets"),
                ("al:ice", "pw\n", 2, "bad user name"),
                ("al ice", "pw\n", 2, "bad user name")]:
            code, _, err = passwd_stdin(user, self.path, pw)
            self.assertEqual(code, want_code, (user, err))
            self.assertIn(want, err)
            with open(self.path) as f:
                self.assertEqual(f.read(), text)
        p = subprocess.run([harness.CTL, "passwd", "alice", self.path, "extra"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"usage: relayvisorctl passwd [--stdin] USER [FILE]", p.stderr)
        p = subprocess.run([harness.CTL, "passwd", "alice", self.path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"stdin is not a terminal", p.stderr)
        code, _, err = passwd_stdin("bob", os.path.join(self.dir, "no", "such"), "pw\n")
        self.assertEqual(code, 1)
        self.assertIn("No such file or directory", err)

    def tty_session(self, answers):
        """Run passwd on a pty; answer each prompt; returns (exit code, all output)."""
        master, slave = pty.openpty()
        proc = subprocess.Popen([harness.CTL, "passwd", "carol", self.path],
                                stdin=slave, stdout=slave, stderr=slave,
                                close_fds=True)
        os.close(slave)
        self.later(lambda: harness.stop_process(proc))
        out = b""
        deadline = time.monotonic() + 30
        pending = list(answers)
        prompts = [b"New password: ", b"Retype new password: "]
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 1.0)
            if r:
                try:
                    chunk = os.read(master, 1024)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if pending and out.count(b"password: ") > len(answers) - len(pending):
                self.assertIn(prompts[len(answers) - len(pending)], out)
                os.write(master, pending.pop(0).encode() + b"\n")
            if proc.poll() is not None and not r:
                break
        code = proc.wait(30)
        os.close(master)
        return code, out.decode(errors="replace")

    def test_terminal_prompts_twice_without_echo(self):
        code, out = self.tty_session(["tty secret", "tty secret"])
        self.assertEqual(code, 0, out)
        self.assertIn("New password: ", out)
        self.assertIn("Retype new password: ", out)
        self.assertNotIn("tty secret", out)
        self.assertIn("carol: password set in", out)
        h = self.hash_of("carol")
        self.assertEqual(crypt.crypt("tty secret", h), h)

    def test_terminal_mismatch_changes_nothing(self):
        code, out = self.tty_session(["one", "two"])
        self.assertEqual(code, 1, out)
        self.assertIn("the passwords differ; nothing changed", out)
        self.assertNotIn("one", out.replace("done", ""))
        self.assertFalse(os.path.exists(self.path))


if __name__ == "__main__":
    import unittest
    unittest.main()
