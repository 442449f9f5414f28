"""Trust boundaries (issue 8): listeners confined the OpenSMTPD way when
relayvisord runs as root, from a tree only root can traverse; root never acts on
a path a listener could change; one supervisor per configuration; logs that
rotate and reopen."""
import os
import pwd
import re
import shutil
import signal
import smtplib
import stat
import subprocess
import sys
import tempfile
import time
import unittest

from harness import BIN, ConfDir, free_port, stop_process, swaks
from test_supervisor import Sup, TestCase, config_files, pid_alive

ROOT = os.geteuid() == 0


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = pred()
        if r:
            return r
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class Base(TestCase):
    def setup_conf(self, instances, server_extra=""):
        conf = ConfDir(config_files("", [], server_extra))
        self.later(conf.cleanup)
        for name, text in config_files(conf.top, instances, server_extra).items():
            conf.write(name, text)
        return conf

    def start(self, conf, **kw):
        sup = Sup(conf, **kw)
        self.later(sup.stop)
        return sup


@unittest.skipUnless(ROOT, "needs root: the privilege drop and chroot")
class PrivateTree(Base):
    """The built tree copied into a mode-0700 directory (like a clone in /root),
    relayvisord started there as root."""

    def setUp(self):
        super().setUp()
        self.tree = tempfile.mkdtemp(prefix="rv-0700-")
        self.later(lambda: shutil.rmtree(self.tree, ignore_errors=True))
        os.chmod(self.tree, 0o700)
        shutil.copytree(BIN, os.path.join(self.tree, "bin"))
        self.pl, self.pi = free_port(), free_port()
        self.conf = self.setup_conf([("lan", self.pl, "lan-relay", "access: lan"),
                                     ("internet", self.pi, "locked-down", "")])
        self.sup = self.start(self.conf, exe=os.path.join(self.tree, "bin", "relayvisord"),
                              env={"RV_SECRET_OF_ROOT": "s3cr3t"})

    def test_listeners_confined_and_serving(self):
        st = self.sup.status()
        self.assertEqual({n: s for n, (s, _) in st.items()},
                         {"lan": "RUNNING", "internet": "RUNNING"}, st)
        code, out = swaks("--server", "127.0.0.1:%d" % self.pl, "--from", "me@example.test",
                          "--to", "friend@remote.example")
        self.assertEqual(code, 0, out)
        self.assertIn("queued as", out)
        code, out = swaks("--server", "127.0.0.1:%d" % self.pi, "--from", "me@remote.example",
                          "--to", "friend@remote.example")
        self.assertIn("554 5.7.1", out)
        # a body over the spill threshold goes to spool/tmp through a descriptor
        with smtplib.SMTP("127.0.0.1", self.pl, timeout=20) as c:
            c.sendmail("me@example.test", ["big@remote.example"],
                       b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 200)

        empty = os.path.realpath(os.path.join(self.conf.top, "var", "spool", "empty"))
        nobody = pwd.getpwnam("nobody")
        for name in ("lan", "internet"):
            pid = st[name][1]
            s = proc_status(pid)
            uids = {int(u) for u in s["Uid"].split()}
            gids = {int(g) for g in s["Gid"].split()}
            self.assertEqual(uids, {nobody.pw_uid}, s["Uid"])
            self.assertEqual(gids, {nobody.pw_gid}, s["Gid"])
            self.assertEqual(s["Groups"].strip(), "")
            self.assertEqual(int(s["CapEff"], 16), 0)
            self.assertEqual(int(s["CapPrm"], 16), 0)
            self.assertEqual(s["NoNewPrivs"].strip(), "1")
            self.assertEqual(os.readlink("/proc/%d/root" % pid), empty)
            self.assertEqual(os.listdir("/proc/%d/root/" % pid), [])
            # not dumpable: its /proc files belong to root, not to its user
            self.assertEqual(os.stat("/proc/%d/environ" % pid).st_uid, 0)
            # a clean environment: nothing of the supervisor's
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read()
            self.assertNotIn(b"RV_SECRET_OF_ROOT", env)
            self.assertNotIn(b"RV_SUITE_TOKEN", env)
            # the listener's view of the file system, as its uid: no /etc/passwd
            probe = ("import os, sys\n"
                     "assert os.path.exists('/etc/passwd')\n"
                     "os.chroot('/proc/%d/root'); os.chdir('/')\n"
                     "os.setgroups([]); os.setgid(%d); os.setuid(%d)\n"
                     "try:\n    open('/etc/passwd')\nexcept FileNotFoundError:\n"
                     "    sys.exit(0)\nsys.exit(1)\n" % (pid, nobody.pw_gid, nobody.pw_uid))
            p = subprocess.run([sys.executable, "-c", probe], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            self.assertEqual(p.returncode, 0, p.stdout.decode())
        spool = os.path.join(self.conf.top, "var", "spool")
        self.assertEqual(os.stat(spool).st_uid, 0)
        self.assertEqual(stat.S_IMODE(os.stat(spool).st_mode), 0o700)
        self.assertEqual(os.stat(os.path.join(spool, "tmp")).st_uid, nobody.pw_uid)
        logs = os.path.join(self.conf.top, "var", "log")
        self.assertEqual(os.stat(logs).st_uid, 0)
        self.assertEqual(os.stat(os.path.join(logs, "lan.log")).st_uid, 0)
        code, out = self.sup.ctl("queue")
        self.assertEqual(code, 0, out)
        self.assertIn("big@remote.example", out)


@unittest.skipUnless(ROOT, "needs root: the privilege drop")
class PrivateMaildir(Base):
    """Local delivery into a Maildir inside a mode-0700 tree (a clone in /root):
    the delivery agent runs as the confined user, who cannot traverse the tree,
    so it must open the Maildirs' directory before it drops privileges."""

    def test_local_maildir_in_a_private_tree(self):
        tree = tempfile.mkdtemp(prefix="rv-0700-mail-")
        self.later(lambda: shutil.rmtree(tree, ignore_errors=True))
        os.chmod(tree, 0o700)
        pl = free_port()
        conf = self.setup_conf([("lan", pl, "lan-relay", "access: lan")])
        conf.write("30-delivery.yaml", 'delivery:\n  local: "maildir:%s/mail/%%d/%%u"\n'
                   '  dns_servers: ["127.0.0.1:9"]\n' % tree)
        sup = self.start(conf)
        code, out = swaks("--server", "127.0.0.1:%d" % pl, "--from", "me@example.test",
                          "--to", "postmaster@example.test")
        self.assertEqual(code, 0, out)
        new = os.path.join(tree, "mail", "example.test", "postmaster", "new")
        deadline = time.monotonic() + 30
        while not (os.path.isdir(new) and os.listdir(new)):
            if time.monotonic() > deadline:
                self.fail("not delivered into %s:\n%s" % (new, sup.ctl("queue")[1]))
            time.sleep(0.1)
        self.assertEqual(os.stat(os.path.join(tree, "mail")).st_uid,
                         pwd.getpwnam("nobody").pw_uid)


class OneSupervisor(Base):
    def test_second_supervisor_refused(self):
        port = free_port()
        conf = self.setup_conf([("mx", port, "locked-down", "")])
        sup = self.start(conf)
        pidfile = os.path.join(conf.top, "var", "run", "relayvisord.pid")
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % sup.proc.pid)
        before = sup.status()
        t0 = time.monotonic()
        p = subprocess.run([sup.proc.args[0], "-n", "-c", conf.dir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 1, out)
        self.assertIn("relayvisord: already running (pid %d, %s)"
                      % (sup.proc.pid, os.path.join(conf.top, "var/run/relayvisor.sock")), out)
        self.assertNotIn("spawned", out)
        self.assertLess(time.monotonic() - t0, 20)
        # the first one is undisturbed: same processes, socket and pid file
        self.assertEqual(sup.status(), before)
        self.assertIsNone(sup.proc.poll())
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % sup.proc.pid)
        self.assertEqual(sup.ctl("pid")[1].strip(), str(sup.proc.pid))
        # daemon mode too: the parent waits for the verdict and exits with it
        p = subprocess.run([sup.proc.args[0], "-c", conf.dir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 1, p.stdout.decode())
        self.assertIn("already running (pid %d," % sup.proc.pid, p.stdout.decode())
        self.assertEqual(sup.status(), before)

    def test_two_started_at_once_one_wins(self):
        conf = self.setup_conf([("mx", free_port(), "locked-down", "")])
        logs = [open(os.path.join(conf.top, "sup%d.log" % i), "wb") for i in range(2)]
        procs = [subprocess.Popen([Sup.__init__.__globals__["SUPERVISOR"], "-n", "-c",
                                   conf.dir], stdout=logs[i], stderr=logs[i])
                 for i in range(2)]
        for p in procs:
            self.later(lambda p=p: stop_process(p))
        for f in logs:
            self.later(f.close)
        loser = wait_until(lambda: next((p for p in procs if p.poll() is not None), None),
                           timeout=30, what="one of the two to give up")
        winner = procs[1 - procs.index(loser)]
        self.assertEqual(loser.returncode, 1)
        with open(logs[procs.index(loser)].name) as f:
            self.assertIn("already running (pid %d," % winner.pid, f.read())
        pidfile = os.path.join(conf.top, "var", "run", "relayvisord.pid")
        wait_until(lambda: os.path.exists(pidfile), what="the pid file")
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % winner.pid)
        time.sleep(0.5)     # give the winner a chance to die, if it were to
        self.assertIsNone(winner.poll())

    def test_stale_pidfile_and_socket_replaced(self):
        port = free_port()
        conf = self.setup_conf([("mx", port, "locked-down", "")])
        sup = self.start(conf)
        child = sup.status()["mx"][1]
        sup.proc.kill()
        sup.proc.wait()
        wait_until(lambda: not pid_alive(child), what="the listener to die with it")
        pidfile = os.path.join(conf.top, "var", "run", "relayvisord.pid")
        self.assertTrue(os.path.exists(pidfile))
        self.assertTrue(os.path.exists(sup.sock))
        sup2 = self.start(conf)
        self.assertEqual(sup2.state("mx")[0], "RUNNING")
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % sup2.proc.pid)
        self.assertIn("stale pid file", sup2.logtext())


class Directories(Base):
    """Existing directories are checked, never chowned; the fix is named."""

    def refused(self, conf, needle):
        p = subprocess.run([Sup.__init__.__globals__["SUPERVISOR"], "-n", "-c", conf.dir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 1, out)
        self.assertIn(needle, out)
        self.assertNotIn("spawned", out)
        return out

    @unittest.skipUnless(ROOT, "needs root to make a directory someone else's")
    def test_logs_owned_by_listener_user_refused(self):
        conf = self.setup_conf([("mx", free_port(), "locked-down", "")])
        logs = os.path.join(conf.top, "var", "log")
        os.makedirs(logs)
        nobody = pwd.getpwnam("nobody")
        os.chown(logs, nobody.pw_uid, nobody.pw_gid)
        out = self.refused(conf, "fix: chown root %s" % logs)
        self.assertIn("owned by nobody", out)
        self.assertEqual(os.stat(logs).st_uid, nobody.pw_uid)     # untouched

    def test_group_writable_spool_refused(self):
        conf = self.setup_conf([("mx", free_port(), "locked-down", "")])
        spool = os.path.join(conf.top, "var", "spool")
        os.makedirs(spool)
        os.chmod(spool, 0o770)
        self.refused(conf, "fix: chmod go-w %s" % spool)
        self.assertEqual(stat.S_IMODE(os.stat(spool).st_mode), 0o770)

    @unittest.skipUnless(ROOT, "needs root: the listener user differs")
    def test_existing_dirs_never_chowned(self):
        conf = self.setup_conf([("mx", free_port(), "locked-down", "")])
        tmp = os.path.join(conf.top, "var", "spool", "tmp")
        os.makedirs(tmp, 0o700)
        self.refused(conf, "fix: chown nobody %s" % tmp)
        self.assertEqual(os.stat(tmp).st_uid, 0)
        # an existing logs directory of root's is used as it is
        os.rmdir(tmp)
        logs = os.path.join(conf.top, "var", "log")
        os.makedirs(logs, 0o755)
        sup = self.start(conf)
        self.assertEqual(os.stat(logs).st_uid, 0)
        self.assertEqual(stat.S_IMODE(os.stat(logs).st_mode), 0o755)
        self.assertEqual(sup.state("mx")[0], "RUNNING")


class Logs(Base):
    def traffic(self, port, n=1):
        for _ in range(n):
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
                c.noop()

    def test_symlink_planted_in_logs_never_followed(self):
        port = free_port()
        conf = self.setup_conf([("mx", port, "locked-down", "")])
        sup = self.start(conf)
        logs = os.path.join(conf.top, "var", "log")
        victim = os.path.join(conf.top, "victim")
        secret = os.path.join(conf.top, "secret")
        with open(secret, "w") as f:
            f.write("root:SECRET-HASH:19000:0:99999:7:::\n")
        # a new instance whose log name is a planted symlink: never created
        # nor appended through the link
        os.symlink(victim, os.path.join(logs, "extra.log"))
        p2 = free_port()
        conf.write("40-extra.yaml", "instances:\n  extra:\n    listen: [\"127.0.0.1:%d\"]\n"
                   "    profile: locked-down\n    startsecs: 0.2s\n" % p2)
        code, out = sup.ctl("update")
        self.assertEqual(code, 0, out)
        sup.wait_for(lambda: sup.state("extra")[0] == "RUNNING", what="extra RUNNING")
        self.traffic(p2)
        self.assertFalse(os.path.exists(victim))
        self.assertIn("extra.log", sup.logtext())
        # tail of a log replaced by a symlink to a secret prints no secret
        mxlog = os.path.join(logs, "mx.log")
        os.unlink(mxlog)
        os.symlink(secret, mxlog)
        code, out = sup.ctl("tail", "mx")
        self.assertNotIn("SECRET-HASH", out)
        self.assertNotEqual(code, 0, out)
        self.assertIn("refused", out)
        # a hard link is refused as well
        os.unlink(mxlog)
        os.link(secret, mxlog)
        code, out = sup.ctl("tail", "mx")
        self.assertNotIn("SECRET-HASH", out)
        with open(secret) as f:
            self.assertEqual(f.read(), "root:SECRET-HASH:19000:0:99999:7:::\n")

    def test_rotation_at_size(self):
        port = free_port()
        conf = self.setup_conf([("mx", port, "locked-down", "")],
                               server_extra="  log_max_bytes: 2K\n  log_backups: 2\n")
        sup = self.start(conf)
        logs = os.path.join(conf.top, "var", "log")
        path = os.path.join(logs, "mx.log")
        while not os.path.exists(path + ".2"):
            self.traffic(port, 5)
        self.traffic(port, 20)
        # look once the supervisor is gone: a rotation may be under way now
        self.assertEqual(sup.stop(), 0)
        self.assertFalse(os.path.exists(path + ".3"))
        for p in (path, path + ".1", path + ".2"):
            self.assertLess(os.path.getsize(p), 2048 + 600, p)
        with open(path + ".1") as f:
            self.assertIn("disconnect from", f.read())

    def test_reopen_on_sigusr2_and_ctl(self):
        port = free_port()
        conf = self.setup_conf([("mx", port, "locked-down", "")])
        sup = self.start(conf)
        path = os.path.join(conf.top, "var", "log", "mx.log")
        for how in ("signal", "ctl"):
            os.rename(path, path + ".old")
            if how == "signal":
                sup.proc.send_signal(signal.SIGUSR2)
                wait_until(lambda: os.path.exists(path), what="mx.log reopened")
            else:
                code, out = sup.ctl("reopen")
                self.assertEqual(code, 0, out)
                self.assertTrue(os.path.exists(path))
            size = os.path.getsize(path + ".old")
            self.traffic(port)
            wait_until(lambda: "disconnect from" in open(path).read(),
                       what="new lines in the reopened mx.log")
            self.assertEqual(os.path.getsize(path + ".old"), size)
            code, out = sup.ctl("tail", "mx")
            self.assertIn("disconnect from", out)
            os.unlink(path + ".old")

    def test_removed_log_directory_recreated(self):
        port = free_port()
        conf = self.setup_conf([("mx", port, "locked-down", "")])
        self.start(conf)
        logs = os.path.join(conf.top, "var", "log")
        shutil.rmtree(logs)

        def back():
            self.traffic(port)
            p = os.path.join(logs, "mx.log")
            return os.path.exists(p) and "disconnect from" in open(p).read()
        wait_until(back, timeout=15, what="mx.log back after rm -rf")


if __name__ == "__main__":
    unittest.main()
