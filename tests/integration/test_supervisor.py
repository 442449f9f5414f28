"""relayvisord with the real relayvisor-smtpd: restarts that never refuse a
connection, BACKOFF to FATAL, children dying with the supervisor, graceful reload,
privileged ports as root with unprivileged listeners.

Sup (below) is also used by test_ctl.py."""
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

from harness import (CTL, SUPERVISOR, ConfDir, Dialog, free_port, server_yaml, stop_process,
                     wait_port)


class TestCase(unittest.TestCase):
    """later(fn): run fn at teardown, last registered first. (harness.TestCase
    keeps its list in self._cleanups, which unittest itself uses.)"""

    def later(self, fn):
        def quiet():
            try:
                fn()
            except Exception:
                pass
        self.addCleanup(quiet)
        return fn

PROFILES = """lan: [127.0.0.1]
profiles:
  locked-down:
    lan: []
  lan-relay:
    relay_nonlocal_senders: true
"""


def instance_yaml(name, port, profile="locked-down", extra=""):
    text = """  %s:
    listen: ["127.0.0.1:%d"]
    profile: %s
""" % (name, port, profile)
    for key, value in (("startsecs", "0.2s"), ("stopwaitsecs", "5s")):
        if key + ":" not in extra:
            text += "    %s: %s\n" % (key, value)
    for line in extra.strip("\n").splitlines():
        text += "    " + line.strip() + "\n"
    return text


def config_files(top, instances, server_extra=""):
    """instances: list of (name, port, profile, extra)"""
    body = "instances:\n" + "".join(instance_yaml(*i) for i in instances)
    return {"10-server.yaml": server_yaml(top, extra=server_extra),
            "20-profiles.yaml": PROFILES,
            "30-instances.yaml": body}


class Sup:
    """relayvisord -n on a temporary configuration."""

    def __init__(self, conf, env=None, wait=True, args=(), exe=None):
        self.conf = conf
        self.logpath = os.path.join(conf.top, "relayvisord.log")
        self.log = open(self.logpath, "ab")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.proc = subprocess.Popen([exe or SUPERVISOR, "-n", "-c", conf.dir, *args],
                                     stdout=self.log, stderr=self.log, env=e)
        self.sock = os.path.join(conf.top, "var", "run", "relayvisor.sock")
        if wait:
            # the caller gets no object to stop when this raises: stop it here
            try:
                self.wait_running()
            except BaseException:
                self.stop()
                raise

    def ctl(self, *args, timeout=20):
        p = subprocess.run([CTL, "-c", self.conf.dir, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return p.returncode, p.stdout.decode(errors="replace")

    def logtext(self):
        with open(self.logpath, "r", errors="replace") as f:
            return f.read()

    def wait_for(self, pred, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("relayvisord exited %d:\n%s"
                                     % (self.proc.returncode, self.logtext()[-3000:]))
            r = pred()
            if r:
                return r
            time.sleep(0.02)
        raise AssertionError("timed out waiting for %s\n%s" % (what, self.logtext()[-3000:]))

    def wait_running(self, timeout=10.0):
        def ok():
            if not os.path.exists(self.sock):
                return False
            code, _ = self.ctl("status")
            return code == 0
        self.wait_for(ok, timeout, "every instance RUNNING")

    def status(self):
        """{name: (state, pid or 0)}"""
        code, out = self.ctl("status")
        res = {}
        for line in out.splitlines():
            m = re.match(r"^(\S+)\s+([A-Z]+)\s*(?:pid (\d+))?", line)
            if m:
                res[m.group(1)] = (m.group(2), int(m.group(3) or 0))
        return res

    def state(self, name):
        return self.status().get(name, ("?", 0))

    def stop(self, sig=signal.SIGTERM, timeout=15):
        code = stop_process(self.proc, sig, timeout)
        self.log.close()
        return code


def listening(port):
    """Some socket is in LISTEN state on this TCP port (IPv4 or IPv6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    return True
    return False


def pid_alive(pid):
    """alive and not a zombie"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def children_of(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                         stdout=subprocess.PIPE).stdout.decode()
    return [int(x) for x in out.split()]


def greeting(port, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return s.recv(512)


class Prober(threading.Thread):
    """Connects to a port again and again; counts refusals and greetings."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.refused = 0
        self.served = 0
        self.errors = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                data = greeting(self.port, timeout=10.0)
                if data.startswith(b"220"):
                    self.served += 1
                else:
                    self.errors.append(data)
            except ConnectionRefusedError:
                self.refused += 1
            except OSError as e:
                self.errors.append(repr(e))
            time.sleep(0.005)

    def finish(self):
        self.halt.set()
        self.join(15)


def fake_smtpd(conf, exit_code, stamp_file):
    """A listener double that records each start and exits at once."""
    path = os.path.join(conf.top, "fake-smtpd.sh")
    with open(path, "w") as f:
        f.write("#!/bin/sh\ndate +%%s.%%N >> %s\necho 'fake listener failing' >&2\n"
                "exit %d\n" % (stamp_file, exit_code))
    os.chmod(path, 0o755)
    os.chmod(conf.top, 0o755)
    return path


def python_child(conf, ready=True, ignore_term=False):
    """A listener double in Python that speaks childproto.h: checks LISTEN_PID,
    says READY (or not), and may ignore SIGTERM."""
    path = os.path.join(conf.top, "fake-child.py")
    with open(path, "w") as f:
        f.write("""#!/usr/bin/env python3
import os, signal, socket, sys, time
assert os.environ["LISTEN_PID"] == str(os.getpid()), "LISTEN_PID"
n = int(os.environ["LISTEN_FDS"])
cfg = int(os.environ["RELAYVISOR_CONFIG_FD"])
assert cfg == 3 + n and os.read(cfg, 1), "config snapshot"
sock = socket.socket(fileno=int(os.environ["RELAYVISOR_NOTIFY_FD"]))
print("fake child with %%d sockets, args %%s" %% (n, sys.argv[1:]), flush=True)
if %s:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if %s:
    sock.send(b"READY")
while True:
    time.sleep(1)
""" % (ignore_term, ready))
    os.chmod(path, 0o755)
    return path


class SupervisorTest(TestCase):

    def start(self, instances, server_extra="", env=None, wait=True):
        self.conf = ConfDir(config_files("", [], server_extra))
        self.later(self.conf.cleanup)
        for name, text in config_files(self.conf.top, instances, server_extra).items():
            self.conf.write(name, text)
        self.sup = Sup(self.conf, env=env, wait=wait)
        self.later(self.sup.stop)
        return self.sup

    def test_kill9_listener_restarted_without_refusal(self):
        port = free_port()
        sup = self.start([("mx", port, "locked-down", "")])
        _, old = sup.state("mx")
        prober = Prober(port)
        prober.start()
        self.later(prober.finish)
        time.sleep(0.2)
        os.kill(old, signal.SIGKILL)
        sup.wait_for(lambda: sup.state("mx")[0] == "RUNNING" and sup.state("mx")[1] != old,
                     what="mx respawned")
        time.sleep(0.2)
        prober.finish()
        self.assertEqual(prober.refused, 0)
        # A connection the killed process had already accepted dies with it; the
        # prober holds one connection at a time, so a kill can cut at most that
        # one. Every other waits in the kernel backlog and is greeted.
        self.assertLessEqual(len(prober.errors), 1, prober.errors)
        for e in prober.errors:
            self.assertIn(e, (b"", repr(ConnectionResetError(104, "Connection reset by peer"))))
        self.assertGreater(prober.served, 5)
        self.assertIn("exited: mx (terminated by KILL; not expected)", sup.logtext())
        self.assertIn("mx: RUNNING -> STARTING (EXIT_UNEXPECTED)", sup.logtext())

    def test_crash_at_start_backoff_to_fatal(self):
        port = free_port()
        conf_stamp = "/tmp/rv-fake-%d-%d" % (os.getpid(), port)
        self.later(lambda: os.unlink(conf_stamp))
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        extra = "startretries: 3\nbackoff:\n  initial: 0.2s\n  max: 0.8s"
        files = config_files(self.conf.top, [("mx", port, "locked-down", "")])
        files["30-instances.yaml"] += ("    startretries: 3\n    backoff:\n"
                                       "      initial: 0.2s\n      max: 0.8s\n")
        for name, text in files.items():
            self.conf.write(name, text)
        fake = fake_smtpd(self.conf, 1, conf_stamp)
        sup = Sup(self.conf, env={"RELAYVISOR_SMTPD": fake}, wait=False)
        self.later(sup.stop)
        sup.wait_for(lambda: os.path.exists(sup.sock), what="control socket")
        sup.wait_for(lambda: sup.state("mx")[0] == "FATAL", timeout=15, what="FATAL")
        log = sup.logtext()
        self.assertEqual(re.findall(r"mx: retry (\d) of 3 in ([\d.]+)s", log),
                         [("1", "0.2"), ("2", "0.4"), ("3", "0.8")])
        self.assertEqual(log.count("mx: STARTING -> BACKOFF (EXIT_UNEXPECTED)"), 3)
        self.assertIn("mx: STARTING -> FATAL (EXIT_UNEXPECTED)", log)
        with open(conf_stamp) as f:
            starts = [float(x) for x in f.read().split()]
        self.assertEqual(len(starts), 4)      # the first try and 3 retries
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        for gap, want in zip(gaps, (0.2, 0.4, 0.8)):
            self.assertGreaterEqual(gap, want * 0.9)
        self.assertLess(gaps[0], gaps[2])
        # the child's stderr went to the instance log
        with open(os.path.join(self.conf.top, "var", "log", "mx.log")) as f:
            self.assertIn("fake listener failing", f.read())
        code, out = sup.ctl("status", "mx")
        self.assertEqual(code, 3)
        self.assertRegex(out, r"^mx\s+FATAL\s+Exited too quickly")
        # stays FATAL (no timer left); by hand: a new series, which fails again
        time.sleep(1.0)
        with open(conf_stamp) as f:
            self.assertEqual(len(f.read().split()), 4)
        code, out = sup.ctl("start", "mx")
        self.assertEqual((code, out), (1, "mx: ERROR (spawn error)\n"))

    def test_exit_78_is_not_respawned(self):
        port = free_port()
        stamp = "/tmp/rv-fake78-%d-%d" % (os.getpid(), port)
        self.later(lambda: os.unlink(stamp))
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        for name, text in config_files(self.conf.top, [("mx", port, "locked-down", "")]).items():
            self.conf.write(name, text)
        fake = fake_smtpd(self.conf, 78, stamp)
        sup = Sup(self.conf, env={"RELAYVISOR_SMTPD": fake}, wait=False)
        self.later(sup.stop)
        sup.wait_for(lambda: os.path.exists(sup.sock), what="control socket")
        sup.wait_for(lambda: sup.state("mx")[0] == "FATAL", what="FATAL")
        time.sleep(1.5)
        with open(stamp) as f:
            self.assertEqual(len(f.read().split()), 1)
        self.assertIn("mx: STARTING -> FATAL (EXIT_CONFIG)", sup.logtext())
        code, out = sup.ctl("status", "mx")
        self.assertRegex(out, r"FATAL\s+Configuration error \(exit status 78\)")

    def own_conf(self, instances):
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        for name, text in config_files(self.conf.top, instances).items():
            self.conf.write(name, text)
        return self.conf

    def test_stopwaitsecs_then_sigkill(self):
        conf = self.own_conf([("mx", free_port(), "locked-down", "stopwaitsecs: 0.5s")])
        sup = Sup(conf, env={"RELAYVISOR_SMTPD": python_child(conf, ignore_term=True)})
        self.later(sup.stop)
        pid = sup.state("mx")[1]
        t0 = time.monotonic()
        self.assertEqual(sup.ctl("stop", "mx"), (0, "mx: stopped\n"))
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertFalse(pid_alive(pid))
        log = sup.logtext()
        self.assertIn("killing 'mx' (%d) with SIGKILL" % pid, log)
        self.assertIn("mx: STOPPING -> STOPPED (EXIT_UNEXPECTED)", log)
        with open(os.path.join(conf.top, "var", "log", "mx.log")) as f:
            self.assertIn("fake child with 1 sockets, args ['--instance', 'mx']", f.read())

    def test_running_needs_ready(self):
        conf = self.own_conf([("mx", free_port(), "locked-down", "")])
        sup = Sup(conf, env={"RELAYVISOR_SMTPD": python_child(conf, ready=False)},
                  wait=False)
        self.later(sup.stop)
        sup.wait_for(lambda: sup.state("mx")[0] == "STARTING", what="STARTING")
        time.sleep(0.6)     # three times startsecs, still no READY
        self.assertEqual(sup.state("mx")[0], "STARTING")
        self.assertIn("mx: STOPPED -> STARTING (START)", sup.logtext())
        self.assertNotIn("RUNNING", sup.logtext())

    def test_autorestart_true_restarts_clean_exit(self):
        conf = self.own_conf([("mx", free_port(), "locked-down", "autorestart: true")])
        sup = Sup(conf)
        self.later(sup.stop)
        pid = sup.state("mx")[1]
        os.kill(pid, signal.SIGTERM)
        sup.wait_for(lambda: sup.state("mx")[0] == "RUNNING" and sup.state("mx")[1] != pid,
                     what="restart after exit 0")
        self.assertIn("exited: mx (exit status 0; expected)", sup.logtext())
        self.assertIn("mx: RUNNING -> STARTING (EXIT_EXPECTED)", sup.logtext())

    def test_kill9_supervisor_takes_children_along(self):
        p1, p2 = free_port(), free_port()
        sup = self.start([("a", p1, "locked-down", ""), ("b", p2, "lan-relay", "procs: 2")])
        kids = [pid for _, pid in sup.status().values()]
        self.assertEqual(len(kids), 3)
        self.assertEqual(sorted(children_of(sup.proc.pid)), sorted(kids))
        t0 = time.monotonic()
        os.kill(sup.proc.pid, signal.SIGKILL)
        sup.proc.wait()
        while any(pid_alive(k) for k in kids) and time.monotonic() - t0 < 1.0:
            time.sleep(0.01)
        self.assertEqual([k for k in kids if pid_alive(k)], [])
        # no orphan holds the ports: nothing listens on them any more (a bind
        # test could collide with some other process's ephemeral client port).
        # A killed listener's leader is a zombie at once, but its commit thread
        # may still finish an fsync on a busy disk, and the sockets close only
        # with the last thread: wait for that, an orphan would hold them forever
        deadline = time.monotonic() + 15
        while any(listening(p) for p in (p1, p2)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for port in (p1, p2):
            self.assertFalse(listening(port), "port %d still has a listener" % port)

    def test_sigterm_stops_children_and_removes_socket(self):
        port = free_port()
        sup = self.start([("mx", port, "locked-down", "")])
        kid = sup.state("mx")[1]
        self.assertTrue(stat.S_ISSOCK(os.stat(sup.sock).st_mode))
        self.assertEqual(stat.S_IMODE(os.stat(sup.sock).st_mode), 0o600)
        self.assertEqual(sup.stop(signal.SIGTERM), 0)
        self.assertFalse(pid_alive(kid))
        self.assertFalse(os.path.exists(sup.sock))
        self.assertIn("mx: RUNNING -> STOPPING (STOP)", sup.logtext())
        with self.assertRaises(ConnectionRefusedError):
            greeting(port)

    def test_reload_touches_only_what_changed(self):
        pa, pb, pc, pd = (free_port() for _ in range(4))
        sup = self.start([("a", pa, "locked-down", ""), ("b", pb, "locked-down", ""),
                          ("c", pc, "lan-relay", "")])
        before = sup.status()
        prober = Prober(pb)
        prober.start()
        self.later(prober.finish)
        files = config_files(self.conf.top, [("a", pa, "locked-down", ""),
                                             ("b", pb, "locked-down", "max_recipients: 7"),
                                             ("d", pd, "lan-relay", "")])
        self.conf.write("30-instances.yaml", files["30-instances.yaml"])
        code, out = sup.ctl("reread")
        self.assertEqual(code, 0)
        self.assertEqual(sorted(out.splitlines()),
                         ["b: changed", "c: disappeared", "d: available"])
        self.assertEqual(sup.status(), before)  # reread changes nothing
        code, out = sup.ctl("update")
        self.assertEqual(code, 0, out)
        self.assertEqual(out.splitlines(), ["c: stopped", "c: removed process group",
                                            "b: updated process group",
                                            "d: added process group"])
        sup.wait_running()
        after = sup.status()
        prober.finish()
        self.assertEqual(after["a"], before["a"])
        self.assertNotEqual(after["b"][1], before["b"][1])
        self.assertNotIn("c", after)
        self.assertEqual(after["d"][0], "RUNNING")
        self.assertFalse(pid_alive(before["c"][1]))
        self.assertFalse(pid_alive(before["b"][1]))
        with self.assertRaises(ConnectionRefusedError):
            greeting(pc)
        self.assertTrue(greeting(pd).startswith(b"220"))
        self.assertEqual(prober.refused, 0)
        # the same again: nothing to do
        code, out = sup.ctl("reload")
        self.assertEqual((code, out), (0, "No config updates to processes\n"))
        self.assertEqual(sup.status(), after)

    def test_address_change_rebinds_that_instance_only(self):
        pa, pb, pb2 = free_port(), free_port(), free_port()
        sup = self.start([("a", pa, "locked-down", ""), ("b", pb, "locked-down", "")])
        before = sup.status()
        files = config_files(self.conf.top, [("a", pa, "locked-down", ""),
                                             ("b", pb2, "locked-down", "")])
        self.conf.write("30-instances.yaml", files["30-instances.yaml"])
        code, out = sup.ctl("reload")
        self.assertEqual((code, out), (0, "b: updated process group\n"))
        sup.wait_running()
        sup.wait_for(lambda: not pid_alive(before["b"][1]), what="old b gone")
        self.assertEqual(sup.status()["a"], before["a"])
        self.assertTrue(greeting(pb2).startswith(b"220"))
        with self.assertRaises(ConnectionRefusedError):
            greeting(pb)

    def test_session_survives_graceful_restart(self):
        port = free_port()
        sup = self.start([("lan", port, "lan-relay", "")])
        old = sup.state("lan")[1]
        d = Dialog("127.0.0.1", port)
        self.later(d.close)
        self.assertEqual(d.reply()[0], 220)
        self.assertEqual(d.cmd("EHLO client.example")[0], 250)
        self.assertEqual(d.cmd("MAIL FROM:<s@example.test>")[0], 250)
        self.assertEqual(d.cmd("RCPT TO:<v@remote.example>")[0], 250)
        files = config_files(self.conf.top, [("lan", port, "lan-relay", "max_recipients: 9")])
        self.conf.write("30-instances.yaml", files["30-instances.yaml"])
        code, out = sup.ctl("reload")
        self.assertEqual((code, out), (0, "lan: updated process group\n"))
        sup.wait_for(lambda: sup.state("lan")[1] not in (0, old)
                     and sup.state("lan")[0] == "RUNNING", what="new lan")
        # the old process still serves our session
        self.assertTrue(pid_alive(old))
        self.assertEqual(d.cmd("DATA")[0], 354)
        code, text = d.cmd("Subject: across a reload\r\n\r\nbody\r\n.")
        self.assertEqual(code, 250, text)
        self.assertIn("queued as", text)
        d.cmd("QUIT")
        sup.wait_for(lambda: not pid_alive(old), what="old lan exits after its session")
        # new connections go to the new process
        self.assertTrue(greeting(port).startswith(b"220"))

    def test_invalid_reload_keeps_serving(self):
        port = free_port()
        sup = self.start([("mx", port, "locked-down", "")])
        before = sup.status()
        self.conf.write("40-bad.yaml", "instances:\n  bad:\n    listen: [\"127.0.0.1:%d\"]\n"
                        "    profile: no-such-profile\n" % free_port())
        for verb in ("reload", "reread", "update"):
            code, out = sup.ctl(verb)
            self.assertEqual(code, 1, out)
            self.assertRegex(out, r"40-bad\.yaml:\d+:\d+: error: ")
            self.assertIn("ERROR: CANT_REREAD: 1 error", out)
        os.kill(sup.proc.pid, signal.SIGHUP)
        sup.wait_for(lambda: "reload failed, nothing changed" in sup.logtext(),
                     what="SIGHUP reload refused")
        self.assertEqual(sup.status(), before)
        self.assertTrue(greeting(port).startswith(b"220"))

    def test_sighup_reloads(self):
        pa, pb = free_port(), free_port()
        sup = self.start([("a", pa, "locked-down", "")])
        before = sup.status()
        files = config_files(self.conf.top, [("a", pa, "locked-down", ""),
                                             ("b", pb, "locked-down", "")])
        self.conf.write("30-instances.yaml", files["30-instances.yaml"])
        os.kill(sup.proc.pid, signal.SIGHUP)
        sup.wait_for(lambda: sup.state("b")[0] == "RUNNING", what="b added by SIGHUP")
        self.assertEqual(sup.status()["a"], before["a"])

    def test_procs_share_the_sockets(self):
        port = free_port()
        sup = self.start([("lan", port, "lan-relay", "procs: 3")])
        st = sup.status()
        self.assertEqual(sorted(st), ["lan:00", "lan:01", "lan:02"])
        self.assertEqual(len({pid for _, pid in st.values()}), 3)
        for _ in range(10):
            self.assertTrue(greeting(port).startswith(b"220"))

    def test_startup_errors(self):
        conf = ConfDir({"10.yaml": "server:\n  hostname: [\n"})
        self.later(conf.cleanup)
        p = subprocess.run([SUPERVISOR, "-n", "-c", conf.dir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stdout.decode(), r"10\.yaml:\d+:\d+: error")
        p = subprocess.run([SUPERVISOR, "-t", "-c", conf.dir], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=10)
        self.assertEqual(p.returncode, 1)
        # a port someone else holds: that instance alone is FATAL with the
        # reason, the daemon and the other instances serve
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            other = free_port()
            conf2 = ConfDir({})
            self.later(conf2.cleanup)
            for name, text in config_files(conf2.top, [("mx", port, "locked-down", ""),
                                                       ("ok", other, "locked-down", "")]
                                           ).items():
                conf2.write(name, text)
            sup = Sup(conf2, wait=False)
            self.later(sup.stop)
            sup.wait_for(lambda: sup.state("mx")[0] == "FATAL", what="mx FATAL")
            sup.wait_for(lambda: sup.state("ok")[0] == "RUNNING", what="ok RUNNING")
            self.assertRegex(sup.ctl("status", "mx")[1], r"^mx\s+FATAL\s+bind 127\.0\.0\.1:%d: "
                             r"Address already in use\n$" % port)
            self.assertIn("bind 127.0.0.1:%d: Address already in use" % port, sup.logtext())
            self.assertTrue(greeting(other).startswith(b"220"))
        p = subprocess.run([SUPERVISOR, "--version"], stdout=subprocess.PIPE, timeout=10)
        self.assertEqual((p.returncode, p.stdout), (0, b"relayvisord 0.1.0\n"))

    def test_daemon_mode_writes_pidfile(self):
        port = free_port()
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        for name, text in config_files(self.conf.top, [("mx", port, "locked-down", "")]).items():
            self.conf.write(name, text)
        p = subprocess.run([SUPERVISOR, "-c", self.conf.dir], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
        self.assertEqual(p.returncode, 0)
        pidfile = os.path.join(self.conf.top, "var", "run", "relayvisord.pid")
        deadline = time.monotonic() + 5
        while not os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(pidfile) as f:
            pid = int(f.read())
        self.later(lambda: os.kill(pid, signal.SIGKILL))
        wait_port("127.0.0.1", port)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertFalse(pid_alive(pid))
        self.assertFalse(os.path.exists(pidfile))

    def test_systemd_ready_notification(self):
        port = free_port()
        self.conf = ConfDir({})
        self.later(self.conf.cleanup)
        for name, text in config_files(self.conf.top, [("mx", port, "locked-down", "")]).items():
            self.conf.write(name, text)
        path = os.path.join(self.conf.top, "notify.sock")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.later(ns.close)
        ns.bind(path)
        ns.settimeout(10)
        sup = Sup(self.conf, env={"NOTIFY_SOCKET": path}, wait=False)
        self.later(sup.stop)
        msg = ns.recv(512).decode()
        self.assertIn("READY=1", msg.splitlines())
        self.assertEqual(sup.state("mx")[0], "RUNNING")

    def test_port25_as_root_with_unprivileged_listeners(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (binds port 25, creates a user)")
        with socket.socket() as s:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", 25))
            except OSError as e:
                self.skipTest("127.0.0.1:25 is taken on this machine: %s" % e)
        user = "rvtest"
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", user], check=True)
        uid = pwd.getpwnam(user).pw_uid
        sup = self.start([("mx", 25, "locked-down", "")],
                         server_extra="  user: %s\n" % user)
        pid = sup.state("mx")[1]
        with open("/proc/%d/status" % pid) as f:
            uids = re.search(r"^Uid:\s+(.*)$", f.read(), re.M).group(1).split()
        self.assertEqual({int(u) for u in uids}, {uid})
        self.assertTrue(greeting(25).startswith(b"220"))
        # root opens the spool before the listener drops: it is root's; only
        # the spill directory belongs to the user
        spool = os.path.join(self.conf.top, "var", "spool")
        self.assertEqual(os.stat(spool).st_uid, 0)
        self.assertEqual(os.stat(os.path.join(spool, "tmp")).st_uid, uid)
        code, text = 0, ""
        d = Dialog("127.0.0.1", 25)
        self.later(d.close)
        d.reply()
        d.cmd("HELO x")
        d.cmd("MAIL FROM:<s@remote.example>")
        self.assertEqual(d.cmd("RCPT TO:<postmaster@example.test>")[0], 250)
        self.assertEqual(d.cmd("DATA")[0], 354)
        code, text = d.cmd("Subject: t\r\n\r\nx\r\n.")
        self.assertEqual(code, 250, text)     # the spool is writable by the user


if __name__ == "__main__":
    unittest.main()
