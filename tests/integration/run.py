#!/usr/bin/env python3
"""Runs every tests/integration/test_*.py (unittest) against the real binaries and
prints one closing line, "integration: N passed, M failed, K skipped", that
scripts/check.sh adds to the total. A module that fails to import counts as failed.
Usage: run.py [PATTERN]   (e.g. run.py test_smtp_limits)

Two guarantees on top of unittest:
- A failing test's report (the traceback, printed at the end) is followed by the
  tail of every log its processes wrote (harness.log_tails), in the plain run and
  the sanitizer pass alike.
- Every process the suite starts carries RV_SUITE_TOKEN in its environment. After
  the last test, a process still carrying it outlived the suite: it is named (with
  the test during which it first showed up), killed, and counted as a failure."""
import os
import signal
import sys
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TOKEN = "RV_SUITE_TOKEN=" + uuid.uuid4().hex
os.environ["RV_SUITE_TOKEN"] = TOKEN.split("=", 1)[1]

import harness  # noqa: E402  (after the token is in the environment)


def suite_processes():
    """{pid: command line} of the processes carrying this run's token, but us."""
    found = {}
    me = os.getpid()
    needle = TOKEN.encode() + b"\0"
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read()
            if needle not in env:
                continue
            with open("/proc/%s/stat" % d) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            found[int(d)] = cmd
        except OSError:
            continue
    return found


class Result(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.first_seen = {}	# pid -> test id

    def startTest(self, test):
        harness.test_started(test.id())
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        for pid in suite_processes():
            self.first_seen.setdefault(pid, test.id())
        tails = harness.log_tails()
        if tails:
            for lst in (self.failures, self.errors):
                for i, (t, text) in enumerate(lst):
                    if t is test and "---- log tails" not in text:
                        lst[i] = (t, text + tails)


def reap_leftovers(first_seen):
    """Name, kill and count what outlived the suite."""
    left = suite_processes()
    if not left:
        return 0
    print("\nLEAK: %d process(es) started by the suite outlived it:" % len(left))
    for pid, cmd in sorted(left.items()):
        print("  pid %d (first seen after %s): %s" % (pid, first_seen.get(pid, "?"), cmd))
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return 1


def main():
    # started as a background job of a shell, SIGINT is ignored and every child
    # would inherit that: tests that interrupt a client must not depend on how
    # the suite was launched
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    pattern = (sys.argv[1] + "*.py") if len(sys.argv) > 1 else "test_*.py"
    loader = unittest.TestLoader()
    suite = loader.discover(HERE, pattern=pattern, top_level_dir=HERE)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout, resultclass=Result)
    t0 = time.monotonic()
    res = runner.run(suite)
    leaked = reap_leftovers(res.first_seen)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses) + leaked
    skipped = len(res.skipped)
    passed = res.testsRun - failed - skipped + leaked
    print("integration: %d passed, %d failed, %d skipped (%.1fs)"
          % (passed, failed, skipped, time.monotonic() - t0))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
