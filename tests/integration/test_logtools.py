"""The listener's log works with the tools written for Postfix's: Debian's
fail2ban-regex with contrib/fail2ban/filter.d/relayvisor.conf matches every relay
refusal with the right client address and nothing else, and Debian's pflogsumm
(--syslog-name=relayvisor/NAME) counts the received and rejected messages.

One listener serves 127.0.0.1 and [::1] with a profile that trusts no network;
clients come from 127.0.0.1, 127.0.0.2 and ::1, so a filter that took the wrong
bracketed address, or only IPv4, fails."""
import collections
import os
import re
import shutil
import smtplib
import subprocess
import unittest

from harness import (ROOT, SMTPD, ConfDir, Smtpd, TestCase, free_port, server_yaml,
                     swaks, wait_port)

FILTER = os.path.join(ROOT, "contrib", "fail2ban", "filter.d", "relayvisor.conf")
JAIL = os.path.join(ROOT, "contrib", "fail2ban", "jail.d", "relayvisor.conf")
INSTANCE = "logt"

# (client source address or None for ::1, accepted local messages, relay refusals)
TRAFFIC = [("127.0.0.1", 3, 4), ("127.0.0.2", 1, 2), ("::1", 2, 3)]

REFUSAL = re.compile(r"NOQUEUE: reject: RCPT from unknown\[([^\]]+)\]: 554 5\.7\.1 "
                     r"<[^>]*>: Relay access denied;")
RECEIVED = re.compile(r"/smtpd\[\d+\]: (\w+): client=unknown\[([^\]]+)\]")


def have(prog):
    return shutil.which(prog) is not None


def send_accepted(host, port, source, n, tag):
    kw = {"source_address": (source, 0)} if source and ":" not in source else {}
    with smtplib.SMTP(host, port, timeout=10, **kw) as c:
        c.ehlo("client.example")
        for i in range(n):
            msg = ("From: s@client.example\r\nTo: u@example.test\r\n"
                   "Subject: logtools %s %d\r\n\r\nbody %s %d\r\n" % (tag, i, tag, i))
            c.sendmail("s@client.example", ["u%d@example.test" % i], msg)
        c.quit()


def send_refused(host, port, source, n):
    """n relay attempts, one RCPT each; returns the replies' codes"""
    codes = []
    kw = {"source_address": (source, 0)} if source and ":" not in source else {}
    with smtplib.SMTP(host, port, timeout=10, **kw) as c:
        c.ehlo("relay.tester")
        for i in range(n):
            c.mail("spam@tester.example")
            code, _ = c.rcpt("victim%d@remote.example" % i)
            codes.append(code)
            c.rset()
        c.quit()
    return codes


class LogTools(TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(SMTPD):
            raise unittest.SkipTest("no %s" % SMTPD)
        cls.port4 = free_port("127.0.0.1")
        cls.port6 = free_port("::1")
        cls.conf = ConfDir({})
        cls.conf.write("relayvisor.yaml", server_yaml(cls.conf.top) + """
lan: [192.0.2.1]
profiles:
  locked:
    lan: []
instances:
  %s:
    listen: ["127.0.0.1:%d", "[::1]:%d"]
    profile: locked
""" % (INSTANCE, cls.port4, cls.port6))
        cls.smtpd = Smtpd(cls.conf, INSTANCE, wait=("127.0.0.1", cls.port4))
        wait_port("::1", cls.port6)
        cls.expect_refused = collections.Counter()
        cls.expect_received = collections.Counter()
        try:
            for src, acc, ref in TRAFFIC:
                host, port = ("::1", cls.port6) if src == "::1" else ("127.0.0.1", cls.port4)
                send_accepted(host, port, src, acc, src)
                cls.expect_received[src] += acc
                codes = send_refused(host, port, src, ref)
                assert codes == [554] * ref, "relay attempts got %r" % codes
                cls.expect_refused[src] += ref
            # one refusal through swaks too (IPv4: Debian's swaks lacks IPv6 support
            # without IO::Socket::INET6)
            rc, out = swaks("--server", "127.0.0.1", "--port", str(cls.port4),
                            "--from", "spam@tester.example", "--to", "v@remote.example",
                            "--helo", "swaks.tester", "--quit-after", "RCPT")
            assert "554 5.7.1" in out, out
            cls.expect_refused["127.0.0.1"] += 1
            # a session that only connects and quits
            with smtplib.SMTP("127.0.0.1", cls.port4, timeout=10) as c:
                c.quit()
        finally:
            cls.smtpd.stop()
        cls.log = cls.smtpd.logtext()

    @classmethod
    def tearDownClass(cls):
        cls.conf.cleanup()

    def test_log_has_postfix_lines(self):
        """the listener logged what the tools will look for, tagged
        relayvisor/<instance>/smtpd[pid]"""
        refused = collections.Counter(m.group(1) for m in REFUSAL.finditer(self.log))
        self.assertEqual(refused, self.expect_refused, self.log)
        received = collections.Counter(m.group(2) for m in RECEIVED.finditer(self.log))
        self.assertEqual(received, self.expect_received, self.log)
        tag = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ relayvisor/%s/smtpd\[\d+\]: "
                         % INSTANCE)
        for line in self.log.splitlines():
            if "reject:" in line or "client=" in line or "connect from" in line:
                self.assertRegex(line, tag)
        self.assertIn("connect from unknown[::1]", self.log)
        self.assertIn("disconnect from unknown[127.0.0.2]", self.log)

    @unittest.skipUnless(have("fail2ban-regex"), "fail2ban-regex not installed")
    def test_fail2ban_filter(self):
        # the filter includes common.conf from its own directory, as it will in
        # /etc/fail2ban/filter.d/
        fdir = os.path.join(self.conf.top, "fail2ban", "filter.d")
        os.makedirs(fdir)
        os.symlink("/etc/fail2ban/filter.d/common.conf", os.path.join(fdir, "common.conf"))
        shutil.copy(FILTER, os.path.join(fdir, "relayvisor.conf"))
        p = subprocess.run(["fail2ban-regex", "-o", "<ip>|<msg>", self.smtpd.logpath,
                            os.path.join(fdir, "relayvisor.conf")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        matched = collections.Counter()
        for line in p.stdout.decode().splitlines():
            if not line.strip():
                continue
            ip, _, msg = line.partition("|")
            m = REFUSAL.search(msg)
            # only relay refusals may match (no accepted message, no connect line)
            self.assertIsNotNone(m, "filter matched a line that is no refusal: %r" % msg)
            self.assertEqual(ip, m.group(1), "wrong address taken from %r" % msg)
            matched[ip] += 1
        self.assertEqual(matched, self.expect_refused)

    @unittest.skipUnless(have("fail2ban-regex"), "fail2ban-regex not installed")
    def test_fail2ban_filter_ignores_other_daemons(self):
        """the filter keys on the relayvisor tag: Postfix's own lines (and our
        accepted messages) are left alone"""
        fdir = os.path.join(self.conf.top, "fail2ban2", "filter.d")
        os.makedirs(fdir)
        os.symlink("/etc/fail2ban/filter.d/common.conf", os.path.join(fdir, "common.conf"))
        shutil.copy(FILTER, os.path.join(fdir, "relayvisor.conf"))
        sample = os.path.join(self.conf.top, "other.log")
        with open(sample, "w") as f:
            f.write("Nov 28 03:10:01 host postfix/smtpd[99]: NOQUEUE: reject: RCPT from "
                    "unknown[192.0.2.9]: 554 5.7.1 <v@remote.example>: Relay access denied;"
                    " from=<s@x.example> to=<v@remote.example> proto=ESMTP helo=<h>\n")
            f.write("Nov 28 03:10:02 host relayvisor/mx/smtpd[98]: NOQUEUE: reject: RCPT from"
                    " unknown[192.0.2.10]: 554 5.7.1 <v@remote.example>: Relay access denied;"
                    " from=<s@x.example> to=<v@remote.example> proto=ESMTP helo=<h>\n")
        p = subprocess.run(["fail2ban-regex", "-o", "ip", sample,
                            os.path.join(fdir, "relayvisor.conf")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.stdout.decode().split(), ["192.0.2.10"])

    @unittest.skipUnless(have("pflogsumm"), "pflogsumm not installed")
    def test_pflogsumm_counts(self):
        p = subprocess.run(["pflogsumm", "--syslog-name=relayvisor/%s" % INSTANCE,
                            self.smtpd.logpath], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        out = p.stdout.decode(errors="replace")

        def total(what):
            m = re.search(r"^\s*(\d+)\s+%s\b" % what, out, re.M)
            self.assertIsNotNone(m, "no '%s' in pflogsumm output:\n%s" % (what, out))
            return int(m.group(1))

        self.assertEqual(total("received"), sum(self.expect_received.values()), out)
        self.assertEqual(total("rejected"), sum(self.expect_refused.values()), out)
        # the reject detail names the reason and each client with its count
        self.assertRegex(out, r"Relay access denied \(total: %d\)"
                         % sum(self.expect_refused.values()))
        for client, n in self.expect_refused.items():
            self.assertRegex(out, r"(?m)^\s+%d\s+%s$" % (n, re.escape(client)), out)

    @unittest.skipUnless(have("fail2ban-regex") and have("pflogsumm"), "tools missing")
    def test_custom_syslog_name(self):
        """an instance with its own syslog_name: the filter's _syslog_name option and
        pflogsumm's --syslog-name take it (contrib/pflogsumm.md, the jail example)"""
        port = free_port()
        self.conf.write("custom.yaml", """
instances:
  custom:
    listen: ["127.0.0.1:%d"]
    profile: locked
    syslog_name: mx-in
""" % port)
        smtpd = Smtpd(self.conf, "custom", wait=("127.0.0.1", port))
        try:
            send_accepted("127.0.0.1", port, "127.0.0.3", 1, "custom")
            self.assertEqual(send_refused("127.0.0.1", port, "127.0.0.3", 2), [554, 554])
        finally:
            smtpd.stop()
            os.unlink(os.path.join(self.conf.dir, "custom.yaml"))
        self.assertRegex(smtpd.logtext(), r"(?m) mx-in/smtpd\[\d+\]: NOQUEUE: reject: ")
        fdir = os.path.join(self.conf.top, "fail2ban3", "filter.d")
        os.makedirs(fdir)
        os.symlink("/etc/fail2ban/filter.d/common.conf", os.path.join(fdir, "common.conf"))
        shutil.copy(FILTER, os.path.join(fdir, "relayvisor.conf"))
        fconf = os.path.join(fdir, "relayvisor.conf")
        for spec, want in ((fconf, []),
                           (fconf + '[_syslog_name="mx-in"]', ["127.0.0.3"] * 2)):
            p = subprocess.run(["fail2ban-regex", "-o", "ip", smtpd.logpath, spec],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            self.assertEqual(p.stdout.decode().split(), want, spec)
        p = subprocess.run(["pflogsumm", "--syslog-name=mx-in", smtpd.logpath],
                           stdout=subprocess.PIPE, timeout=60)
        out = p.stdout.decode(errors="replace")
        self.assertRegex(out, r"(?m)^\s*1\s+received$", out)
        self.assertRegex(out, r"(?m)^\s*2\s+rejected\b", out)

    @unittest.skipUnless(have("fail2ban-client"), "fail2ban not installed")
    def test_jail_example_parses(self):
        """the jail example is valid for fail2ban (its own config check)"""
        cdir = os.path.join(self.conf.top, "f2b-etc")
        shutil.copytree("/etc/fail2ban", cdir, symlinks=True)
        shutil.copy(FILTER, os.path.join(cdir, "filter.d", "relayvisor.conf"))
        with open(JAIL) as f:
            jail = f.read()
        # point the example at this test's log
        jail = re.sub(r"(?m)^logpath\s*=.*$", "logpath  = %s" % self.smtpd.logpath, jail)
        for name in os.listdir(os.path.join(cdir, "jail.d")):
            os.unlink(os.path.join(cdir, "jail.d", name))
        with open(os.path.join(cdir, "jail.d", "relayvisor.conf"), "w") as f:
            f.write(jail)
        p = subprocess.run(["fail2ban-client", "-c", cdir, "-t"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)


if __name__ == "__main__":
    unittest.main()
