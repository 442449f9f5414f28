"""The DSN SMTP extension (RFC 3461) end to end, and delay warnings: relayvisord
runs the listener, relayvisor-qmgr and relayvisor-deliver; Postfix's smtp-sink is
the relayhost (accepting, 5xx, 4xx; with and without DSN in its EHLO); reports
land in the sender's local Maildir and are read as RFC 3464 messages. The client
is smtplib with MAIL/RCPT options (swaks has no DSN switches)."""
import email
import glob
import json
import os
import re
import signal
import shutil
import smtplib

from harness import ConfDir
from test_delivery import Delivery, Sink

BODY_MARK = "BODY-LINE-THAT-RET-HDRS-KEEPS-OUT"


class Dsn(Delivery):

    def setUp(self):
        super().setUp()
        if shutil.which("smtp-sink") is None:
            self.skipTest("smtp-sink (postfix) missing")

    def submit(self, sender, rcpts, mail_opts=(), subject="t"):
        """rcpts: [(address, [options])]; every reply must be 250"""
        msg = ("From: %s\r\nTo: x\r\nSubject: %s\r\n\r\nhello\r\n%s\r\n"
               % (sender or "MAILER-DAEMON", subject, BODY_MARK))
        with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as c:
            code, text = c.ehlo("client.example")
            self.assertEqual(code, 250)
            self.assertIn(b"\nDSN", text)
            code, text = c.mail(sender, list(mail_opts))
            self.assertEqual(code, 250, text)
            for addr, opts in rcpts:
                code, text = c.rcpt(addr, list(opts))
                self.assertEqual(code, 250, text)
            code, text = c.data(msg.encode())
            self.assertEqual(code, 250, text)
            return text.decode().rsplit(" ", 1)[-1]

    def reports(self, user="bob"):
        out = []
        for path in sorted(glob.glob(os.path.join(self.maildir, "example.test", user,
                                                  "new", "*"))):
            with open(path, "rb") as f:
                raw = f.read()
            out.append((email.message_from_bytes(raw), raw.decode(errors="replace")))
        return out

    def status_fields(self, msg):
        """the per-recipient blocks of the message/delivery-status part"""
        for part in msg.walk():
            if part.get_content_type() == "message/delivery-status":
                blocks = part.get_payload()
                return [dict(b.items()) for b in blocks[1:]], dict(blocks[0].items())
        raise AssertionError("no message/delivery-status part")

    def test_failure_report_envid_orcpt_ret_hdrs(self):
        """NOTIFY=FAILURE: the bounce carries ENVID and ORCPT (decoded) in its
        report fields; RET=HDRS: the original's header only, not its body"""
        self.relay(("-f", "RCPT"))
        self.submit("bob@example.test",
                    [("doomed@remote.example",
                      ["NOTIFY=FAILURE", "ORCPT=rfc822;Orig+2BTag+40remote.example"])],
                    ["RET=HDRS", "ENVID=env+2Bid-42"], subject="hdrs only")
        self.wait_log(r"sender non-delivery notification")
        self.sup.wait_for(lambda: self.reports(), 30, "the bounce in bob's Maildir")
        [(msg, raw)] = self.reports()
        rcpts, top = self.status_fields(msg)
        self.assertEqual(top.get("Original-Envelope-Id"), "env+id-42")
        self.assertEqual(len(rcpts), 1)
        self.assertEqual(rcpts[0]["Final-Recipient"], "rfc822; doomed@remote.example")
        self.assertEqual(rcpts[0]["Original-Recipient"], "rfc822; Orig+Tag@remote.example")
        self.assertEqual(rcpts[0]["Action"], "failed")
        self.assertTrue(rcpts[0]["Status"].startswith("5."), rcpts[0])
        self.assertIn("Content-Type: text/rfc822-headers", raw)
        self.assertIn("Subject: hdrs only", raw)
        self.assertNotIn(BODY_MARK, raw)
        self.assertNotIn("message/rfc822", raw)

    def test_notify_filters_bounces(self):
        """of three refused recipients only the one whose NOTIFY has FAILURE is
        in the bounce (NEVER: none; DELAY alone: none); a message whose only
        recipient said NEVER gets no bounce at all; no RET: the whole original"""
        self.relay(("-f", "RCPT"))
        self.submit("bob@example.test", [("never@remote.example", ["NOTIFY=NEVER"])],
                    subject="never")
        self.wait_log(r"to=<never@remote.example>, .*status=bounced")
        self.wait_log(r"\w+: removed")
        self.submit("bob@example.test",
                    [("n1@remote.example", ["NOTIFY=NEVER"]),
                     ("d1@remote.example", ["NOTIFY=DELAY,SUCCESS"]),
                     ("f1@remote.example", ["NOTIFY=FAILURE"])], subject="three")
        self.wait_log(r"\w+: removed", 2)
        self.wait_log(r"sender non-delivery notification")
        self.sup.wait_for(lambda: self.reports(), 30, "the bounce in bob's Maildir")
        # the second message's bounce is the only one: the first got none
        self.assertEqual(len(re.findall(r"sender non-delivery notification",
                                        self.logs())), 1)
        [(msg, raw)] = self.reports()
        rcpts, _ = self.status_fields(msg)
        self.assertEqual([r["Final-Recipient"] for r in rcpts],
                         ["rfc822; f1@remote.example"])
        self.assertIn("Subject: three", raw)
        self.assertIn(BODY_MARK, raw)          # no RET: returned whole
        self.assertIn("message/rfc822", raw)

    def test_success_relayed_without_dsn_next_hop(self):
        """NOTIFY=SUCCESS to a next hop that does not announce DSN (smtp-sink
        -N): we report "relayed" ourselves, and pass no DSN parameter on"""
        sink = self.relay(("-N",))
        self.submit("bob@example.test",
                    [("ok@remote.example", ["NOTIFY=SUCCESS",
                                            "ORCPT=rfc822;ok+40remote.example"])],
                    ["ENVID=E1"], subject="relayed")
        self.wait_log(r"sender delivery status notification")
        self.sup.wait_for(lambda: self.reports(), 30, "the report in bob's Maildir")
        [(msg, raw)] = self.reports()
        rcpts, top = self.status_fields(msg)
        self.assertEqual(top.get("Original-Envelope-Id"), "E1")
        self.assertEqual(rcpts[0]["Action"], "relayed")
        self.assertEqual(rcpts[0]["Status"], "2.0.0")
        self.assertEqual(rcpts[0]["Original-Recipient"], "rfc822; ok@remote.example")
        self.assertNotIn(BODY_MARK, raw)       # success: the header only
        self.sup.wait_for(lambda: sink.messages(), 10, "at the sink")
        [m] = [m for m in sink.messages() if b"Subject: relayed" in m]
        self.assertNotIn(b"NOTIFY=", m)
        self.assertNotIn(b"ENVID=", m)

    def test_dsn_passed_on_to_dsn_next_hop(self):
        """a next hop that announces DSN gets NOTIFY, ORCPT, RET and ENVID as
        received, and reports success itself: no report from us"""
        sink = self.relay()
        self.submit("bob@example.test",
                    [("p@remote.example", ["NOTIFY=SUCCESS,FAILURE",
                                           "ORCPT=rfc822;p+40remote.example"])],
                    ["RET=FULL", "ENVID=Q+2B7"], subject="passed")
        self.wait_log(r"to=<p@remote.example>, .*status=sent")
        self.wait_log(r"\w+: removed")
        self.sup.wait_for(lambda: [m for m in sink.messages()
                                   if b"Subject: passed" in m], 10, "at the sink")
        [m] = [m for m in sink.messages() if b"Subject: passed" in m]
        self.assertRegex(m, rb"X-Mail-Args: .*RET=FULL ENVID=Q\+2B7")
        self.assertRegex(m, rb"X-Rcpt-Args: .*NOTIFY=SUCCESS,FAILURE "
                            rb"ORCPT=rfc822;p\+40remote\.example")
        self.assertNotIn("delivery status notification", self.logs())
        self.assertEqual(self.reports(), [])

    def test_success_delivered_locally(self):
        """NOTIFY=SUCCESS for a local Maildir recipient: a "delivered" report"""
        self.relay()
        self.submit("bob@example.test", [("alice@example.test", ["NOTIFY=SUCCESS"])],
                    subject="to alice")
        self.wait_log(r"sender delivery status notification")
        self.sup.wait_for(lambda: self.reports(), 30, "the report in bob's Maildir")
        [(msg, _)] = self.reports()
        rcpts, _ = self.status_fields(msg)
        self.assertEqual(rcpts[0]["Action"], "delivered")
        self.assertEqual(rcpts[0]["Final-Recipient"], "rfc822; alice@example.test")
        self.assertEqual(len(self.reports("alice")), 1)

    def test_bad_parameters_refused(self):
        """bad DSN parameters get their exact 501 replies, and nothing is
        queued for them"""
        self.relay()
        cases = [
            ("MAIL", ["RET=FULL", "RET=HDRS"], "5.5.4 Duplicate RET parameter"),
            ("MAIL", ["RET=SOME"], "5.5.4 Bad RET parameter syntax"),
            ("MAIL", ["ENVID=" + "x" * 101], "5.5.4 ENVID parameter too long"),
            ("MAIL", ["ENVID=a=b"], "5.5.4 Bad ENVID parameter syntax"),
            ("RCPT", ["NOTIFY=NEVER,FAILURE"],
             "5.5.4 NOTIFY=NEVER cannot be combined with other NOTIFY values"),
            ("RCPT", ["NOTIFY=SOMETIMES"], "5.5.4 Bad NOTIFY parameter syntax"),
            ("RCPT", ["NOTIFY=DELAY", "NOTIFY=DELAY"], "5.5.4 Duplicate NOTIFY parameter"),
            ("RCPT", ["ORCPT=x400;abc"], "5.5.4 Bad ORCPT parameter syntax"),
            ("RCPT", ["ORCPT=rfc822;" + "a" * 494], "5.5.4 ORCPT parameter too long"),
            ("RCPT", ["NOTIFY=SUCCESS,FAILURE,DELAY", "ORCPT=rfc822;" + "a" * 493], 250),
        ]
        with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as c:
            c.ehlo("client.example")
            for verb, opts, want in cases:
                c.rset()
                if verb == "MAIL":
                    code, text = c.mail("bob@example.test", opts)
                else:
                    self.assertEqual(c.mail("bob@example.test")[0], 250)
                    code, text = c.rcpt("x@remote.example", opts)
                if want == 250:
                    # RFC 3461's longest RCPT line is taken, not cut at 512
                    self.assertEqual(code, 250, text)
                    continue
                self.assertEqual((code, text.decode()), (501, want))
        self.assertEqual(self.sup.ctl("queue"), (0, "Mail queue is empty\n"))

    def test_delay_warning_once(self):
        """after delivery.delay_warning a deferred message gets one "delayed"
        report (Status 4.x.x, Will-Retry-Until); NOTIFY without DELAY and the
        null sender get none; a recipient already delivered is not listed; a
        kill -9 of the qmgr does not warn twice"""
        self.relay(("-r", "RCPT"), retry="1s", extra="  delay_warning: 2s\n")
        # alice (local) is delivered at once: she is not in the warning
        self.submit("bob@example.test", [("slow@remote.example", []),
                                         ("alice@example.test", [])], subject="warn me")
        self.submit("bob@example.test", [("quiet@remote.example",
                                          ["NOTIFY=FAILURE", "ORCPT=rfc822;q+40r"])],
                    ["RET=HDRS", "ENVID=Q+2B1"], subject="no warning")
        self.submit("", [("bounce@remote.example", [])], subject="from null")
        self.wait_log(r"sender delay notification")
        self.sup.wait_for(lambda: self.reports(), 30, "the warning in bob's Maildir")
        [(msg, raw)] = self.reports()
        self.assertIn("Subject: Delayed Mail", raw)
        rcpts, _ = self.status_fields(msg)
        self.assertEqual([r["Final-Recipient"] for r in rcpts],
                         ["rfc822; slow@remote.example"])
        self.assertEqual(rcpts[0]["Action"], "delayed")
        self.assertTrue(rcpts[0]["Status"].startswith("4."), rcpts[0])
        self.assertIn("Will-Retry-Until", rcpts[0])
        self.assertIn("will keep trying until", raw)
        # every message keeps being retried; none warns again, before or after
        # the qmgr is killed
        n = len(re.findall(r"to=<quiet@remote.example>, .*status=deferred", self.logs()))
        self.wait_log(r"to=<quiet@remote.example>, .*status=deferred", n + 2)
        pid = self.sup.state("qmgr")[1]
        os.kill(pid, signal.SIGKILL)
        self.sup.wait_for(lambda: self.sup.state("qmgr")[0] == "RUNNING" and
                          self.sup.state("qmgr")[1] != pid, 60, "qmgr restarted")
        n = len(re.findall(r"to=<slow@remote.example>, .*status=deferred", self.logs()))
        self.wait_log(r"to=<slow@remote.example>, .*status=deferred", n + 3)
        self.wait_log(r"to=<bounce@remote.example>, .*status=deferred", 4)
        self.assertEqual(len(re.findall(r"sender delay notification", self.logs())), 1)
        self.assertEqual(len(self.reports()), 1)
        # relayvisorctl queue --json: the DSN parameters and the durable flag
        code, out = self.sup.ctl("queue", "--json")
        self.assertEqual(code, 0, out)
        rcpts = {r["address"]: (m, r) for m in json.loads(out) for r in m["recipients"]}
        m, r = rcpts["slow@remote.example"]
        self.assertEqual((m["ret"], m["envid"], r["notify"], r["orcpt"],
                          r["delay_warned"]), (None, None, None, None, True))
        m, r = rcpts["quiet@remote.example"]
        self.assertEqual((m["ret"], m["envid"], r["notify"], r["orcpt"],
                          r["delay_warned"]),
                         ("HDRS", "Q+2B1", ["FAILURE"], "rfc822;q+40r", True))
