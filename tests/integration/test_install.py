"""make install (issue 9 point 14): the installed layout works out of the box.
Installs into a DESTDIR staging tree; only install-user touches the system (it
creates the relayvisor user and group once)."""
import os
import pwd
import grp
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import CTL, ROOT, SUPERVISOR


def make(*args, env=None):
    p = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, *args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, env=env)
    return p.returncode, p.stdout.decode(errors="replace")


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dest = tempfile.mkdtemp(prefix="rv-install-")
        code, out = make("install", "DESTDIR=" + cls.dest, "PREFIX=/usr/local")
        if code != 0:
            shutil.rmtree(cls.dest, ignore_errors=True)
            raise AssertionError("make install: %d\n%s" % (code, out))
        cls.out = out

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def p(self, path):
        return os.path.join(self.dest, path.lstrip("/"))

    def test_layout(self):
        for f in ("/usr/local/sbin/relayvisord", "/usr/local/sbin/relayvisor-smtpd",
                  "/usr/local/bin/relayvisorctl",
                  "/usr/local/share/man/man8/relayvisord.8",
                  "/usr/local/share/man/man8/relayvisor-smtpd.8",
                  "/usr/local/share/man/man8/relayvisorctl.8",
                  "/usr/local/share/man/man8/relayvisor-qmgr.8",
                  "/usr/local/share/man/man8/relayvisor-deliver.8",
                  "/usr/local/share/man/man5/relayvisor.conf.5",
                  "/usr/local/lib/systemd/system/relayvisord.service",
                  "/usr/local/share/doc/relayvisor/README.md",
                  "/usr/local/share/doc/relayvisor/examples/conf.d/10-server.yaml",
                  "/usr/local/share/doc/relayvisor/examples/conf.d/20-instances.yaml",
                  "/usr/local/share/doc/relayvisor/examples/logrotate/relayvisor",
                  "/etc/relayvisor/conf.d/10-server.yaml",
                  "/etc/relayvisor/conf.d/20-instances.yaml",
                  "/etc/relayvisor/conf.d/30-submission.yaml",
                  "/usr/local/share/doc/relayvisor/examples/conf.d/30-submission.yaml",
                  "/etc/logrotate.d/relayvisor"):
            self.assertTrue(os.path.isfile(self.p(f)), f)
        self.assertIn("user relayvisor not created", self.out)

    def test_installed_configuration(self):
        with open(self.p("/etc/relayvisor/conf.d/10-server.yaml")) as f:
            text = f.read()
        keys = dict(re.findall(r"^  (\w+): (\S+)", text, re.M))
        self.assertEqual(keys["user"], "relayvisor")
        self.assertEqual(keys["spool"], "/var/lib/relayvisor/spool")
        self.assertEqual(keys["control"], "/run/relayvisor/relayvisor.sock")
        self.assertEqual(keys["logs"], "/var/log/relayvisor")
        # the submission instance: absolute paths under /etc/relayvisor, never
        # the ./var of `make run` (whose demo certificate must not be installed)
        with open(self.p("/etc/relayvisor/conf.d/30-submission.yaml")) as f:
            sub = f.read()
        self.assertIn("cert: /etc/relayvisor/tls/cert.pem", sub)
        self.assertIn("key: /etc/relayvisor/tls/key.pem", sub)
        self.assertIn("require_tls: true", sub)
        self.assertIn("require_auth: true", sub)
        self.assertNotIn("./var", sub)
        self.assertFalse(os.path.exists(self.p("/etc/relayvisor/tls")))
        # the unit's directories are the configuration's
        with open(self.p("/usr/local/lib/systemd/system/relayvisord.service")) as f:
            unit = f.read()
        for line in ("StateDirectory=relayvisor", "RuntimeDirectory=relayvisor",
                     "LogsDirectory=relayvisor", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                     "ExecStart=/usr/local/sbin/relayvisord -n -c /etc/relayvisor/conf.d"):
            self.assertIn(line + "\n", unit)
        self.assertRegex(unit, r"Documentation=man:relayvisord\(8\)")
        self.assertNotIn("@SBINDIR@", unit)
        with open(self.p("/etc/logrotate.d/relayvisor")) as f:
            self.assertIn("/run/relayvisor/relayvisord.pid", f.read())

    @unittest.skipUnless(shutil.which("systemd-analyze") and shutil.which("man"),
                         "systemd-analyze or man missing")
    def test_systemd_analyze_verify_clean(self):
        # the staged unit, its commands pointed at the staged tree so that they
        # exist, its man pages found in the staged tree
        d = tempfile.mkdtemp(prefix="rv-unit-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(self.p("/usr/local/lib/systemd/system/relayvisord.service")) as f:
            unit = f.read().replace("/usr/local/sbin", self.p("/usr/local/sbin"))
        path = os.path.join(d, "relayvisord.service")
        with open(path, "w") as f:
            f.write(unit)
        env = dict(os.environ, MANPATH=self.p("/usr/local/share/man"))
        p = subprocess.run(["systemd-analyze", "verify", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env, timeout=60)
        self.assertEqual((p.returncode, p.stdout.decode()), (0, ""))

    def test_reinstall_never_restores_what_the_admin_removed(self):
        os.unlink(self.p("/etc/relayvisor/conf.d/20-instances.yaml"))
        os.unlink(self.p("/etc/logrotate.d/relayvisor"))
        with open(self.p("/etc/relayvisor/conf.d/10-server.yaml"), "a") as f:
            f.write("# edited by the administrator\n")
        code, out = make("install", "DESTDIR=" + self.dest, "PREFIX=/usr/local")
        self.assertEqual(code, 0, out)
        self.assertIn("configuration left as it is", out)
        self.assertFalse(os.path.exists(self.p("/etc/relayvisor/conf.d/20-instances.yaml")))
        self.assertFalse(os.path.exists(self.p("/etc/logrotate.d/relayvisor")))
        with open(self.p("/etc/relayvisor/conf.d/10-server.yaml")) as f:
            self.assertIn("# edited by the administrator", f.read())
        # the examples are refreshed
        self.assertTrue(os.path.exists(
            self.p("/usr/local/share/doc/relayvisor/examples/conf.d/20-instances.yaml")))

    @unittest.skipUnless(os.geteuid() == 0, "needs root: creates the system user")
    def test_install_user_idempotent_and_config_valid(self):
        for _ in range(2):
            code, out = make("install-user")
            self.assertEqual(code, 0, out)
        self.assertNotIn("creating", out)       # the second run had nothing to do
        pw = pwd.getpwnam("relayvisor")
        self.assertEqual(grp.getgrgid(pw.pw_gid).gr_name, "relayvisor")
        self.assertLess(pw.pw_uid, 1000)
        self.assertTrue(pw.pw_shell.endswith("nologin"))
        conf = tempfile.mkdtemp(prefix="rv-conf-")
        self.addCleanup(shutil.rmtree, conf, True)
        shutil.copytree(self.p("/usr/local/share/doc/relayvisor/examples/conf.d"),
                        os.path.join(conf, "conf.d"))
        p = subprocess.run([SUPERVISOR, "-t", "-c", os.path.join(conf, "conf.d")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 0, p.stdout.decode())


class CtlDefaultDirectory(unittest.TestCase):
    def test_falls_back_to_etc_without_local_conf_d(self):
        d = tempfile.mkdtemp(prefix="rv-cwd-")
        self.addCleanup(shutil.rmtree, d, True)
        p = subprocess.run([CTL, "status"], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode()
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue("/etc/relayvisor/conf.d" in out or "/run/relayvisor/" in out, out)
        self.assertNotIn("./conf.d", out)
        # with a ./conf.d, that one is used
        os.mkdir(os.path.join(d, "conf.d"))
        p = subprocess.run([CTL, "status"], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        self.assertNotIn("/etc/relayvisor", p.stdout.decode())


if __name__ == "__main__":
    unittest.main()
