"""A real multi-homed mail host, built from network namespaces and veth pairs:

    outside (198.18.0.2) --veth-- [wan0 198.18.0.1]  mailhost  [lan0 198.19.0.1] --veth-- office (198.19.0.2)

relayvisord runs inside `mailhost` as root, instances bound by interface name
(wan0:25, lan0:25), listeners as an unprivileged user this test creates. The clients
are swaks in the other namespaces. Delivery runs too: mail for remote.example
goes, by a `delivery.routes` entry in brackets (no DNS at all), to Postfix's
smtp-sink listening on 198.18.0.2:25 in the outside namespace, the MX out there;
local mail goes to a Maildir. All addresses are in 198.18.0.0/15 (reserved for
such tests) and exist only inside the namespaces this test makes; they are removed
on every exit path. Without the rights to make namespaces the test is skipped (and
counted as skipped, never as passed)."""
import atexit
import glob
import os
import re
import pwd
import shutil
import subprocess
import tempfile
import time
import unittest

import harness

TAG = "rv%d" % os.getpid()
MX, OUT, OFFICE = TAG + "mx", TAG + "out", TAG + "off"
USER = "rvnetns"


def sh(*args, ns=None, check=True, timeout=30):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stdout.decode(errors="replace")))
    return p.returncode, p.stdout.decode(errors="replace")


def teardown_namespaces():
    for ns in (MX, OUT, OFFICE):
        subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
        p = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        for pid in p.stdout.decode().split():
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass
        subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def build_namespaces():
    for ns in (MX, OUT, OFFICE):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    # both ends of each pair are created inside the namespaces
    sh("ip", "-n", MX, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0",
       "netns", OUT)
    sh("ip", "-n", MX, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0",
       "netns", OFFICE)
    for ns, dev, addr in ((MX, "wan0", "198.18.0.1/24"), (MX, "lan0", "198.19.0.1/24"),
                          (OUT, "eth0", "198.18.0.2/24"), (OFFICE, "eth0", "198.19.0.2/24")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    # clients reach every mail host address (the outside client tries the LAN one too)
    sh("ip", "-n", OUT, "route", "add", "default", "via", "198.18.0.1")
    sh("ip", "-n", OFFICE, "route", "add", "default", "via", "198.19.0.1")


def ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER)


class MultiHomedHost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("network namespaces need root")
        rc, out = sh("ip", "netns", "add", TAG + "probe", check=False)
        if rc != 0:
            raise unittest.SkipTest("cannot create network namespaces here: " + out.strip())
        sh("ip", "netns", "del", TAG + "probe", check=False)
        atexit.register(teardown_namespaces)
        cls.top = None
        cls.sup = None
        try:
            build_namespaces()
            ensure_user()
            cls.top = tempfile.mkdtemp(prefix="rv-netns-")
            os.chmod(cls.top, 0o755)
            conf = os.path.join(cls.top, "conf.d")
            os.mkdir(conf)
            with open(os.path.join(conf, "10-server.yaml"), "w") as f:
                f.write(harness.server_yaml(cls.top, extra="  user: %s\n" % USER)
                        + "lan: [198.19.0.0/24]\n")
            # the outside MX: smtp-sink in the outside namespace, each message
            # dumped to a file; reached through the route below, never DNS
            cls.sink_dir = os.path.join(cls.top, "sink")
            os.mkdir(cls.sink_dir)
            os.chmod(cls.sink_dir, 0o777)
            cls.sink_log = open(os.path.join(cls.top, "smtp-sink.log"), "wb")
            cls.sink = None
            if shutil.which("smtp-sink"):
                cls.sink = subprocess.Popen(
                    ["ip", "netns", "exec", OUT, "smtp-sink", "-u", "nobody", "-d",
                     cls.sink_dir + "/%M.", "198.18.0.2:25", "100"],
                    stdout=cls.sink_log, stderr=subprocess.STDOUT)
            with open(os.path.join(conf, "30-delivery.yaml"), "w") as f:
                f.write("""delivery:
  local: "maildir:%s/mail/%%d/%%u"
  routes:
    remote.example: "[198.18.0.2]:25"
  dns_servers: ["127.0.0.1:53"]
  retry_min: 1s
  retry_max: 2s
""" % cls.top)
            with open(os.path.join(conf, "20-instances.yaml"), "w") as f:
                f.write("""profiles:
  locked-down:
    lan: []
  lan-relay:
    relay_nonlocal_senders: true
instances:
  internet:
    listen: ["wan0:25"]
    profile: locked-down
  lan:
    listen: ["lan0:25"]
    profile: lan-relay
    access: lan
""")
            cls.conf = conf
            cls.log = open(os.path.join(cls.top, "relayvisord.log"), "wb")
            cls.sup = subprocess.Popen(["ip", "netns", "exec", MX, harness.SUPERVISOR,
                                        "-n", "-c", conf], stdout=cls.log,
                                       stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rc, out = sh(harness.CTL, "-c", conf, "status", ns=MX, check=False)
                # the two listeners, the qmgr and the delivery agent
                if rc == 0 and out.count("RUNNING") == 4:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("instances not RUNNING: " + out)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.sup is not None and cls.sup.poll() is None:
            cls.sup.terminate()
            try:
                cls.sup.wait(10)
            except subprocess.TimeoutExpired:
                cls.sup.kill()
        sink = getattr(cls, "sink", None)
        if sink is not None:
            harness.stop_process(sink)
        teardown_namespaces()
        if cls.top:
            shutil.rmtree(cls.top, ignore_errors=True)

    def swaks(self, ns, server, *args):
        rc, out = sh("swaks", "--hide-informational", "--timeout", "10", "--server",
                     server, "--helo", "client.test", *args, ns=ns, check=False)
        return rc, out

    def sink_messages(self):
        out = []
        for path in glob.glob(os.path.join(self.sink_dir, "*")):
            with open(path, "rb") as f:
                out.append(f.read())
        return out

    def test_office_relays_through_lan_instance(self):
        """the office client's mail, relayed by the LAN instance, arrives at the
        MX in the outside namespace, sent from the host's WAN address"""
        if self.sink is None:
            self.skipTest("smtp-sink (postfix) missing")
        rc, out = self.swaks(OFFICE, "198.19.0.1:25", "--from", "me@example.test",
                             "--to", "friend@remote.example",
                             "--header", "Subject: office to the world")
        self.assertEqual(rc, 0, out)
        self.assertIn("250 2.0.0 Ok: queued as", out)
        deadline = time.monotonic() + 60
        got = []
        while time.monotonic() < deadline:
            got = [m for m in self.sink_messages()
                   if b"Subject: office to the world" in m]
            if got:
                break
            time.sleep(0.1)
        self.assertEqual(len(got), 1, "not at the outside MX; relayvisord log: %s"
                         % open(os.path.join(self.top, "relayvisord.log"),
                                errors="replace").read()[-3000:])
        m = got[0]
        self.assertIn(b"X-Client-Addr: 198.18.0.1", m)
        self.assertIn(b"X-Mail-Args: <me@example.test>", m)
        self.assertIn(b"X-Rcpt-Args: <friend@remote.example>", m)
        # our Received: header names the office client
        self.assertIn(b"Received: from client.test (unknown [198.19.0.2])\n"
                      b"\tby mx.test.example (relayvisor)", m)
        # the log says so in Postfix's words: the qmgr logs it once the agent's
        # result is back, which can be after the sink has stored the message
        sent = re.compile(r"to=<friend@remote.example>, relay=198\.18\.0\.2"
                          r"\[198\.18\.0\.2\]:25, .*status=sent")
        deadline = time.monotonic() + 60
        while True:
            logs = ""
            for path in glob.glob(os.path.join(self.top, "var", "log", "*.log")):
                logs += open(path, errors="replace").read()
            if sent.search(logs) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertRegex(logs, sent)

    def test_outside_local_mail_reaches_maildir(self):
        """mail for a local user from outside, through the internet instance,
        is delivered to the Maildir"""
        rc, out = self.swaks(OUT, "198.18.0.1:25", "--from", "x@remote.example",
                             "--to", "localuser@example.test",
                             "--header", "Subject: from outside")
        self.assertEqual(rc, 0, out)
        deadline = time.monotonic() + 60
        files = []
        while time.monotonic() < deadline:
            files = glob.glob(os.path.join(self.top, "mail", "example.test",
                                           "localuser", "new", "*"))
            if files:
                break
            time.sleep(0.1)
        self.assertEqual(len(files), 1)
        self.assertIn("Subject: from outside", open(files[0], errors="replace").read())

    def test_outside_cannot_relay_through_internet_instance(self):
        rc, out = self.swaks(OUT, "198.18.0.1:25", "--from", "x@remote.example",
                             "--to", "victim@remote.example")
        self.assertNotEqual(rc, 0)
        self.assertIn("554 5.7.1 <victim@remote.example>: Relay access denied", out)

    def test_outside_delivers_locally_through_internet_instance(self):
        rc, out = self.swaks(OUT, "198.18.0.1:25", "--from", "x@remote.example",
                             "--to", "user@example.test")
        self.assertEqual(rc, 0, out)
        self.assertIn("250 2.0.0 Ok: queued as", out)

    def test_outside_refused_at_greeting_by_lan_instance(self):
        rc, out = self.swaks(OUT, "198.19.0.1:25", "--from", "x@remote.example",
                             "--to", "user@example.test")
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"<\*\* +554 5\.7\.1")

    def test_nothing_listens_elsewhere(self):
        rc, out = sh("ss", "-Hltn", ns=MX)
        listening = sorted(line.split()[3] for line in out.splitlines() if line.strip())
        self.assertEqual(listening, ["198.18.0.1:25", "198.19.0.1:25"])
        rc, out = sh("ss", "-Hlun", ns=MX)
        self.assertEqual(out.strip(), "")

    def test_listeners_run_unprivileged(self):
        rc, out = sh(harness.CTL, "-c", self.conf, "pid", "internet", ns=MX)
        pids = [int(p) for p in out.split()]
        self.assertTrue(pids, out)
        uid = pwd.getpwnam(USER).pw_uid
        for pid in pids:
            with open("/proc/%d/status" % pid) as f:
                uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
            self.assertEqual({int(u) for u in uids}, {uid})
