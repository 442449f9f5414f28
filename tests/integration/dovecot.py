"""A private Dovecot for the tests (Debian dovecot-core): auth only, no network
listener, its own base_dir/state_dir under a temporary directory, a passwd-file
passdb, and its auth-client socket in that directory. Three suites use it:
test_dovecot_auth (the protocol module), test_auth (the listener's AUTH through
relayvisor-auth) and test_delivery_tls (Postfix's SASL backend for relayhost AUTH).
Needs root (Dovecot's privilege separation)."""
import os
import shutil
import signal
import socket
import subprocess
import time

import harness

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

CONF = """# private Dovecot for relayvisor's tests: auth only, no network
base_dir = {top}/run
state_dir = {top}/state
instance_name = rv-test-{name}
log_path = /dev/stderr
protocols =
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = yes
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=CRYPT username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener auth-client {{
    mode = {mode}
{owner}  }}
}}
"""


def available():
    return os.path.exists(DOVECOT) and os.geteuid() == 0


class AuthDovecot:
    """Starts Dovecot in the foreground in directory top (made world-searchable:
    Dovecot's auth process runs as user dovecot) with the passwd-file users (its
    lines `user:HASH`, crypt(3) or `{PLAIN}pw`), and waits until its auth-client
    socket (self.socket) accepts a connection. mode/owner: the socket's."""

    def __init__(self, top, users, mode="0600", owner=None):
        self.top = top
        os.makedirs(top, exist_ok=True)
        os.chmod(top, 0o755)
        os.chmod(users, 0o644)
        conf = os.path.join(top, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(top=top, name=os.path.basename(top.rstrip("/")),
                                users=users, mode=mode,
                                owner="    user = %s\n" % owner if owner else ""))
        self.logf = open(os.path.join(top, "dovecot.log"), "w+")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        self.socket = os.path.join(top, "run", "auth-client")
        try:
            self._wait_socket()
        except BaseException:
            self.stop()
            raise

    def _wait_socket(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited %d:\n%s"
                                     % (self.proc.returncode, self.log()))
            if os.path.exists(self.socket):
                with socket.socket(socket.AF_UNIX) as s:
                    try:
                        s.connect(self.socket)
                        return
                    except OSError:
                        pass
            time.sleep(0.02)
        raise AssertionError("no dovecot auth-client socket:\n" + self.log())

    def log(self):
        if self.logf.closed:
            return ""
        self.logf.flush()
        with open(self.logf.name, errors="replace") as f:
            return f.read()

    def stop(self):
        harness.stop_process(self.proc, signal.SIGTERM, 20)
        self.logf.close()
