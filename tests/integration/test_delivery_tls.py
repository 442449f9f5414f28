"""Outbound TLS and relayhost AUTH of the delivery agent, against real servers on
loopback: a private Postfix (its own main.cf/master.cf under a temporary
directory, smtpd with a certificate the test makes with `openssl`, mail for
remote.example into a Maildir by Postfix's virtual(8)) as the relayhost;
`smtp-sink` (no STARTTLS) for the levels that require TLS; a private Dovecot as
Postfix's SASL backend (`smtpd_sasl_type = dovecot`) for relayhost AUTH; and a
small STARTTLS impostor (it says 220 and then talks garbage) for the fallback of
`may`. Every address is 127.0.0.1; the agents' resolver is a closed loopback port
(every next hop is bracketed: no lookup)."""
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import dovecot
import harness
from harness import ConfDir, free_port, stop_process
from test_delivery import Delivery, Sink

NEEDS = ("postfix", "postconf", "smtp-sink", "openssl")


def have_all():
    return all(shutil.which(p) for p in NEEDS) and os.geteuid() == 0


def run(*args):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    if p.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(args), p.stdout.decode()))


class Certs:
    """A CA, a server certificate it signed (CN localhost, SAN DNS:localhost and
    IP:127.0.0.1), and an unrelated second CA."""

    def __init__(self, top):
        self.dir = os.path.join(top, "certs")
        os.makedirs(self.dir)
        d = self.dir
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ("ca", "wrongca"):
            run("openssl", "req", "-x509", *ec, "-keyout", "%s/%s.key" % (d, ca),
                "-out", "%s/%s.pem" % (d, ca), "-days", "2", "-subj",
                "/CN=relayvisor test %s" % ca, "-addext",
                "basicConstraints=critical,CA:TRUE", "-addext",
                "keyUsage=critical,keyCertSign,cRLSign")
        run("openssl", "req", *ec, "-keyout", d + "/server.key", "-out",
            d + "/server.csr", "-subj", "/CN=localhost")
        with open(d + "/ext.cnf", "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                    "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.pem",
            "-CAkey", d + "/ca.key", "-CAcreateserial", "-out", d + "/server.pem",
            "-days", "2", "-extfile", d + "/ext.cnf")
        os.chmod(d + "/server.key", 0o600)
        for name in ("ca.pem", "wrongca.pem", "server.pem"):
            os.chmod(os.path.join(d, name), 0o644)
        self.ca = d + "/ca.pem"
        self.wrongca = d + "/wrongca.pem"
        self.cert = d + "/server.pem"
        self.key = d + "/server.key"


class Postfix:
    """A private Postfix on 127.0.0.1:port with STARTTLS: mail for remote.example
    lands in <top>/vmail/mail/ (Maildir, virtual(8) as nobody)."""

    def __init__(self, top, certs, extra=""):
        self.top = os.path.join(top, "postfix")
        self.conf = os.path.join(self.top, "etc")
        self.queue = os.path.join(self.top, "queue")
        self.data = os.path.join(self.top, "data")
        self.vmail = os.path.join(self.top, "vmail")
        self.logpath = os.path.join(self.top, "postfix.log")
        self.port = free_port()
        self.started = False
        for d in (self.conf, self.queue, self.data, self.vmail):
            os.makedirs(d)
        os.chmod(self.top, 0o755)
        shutil.chown(self.data, "postfix")
        shutil.chown(self.vmail, "nobody", "nogroup")
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write("""compatibility_level = 3.6
queue_directory = {q}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = relayhost.test.example
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = remote.example
virtual_mailbox_base = {vmail}
virtual_mailbox_maps = static:mail/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
local_recipient_maps =
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
maillog_file = {log}
maillog_file_prefixes = /var, /dev/stdout, {top}
biff = no
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
{extra}
""".format(q=self.queue, data=self.data, vmail=self.vmail, log=self.logpath,
                top=self.top, cert=certs.cert, key=certs.key, extra=extra))
        with open("/etc/postfix/master.cf") as f:
            master = [l for l in f.read().splitlines()
                      if not re.match(r"^smtp\s+inet", l)]
        master.append("127.0.0.1:%d inet n - n - - smtpd" % self.port)
        # 127.0.0.2 is a name the certificate does not carry
        master.append("127.0.0.2:%d inet n - n - - smtpd" % self.port)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("\n".join(master) + "\n")
        run("postconf", "-c", self.conf, "-Fe", "*/*/chroot = n")
        self.started = True     # `postfix start` runs `postfix check` first
        run("postfix", "-c", self.conf, "start")
        harness.wait_port("127.0.0.1", self.port, 30)

    def log(self):
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def messages(self, subject):
        """the messages in the Maildir with this subject (a class shares one
        Postfix: each test has its own subjects)"""
        rx = re.compile(r"^Subject: %s\r?$" % re.escape(subject), re.M)
        out = []
        for path in glob.glob(os.path.join(self.vmail, "mail", "new", "*")):
            with open(path, "rb") as f:
                m = f.read()
            if rx.search(m.decode(errors="replace")):
                out.append(m)
        return out

    def stop(self):
        if not self.started:
            return
        self.started = False
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        subprocess.run(["postfix", "-c", self.conf, "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 30
        while pid is not None and time.monotonic() < deadline:
            if not os.path.exists("/proc/%d" % pid):
                return
            time.sleep(0.05)
        if pid is not None and os.path.exists("/proc/%d" % pid):
            subprocess.run(["postfix", "-c", self.conf, "abort"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Dovecot(dovecot.AuthDovecot):
    """Postfix's SASL backend: its auth-client socket is Postfix's"""

    def __init__(self, top, users):
        d = os.path.join(top, "dovecot")
        os.makedirs(d)
        path = os.path.join(d, "users")
        with open(path, "w") as f:
            for user, pw in users.items():
                f.write("%s:{PLAIN}%s\n" % (user, pw))
        super().__init__(d, path, mode="0660", owner="postfix")


class Impostor:
    """Offers STARTTLS, says 220 to it, then answers the ClientHello with
    garbage; a second connection (in clear) gets a plain SMTP server that
    accepts one message. Counts connections and records the message."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.starttls = 0
        self.data = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                self.session(c)
            except OSError:
                pass
            finally:
                c.close()

    def session(self, c):
        c.settimeout(30)
        f = c.makefile("rb")
        c.sendall(b"220 impostor.test ESMTP\r\n")
        in_data = False
        body = b""
        while True:
            line = f.readline()
            if not line:
                return
            if in_data:
                if line == b".\r\n":
                    self.data.append(body)
                    in_data = False
                    c.sendall(b"250 2.0.0 queued\r\n")
                else:
                    body += line
                continue
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO"):
                c.sendall(b"250-impostor.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            elif cmd == b"STARTTLS":
                self.starttls += 1
                c.sendall(b"220 2.0.0 go ahead\r\n")
                c.recv(4096)    # the ClientHello
                c.sendall(b"this is not a TLS record\r\n" * 4)
                return
            elif cmd.startswith(b"MAIL") or cmd.startswith(b"RCPT"):
                c.sendall(b"250 2.1.0 ok\r\n")
            elif cmd == b"DATA":
                in_data = True
                c.sendall(b"354 go\r\n")
            elif cmd == b"QUIT":
                c.sendall(b"221 bye\r\n")
                return
            else:
                c.sendall(b"250 ok\r\n")

    def stop(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes the accept()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(10)
        if self.thread.is_alive():
            raise AssertionError("the impostor's thread did not stop")


class TLSBase(Delivery):
    """One Postfix (and its certificates) per class, started once: each test
    has its own relayvisord and its own subjects."""

    POSTFIX_EXTRA = ""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ctop = tempfile.mkdtemp(prefix="rv-tls-out-")
        os.chmod(cls.ctop, 0o755)
        cls.addClassCleanup(shutil.rmtree, cls.ctop, ignore_errors=True)
        cls.certs = Certs(cls.ctop)
        cls.extra_servers()
        cls.pf = Postfix(cls.ctop, cls.certs, cls.POSTFIX_EXTRA)
        cls.addClassCleanup(cls.pf.stop)

    @classmethod
    def extra_servers(cls):
        pass

    def setUp(self):
        super().setUp()
        self.top = tempfile.mkdtemp(prefix="rv-tls-test-")
        os.chmod(self.top, 0o755)
        self.later(lambda: shutil.rmtree(self.top, ignore_errors=True))
        # a closed loopback port: no next hop here needs a lookup, and none may
        # reach the machine's resolver
        self.dns_port = free_port()

    def postfix(self):
        return self.pf

    def relayvisor(self, port, extra=""):
        maildir = os.path.join(self.top, "mail")
        self.start('  relayhost: "[127.0.0.1]:%d"\n  local: "maildir:%s/%%d/%%u"\n'
                   '  dns_servers: ["127.0.0.1:%d"]\n  retry_min: 1h\n  retry_max: 1h\n'
                   % (port, maildir, self.dns_port) + extra)

    def queue(self):
        code, out = self.sup.ctl("queue", "--json")
        self.assertEqual(code, 0, out)
        return json.loads(out)

    def wait_deferred(self, rcpt, dsn, text):
        return self.wait_log(r"relayvisor/smtp\[\d+\]: \w+: to=<%s>, .*dsn=%s, "
                             r"status=deferred \(%s" % (re.escape(rcpt),
                                                       re.escape(dsn), text))


@unittest.skipUnless(have_all(), "needs root and " + ", ".join(NEEDS))
class OutboundTLS(TLSBase):

    def test_postfix_relayhost_opportunistic(self):
        """default tls (may): STARTTLS to a real Postfix; the message arrives over
        TLS (Postfix's Received header and log say so), our agent logs Postfix's
        TLS line (Untrusted: its CA is not in the system store) and status=sent"""
        pf = self.postfix()
        self.relayvisor(pf.port)
        self.send("bob@example.test", ["friend@remote.example"], subject="over tls")
        self.wait_log(r"relayvisor/smtp\[\d+\]: Untrusted TLS connection established "
                      r"to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.[23] with cipher "
                      r"\S+ \(\d+/\d+ bits\)" % pf.port)
        self.wait_log(r"relayvisor/smtp\[\d+\]: \w+: to=<friend@remote.example>, "
                      r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*dsn=2\.0\.0, "
                      r"status=sent \(host .* said: 250 2\.0\.0 Ok: queued as"
                      % pf.port)
        self.sup.wait_for(lambda: pf.messages("over tls"), 30,
                          "the message in Postfix's Maildir")
        msg = pf.messages("over tls")[0].decode(errors="replace")
        self.assertIn("Subject: over tls", msg)
        self.assertRegex(msg, r"\(using TLSv1\.[23] with cipher ")
        self.assertRegex(pf.log(), r"postfix/smtpd\[\d+\]: Anonymous TLS connection "
                                   r"established from \S+\[127\.0\.0\.1\]")
        self.assertEqual(self.queue(), [])

    def test_session_resumed(self):
        """the next connection to the same server resumes the TLS session the
        last one got (Postfix's session cache): "TLS connection reused to" """
        pf = self.postfix()
        self.relayvisor(pf.port)
        quits = re.compile(r"postfix/smtpd\[\d+\]: disconnect from .* quit=1")
        disconnects = len(quits.findall(pf.log()))
        self.send("bob@example.test", ["friend@remote.example"], subject="resume 1")
        self.wait_log(r"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d"
                      % pf.port)
        self.wait_log(r"to=<friend@remote.example>, .*status=sent")
        # the idle session ends (QUIT after 5 s): the next message needs a new one
        self.sup.wait_for(lambda: len(quits.findall(pf.log())) > disconnects, 60,
                          "our first session's QUIT at Postfix")
        self.send("bob@example.test", ["friend@remote.example"], subject="resume 2")
        self.wait_log(r"relayvisor/smtp\[\d+\]: Untrusted TLS connection reused to "
                      r"127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.[23]" % pf.port)
        self.wait_log(r"to=<friend@remote.example>, .*status=sent", 2)
        self.sup.wait_for(lambda: pf.messages("resume 2"), 30, "the second message")

    def test_verify_right_ca(self):
        """verify with the CA that signed Postfix's certificate: chain and name
        (the literal's address against the certificate's IP SAN) check out"""
        pf = self.postfix()
        self.relayvisor(pf.port, "  relayhost_tls: verify\n  tls_ca_file: %s\n"
                        % self.certs.ca)
        self.send("bob@example.test", ["friend@remote.example"], subject="verified")
        self.wait_log(r"relayvisor/smtp\[\d+\]: Verified TLS connection established "
                      r"to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.[23]" % pf.port)
        self.wait_log(r"to=<friend@remote.example>, .*status=sent")
        self.sup.wait_for(lambda: pf.messages("verified"), 30,
                          "the message in Postfix's Maildir")

    def test_verify_wrong_ca(self):
        """verify with a CA that did not sign the certificate: deferred 4.7.5 with
        Postfix's words, nothing reaches Postfix, the message stays queued"""
        pf = self.postfix()
        self.relayvisor(pf.port, "  tls: verify\n  tls_ca_file: %s\n" % self.certs.wrongca)
        self.send("bob@example.test", ["friend@remote.example"], subject="unverified")
        self.wait_deferred("friend@remote.example", "4.7.5",
                           r"Server certificate not verified\)")
        self.wait_log(r"relayvisor/smtp\[\d+\]: warning: SSL_connect error to "
                      r"127\.0\.0\.1\[127\.0\.0\.1\]:%d: .*certificate verify failed"
                      % pf.port)
        q = self.queue()
        self.assertEqual(len(q), 1, q)
        self.assertIn("Server certificate not verified", json.dumps(q))
        self.assertEqual(pf.messages("unverified"), [])

    def test_verify_name_mismatch(self):
        """verify with the right CA but a next hop the certificate does not name
        (127.0.0.2; it says localhost and 127.0.0.1): deferred 4.7.5"""
        pf = self.postfix()
        harness.wait_port("127.0.0.2", pf.port, 30)
        self.relayvisor(pf.port, '  tls_ca_file: %s\n  routes:\n    remote.example: '
                        '{nexthop: "[127.0.0.2]:%d", tls: verify}\n'
                        % (self.certs.ca, pf.port))
        self.send("bob@example.test", ["friend@remote.example"], subject="wrong name")
        self.wait_deferred("friend@remote.example", "4.7.5",
                           r"Server certificate not verified\)")
        self.assertEqual(pf.messages("wrong name"), [])

    def test_encrypt_without_starttls(self):
        """encrypt against smtp-sink, which offers no STARTTLS: deferred 4.7.4
        "TLS is required, but was not offered by host ...", no MAIL FROM sent"""
        sink = Sink(self.top)
        self.later(sink.stop)
        self.relayvisor(sink.port, "  relayhost_tls: encrypt\n")
        self.send("bob@example.test", ["friend@remote.example"], subject="no tls")
        self.wait_deferred("friend@remote.example", "4.7.4",
                           r"TLS is required, but was not offered by host "
                           r"127\.0\.0\.1\[127\.0\.0\.1\]:%d\)" % sink.port)
        self.assertEqual(sink.messages(), [])
        q = self.queue()
        self.assertEqual(len(q), 1, q)

    def test_reload_applies_a_new_level(self):
        """reload with relayhost_tls changed restarts the agent: the next
        message to the same smtp-sink is deferred 4.7.4 instead of sent in clear"""
        sink = Sink(self.top)
        self.later(sink.stop)
        self.relayvisor(sink.port)
        self.send("bob@example.test", ["friend@remote.example"], subject="before")
        self.wait_log(r"to=<friend@remote.example>, .*status=sent")
        old = self.sup.status()["deliver"][1]
        with open(os.path.join(self.conf.dir, "30-delivery.yaml"), "a") as f:
            f.write("  relayhost_tls: encrypt\n")
        code, out = self.sup.ctl("reload")
        self.assertEqual(code, 0, out)
        self.sup.wait_for(lambda: self.sup.status()["deliver"][0] == "RUNNING" and
                          self.sup.status()["deliver"][1] not in (0, old), 30,
                          "a new delivery agent")
        self.send("bob@example.test", ["other@remote.example"], subject="after")
        self.wait_deferred("other@remote.example", "4.7.4", "TLS is required, but "
                           "was not offered by host")
        self.assertEqual(len(sink.messages()), 1)

    def test_route_mapping_form(self):
        """a route with its own level: remote.example goes to smtp-sink with tls
        encrypt (deferred 4.7.4) while the relayhost (Postfix) keeps may"""
        pf = self.postfix()
        sink = Sink(self.top)
        self.later(sink.stop)
        self.relayvisor(pf.port, '  routes:\n    other.example: {nexthop: '
                        '"[127.0.0.1]:%d", tls: encrypt}\n' % sink.port)
        self.send("bob@example.test", ["x@other.example"], subject="route")
        self.send("bob@example.test", ["friend@remote.example"], subject="relayhost")
        self.wait_deferred("x@other.example", "4.7.4", "TLS is required, but was not "
                           "offered by host")
        self.wait_log(r"to=<friend@remote.example>, .*status=sent")
        self.assertEqual(sink.messages(), [])

    def test_may_falls_back_to_clear_once(self):
        """may: a server whose TLS handshake fails gets the message in clear on a
        second connection to the same address (Postfix does the same)"""
        imp = Impostor()
        self.later(imp.stop)
        self.relayvisor(imp.port)
        self.send("bob@example.test", ["friend@remote.example"], subject="fallback")
        self.wait_log(r"relayvisor/smtp\[\d+\]: warning: SSL_connect error to "
                      r"127\.0\.0\.1\[127\.0\.0\.1\]:%d" % imp.port)
        self.wait_log(r"to=<friend@remote.example>, .*status=sent")
        self.assertEqual(imp.starttls, 1)
        self.assertEqual(imp.connections, 2)
        self.assertEqual(len(imp.data), 1)
        self.assertIn(b"Subject: fallback", imp.data[0])

    def test_encrypt_handshake_failure_defers(self):
        """encrypt: the same broken handshake is not retried in clear: 4.7.5"""
        imp = Impostor()
        self.later(imp.stop)
        self.relayvisor(imp.port, "  relayhost_tls: encrypt\n")
        self.send("bob@example.test", ["friend@remote.example"], subject="no fallback")
        self.wait_deferred("friend@remote.example", "4.7.5",
                           r"Cannot start TLS: handshake failure\)")
        self.assertEqual(imp.data, [])
        self.assertEqual(imp.connections, 1)


@unittest.skipUnless(have_all() and dovecot.available(),
                     "needs root, dovecot-core and " + ", ".join(NEEDS))
class RelayhostAuth(TLSBase):
    """relayhost_auth against Postfix with smtpd_sasl_type = dovecot and a
    private Dovecot: only authenticated clients may send through it."""

    PASSWORD = "s3cret with spaces"  # no ":" (passwd-file fields)

    @classmethod
    def extra_servers(cls):
        cls.dv = Dovecot(cls.ctop, {"relay": cls.PASSWORD})
        cls.addClassCleanup(cls.dv.stop)
        cls.POSTFIX_EXTRA = """mynetworks = 192.0.2.1/32
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = %s
smtpd_tls_auth_only = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject
""" % cls.dv.socket

    def sasl_postfix(self):
        return self.pf

    def pwfile(self, text, mode=0o600):
        path = os.path.join(self.top, "relay.pw")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def auth_conf(self, path):
        return "  relayhost_auth: {user: relay, password_file: %s}\n" % path

    def test_auth_plain_over_tls(self):
        """the right password: AUTH PLAIN after STARTTLS, Postfix logs the SASL
        login, the message arrives; the password is in no log"""
        pf = self.sasl_postfix()
        self.relayvisor(pf.port, self.auth_conf(self.pwfile(self.PASSWORD + "\n")))
        self.send("bob@example.test", ["friend@remote.example"], subject="authed")
        self.wait_log(r"to=<friend@remote.example>, .*status=sent")
        self.sup.wait_for(lambda: pf.messages("authed"), 30,
                          "the message in Postfix's Maildir")
        self.assertRegex(pf.log(), r"postfix/smtpd\[\d+\]: \w+: client=\S+\[127\.0\.0\.1\], "
                                   r"sasl_method=PLAIN, sasl_username=relay")
        self.assertNotIn("s3cret", self.logs())

    def test_wrong_password_defers(self):
        """535 from the relayhost: deferred with the server's reply; nothing sent"""
        pf = self.sasl_postfix()
        self.relayvisor(pf.port, self.auth_conf(self.pwfile("wrong\n")))
        self.send("bob@example.test", ["friend@remote.example"], subject="wrong")
        self.wait_deferred("friend@remote.example", "4.7.8",
                           r"SASL authentication failed; server 127\.0\.0\.1"
                           r"\[127\.0\.0\.1\]:%d said: 535 5\.7\.8 Error: "
                           r"authentication failed" % pf.port)
        self.assertEqual(pf.messages("wrong"), [])
        self.assertEqual(len(self.queue()), 1)

    def test_no_password_in_clear(self):
        """relayhost_auth to smtp-sink (no STARTTLS, tls may): deferred 4.7.4,
        and the sink never saw AUTH nor the message"""
        sink = Sink(self.top)
        self.later(sink.stop)
        self.relayvisor(sink.port, self.auth_conf(self.pwfile(self.PASSWORD + "\n")))
        self.send("bob@example.test", ["friend@remote.example"], subject="clear")
        self.wait_deferred("friend@remote.example", "4.7.4",
                           r"TLS is required, but was not offered by host")
        self.assertEqual(sink.messages(), [])

    def test_password_file_readable_by_all_refused(self):
        """a password file anyone may read is refused (named in the log); the
        relayhost's mail waits, deferred 4.7.0, and nothing is sent"""
        pf = self.sasl_postfix()
        path = self.pwfile(self.PASSWORD + "\n", 0o644)
        self.relayvisor(pf.port, self.auth_conf(path))
        self.wait_log(r"relayhost_auth: password file %s: readable by everyone"
                      % re.escape(path))
        self.send("bob@example.test", ["friend@remote.example"], subject="unsafe")
        self.wait_deferred("friend@remote.example", "4.7.0",
                           r"relayhost_auth: password file")
        self.assertEqual(pf.messages("unsafe"), [])


if __name__ == "__main__":
    unittest.main()
