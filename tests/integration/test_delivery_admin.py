"""Delivery as a mail administrator checks it, with real tools on loopback:
the bounce a user gets parsed with Python's email package (RFC 3464 fields
Remote-MTA and Diagnostic-Code included), more than 50 recipients split into
transactions at smtp-sink, a 421 after MAIL, a server whose SIZE is too small
refused before MAIL, an IPv6 MX from dnsmasq, queue verbs with unknown QIDs,
and pflogsumm's delivered/deferred/bounced counts."""
import email
import glob
import json
import os
import re
import smtplib
import socket
import subprocess
import threading
import unittest

from harness import ConfDir, free_port, stop_process
from test_delivery import Delivery, Dnsmasq, Sink, have


class ScriptedServer(threading.Thread):
    """A minimal ESMTP server on loopback announcing the given EHLO keywords;
    accepts everything and records every command line it is sent."""

    def __init__(self, keywords, rcpt_reply=None, lmtp_replies=None, hold=False):
        super().__init__(daemon=True)
        self.rcpt_reply = rcpt_reply or (lambda arg: "250 2.1.5 ok")
        # LMTP: after the final dot, one reply per accepted recipient
        self.lmtp_replies = lmtp_replies
        # hold every transaction at its final dot until release is set
        self.hold = hold
        self.release = threading.Event()
        self.active = self.held = self.max_active = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.keywords = keywords
        self.commands = []
        self.lock = threading.Lock()
        self.start()

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.session(conn)
        except OSError:
            pass
        finally:
            with self.lock:
                self.active -= 1

    def session(self, conn):
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 scripted ESMTP\r\n")
            in_data = False
            rcpts = []
            for line in f:
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        if self.hold:
                            with self.lock:
                                self.held += 1
                            self.release.wait(60)
                            with self.lock:
                                self.held -= 1
                        if self.lmtp_replies is None:
                            conn.sendall(b"250 2.0.0 queued\r\n")
                        else:
                            conn.sendall("".join(self.lmtp_replies(r) + "\r\n"
                                                 for r in rcpts).encode())
                        rcpts = []
                    continue
                cmd = line.decode(errors="replace").rstrip("\r\n")
                with self.lock:
                    self.commands.append(cmd)
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "LHLO"):
                    conn.sendall(("250-scripted\r\n" + "".join(
                        "250-%s\r\n" % k for k in self.keywords) + "250 HELP\r\n").encode())
                elif verb == "DATA":
                    in_data = True
                    conn.sendall(b"354 go ahead\r\n")
                elif verb == "RCPT":
                    reply = self.rcpt_reply(cmd[5:])
                    if reply.startswith("2"):
                        rcpts.append(cmd[cmd.index("<") + 1:cmd.index(">")])
                    conn.sendall((reply + "\r\n").encode())
                elif verb == "QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 ok\r\n")

    def seen(self):
        with self.lock:
            return list(self.commands)

    def close(self):
        self.release.set()
        # shutdown first: a bare close() leaves the accept() of the thread
        # above holding the socket, still listening on its port
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.join(10)


# smtp-sink's switches against one next hop each (a route per domain): what the
# recipient's log line must say. Postfix's smtp(8) does the same: a 5xx greeting
# is skipped like a failed host (smtp_skip_5xx_greeting), EHLO refused falls back
# to HELO, a connection lost after the final dot may mean a duplicate.
SINK_CASES = [
    ("mail-drop", ("-q", "MAIL"), r"dsn=4\.4\.2, status=deferred \(lost connection with "
     r"127\.0\.0\.1\[127\.0\.0\.1\]:\d+ while sending MAIL FROM\)"),
    ("rcpt-421", ("-Q", "RCPT"), r"dsn=4\.0\.0, status=deferred \(host \S+ said: 421 4\.0\.0 "
     r".*\(in reply to RCPT TO command\)\)"),
    ("dot-421", ("-Q", "."), r"dsn=4\.0\.0, status=deferred \(host \S+ said: 421 .*\(in reply "
     r"to end of DATA command\)\)"),
    ("dot-drop", ("-q", "."), r"dsn=4\.4\.2, status=deferred \(lost connection with \S+ while "
     r"sending end of data -- message may be sent more than once\)"),
    ("greet-5xx", ("-f", "CONNECT"), r"dsn=4\.4\.2, status=deferred \(host \S+ refused to talk "
     r"to me: 500 5\.3\.0"),
    ("greet-4xx", ("-r", "CONNECT"), r"dsn=4\.4\.2, status=deferred \(host \S+ refused to talk "
     r"to me: 450 4\.3\.0"),
    ("mail-5xx", ("-f", "MAIL"), r"dsn=5\.3\.0, status=bounced \(host \S+ said: 500 5\.3\.0 .*"
     r"\(in reply to MAIL FROM command\)\)"),
    ("data-5xx", ("-f", "DATA"), r"dsn=5\.3\.0, status=bounced \(host \S+ said: 500 5\.3\.0 .*"
     r"\(in reply to DATA command\)\)"),
    ("data-4xx", ("-r", "DATA"), r"dsn=4\.3\.0, status=deferred \(host \S+ said: 450 4\.3\.0 .*"
     r"\(in reply to DATA command\)\)"),
    ("ehlo-5xx", ("-f", "EHLO"), r"dsn=2\.0\.0, status=sent \(host \S+ said: 250"),
    ("no-esmtp", ("-e",), r"dsn=2\.0\.0, status=sent \(host \S+ said: 250"),
    ("no-8bit", ("-8",), r"dsn=2\.0\.0, status=sent \(host \S+ said: 250"),
]


class Admin(Delivery):

    def setUp(self):
        super().setUp()
        if not have("smtp-sink"):
            self.skipTest("smtp-sink (postfix) missing")

    def mailbox(self, user):
        return sorted(glob.glob(os.path.join(self.maildir, "example.test", user, "new", "*")))

    def test_bounce_report_parses(self):
        """a 550 to RCPT: the sender's bounce is a multipart/report that Python's
        email package parses, with Reporting-MTA, Arrival-Date, and per recipient
        Final-Recipient, Action, Status, Remote-MTA and the server's reply as
        Diagnostic-Code (as Postfix writes them), and the whole original"""
        sink = self.relay(("-f", "RCPT", "-B", "550 5.1.1 <no@remote.example>: no such user"))
        self.send("bob@example.test", ["no@remote.example"], subject="returned",
                  body="the body line\r\n")
        self.wait_log(r"to=<no@remote.example>, .*dsn=5\.1\.1, status=bounced")
        self.wait_log(r"to=<bob@example.test>, relay=local.*status=sent")
        files = self.mailbox("bob")
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            msg = email.message_from_binary_file(f)
        self.assertEqual(msg["From"].split()[0], "MAILER-DAEMON@mx.test.example")
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        parts = msg.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        self.assertIn("<no@remote.example>: host 127.0.0.1[127.0.0.1]:%d said: 550 5.1.1"
                      % sink.port, parts[0].get_payload())
        blocks = parts[1].get_payload()
        self.assertEqual(len(blocks), 2, [dict(b) for b in blocks])
        per_msg, rcpt = blocks
        self.assertEqual(per_msg["Reporting-MTA"], "dns; mx.test.example")
        self.assertIsNotNone(per_msg["Arrival-Date"])
        self.assertEqual(rcpt["Final-Recipient"], "rfc822; no@remote.example")
        self.assertEqual(rcpt["Action"], "failed")
        self.assertEqual(rcpt["Status"], "5.1.1")
        self.assertEqual(rcpt["Remote-MTA"], "dns; 127.0.0.1")
        self.assertEqual(rcpt["Diagnostic-Code"],
                         "smtp; 550 5.1.1 <no@remote.example>: no such user")
        orig = parts[2].get_payload()[0]
        self.assertEqual(orig["Subject"], "returned")
        self.assertEqual(orig.get_payload(), "the body line\n")
        self.assertFalse(sink.messages())

    def test_big_message_bounced_with_headers_only(self):
        """a bounced message above the size returned whole (50 000 octets) comes
        back as its header only (text/rfc822-headers), as Postfix does"""
        self.relay(("-f", "RCPT"))
        big = "".join("line %05d %s\r\n" % (i, "y" * 70) for i in range(1000))
        self.send("bob@example.test", ["no@remote.example"], subject="too big to return",
                  body=big)
        self.wait_log(r"to=<no@remote.example>, .*status=bounced")
        self.wait_log(r"to=<bob@example.test>, relay=local.*status=sent")
        with open(self.mailbox("bob")[0], "rb") as f:
            msg = email.message_from_binary_file(f)
        parts = msg.get_payload()
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        text = parts[2].get_payload()
        self.assertIn("Subject: too big to return", text)
        self.assertNotIn("line 00000", text)
        self.assertLess(len(text), 5000)

    def test_dns_failure_report_parses(self):
        """a bounce that is not a server's reply (here: no such domain, from
        dnsmasq) says why in Diagnostic-Code with our own type, no Remote-MTA"""
        if not have("dnsmasq"):
            self.skipTest("dnsmasq missing")
        top = ConfDir({})
        self.later(top.cleanup)
        dns = Dnsmasq(top.top, "host-record=exists.test,127.0.0.9\n")
        self.later(dns.stop)
        self.maildir = os.path.join(top.top, "mail")
        self.start('  dns_servers: ["127.0.0.1:%d"]\n  local: "maildir:%s/%%d/%%u"\n'
                   % (dns.port, self.maildir))
        self.send("bob@example.test", ["x@nowhere.test"])
        self.wait_log(r"to=<x@nowhere.test>, relay=none, .*dsn=5\.4\.4, status=bounced")
        self.wait_log(r"to=<bob@example.test>, relay=local.*status=sent")
        with open(self.mailbox("bob")[0], "rb") as f:
            msg = email.message_from_binary_file(f)
        rcpt = msg.get_payload()[1].get_payload()[1]
        self.assertEqual(rcpt["Final-Recipient"], "rfc822; x@nowhere.test")
        self.assertEqual(rcpt["Status"], "5.4.4")
        self.assertIsNone(rcpt["Remote-MTA"])
        self.assertRegex(rcpt["Diagnostic-Code"],
                         r"^X-Relayvisor; .*nowhere\.test.*Host not found")

    def test_bounce_not_held_back_by_a_deferred_recipient(self):
        """one recipient refused (550), another deferred (451): the sender gets
        the bounce for the first at once, not when the second is final; when
        the second is delivered later, the message is removed and no second
        bounce names the first again (Postfix's qmgr sends bounces after each
        pass)"""
        state = {"accept_slow": False}
        def reply(arg):
            if "<bad@" in arg:
                return "550 5.1.1 <bad@remote.example>: Recipient address rejected"
            if "<slow@" in arg and not state["accept_slow"]:
                return "451 4.3.0 <slow@remote.example>: try again later"
            return "250 2.1.5 ok"
        srv = ScriptedServer(["PIPELINING", "ENHANCEDSTATUSCODES"], reply)
        self.later(srv.close)
        top = ConfDir({})
        self.later(top.cleanup)
        self.maildir = os.path.join(top.top, "mail")
        self.start('  relayhost: "[127.0.0.1]:%d"\n  local: "maildir:%s/%%d/%%u"\n'
                   % (srv.port, self.maildir))
        self.send("bob@example.test", ["bad@remote.example", "slow@remote.example"],
                  subject="two of them")
        self.wait_log(r"to=<bad@remote.example>, .*dsn=5\.1\.1, status=bounced")
        self.wait_log(r"to=<slow@remote.example>, .*dsn=4\.3\.0, status=deferred")
        self.wait_log(r"to=<bob@example.test>, relay=local.*status=sent")
        files = self.mailbox("bob")
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            msg = email.message_from_binary_file(f)
        rcpts = [b["Final-Recipient"] for b in msg.get_payload()[1].get_payload()[1:]]
        self.assertEqual(rcpts, ["rfc822; bad@remote.example"])
        q = json.loads(self.sup.ctl("queue", "--json")[1])
        self.assertEqual(len(q), 1)
        self.assertEqual(sorted((r["address"], r["state"]) for r in q[0]["recipients"]),
                         [("bad@remote.example", "bounced"),
                          ("slow@remote.example", "deferred")])
        state["accept_slow"] = True
        self.assertEqual(self.sup.ctl("flush", q[0]["qid"]),
                         (0, "flush: 1 recipient of 1 message\n"))
        self.wait_log(r"to=<slow@remote.example>, .*status=sent")
        self.wait_log(r"%s: removed" % q[0]["qid"])
        # the line is logged as the removal is written; its commit follows
        self.sup.wait_for(lambda: self.sup.ctl("queue", "--json") == (0, "[]\n"), 10,
                          "an empty queue")
        self.assertEqual(len(self.mailbox("bob")), 1, "a second bounce")
        self.assertEqual(len(re.findall(r"sender non-delivery notification", self.logs())), 1)

    def test_success_report_not_held_back(self):
        """NOTIFY=SUCCESS for a recipient delivered to a next hop without DSN: the
        "relayed" report reaches the sender at once, while another recipient of
        the message is still deferred, and is not sent again at the end"""
        state = {"accept_slow": False}
        def reply(arg):
            if "<slow@" in arg and not state["accept_slow"]:
                return "451 4.3.0 <slow@remote.example>: try again later"
            return "250 2.1.5 ok"
        srv = ScriptedServer(["PIPELINING", "ENHANCEDSTATUSCODES"], reply)
        self.later(srv.close)
        top = ConfDir({})
        self.later(top.cleanup)
        self.maildir = os.path.join(top.top, "mail")
        self.start('  relayhost: "[127.0.0.1]:%d"\n  local: "maildir:%s/%%d/%%u"\n'
                   % (srv.port, self.maildir))
        with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as c:
            c.ehlo()
            c.mail("bob@example.test")
            self.assertEqual(c.rcpt("ok@remote.example", ["NOTIFY=SUCCESS"])[0], 250)
            self.assertEqual(c.rcpt("slow@remote.example")[0], 250)
            self.assertEqual(c.data(b"Subject: tell me\r\n\r\nhi\r\n")[0], 250)
        self.wait_log(r"to=<ok@remote.example>, .*status=sent")
        self.wait_log(r"to=<slow@remote.example>, .*status=deferred")
        self.wait_log(r"to=<bob@example.test>, relay=local.*status=sent")
        files = self.mailbox("bob")
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            msg = email.message_from_binary_file(f)
        self.assertEqual(msg["Subject"], "Successful Mail Delivery Report")
        blocks = msg.get_payload()[1].get_payload()[1:]
        self.assertEqual([(b["Final-Recipient"], b["Action"]) for b in blocks],
                         [("rfc822; ok@remote.example", "relayed")])
        q = json.loads(self.sup.ctl("queue", "--json")[1])
        state["accept_slow"] = True
        self.assertEqual(self.sup.ctl("flush", q[0]["qid"])[0], 0)
        self.wait_log(r"to=<slow@remote.example>, .*status=sent")
        self.wait_log(r"%s: removed" % q[0]["qid"])
        self.assertEqual(len(re.findall(r"sender delivery status notification",
                                        self.logs())), 1, "a second report")
        self.assertEqual(len(self.mailbox("bob")), 1, "a second report")

    def test_lmtp_mixed_replies_after_data(self):
        """LMTP (local: lmtp:HOST:PORT): one reply per recipient after the final
        dot, mixed — 250 delivers, 452 defers, 550 bounces — each recipient gets
        its own outcome and log line, the bounce names only the refused one"""
        def after_dot(rcpt):
            return {"full@example.test": "452 4.2.2 <full@example.test> Mailbox is full",
                    "gone@example.test": "550 5.1.1 <gone@example.test> User unknown"
                    }.get(rcpt, "250 2.0.0 <%s> Saved" % rcpt)
        srv = ScriptedServer(["PIPELINING", "ENHANCEDSTATUSCODES"], lmtp_replies=after_dot)
        self.later(srv.close)
        self.start('  local: "lmtp:127.0.0.1:%d"\n' % srv.port)
        self.send("bob@example.test", ["ok@example.test", "full@example.test",
                                       "gone@example.test"], subject="mixed")
        self.wait_log(r"relayvisor/lmtp\[\d+\]: \w+: to=<ok@example.test>, .*dsn=2\.0\.0, "
                      r"status=sent \(.*250 2\.0\.0 <ok@example.test> Saved")
        self.wait_log(r"to=<full@example.test>, .*dsn=4\.2\.2, status=deferred \(.*452 4\.2\.2")
        self.wait_log(r"to=<gone@example.test>, .*dsn=5\.1\.1, status=bounced \(.*550 5\.1\.1")
        self.assertEqual([c.split(" ", 1)[0] for c in srv.seen()][:1], ["LHLO"])
        # one transaction for the three: their RCPTs, then one DATA
        first = [c.split(":")[0].upper() for c in srv.seen()]
        first = first[first.index("MAIL FROM"):first.index("DATA") + 1]
        self.assertEqual(first, ["MAIL FROM"] + ["RCPT TO"] * 3 + ["DATA"])
        # the bounce goes to bob@example.test over the same LMTP server
        self.wait_log(r"to=<bob@example.test>, .*status=sent")
        q = json.loads(self.sup.ctl("queue", "--json")[1])
        self.assertEqual(sorted((r["address"], r["state"]) for r in q[0]["recipients"]),
                         [("full@example.test", "deferred"), ("gone@example.test", "bounced"),
                          ("ok@example.test", "sent")])

    def test_destination_concurrency(self):
        """one destination gets 5 connections at first (the other messages wait
        queued), 20 once it answered well (delivery.dest_concurrency and
        dest_concurrency_max defaults); a server holding every transaction at
        its final dot shows how many sessions are open at once"""
        srv = ScriptedServer(["PIPELINING", "ENHANCEDSTATUSCODES"], hold=True)
        self.later(srv.close)
        top = ConfDir({})
        self.later(top.cleanup)
        self.maildir = os.path.join(top.top, "mail")
        self.start('  relayhost: "[127.0.0.1]:%d"\n  local: "maildir:%s/%%d/%%u"\n'
                   % (srv.port, self.maildir))
        def states():
            out = {}
            for m in json.loads(self.sup.ctl("queue", "--json")[1]):
                for r in m["recipients"]:
                    out[r["state"]] = out.get(r["state"], 0) + 1
            return out
        for i in range(30):
            self.send("bob@example.test", ["c%02d@remote.example" % i])
        # every message taken in, 5 in flight held at the dot, 25 waiting
        self.sup.wait_for(lambda: srv.held == 5 and states() == {"inflight": 5, "queued": 25},
                          30, "5 sessions held, 25 queued: %r %r" % (srv.held, states()))
        self.assertEqual(srv.max_active, 5)
        srv.release.set()
        self.wait_log(r"\w+: removed", 30, timeout=60)
        srv.release.clear()
        for i in range(40):
            self.send("bob@example.test", ["d%02d@remote.example" % i])
        self.sup.wait_for(lambda: srv.held == 20 and states() == {"inflight": 20, "queued": 20},
                          30, "20 sessions held, 20 queued: %r %r %r" % (srv.held, srv.active,
                                                                      states()))
        self.assertEqual(srv.max_active, 20)
        srv.release.set()
        self.wait_log(r"\w+: removed", 70, timeout=60)

    def test_dead_destination_logged_then_flushed(self):
        """a relayhost that refuses connections: after a whole cohort failed (5)
        it is marked dead and the next messages wait without a connection,
        each logged as Postfix does ("delivery temporarily suspended: connect
        to ...: Connection refused"); once the relayhost is back, `flush`
        delivers every one of them"""
        top = ConfDir({})
        self.later(top.cleanup)
        # bound, not listening: connections are refused, and no other program
        # on this shared machine can take the port until the sink does
        hole = socket.socket()
        self.later(hole.close)
        hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]
        self.maildir = os.path.join(top.top, "mail")
        self.start('  relayhost: "[127.0.0.1]:%d"\n  local: "maildir:%s/%%d/%%u"\n'
                   % (port, self.maildir))
        for i in range(5):
            self.send("bob@example.test", ["a%d@remote.example" % i])
        refused = (r"connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: Connection refused"
                   % port)
        self.wait_log(r"to=<a\d@remote.example>, relay=none, .*dsn=4\.4\.1, "
                      r"status=deferred \(%s\)" % refused, 5)
        for i in range(2):
            self.send("bob@example.test", ["late%d@remote.example" % i])
        self.wait_log(r"relayvisor/smtp\[\d+\]: \w+: to=<late\d@remote.example>, relay=none, "
                      r".*dsn=4\.4\.1, status=deferred \(delivery temporarily suspended: "
                      r"%s\)" % refused, 2)
        code, out = self.sup.ctl("queue")
        self.assertRegex(out, r"<late0@remote\.example>  deferred, 0 attempts, next try .* "
                              r"\(4\.4\.1 delivery temporarily suspended: %s\)" % refused)
        hole.close()
        log = open(os.path.join(top.top, "sink.log"), "ab")
        self.later(log.close)
        proc = subprocess.Popen(["smtp-sink", "-u", "nobody", "127.0.0.1:%d" % port, "100"],
                                stdout=log, stderr=log)
        self.later(lambda: stop_process(proc))
        def up():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=2) as c:
                    c.noop()
                return True
            except OSError:
                return False
        self.sup.wait_for(up, 10, "smtp-sink back")
        self.assertEqual(self.sup.ctl("flush"), (0, "flush: 7 recipients of 7 messages\n"))
        self.wait_log(r"to=<(a\d|late\d)@remote.example>, relay=127\.0\.0\.1.*status=sent", 7)
        self.wait_log(r"\w+: removed", 7)
        self.sup.wait_for(lambda: self.sup.ctl("queue", "--json") == (0, "[]\n"), 10,
                          "an empty queue")

    def test_delete_while_in_flight(self):
        """`delete` of a message whose transaction is in progress: it leaves the
        queue at once, the result that comes back later is not recorded (no
        warning, the message does not come back), the delivery is logged"""
        srv = ScriptedServer(["PIPELINING", "ENHANCEDSTATUSCODES"], hold=True)
        self.later(srv.close)
        top = ConfDir({})
        self.later(top.cleanup)
        self.maildir = os.path.join(top.top, "mail")
        self.start('  relayhost: "[127.0.0.1]:%d"\n  local: "maildir:%s/%%d/%%u"\n'
                   % (srv.port, self.maildir))
        self.send("bob@example.test", ["a@remote.example", "b@other.example"])
        self.sup.wait_for(lambda: srv.held == 1, 20, "the transaction held at its dot")
        qid = json.loads(self.sup.ctl("queue", "--json")[1])[0]["qid"]
        self.assertEqual(self.sup.ctl("delete", qid), (0, "delete: 1 message deleted\n"))
        srv.release.set()
        self.wait_log(r"%s: result for recipient 1 of a message deleted while in flight"
                      % qid)
        self.wait_log(r"%s: to=<b@other.example>, .*status=sent" % qid)
        self.assertEqual(self.sup.ctl("queue", "--json"), (0, "[]\n"))
        qmgr_log = [l for l in self.logs().splitlines() if "relayvisor/qmgr[" in l]
        self.assertFalse([l for l in qmgr_log if "warning:" in l], qmgr_log)
        self.assertEqual(self.sup.state("qmgr")[0], "RUNNING")

    def test_smtp_sink_switches(self):
        """one smtp-sink per switch (drop or 421 after MAIL, RCPT, the final dot;
        5xx and 4xx greetings; 5xx to MAIL and DATA; 4xx to DATA; EHLO refused;
        no ESMTP; no 8BITMIME), each a route: every recipient gets the outcome
        and the log line Postfix's smtp(8) would give"""
        top = ConfDir({})
        self.later(top.cleanup)
        routes, ports = "", []
        for name, args, _ in SINK_CASES:
            port = free_port()
            log = open(os.path.join(top.top, name + ".log"), "ab")
            self.later(log.close)
            proc = subprocess.Popen(["smtp-sink", "-u", "nobody", *args,
                                     "127.0.0.1:%d" % port, "10"], stdout=log, stderr=log)
            self.later(lambda proc=proc: stop_process(proc))
            routes += '    %s.example: "[127.0.0.1]:%d"\n' % (name, port)
            ports.append(port)
        def listening(port):
            try:
                socket.create_connection(("127.0.0.1", port), 2).close()
                return True
            except OSError:
                return False
        self.maildir = os.path.join(top.top, "mail")
        self.start('  local: "maildir:%s/%%d/%%u"\n  routes:\n%s' % (self.maildir, routes))
        for port in ports:	# a TCP connection only: some greet with an error
            self.sup.wait_for(lambda: listening(port), 10, "smtp-sink on %d" % port)
        for name, _, _ in SINK_CASES:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as c:
                c.sendmail("bob@example.test", ["u@%s.example" % name],
                           ("From: bob@example.test\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: 8bit\r\n\r\ncaf\u00e9\r\n"
                            % name).encode(), mail_options=["BODY=8BITMIME"])
        for name, _, outcome in SINK_CASES:
            self.wait_log(r"relayvisor/smtp\[\d+\]: \w+: to=<u@%s\.example>, .*%s"
                          % (re.escape(name), outcome))
        # nothing else happened to them: one status line each
        for name, _, _ in SINK_CASES:
            self.assertEqual(len(re.findall(r"to=<u@%s\.example>, .*status=" % re.escape(name),
                                            self.logs())), 1, name)

    def test_8bit_body_declared_to_the_next_hop(self):
        """a body with 8-bit octets goes out with BODY=8BITMIME to a server that
        offers 8BITMIME (RFC 6152), even when the submitter did not declare it;
        a 7-bit body goes without it"""
        sink = self.relay()
        for subject, body in (("eight", "caf\u00e9 cr\u00e8me\r\n"), ("seven", "plain\r\n")):
            with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as c:
                c.sendmail("bob@example.test", ["%s@remote.example" % subject],
                           ("From: bob@example.test\r\nSubject: %s\r\n\r\n%s"
                            % (subject, body)).encode())
        # the sink answered the final dot of both: their dump files are whole
        self.wait_log(r"to=<(eight|seven)@remote\.example>, .*status=sent", 2)
        self.sup.wait_for(lambda: len(sink.messages()) == 2 and
                          all(re.search(rb"^Subject: \w+", m, re.M) and
                              re.search(rb"^X-Mail-Args: ", m, re.M)
                              for m in sink.messages()), 30, "both dumps written")
        args = {}
        for m in sink.messages():
            subj = re.search(rb"^Subject: (\w+)", m, re.M).group(1)
            args[subj] = re.search(rb"^X-Mail-Args: (.*)$", m, re.M).group(1)
        self.assertIn(b"BODY=8BITMIME", args[b"eight"])
        self.assertNotIn(b"BODY=8BITMIME", args[b"seven"])
        self.assertIn("caf\u00e9".encode(), [m for m in sink.messages()
                                               if b"Subject: eight" in m][0])

    def test_recipients_split_by_50(self):
        """100 recipients of one message reach smtp-sink as two transactions of
        50 (one message each), every recipient logged sent once"""
        sink = self.relay()
        rcpts = ["r%03d@remote.example" % i for i in range(100)]
        self.send("bob@example.test", rcpts, subject="many")
        self.wait_log(r"\w+: removed")
        self.sup.wait_for(lambda: len(sink.messages()) >= 2, 10, "two transactions")
        counts = sorted(len(re.findall(rb"^X-Rcpt-Args: <", m, re.M))
                        for m in sink.messages())
        self.assertEqual(counts, [50, 50])
        got = sorted(re.findall(rb"^X-Rcpt-Args: <([^>]+)>", b"".join(sink.messages()), re.M))
        self.assertEqual(got, sorted(r.encode() for r in rcpts))
        sent = re.findall(r"to=<(r\d{3}@remote\.example)>, .*status=sent", self.logs())
        self.assertEqual(sorted(sent), rcpts)

    def test_421_after_mail_defers(self):
        """smtp-sink -Q MAIL (421 and hang up): deferred with the server's reply,
        the queue shows it, no bounce"""
        self.relay(("-Q", "MAIL"))
        self.send("bob@example.test", ["later@remote.example"])
        self.wait_log(r"to=<later@remote.example>, .*dsn=4\.\d\.\d, status=deferred "
                      r"\(host 127\.0\.0\.1\[127\.0\.0\.1\]:\d+ said: 421 .*\(in reply to "
                      r"MAIL FROM command\)\)")
        q = json.loads(self.sup.ctl("queue", "--json")[1])
        self.assertEqual([(r["address"], r["state"]) for r in q[0]["recipients"]],
                         [("later@remote.example", "deferred")])
        self.assertIn("said: 421", q[0]["recipients"][0]["last_reply"])
        self.assertNotIn("status=bounced", self.logs())

    def test_smaller_size_refused_before_mail(self):
        """a server announcing SIZE 1000 gets no MAIL for a 3 KB message: bounced
        5.3.4 at once, the server saw no MAIL, RCPT or DATA"""
        srv = ScriptedServer(["SIZE 1000", "PIPELINING", "ENHANCEDSTATUSCODES"])
        self.later(srv.close)
        top = ConfDir({})
        self.later(top.cleanup)
        self.maildir = os.path.join(top.top, "mail")
        self.start('  relayhost: "[127.0.0.1]:%d"\n  local: "maildir:%s/%%d/%%u"\n'
                   % (srv.port, self.maildir))
        self.send("bob@example.test", ["big@remote.example"], body=("x" * 70 + "\r\n") * 40)
        self.wait_log(r"to=<big@remote.example>, .*dsn=5\.3\.4, status=bounced "
                      r"\(message size \d+ exceeds size limit 1000 of server")
        self.wait_log(r"to=<bob@example.test>, relay=local.*status=sent")
        verbs = [c.split(" ", 1)[0].upper() for c in srv.seen()]
        self.assertIn("EHLO", verbs)
        for v in ("MAIL", "RCPT", "DATA"):
            self.assertNotIn(v, verbs, srv.seen())

    def test_ipv6_mx(self):
        """an MX whose only address is ::1 (AAAA from dnsmasq) gets the mail, and
        so does a domain without MX whose own name has only an AAAA record"""
        if not have("dnsmasq"):
            self.skipTest("dnsmasq missing")
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        top = ConfDir({})
        self.later(top.cleanup)
        port = free_port("::1")
        log = open(os.path.join(top.top, "sink6.log"), "ab")
        self.later(log.close)
        sink = subprocess.Popen(["smtp-sink", "-u", "nobody", "[::1]:%d" % port, "10"],
                                stdout=log, stderr=log)
        self.later(lambda: stop_process(sink))
        def up():
            try:
                with smtplib.SMTP("::1", port, timeout=2) as c:
                    c.noop()
                return True
            except OSError:
                return False
        dns = Dnsmasq(top.top, "mx-host=six.test,mx.six.test,10\n"
                               "host-record=mx.six.test,::1\n"
                               "host-record=plain.test,::1\n")
        self.later(dns.stop)
        self.maildir = os.path.join(top.top, "mail")
        self.start('  dns_servers: ["127.0.0.1:%d"]\n  smtp_port: %d\n'
                   '  local: "maildir:%s/%%d/%%u"\n' % (dns.port, port, self.maildir))
        self.sup.wait_for(up, 10, "smtp-sink on [::1]")
        self.send("bob@example.test", ["u@six.test"])
        self.wait_log(r"to=<u@six.test>, relay=mx\.six\.test\[::1\]:%d, .*status=sent" % port)
        # no MX at all: the domain's own AAAA (RFC 5321 5.1 implicit MX)
        self.send("bob@example.test", ["u@plain.test"])
        self.wait_log(r"to=<u@plain.test>, relay=plain\.test\[::1\]:%d, .*status=sent" % port)

    def test_queue_verbs_unknown_qid(self):
        """every queue verb given a QID that is not queued says so and exits 1;
        `delete all` empties the queue and `queue --json` is [] again"""
        self.relay(("-r", "RCPT"))
        self.send("bob@example.test", ["a@remote.example", "b@other.example"])
        self.wait_log(r"status=deferred", 2)
        for verb in ("flush", "hold", "release", "delete", "requeue"):
            self.assertEqual(self.sup.ctl(verb, "NOSUCHQID"),
                             (1, "NOSUCHQID: no such message\n"), verb)
        self.assertEqual(self.sup.ctl("queue", "show", "NOSUCHQID"),
                         (1, "NOSUCHQID: no such message\n"))
        code, out = self.sup.ctl("queue")
        self.assertEqual(code, 0)
        self.assertRegex(out, r"(?m)^\w+ +\d+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d  <bob@example\.test>$")
        self.assertRegex(out, r"(?m)^ +<a@remote\.example>  deferred, 1 attempt, next try ")
        self.assertRegex(out, r"(?m)^-- 1 message$")
        self.assertEqual(self.sup.ctl("delete", "all"), (0, "delete: 1 message deleted\n"))
        self.assertEqual(self.sup.ctl("queue", "--json"), (0, "[]\n"))
        self.assertEqual(self.sup.ctl("queue"), (0, "Mail queue is empty\n"))

    def test_pflogsumm_deferred_and_bounced(self):
        """pflogsumm counts from the qmgr's log: delivered (local), deferred
        (4xx) and bounced (5xx, with its report delivered locally)"""
        if not have("pflogsumm"):
            self.skipTest("pflogsumm missing")
        top = ConfDir({})
        self.later(top.cleanup)
        refuser = Sink(top.top, ("-f", "RCPT"))
        self.later(refuser.stop)
        self.relay(("-r", "RCPT"), extra='  routes:\n    bounce.example: "[127.0.0.1]:%d"\n'
                   % refuser.port)
        self.send("bob@example.test", ["later@remote.example"])
        self.wait_log(r"to=<later@remote.example>, .*status=deferred")
        self.send("bob@example.test", ["gone@bounce.example"])
        self.wait_log(r"to=<gone@bounce.example>, .*status=bounced")
        self.wait_log(r"to=<bob@example.test>, relay=local.*status=sent")
        self.send("bob@example.test", ["carol@example.test"])
        self.wait_log(r"to=<carol@example.test>, .*status=sent")
        p = subprocess.run(["pflogsumm", "--syslog-name=relayvisor",
                            os.path.join(self.conf.var, "log", "qmgr.log")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        def count(what):
            m = re.search(r"^\s*(\d+)\s+%s" % what, out, re.M)
            self.assertIsNotNone(m, out[:2000])
            return int(m.group(1))
        self.assertEqual((count("delivered"), count("deferred"), count("bounced")),
                         (2, 1, 1), out[:1500])


if __name__ == "__main__":
    unittest.main()
