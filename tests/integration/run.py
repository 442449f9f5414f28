#!/usr/bin/env python3
"""Runs every tests/integration/test_*.py (unittest) against the real binaries and
prints one closing line, "integration: N passed, M failed, K skipped", that
scripts/check.sh adds to the total. A module that fails to import counts as failed.
Usage: run.py [PATTERN]   (e.g. run.py test_smtp_limits)"""
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    pattern = (sys.argv[1] + "*.py") if len(sys.argv) > 1 else "test_*.py"
    loader = unittest.TestLoader()
    suite = loader.discover(HERE, pattern=pattern, top_level_dir=HERE)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    t0 = time.monotonic()
    res = runner.run(suite)
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    skipped = len(res.skipped)
    passed = res.testsRun - failed - skipped
    print("integration: %d passed, %d failed, %d skipped (%.1fs)"
          % (passed, failed, skipped, time.monotonic() - t0))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
