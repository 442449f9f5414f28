"""relayvisorctl against a live relayvisord: every verb's output and exit code,
the interactive prompt, and `queue` straight from the spool."""
import os
import tempfile
import shutil
import re
import signal
import smtplib
import subprocess
import time
import unittest

from harness import CTL, ConfDir, free_port
from test_supervisor import TestCase, Sup, config_files, greeting, pid_alive

STATUS_RE = r"^%s\s+%s\s+%s"


def pad(name, state):
    return "%-33s%-10s" % (name, state)


def ctl_for_anyone(test):
    """A copy of relayvisorctl another user can execute: the tree may sit in a
    directory only root can traverse (a clone in /root)."""
    d = tempfile.mkdtemp(prefix="rv-ctl-")
    os.chmod(d, 0o755)
    test.later(lambda: shutil.rmtree(d, ignore_errors=True))
    path = os.path.join(d, "relayvisorctl")
    shutil.copy2(CTL, path)
    os.chmod(path, 0o755)
    return path


class CtlTest(TestCase):
    """One supervisor for the read-only verbs; tests that change state start
    their own."""

    @classmethod
    def setUpClass(cls):
        cls.pi, cls.pl = free_port(), free_port()
        cls.conf = ConfDir({})
        for name, text in config_files(cls.conf.top, [
                ("internet", cls.pi, "locked-down", ""),
                ("lan", cls.pl, "lan-relay", "procs: 2")]).items():
            cls.conf.write(name, text)
        cls.sup = Sup(cls.conf)

    @classmethod
    def tearDownClass(cls):
        cls.sup.stop()
        cls.conf.cleanup()

    def ctl(self, *args, **kw):
        return self.sup.ctl(*args, **kw)

    def own(self, instances):
        conf = ConfDir({})
        self.later(conf.cleanup)
        for name, text in config_files(conf.top, instances).items():
            conf.write(name, text)
        sup = Sup(conf)
        self.later(sup.stop)
        return sup

    def test_status(self):
        code, out = self.ctl("status")
        self.assertEqual(code, 0, out)
        lines = out.splitlines()
        self.assertEqual(len(lines), 3)
        for line, name in zip(lines, ["internet", "lan:00", "lan:01"]):
            self.assertTrue(line.startswith(pad(name, "RUNNING")), line)
            self.assertRegex(line[43:], r"^pid \d+, uptime \d+:\d\d:\d\d$")
        code, out = self.ctl("status", "lan")
        self.assertEqual(code, 0)
        self.assertEqual([l[:33].strip() for l in out.splitlines()], ["lan:00", "lan:01"])
        code, out = self.ctl("status", "lan:01", "internet")
        self.assertEqual(code, 0)
        self.assertEqual(len(out.splitlines()), 2)
        code, out = self.ctl("status", "nosuch")
        self.assertEqual((code, out), (4, "nosuch: ERROR (no such process)\n"))
        code, out = self.ctl("status", "internet", "nosuch")
        self.assertEqual(code, 4)
        self.assertIn("internet", out)

    def test_status_not_running_exit_3(self):
        sup = self.own([("a", free_port(), "locked-down", ""),
                        ("b", free_port(), "locked-down", "")])
        code, out = sup.ctl("stop", "b")
        self.assertEqual((code, out), (0, "b: stopped\n"))
        code, out = sup.ctl("status")
        self.assertEqual(code, 3)
        self.assertRegex(out, r"(?m)^b\s{32}STOPPED   \w{3} \d\d \d\d:\d\d [AP]M$")
        code, out = sup.ctl("status", "a")
        self.assertEqual(code, 0)
        code, out = sup.ctl("status", "b")
        self.assertEqual(code, 3)

    def test_start_stop_restart(self):
        pa = free_port()
        sup = self.own([("a", pa, "locked-down", ""), ("b", free_port(), "lan-relay",
                                                       "procs: 2")])
        pid = sup.state("a")[1]
        # supervisorctl: what was asked already holds, so exit 0
        self.assertEqual(sup.ctl("start", "a"), (0, "a: ERROR (already started)\n"))
        self.assertEqual(sup.ctl("stop", "a"), (0, "a: stopped\n"))
        self.assertFalse(pid_alive(pid))
        self.assertEqual(sup.ctl("stop", "a"), (0, "a: ERROR (not running)\n"))
        self.assertEqual(sup.ctl("start", "a"), (0, "a: started\n"))
        self.assertTrue(greeting(pa).startswith(b"220"))
        pid2 = sup.state("a")[1]
        self.assertNotEqual(pid2, pid)
        self.assertEqual(sup.ctl("restart", "a"), (0, "a: stopped\na: started\n"))
        self.assertNotIn(sup.state("a")[1], (0, pid2))
        self.assertEqual(sup.ctl("restart", "b"),
                         (0, "b:00: stopped\nb:00: started\nb:01: stopped\nb:01: started\n"))
        self.assertEqual(sup.ctl("stop", "b:01"), (0, "b:01: stopped\n"))
        self.assertEqual(sup.ctl("restart", "b:01"),
                         (0, "b:01: ERROR (not running)\nb:01: started\n"))
        self.assertEqual(sup.ctl("stop", "all"),
                         (0, "a: stopped\nb:00: stopped\nb:01: stopped\n"))
        self.assertEqual(sup.ctl("start", "all"),
                         (0, "a: started\nb:00: started\nb:01: started\n"))
        self.assertEqual(sup.ctl("start", "nosuch"), (4, "nosuch: ERROR (no such process)\n"))
        self.assertEqual(sup.ctl("stop", "nosuch"), (4, "nosuch: ERROR (no such process)\n"))
        # supervisorctl's codes without a name: start 2, stop and restart 1
        self.assertEqual(sup.ctl("start"), (2, "Error: start requires a process name\n"))
        self.assertEqual(sup.ctl("stop"), (1, "Error: stop requires a process name\n"))
        self.assertEqual(sup.ctl("restart"),
                         (1, "Error: restart requires a process name\n"))

    def test_reread_update_reload_unchanged(self):
        for verb in ("reread", "update", "reload"):
            self.assertEqual(self.ctl(verb), (0, "No config updates to processes\n"))

    def test_avail(self):
        code, out = self.ctl("avail")
        self.assertEqual(code, 0)
        self.assertEqual(out.splitlines(), [
            "%-32s %-10s %-8s %s" % ("internet", "in use", "auto", "127.0.0.1:%d" % self.pi),
            "%-32s %-10s %-8s %s" % ("lan", "in use", "auto", "127.0.0.1:%d" % self.pl)])

    def test_pid(self):
        code, out = self.ctl("pid")
        self.assertEqual((code, out), (0, "%d\n" % self.sup.proc.pid))
        st = self.sup.status()
        self.assertEqual(self.ctl("pid", "internet"), (0, "%d\n" % st["internet"][1]))
        code, out = self.ctl("pid", "lan")
        self.assertEqual(code, 0)
        self.assertEqual(out, "%-33s%d\n%-33s%d\n" % ("lan:00", st["lan:00"][1],
                                                      "lan:01", st["lan:01"][1]))
        code, out = self.ctl("pid", "all")
        self.assertEqual(len(out.splitlines()), 3)
        self.assertEqual(self.ctl("pid", "nosuch"), (4, "nosuch: ERROR (no such process)\n"))

    def test_pid_of_stopped_is_0(self):
        sup = self.own([("a", free_port(), "locked-down", "")])
        sup.ctl("stop", "a")
        self.assertEqual(sup.ctl("pid", "a"), (7, "0\n"))

    def test_signal(self):
        sup = self.own([("a", free_port(), "locked-down", "")])
        pid = sup.state("a")[1]
        self.assertEqual(sup.ctl("signal", "TERM", "a"), (0, "a: signalled\n"))
        sup.wait_for(lambda: not pid_alive(pid), what="a gone after SIGTERM")
        sup.wait_for(lambda: "exited: a (exit status 0; expected)" in sup.logtext(),
                     what="the exit logged")
        # autorestart unexpected: a clean exit is not restarted
        sup.wait_for(lambda: sup.state("a")[0] == "EXITED", what="EXITED")
        self.assertEqual(sup.ctl("signal", "TERM", "a"), (1, "a: ERROR (not running)\n"))
        code, out = sup.ctl("signal", "NOSUCHSIG", "a")
        self.assertEqual((code, out), (2, "ERROR: bad signal name\n"))
        self.assertEqual(sup.ctl("signal", "HUP", "nosuch"),
                         (4, "nosuch: ERROR (no such process)\n"))
        # supervisorctl: signal without a process name (or without both) exits 1
        self.assertEqual(sup.ctl("signal", "HUP")[0], 1)
        self.assertEqual(sup.ctl("signal")[0], 1)

    def test_tail(self):
        greeting(self.pi)
        self.sup.wait_for(lambda: "connect from" in self.ctl("tail", "internet")[1],
                          what="connect line in the log")
        code, out = self.ctl("tail", "internet")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"relayvisor/internet/smtpd\[\d+\]: ")
        self.assertLessEqual(len(out), 1600)
        self.assertEqual(self.ctl("tail", "nosuch"), (4, "nosuch: ERROR (no such process)\n"))
        self.assertEqual(self.ctl("tail")[0], 2)

    def test_tail_follow(self):
        p = subprocess.Popen([CTL, "-c", self.conf.dir, "tail", "-f", "lan"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.later(p.kill)
        time.sleep(0.3)
        mark = free_port()  # any number: the client port shows up as a unique line?
        greeting(self.pl)
        deadline = time.monotonic() + 10
        seen = b""
        os.set_blocking(p.stdout.fileno(), False)
        while time.monotonic() < deadline and b"disconnect from" not in seen:
            try:
                chunk = p.stdout.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                seen += chunk
            time.sleep(0.02)
        self.assertIn(b"disconnect from", seen)
        self.assertIsNone(p.poll())     # still following
        p.send_signal(signal.SIGINT)
        p.wait(5)
        del mark

    def test_check(self):
        code, out = self.ctl("check", "internet", "--client", "127.0.0.1",
                             "--from", "s@x.example", "--to", "v@remote.example")
        self.assertEqual((code, out), (1, "554 5.7.1 <v@remote.example>: Relay access denied"
                                          " (rule: relay_access_denied)\n"))
        code, out = self.ctl("check", "lan", "--client", "127.0.0.1",
                             "--from", "<s@x.example>", "--to", "<v@remote.example>")
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"^250 2\.1\.5 .*\(rule: \w+\)\n$")
        code, out = self.ctl("check", "internet", "--client", "192.0.2.7",
                             "--from", "s@x.example", "--to", "postmaster@example.test")
        self.assertEqual(code, 0, out)
        self.assertTrue(out.startswith("250 "), out)
        code, out = self.ctl("check", "nosuch", "--client", "127.0.0.1",
                             "--from", "a@b", "--to", "c@d")
        self.assertEqual((code, out), (4, "nosuch: ERROR (no such process)\n"))
        code, out = self.ctl("check", "lan", "--client", "not-an-ip", "--from", "a@b",
                             "--to", "c@d")
        self.assertEqual(code, 2)
        code, out = self.ctl("check", "lan", "--client", "127.0.0.1")
        self.assertEqual(code, 2)
        self.assertIn("check INSTANCE --client IP --from ADDR --to ADDR", out)

    def test_check_auth(self):
        # the same stranger, refused, then asked about as an authenticated client:
        # relay_authenticated is on by default (permit_sasl_authenticated), from
        # any address; USER is optional and --auth may come anywhere
        args = ("check", "internet", "--client", "192.0.2.7", "--from", "s@x.example",
                "--to", "v@remote.example")
        self.assertEqual(self.ctl(*args)[0], 1)
        for extra in (("--auth",), ("--auth", "alice")):
            code, out = self.ctl(*(args + extra))
            self.assertEqual((code, out), (0, "250 2.1.5 Ok (rule: auth)\n"), extra)
        code, out = self.ctl("check", "internet", "--auth", "alice", "--client",
                             "2001:db8::7", "--from", "<>", "--to", "v@remote.example")
        self.assertEqual((code, out), (0, "250 2.1.5 Ok (rule: auth)\n"))
        # AUTH never bypasses the address syntax checks
        code, out = self.ctl("check", "internet", "--client", "192.0.2.7", "--auth",
                             "--from", "s@x.example", "--to", "user%v@example.test")
        self.assertEqual(code, 1, out)
        self.assertIn("550 5.1.3", out)
        # a stray argument is a usage error, not a user name
        code, out = self.ctl("check", "internet", "--client", "192.0.2.7", "--from",
                             "s@x.example", "--to", "v@remote.example", "--auth",
                             "alice", "extra")
        self.assertEqual(code, 2, out)
        code, out = self.ctl("help", "check")
        self.assertIn("--auth [USER]", out)

    def test_stats(self):
        sup = self.own([("a", free_port(), "lan-relay", ""), ("b", free_port(), "locked-down", "procs: 2")])
        pa = int(re.search(r'127\.0\.0\.1:(\d+)', open(os.path.join(
            sup.conf.dir, "30-instances.yaml")).read()).group(1))
        with smtplib.SMTP("127.0.0.1", pa, timeout=10) as s:
            s.sendmail("s@example.test", ["v@remote.example"], "Subject: x\r\n\r\nhello\r\n")
        code, out = sup.ctl("stats")
        self.assertEqual(code, 0, out)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["INSTANCE", "CONNECTIONS", "ACTIVE", "ACCEPTED",
                                            "RELAY_REFUSED", "REFUSED", "BYTES"])
        rows = {l.split()[0]: [int(x) for x in l.split()[1:]] for l in lines[1:]}
        self.assertEqual(sorted(rows), ["a", "b"])
        self.assertEqual(rows["a"][0], 1)       # connections
        self.assertEqual(rows["a"][2], 1)       # accepted
        self.assertGreater(rows["a"][5], 0)     # bytes
        self.assertEqual(rows["b"], [0, 0, 0, 0, 0, 0])
        code, out = sup.ctl("stats", "b")
        self.assertEqual(code, 0)
        self.assertEqual([l.split()[0] for l in out.splitlines()], ["INSTANCE", "b"])
        self.assertEqual(sup.ctl("stats", "nosuch"), (4, "nosuch: ERROR (no such process)\n"))

    def test_queue(self):
        sup = self.own([("a", free_port(), "lan-relay", "")])
        pa = int(re.search(r'127\.0\.0\.1:(\d+)', open(os.path.join(
            sup.conf.dir, "30-instances.yaml")).read()).group(1))
        self.assertEqual(sup.ctl("queue"), (0, "Mail queue is empty\n"))
        with smtplib.SMTP("127.0.0.1", pa, timeout=10) as s:
            s.sendmail("s@example.test", ["v@remote.example", "w@remote.example"],
                       "Subject: queued\r\n\r\nqueue body\r\n")
        # queue needs no supervisor: stop it first
        self.assertEqual(sup.stop(), 0)
        code, out = sup.ctl("queue")
        self.assertEqual(code, 0, out)
        lines = out.splitlines()
        self.assertEqual(len(lines), 4, out)
        self.assertEqual(lines[3], "-- 1 message")
        self.assertRegex(lines[0], r"^\S+\s+\d+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d  "
                                   r"<s@example\.test>$")
        # like mailq: one recipient a line, under the sender
        col = lines[0].index("<")
        self.assertEqual(lines[1], " " * col + "<v@remote.example>")
        self.assertEqual(lines[2], " " * col + "<w@remote.example>")
        qid = lines[0].split()[0]
        code, out = sup.ctl("queue", "show", qid)
        self.assertEqual(code, 0, out)
        self.assertIn("queue body", out)
        self.assertIn("Subject: queued", out)
        code, out = sup.ctl("queue", "show", "NOSUCHQID")
        self.assertEqual((code, out), (1, "NOSUCHQID: no such message\n"))
        self.assertEqual(sup.ctl("queue", "bogus")[0], 2)

    def test_shutdown(self):
        sup = self.own([("a", free_port(), "locked-down", "")])
        pid = sup.state("a")[1]
        self.assertEqual(sup.ctl("shutdown"), (0, "Shut down\n"))
        sup.proc.wait(10)
        self.assertEqual(sup.proc.returncode, 0)
        self.assertFalse(pid_alive(pid))
        self.assertFalse(os.path.exists(sup.sock))
        code, out = sup.ctl("status")
        self.assertEqual((code, out), (4, "unix://%s no such file\n" % sup.sock))

    def test_version_help_unknown(self):
        self.assertEqual(self.ctl("version"), (0, "0.1.0\n"))
        code, out = self.ctl("help")
        self.assertEqual(code, 0)
        for verb in ("status", "start", "stop", "restart", "reread", "update", "reload",
                     "avail", "pid", "signal", "tail", "check", "stats", "queue",
                     "shutdown", "version", "help"):
            self.assertRegex(out, r"(?m)^%s\b" % verb)
        code, out = self.ctl("help", "check")
        self.assertIn("--client IP", out)
        self.assertEqual(self.ctl("frobnicate"), (2, "*** Unknown syntax: frobnicate\n"))

    def test_socket_option_and_no_connection(self):
        p = subprocess.run([CTL, "-s", self.sup.sock, "status", "internet"],
                           stdout=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertTrue(p.stdout.decode().startswith(pad("internet", "RUNNING")))
        p = subprocess.run([CTL, "-s", "/nonexistent/rv.sock", "status"],
                           stdout=subprocess.PIPE, timeout=10)
        self.assertEqual((p.returncode, p.stdout.decode()),
                         (4, "unix:///nonexistent/rv.sock no such file\n"))

    def test_interactive(self):
        p = subprocess.run([CTL, "-c", self.conf.dir], input=b"status internet\n\nversion\n"
                           b"history\nhelp pid\nquit\n", stdout=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 0)
        out = p.stdout.decode()
        self.assertTrue(out.startswith("relayvisor> "))
        self.assertIn(pad("internet", "RUNNING"), out)
        self.assertIn("0.1.0\n", out)
        self.assertIn("    1  status internet\n    2  version\n    3  history\n", out)
        self.assertIn("pid [NAME|all]", out)
        self.assertEqual(out.count("relayvisor> "), 6)

    def test_control_socket_refuses_other_users(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to act as another user")
        import pwd
        nobody = pwd.getpwnam("nobody")
        mode = os.stat(self.sup.sock).st_mode & 0o777
        self.assertEqual(mode, 0o600)
        # let nobody reach the socket file, so SO_PEERCRED is what refuses
        os.chmod(self.sup.sock, 0o666)
        self.later(lambda: os.chmod(self.sup.sock, 0o600))
        for d in (os.path.dirname(self.sup.sock),):
            os.chmod(d, 0o755)

        def drop():
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        p = subprocess.run([ctl_for_anyone(self), "-s", self.sup.sock, "status"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=drop,
                           timeout=10)
        self.assertEqual((p.returncode, p.stdout.decode()), (4, "permission denied\n"))

    def test_control_group_members_allowed(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to create a group and act as another user")
        import grp
        import pwd
        group = "rvctl"
        try:
            grp.getgrnam(group)
        except KeyError:
            subprocess.run(["groupadd", "--system", group], check=True)
        gid = grp.getgrnam(group).gr_gid
        nobody = pwd.getpwnam("nobody")
        conf = ConfDir({})
        self.later(conf.cleanup)
        for name, text in config_files(conf.top, [("a", free_port(), "locked-down", "")],
                                       server_extra="  control_group: %s\n" % group).items():
            conf.write(name, text)
        sup = Sup(conf)
        self.later(sup.stop)
        st = os.stat(sup.sock)
        self.assertEqual((st.st_mode & 0o777, st.st_gid), (0o660, gid))
        os.chmod(os.path.dirname(sup.sock), 0o755)

        def as_member():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(nobody.pw_uid)

        def as_stranger():
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        ctl_bin = ctl_for_anyone(self)
        p = subprocess.run([ctl_bin, "-s", sup.sock, "status"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, preexec_fn=as_member, timeout=10)
        self.assertEqual(p.returncode, 0, p.stdout)
        self.assertTrue(p.stdout.decode().startswith(pad("a", "RUNNING")))
        p = subprocess.run([ctl_bin, "-s", sup.sock, "status"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, preexec_fn=as_stranger, timeout=10)
        self.assertEqual(p.returncode, 4)
        self.assertIn(p.stdout.decode(), ("unix://%s permission denied\n" % sup.sock,
                                          "permission denied\n"))


if __name__ == "__main__":
    unittest.main()
