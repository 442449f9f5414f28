"""bench/ctl.sh's body: see there. Everything it starts lives under one temporary
directory and is stopped on every exit path."""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, "bin")
NAMES = ("alpha", "beta", "gamma")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, check=False):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stdout.decode()))
    return dt, p.stdout.decode()


def greeted(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            return s.recv(64).startswith(b"220")
    except OSError:
        return False


class Prober(threading.Thread):
    """Connects to a port every 2 ms and counts refused connections."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.refused, self.ok, self.stop = port, 0, 0, False

    def run(self):
        while not self.stop:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.recv(64)
                self.ok += 1
            except ConnectionRefusedError:
                self.refused += 1
            except OSError:
                pass
            time.sleep(0.002)


class Setup:
    def __init__(self, top):
        self.top = top
        self.ports = {n: (free_port(), free_port()) for n in NAMES}
        conf = os.path.join(top, "conf.d")
        os.makedirs(conf)
        inst = "".join("""  %s:
    listen: ["127.0.0.1:%d"]
    profile: locked-down
""" % (n, self.ports[n][0]) for n in NAMES)
        sinst = "".join("""  %s:
    listen: ["127.0.0.1:%d"]
    profile: locked-down
""" % (n, self.ports[n][1]) for n in NAMES)
        base = """server:
  hostname: bench.test
  spool: %s/var/spool
  control: %s/var/run/relayvisor.sock
  logs: %s/var/log
  local_domains: [example.test]
profiles:
  locked-down:
    lan: []
instances:
"""
        with open(os.path.join(conf, "bench.yaml"), "w") as f:
            f.write(base % (top, top, top) + inst)
        self.conf = conf
        # supervisord runs the same listeners standalone on their own ports
        sconf = os.path.join(top, "sconf.d")
        os.makedirs(sconf)
        with open(os.path.join(sconf, "bench.yaml"), "w") as f:
            f.write(base % (top + "/s", top + "/s", top + "/s") + sinst)
        self.supconf = os.path.join(top, "supervisord.conf")
        progs = "".join("""[program:%s]
command=%s/relayvisor-smtpd -c %s --instance %s
stopsignal=TERM
stdout_logfile=%s/%s.out
redirect_stderr=true
""" % (n, BIN, sconf, n, top, n) for n in NAMES)
        with open(self.supconf, "w") as f:
            f.write("""[unix_http_server]
file=%s/supervisor.sock
[supervisord]
logfile=%s/supervisord.log
pidfile=%s/supervisord.pid
childlogdir=%s
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://%s/supervisor.sock
%s""" % (top, top, top, top, top, progs))
        self.rv = None

    def start(self):
        self.rvlog = open(os.path.join(self.top, "relayvisord.out"), "wb")
        self.rv = subprocess.Popen([os.path.join(BIN, "relayvisord"), "-n", "-c", self.conf],
                                   stdout=self.rvlog, stderr=subprocess.STDOUT)
        run(["/usr/bin/supervisord", "-c", self.supconf], check=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(greeted(self.ports[n][0]) and greeted(self.ports[n][1]) for n in NAMES):
                time.sleep(1.5)   # past supervisord's startsecs
                return
            time.sleep(0.1)
        raise RuntimeError("listeners did not come up; see %s" % self.top)

    def stop(self):
        subprocess.run(["/usr/bin/supervisorctl", "-c", self.supconf, "shutdown"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.rv and self.rv.poll() is None:
            self.rv.terminate()
            try:
                self.rv.wait(10)
            except subprocess.TimeoutExpired:
                self.rv.kill()

    def rvctl(self, *a):
        return [os.path.join(BIN, "relayvisorctl"), "-c", self.conf, *a]

    def svctl(self, *a):
        return ["/usr/bin/supervisorctl", "-c", self.supconf, *a]

    def rv_pid(self, name):
        return int(run(self.rvctl("pid", name))[1].split()[0])

    def sv_pid(self, name):
        return int(run(self.svctl("pid", name))[1].split()[0])


def kill_to_serving(port, pid, old_pid_fn):
    """kill -9 the listener, then time until a fresh process greets on the port."""
    prober = Prober(port)
    prober.start()
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            if old_pid_fn() != pid and greeted(port, 0.2):
                break
        except (ValueError, IndexError):
            pass
        if time.perf_counter() - t0 > 15:
            break
        time.sleep(0.001)
    dt = time.perf_counter() - t0
    prober.stop = True
    prober.join()
    return dt, prober.refused


def restart(cmd, port):
    prober = Prober(port)
    prober.start()
    dt, out = run(cmd)
    time.sleep(0.05)
    prober.stop = True
    prober.join()
    return dt, prober.refused


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    top = tempfile.mkdtemp(prefix="rv-bench-ctl-")
    os.chmod(top, 0o755)   # the listeners run as an unprivileged user when we are root
    s = Setup(top)
    res = {k: ([], []) for k in ("status", "restart", "kill9")}
    refused = {k: [0, 0] for k in ("restart", "kill9")}
    try:
        s.start()
        for _ in range(rounds * 10):                       # status, interleaved
            res["status"][0].append(run(s.rvctl("status"))[0])
            res["status"][1].append(run(s.svctl("status"))[0])
        for i in range(rounds):
            n = NAMES[i % len(NAMES)]
            dt, r = restart(s.rvctl("restart", n), s.ports[n][0])
            res["restart"][0].append(dt); refused["restart"][0] += r
            dt, r = restart(s.svctl("restart", n), s.ports[n][1])
            res["restart"][1].append(dt); refused["restart"][1] += r
            time.sleep(1.2)   # let both settle (supervisord's startsecs)
            dt, r = kill_to_serving(s.ports[n][0], s.rv_pid(n), lambda: s.rv_pid(n))
            res["kill9"][0].append(dt); refused["kill9"][0] += r
            dt, r = kill_to_serving(s.ports[n][1], s.sv_pid(n), lambda: s.sv_pid(n))
            res["kill9"][1].append(dt); refused["kill9"][1] += r
            time.sleep(1.2)
    finally:
        s.stop()
    print("supervision benchmark, %d rounds, medians (one run, interleaved)" % rounds)
    print("%-28s %14s %14s %9s" % ("", "relayvisord", "supervisord", "ratio"))
    for k, label in (("status", "status (ms)"), ("restart", "restart NAME (ms)"),
                     ("kill9", "kill -9 -> serving (ms)")):
        a, b = statistics.median(res[k][0]) * 1e3, statistics.median(res[k][1]) * 1e3
        print("%-28s %14.2f %14.2f %8.1fx" % (label, a, b, b / a if a else float("inf")))
    for k, label in (("restart", "refused during restarts"), ("kill9", "refused during kill -9")):
        print("%-28s %14d %14d" % (label, refused[k][0], refused[k][1]))
    shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
