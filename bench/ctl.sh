#!/bin/sh
# Supervision benchmark: the same three listeners under relayvisord and under
# Debian's supervisord (which runs relayvisor-smtpd standalone, binding its own
# sockets), measured interleaved in one run. Prints medians and ratios for
# `status` wall time, `restart NAME` wall time, kill -9 -> serving again, and the
# connections a prober saw refused meanwhile. Loopback only; about one minute.
# Usage: bench/ctl.sh [ROUNDS]      (run `make` first; needs the supervisor package)
set -eu
cd "$(dirname "$0")/.."
[ -x bin/relayvisord ] || { echo "bench/ctl.sh: run make first" >&2; exit 1; }
command -v supervisord >/dev/null || { echo "bench/ctl.sh: apt-get install supervisor" >&2; exit 1; }
exec /usr/bin/python3 bench/ctl.py "${1:-5}"
