#!/bin/bash
# Relay benchmark (issue 12): N messages submitted by a LAN client (smtp-source)
# and delivered to Postfix's smtp-sink as relayhost, relayvisor (relayvisord:
# listener, relayvisor-qmgr, relayvisor-deliver) against a private Postfix with the
# same relayhost, interleaved over several rounds; for 1 KB and 100 KB: time until
# every message is delivered, msgs/s and CPU ms per message of each server's whole
# process tree (bench/relay_runs.py prints the table).
#
# Everything is on loopback; the private Postfix has its own config_directory,
# queue and log under a temporary directory (as bench/smtp.sh); everything started
# is stopped on every exit path (trap).
#
# Usage: bench/relay.sh            (RV_BIN=dir of the programs, default ./bin)
# Tunables: ROUNDS=3 SESSIONS=20 N1K=1000 N100K=300 KEEP=1
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RV_BIN:-$ROOT/bin}
ROUNDS=${ROUNDS:-3}
SESSIONS=${SESSIONS:-20}
N1K=${N1K:-1000}
N100K=${N100K:-300}

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (postfix -c DIR start)"
[ -x "$BIN/relayvisord" ] || die "no $BIN/relayvisord (make, or set RV_BIN)"
for p in postfix postconf smtp-source smtp-sink python3; do
	command -v $p >/dev/null || die "$p not found (apt-get install postfix python3)"
done

. "$ROOT/bench/lib/bench.sh"

T=$(mktemp -d /tmp/rvrelay.XXXXXX)
chmod 755 "$T"
PF_STARTED=
SINK_PID=
RV_PID=

cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	stop_pid "$RV_PID"
	stop_pid "$SINK_PID"
	postfix_stop "$T"
	if [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "bench: kept $T"; fi
	exit $rc
}
bench_traps cleanup

PF_PORT=$(free_port)
RV_PORT=$(free_port)
SINK_PORT=$(free_port)

# --- the relayhost: smtp-sink, storing nothing ------------------------------------
sink_start "$SINK_PORT" "$T/sink.log"

# --- Postfix: mynetworks = the LAN client, relayhost = smtp-sink --------------------
postfix_start "$T" "$PF_PORT" <<EOC
mynetworks = 127.0.0.1/32
relayhost = [127.0.0.1]:$SINK_PORT
EOC

# --- relayvisor: the LAN instance relays, delivery to the same relayhost ----------
relayvisor_relay_start "$T" "$RV_PORT" "$SINK_PORT"
python3 "$ROOT/bench/wait_smtp.py" 127.0.0.1 "$PF_PORT" || die "postfix does not greet"

echo "bench: relayhost smtp-sink 127.0.0.1:$SINK_PORT; postfix 127.0.0.1:$PF_PORT," \
	"relayvisor 127.0.0.1:$RV_PORT; $ROUNDS rounds, $SESSIONS sessions, interleaved"
timeout 1500 python3 "$ROOT/bench/relay_runs.py" --rounds "$ROUNDS" --sessions "$SESSIONS" \
	--n1k "$N1K" --n100k "$N100K" --pf-port "$PF_PORT" --pf-queue "$T/pfqueue" \
	--pf-log "$T/postfix.log" --rv-port "$RV_PORT" --rv-pid "$RV_PID" \
	--rv-logs "$T/rv/log" --sink-pid "$SINK_PID"
