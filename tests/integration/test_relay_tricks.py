"""Every open-relay trick of DESIGN.md section 5 / issue 3 point 3 against the real
listener, over IPv4 and [::1]: from a client outside the LAN each one must get a
5xx (and DATA must then be refused, so nothing can be queued); postmaster always
gets through; from the LAN, relaying follows the profile exactly.

The refusals from outside the LAN are the corpus relayvisorctl audit uses
(profiles/relay_tricks.def, read by corpus.py), so the audit and this suite
test the same cases. Five instances of one configuration, each a standalone relayvisor-smtpd on
127.0.0.1 and ::1 (loopback, so the open-relay interlock does not apply):

  outside   LAN that does not hold the client (lan: [192.0.2.1])
  lanrelay  LAN = loopback, relay_nonlocal_senders false, always_relay_to/_from
  lanopen   LAN = loopback, defaults (relays anything for the LAN)
  outrelay  no LAN, relay_outside_lan true, relay_nonlocal_senders false
  literals  no LAN, accept_domain_literals true

127.0.0.2 is used as a source address where a client outside a loopback LAN is
needed. Tables are (MAIL FROM argument, RCPT TO argument, expected reply prefix);
"5" means any permanent refusal, at MAIL or RCPT."""
import os
import socket
import unittest

import corpus
from harness import (SMTPD, ConfDir, Dialog, Smtpd, TestCase, free_port, server_yaml,
                     swaks, wait_port)

HOSTNAME = "mx.test.example"
OUT = "<s@client.example>"
REMOTE = "<v@remote.example>"

# ---- from a client outside the LAN ("outside" instance) -----------------------------
# The trick rows come from the corpus relayvisorctl audit plays (profiles/
# relay_tricks.def): (MAIL FROM, RCPT TO, expected, HELO), placeholders filled in for
# this configuration: local domain example.test, own address 127.0.0.1 (the
# instance's first listen address).
CORPUS = corpus.load()
OUTSIDE = [tuple(corpus.expand(x, "example.test", "[127.0.0.1]", HOSTNAME)
                 for x in (c.mail, c.rcpt, c.stranger, c.helo))
           for c in CORPUS if c.cls != "helo-forgery"]
# forged HELO names: HELO never grants anything
HELO_ROWS = [tuple(corpus.expand(x, "example.test", "[127.0.0.1]", HOSTNAME)
                   for x in (c.mail, c.rcpt, c.stranger, c.helo))
             for c in CORPUS if c.cls == "helo-forgery"]
FORGED_HELO = sorted({r[3] for r in HELO_ROWS})

# ---- lanrelay: LAN = loopback, relay_nonlocal_senders false, allow lists -------------
LANRELAY_LAN = [
    ("<a@example.test>", REMOTE, "250"),
    ("<a@EXAMPLE.TEST.>", REMOTE, "250"),
    ("<a@example.test>", "<@example.test:v@remote.example>", "250"),
    ("<a@other.example>", REMOTE, "554 5.7.1"),
    ("<>", REMOTE, "554 5.7.1"),
    ("<a@example.test.other.example>", REMOTE, "554 5.7.1"),
    ("<a@other.example.example.test>", REMOTE, "554 5.7.1"),
    ('<"a@example.test"@other.example>', REMOTE, "5"),
    ("<@example.test:a@other.example>", REMOTE, "5"),
    ("<a%example.test@other.example>", REMOTE, "5"),
    # always_relay_to: "@partner.example", "@.partner2.example", "exact@partner3.example"
    ("<a@other.example>", "<x@partner.example>", "250"),
    ("<a@other.example>", "<x@PARTNER.Example.>", "250"),
    ("<a@other.example>", "<x@sub.partner.example>", "554 5.7.1"),
    ("<a@other.example>", "<x@partner.example.evil.example>", "554 5.7.1"),
    ("<a@other.example>", "<x@evilpartner.example>", "554 5.7.1"),
    ("<a@other.example>", '<"x@evil.example"@partner.example.evil.example>', "554 5.7.1"),
    ("<a@other.example>", "<x@a.partner2.example>", "250"),
    ("<a@other.example>", "<x@partner2.example>", "554 5.7.1"),
    ("<a@other.example>", "<exact@partner3.example>", "250"),
    ("<a@other.example>", "<other@partner3.example>", "554 5.7.1"),
    # always_relay_from: "boss@friend.example", "@trusted.example"
    ("<boss@friend.example>", REMOTE, "250"),
    ("<boss@FRIEND.EXAMPLE>", REMOTE, "250"),
    ("<other@friend.example>", REMOTE, "554 5.7.1"),
    ("<boss@friend.example.evil.example>", REMOTE, "554 5.7.1"),
    ("<x@trusted.example>", REMOTE, "250"),
    ("<x@sub.trusted.example>", REMOTE, "554 5.7.1"),
    ('<"boss@friend.example"@other.example>', REMOTE, "5"),
    # local delivery and the local-part tricks are the same from the LAN
    ("<a@other.example>", "<u@example.test>", "250"),
    ("<a@other.example>", "<u%remote.example@example.test>", "550 5.1.3"),
    ("<a@example.test>", '<"u@remote.example"@example.test>', "550 5.1.3"),
    ("<a@other.example>", "<postmaster>", "250"),
]
# the same instance seen from 127.0.0.2, outside its LAN (IPv4 only)
LANRELAY_OUTSIDE = [
    ("<a@example.test>", REMOTE, "554 5.7.1"),
    ("<a@other.example>", REMOTE, "554 5.7.1"),
    ("<a@other.example>", "<x@partner.example>", "250"),
    ("<a@other.example>", "<x@sub.partner.example>", "554 5.7.1"),
    ("<boss@friend.example>", REMOTE, "250"),
    ("<a@other.example>", "<u@example.test>", "250"),
    ("<a@other.example>", "<postmaster>", "250"),
]

# ---- lanopen: LAN = loopback, defaults ------------------------------------------------
LANOPEN_LAN = [
    ("<a@other.example>", REMOTE, "250"),
    ("<a@example.test>", REMOTE, "250"),
    ("<>", REMOTE, "250"),
    ("<a@other.example>", "<u%remote.example@example.test>", "550 5.1.3"),
    ("<a@other.example>", "<remote.example!u@example.test>", "550 5.1.3"),
]
LANOPEN_OUTSIDE = [
    ("<a@other.example>", REMOTE, "554 5.7.1"),
    ("<a@example.test>", REMOTE, "554 5.7.1"),
    ("<>", REMOTE, "554 5.7.1"),
    ("<a@other.example>", "<u@example.test>", "250"),
]

# ---- outrelay: relay_outside_lan true, relay_nonlocal_senders false -------------------
OUTRELAY = [
    ("<a@example.test>", REMOTE, "250"),
    ("<a@Example.Test.>", REMOTE, "250"),
    ("<a@other.example>", REMOTE, "554 5.7.1"),
    ("<>", REMOTE, "554 5.7.1"),
    ("<a@example.test.other.example>", REMOTE, "554 5.7.1"),
    ('<"a@example.test"@other.example>', REMOTE, "5"),
    ("<@example.test:a@other.example>", REMOTE, "5"),
]

# ---- literals: accept_domain_literals true, own addresses 127.0.0.1 and ::1 -----------
LITERALS = [
    (OUT, "<u@[127.0.0.1]>", "250"),
    (OUT, "<u@[IPv6:::1]>", "250"),
    (OUT, "<postmaster@[127.0.0.1]>", "250"),
    (OUT, "<u@[127.0.0.9]>", "5"),
    (OUT, "<u@[192.0.2.1]>", "5"),
    (OUT, "<u@[IPv6:2001:db8::1]>", "5"),
    (OUT, "<u%remote.example@[127.0.0.1]>", "550 5.1.3"),
    (OUT, '<"u@remote.example"@[IPv6:::1]>', "550 5.1.3"),
    (OUT, REMOTE, "554 5.7.1"),
]


def dialog_from(host, port, source=None, timeout=10):
    """A harness Dialog, optionally bound to a source address first."""
    if source is None:
        return Dialog(host, port, timeout)
    d = Dialog.__new__(Dialog)
    d.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    d.s.settimeout(timeout)
    d.s.bind((source, 0))
    d.s.connect((host, port))
    d.buf = b""
    return d


def last_line(text):
    return text.splitlines()[-1] if text else ""


def transaction(host, port, mail, rcpt, helo="client.example", source=None):
    """One session: EHLO, MAIL, RCPT and, when RCPT was refused, DATA (which must
    then be refused too). Returns a dict of the replies' last lines."""
    d = dialog_from(host, port, source)
    out = {}
    try:
        code, text = d.reply()
        out["greeting"] = last_line(text)
        code, text = d.cmd("EHLO " + helo)
        out["ehlo"] = last_line(text)
        code, text = d.cmd("MAIL FROM:" + mail)
        out["mail"] = last_line(text)
        if code == 250:
            code, text = d.cmd("RCPT TO:" + rcpt)
            out["rcpt"] = last_line(text)
            if code >= 400:
                code, text = d.cmd("DATA")
                out["data"] = last_line(text)
                if code == 354:		# must not happen; end it so the test reports it
                    code, text = d.cmd("Subject: x\r\n\r\nx\r\n.")
                    out["data_end"] = last_line(text)
        try:
            d.cmd("QUIT")
        except (OSError, EOFError):
            pass
    finally:
        d.close()
    return out


class RelayTricks(TestCase):
    instances = {}

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(SMTPD):
            raise unittest.SkipTest("no %s" % SMTPD)
        cls.conf = ConfDir({})
        cls.ports = {}
        for name in ("outside", "lanrelay", "lanopen", "outrelay", "literals"):
            cls.ports[name] = (free_port("127.0.0.1"), free_port("::1"))
        listen = {n: '["127.0.0.1:%d", "[::1]:%d"]' % p for n, p in cls.ports.items()}
        cls.conf.write("relayvisor.yaml", server_yaml(cls.conf.top, hostname=HOSTNAME) + """
lan: [192.0.2.1]
profiles:
  outside:
    lan: [192.0.2.1]
  lanrelay:
    lan: [127.0.0.1, "::1"]
    relay_nonlocal_senders: false
    always_relay_to: ["@partner.example", "@.partner2.example", "exact@partner3.example"]
    always_relay_from: ["boss@friend.example", "@trusted.example"]
  lanopen:
    lan: [127.0.0.1, "::1"]
  outrelay:
    lan: []
    relay_outside_lan: true
    relay_nonlocal_senders: false
  literals:
    lan: []
    accept_domain_literals: true
instances:
""" + "".join("""  %s:
    listen: %s
    profile: %s
    max_per_client: 200
""" % (n, listen[n], n) for n in cls.ports))
        cls.smtpds = []
        try:
            for name, (p4, p6) in cls.ports.items():
                cls.smtpds.append(Smtpd(cls.conf, name, wait=("127.0.0.1", p4)))
                wait_port("::1", p6)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for s in getattr(cls, "smtpds", []):
            s.stop()
        cls.conf.cleanup()

    def check_table(self, instance, rows, families=("127.0.0.1", "::1"), source=None,
                    helo="client.example"):
        p4, p6 = self.ports[instance]
        for host in families:
            port = p4 if host == "127.0.0.1" else p6
            for row in rows:
                mail, rcpt, want = row[:3]
                row_helo = row[3] if len(row) > 3 else helo
                with self.subTest(instance=instance, host=host, source=source,
                                  helo=row_helo, mail=mail, rcpt=rcpt, want=want):
                    r = transaction(host, port, mail, rcpt, helo=row_helo, source=source)
                    self.assertTrue(r["greeting"].startswith("220"), r)
                    self.assertTrue(r["ehlo"].startswith("250"), r)
                    if want.startswith("2"):
                        self.assertTrue(r["mail"].startswith("250"), r)
                        self.assertTrue(r.get("rcpt", "").startswith(want), r)
                        continue
                    # a refusal: permanent, where the table says, and DATA refused
                    if not r["mail"].startswith("250"):
                        self.assertEqual(want, "5", "MAIL refused where RCPT should "
                                         "have been: %r" % r)
                        self.assertTrue(r["mail"].startswith("5"), r)
                        continue
                    self.assertTrue(r["rcpt"].startswith(want), r)
                    self.assertTrue(r["data"].startswith("5"),
                                    "DATA after the only RCPT was refused: %r" % r)
                    self.assertNotIn("data_end", r, "a message was accepted: %r" % r)

    def test_outside_tricks(self):
        self.check_table("outside", OUTSIDE)

    def test_outside_tricks_from_second_address(self):
        """another outside source address (not 127.0.0.1) changes nothing"""
        self.check_table("outside", OUTSIDE, families=("127.0.0.1",), source="127.0.0.2")

    def test_corpus_covers_the_trick_classes(self):
        """the corpus these tables come from holds every class relay testers use"""
        classes = {c.cls for c in CORPUS}
        for cls in ("percent-hack", "bang-path", "quoted-escaped", "several-at",
                    "source-route", "address-literal", "dots-and-case",
                    "forged-sender", "postmaster", "helo-forgery", "length-limit"):
            self.assertIn(cls, classes)
        self.assertGreaterEqual(len(FORGED_HELO), 5)

    def test_forged_helo(self):
        self.check_table("outside", HELO_ROWS)

    def test_forged_helo_swaks(self):
        p4, _ = self.ports["outside"]
        for helo in FORGED_HELO:
            for sender in ("user@example.test", "postmaster@example.test", ""):
                with self.subTest(helo=helo, sender=sender):
                    rc, out = swaks("--server", "127.0.0.1", "--port", str(p4),
                                    "--helo", helo, "--from", sender,
                                    "--to", "v@remote.example", "--quit-after", "RCPT")
                    self.assertRegex(out, r"(?m)^<\*\* +554 5\.7\.1 ", out)
                    self.assertNotEqual(rc, 0, out)

    def test_postmaster_swaks(self):
        p4, _ = self.ports["outside"]
        for rcpt in ("postmaster", "POSTMASTER", "postmaster@example.test",
                     "PostMaster@Example.Test"):
            with self.subTest(rcpt=rcpt):
                rc, out = swaks("--server", "127.0.0.1", "--port", str(p4),
                                "--from", "", "--to", rcpt, "--quit-after", "RCPT")
                self.assertEqual(rc, 0, out)
                self.assertRegex(out, r"(?m)^<- +250 ", out)

    def test_lanrelay_from_lan(self):
        self.check_table("lanrelay", LANRELAY_LAN)

    def test_lanrelay_from_outside(self):
        self.check_table("lanrelay", LANRELAY_OUTSIDE, families=("127.0.0.1",),
                         source="127.0.0.2")

    def test_lanrelay_swaks(self):
        p4, _ = self.ports["lanrelay"]
        for sender, rcpt, ok in (("a@example.test", "v@remote.example", True),
                                 ("a@other.example", "v@remote.example", False),
                                 ("a@other.example", "x@partner.example", True),
                                 ("boss@friend.example", "v@remote.example", True)):
            with self.subTest(sender=sender, rcpt=rcpt):
                rc, out = swaks("--server", "127.0.0.1", "--port", str(p4),
                                "--from", sender, "--to", rcpt, "--quit-after", "RCPT")
                if ok:
                    self.assertEqual(rc, 0, out)
                else:
                    self.assertRegex(out, r"(?m)^<\*\* +554 5\.7\.1 ", out)

    def test_lanopen_from_lan(self):
        self.check_table("lanopen", LANOPEN_LAN)

    def test_lanopen_from_outside(self):
        self.check_table("lanopen", LANOPEN_OUTSIDE, families=("127.0.0.1",),
                         source="127.0.0.2")

    def test_outrelay(self):
        self.check_table("outrelay", OUTRELAY)
        self.check_table("outrelay", OUTRELAY, families=("127.0.0.1",), source="127.0.0.2")

    def test_domain_literals(self):
        self.check_table("literals", LITERALS)

    def test_outside_tricks_pipelined(self):
        """the refused tricks sent as one pipelined transaction (one write: MAIL,
        ten RCPTs, DATA, QUIT): every RCPT refused as when sent alone, DATA refused,
        replies in order and none lost"""
        rows = [r for r in OUTSIDE if r[0] == OUT and not r[2].startswith("2")]
        self.assertGreater(len(rows), 30)
        for host in ("127.0.0.1", "::1"):
            port = self.ports["outside"][0 if host == "127.0.0.1" else 1]
            for i in range(0, len(rows), 10):
                batch = rows[i:i + 10]
                with self.subTest(host=host, first=batch[0][1]):
                    d = dialog_from(host, port)
                    try:
                        self.assertEqual(d.reply()[0], 220)
                        self.assertEqual(d.cmd("EHLO client.example")[0], 250)
                        d.send("MAIL FROM:%s\r\n" % OUT
                               + "".join("RCPT TO:%s\r\n" % r[1] for r in batch)
                               + "DATA\r\nQUIT\r\n")
                        self.assertTrue(last_line(d.reply()[1]).startswith("250"))
                        for _, rcpt, want, _ in batch:
                            line = last_line(d.reply()[1])
                            self.assertTrue(line.startswith(want), (rcpt, want, line))
                        self.assertTrue(last_line(d.reply()[1]).startswith("5"))
                        self.assertTrue(last_line(d.reply()[1]).startswith("221"))
                    finally:
                        d.close()

    def test_smtplib_sendmail(self):
        """what an ordinary client library sees: relaying refused, postmaster and
        local mail delivered (queued)"""
        import smtplib
        for host in ("127.0.0.1", "::1"):
            port = self.ports["outside"][0 if host == "127.0.0.1" else 1]
            with self.subTest(host=host):
                with smtplib.SMTP(host, port, timeout=10) as c:
                    c.ehlo("client.example")
                    with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                        c.sendmail("user@example.test", ["v@remote.example"],
                                   "Subject: relay?\r\n\r\nno\r\n")
                    code, text = cm.exception.recipients["v@remote.example"]
                    self.assertEqual(code, 554)
                    self.assertTrue(text.startswith(b"5.7.1"), text)
                    refused = c.sendmail("", ["postmaster", "user@example.test"],
                                         "Subject: hello\r\n\r\nhi\r\n")
                    self.assertEqual(refused, {})
                    # one good and one relayed recipient: only the good one is taken
                    refused = c.sendmail("s@client.example",
                                         ["user@example.test", "v@remote.example"],
                                         "Subject: mixed\r\n\r\nhi\r\n")
                    self.assertEqual(list(refused), ["v@remote.example"])
                    self.assertEqual(refused["v@remote.example"][0], 554)
                    c.quit()

    def test_refusals_logged(self):
        """each relay refusal is logged, Postfix-style, with the client address"""
        p4, p6 = self.ports["outside"]
        transaction("127.0.0.1", p4, OUT, "<logged4@remote.example>")
        transaction("::1", p6, OUT, "<logged6@remote.example>")
        smtpd = self.smtpds[list(self.ports).index("outside")]
        log = smtpd.logtext()
        self.assertRegex(log, r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
                         r"<logged4@remote\.example>: Relay access denied; "
                         r"from=<s@client\.example> to=<logged4@remote\.example> "
                         r"proto=ESMTP helo=<client\.example>")
        self.assertRegex(log, r"NOQUEUE: reject: RCPT from unknown\[::1\]: 554 5\.7\.1 "
                         r"<logged6@remote\.example>: Relay access denied;")


if __name__ == "__main__":
    unittest.main()
