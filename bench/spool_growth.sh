#!/bin/bash
# Spool growth (issue 12): N messages (default 100000) from a LAN client
# (smtp-source) through relayvisor to Postfix's smtp-sink as relayhost, twice;
# prints the LMDB file's size (spool/data.mdb) at its peak during each round and
# once the queue is empty after it. LMDB reuses freed pages: the file follows the
# deepest backlog (the peak working set), not the number of messages gone through.
#
# Not part of make check. Everything on loopback; everything started is stopped on
# every exit path (trap).
#
# Usage: bench/spool_growth.sh [-n N] [-s SESSIONS] [-l SIZE]
#        (RV_BIN=dir of the programs, default ./bin; KEEP=1 keeps the directory)
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RV_BIN:-$ROOT/bin}
N=100000
SESSIONS=20
SIZE=1024
while getopts n:s:l: o; do
	case $o in
	n) N=$OPTARG ;;
	s) SESSIONS=$OPTARG ;;
	l) SIZE=$OPTARG ;;
	*) echo "usage: $0 [-n N] [-s SESSIONS] [-l SIZE]" >&2; exit 2 ;;
	esac
done

die() { echo "spool_growth: $*" >&2; exit 1; }
[ -x "$BIN/relayvisord" ] || die "no $BIN/relayvisord (make, or set RV_BIN)"
for p in smtp-source smtp-sink python3; do
	command -v $p >/dev/null || die "$p not found (apt-get install postfix python3)"
done

. "$ROOT/bench/lib/bench.sh"

T=$(mktemp -d /tmp/rvgrowth.XXXXXX)
chmod 755 "$T"
SINK_PID=
RV_PID=
cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	stop_pid "$RV_PID"
	stop_pid "$SINK_PID"
	if [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "spool_growth: kept $T"; fi
	exit $rc
}
bench_traps cleanup

RV_PORT=$(free_port)
SINK_PORT=$(free_port)
sink_start "$SINK_PORT" "$T/sink.log"
relayvisor_relay_start "$T" "$RV_PORT" "$SINK_PORT"

echo "spool_growth: $N messages of $SIZE bytes a round, $SESSIONS sessions, relayhost smtp-sink"
timeout 7200 python3 - "$T/rv/spool/data.mdb" "$BIN/relayvisorctl" "$T/rv/conf.d" "$RV_PORT" "$N" \
	"$SESSIONS" "$SIZE" <<'EOP'
import os, subprocess, sys, time
mdb, ctl, confdir = sys.argv[1:4]
port, n, sessions, size = map(int, sys.argv[4:])

def queue_empty():
    # read from the spool directly (the logs rotate under a long run)
    p = subprocess.run([ctl, "-c", confdir, "queue"], capture_output=True)
    return p.returncode == 0 and p.stdout == b"Mail queue is empty\n"

def mib(b):
    return "%d KiB" % (b // 1024)

rows = []
for rnd in (1, 2):
    src = subprocess.Popen(["smtp-source", "-s", str(sessions), "-m", str(n),
                            "-l", str(size), "-f", "lan@bench.example",
                            "-t", "friend@remote.example", "-M", "bench.example",
                            "127.0.0.1:%d" % port],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    t0 = time.monotonic()
    while True:
        peak = max(peak, os.stat(mdb).st_size)
        if src.poll() is not None and src.returncode != 0:
            sys.exit("smtp-source failed: %s" % src.stderr.read().decode()[-300:])
        if src.poll() is not None and queue_empty():
            break
        if time.monotonic() - t0 > 3600:
            sys.exit("round %d: the queue not empty after an hour" % rnd)
        time.sleep(0.2)
    after = os.stat(mdb).st_size
    rows.append((rnd, peak, after, time.monotonic() - t0))
    print("round %d: peak %s, queue empty %s (%.0f s)" % (rnd, mib(peak), mib(after),
                                                          rows[-1][3]), flush=True)
print()
print("| round | data.mdb peak | data.mdb with the queue empty |")
print("|---|---|---|")
for rnd, peak, after, _ in rows:
    print("| %d | %s | %s |" % (rnd, mib(peak), mib(after)))
# the peak follows the deepest backlog of a round (how far delivery lagged
# behind the client at its busiest moment), so it varies from run to run; what
# must not happen is growth with the number of messages gone through
print("after %d messages: %s; the file grew %.2fx from round 1 to round 2 for "
      "as many messages again" % (2 * n, mib(rows[1][2]), rows[1][2] / rows[0][2]))
EOP
