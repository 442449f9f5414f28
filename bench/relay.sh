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

T=$(mktemp -d /tmp/rvrelay.XXXXXX)
chmod 755 "$T"
PF=$T/postfix
PF_STARTED=
SINK_PID=
RV_PID=

cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	[ -z "$RV_PID" ] || { kill "$RV_PID" 2>/dev/null; wait "$RV_PID" 2>/dev/null; } || true
	[ -z "$SINK_PID" ] || { kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null; } || true
	if [ -n "$PF_STARTED" ]; then
		postfix -c "$PF" stop >/dev/null 2>&1 || true
	fi
	if [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "bench: kept $T"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PF_PORT=$(free_port)
RV_PORT=$(free_port)
SINK_PORT=$(free_port)

# --- the relayhost: smtp-sink, storing nothing ------------------------------------
smtp-sink -u nobody 127.0.0.1:"$SINK_PORT" 1000 > "$T/sink.log" 2>&1 &
SINK_PID=$!
python3 "$ROOT/bench/wait_smtp.py" 127.0.0.1 "$SINK_PORT" || die "smtp-sink does not greet"

# --- Postfix: mynetworks = the LAN client, relayhost = smtp-sink --------------------
mkdir -p "$PF" "$T/pfqueue" "$T/pfdata"
chown postfix "$T/pfdata"
cat > "$PF/main.cf" <<EOC
compatibility_level = 3.6
queue_directory = $T/pfqueue
data_directory = $T/pfdata
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.local.test
mydestination = local.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [127.0.0.1]:$SINK_PORT
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
maillog_file = $T/postfix.log
maillog_file_prefixes = /var, /dev/stdout, $T
biff = no
EOC
sed -e '/^smtp[[:space:]][[:space:]]*inet/d' /etc/postfix/master.cf > "$PF/master.cf"
echo "127.0.0.1:$PF_PORT inet n - n - - smtpd" >> "$PF/master.cf"
postconf -c "$PF" -Fe '*/*/chroot = n'
postfix -c "$PF" check || die "postfix check failed"
PF_STARTED=1
postfix -c "$PF" start >/dev/null 2>&1 || die "postfix start failed: $(tail -3 "$T/postfix.log")"

# --- relayvisor: the LAN instance relays, delivery to the same relayhost ----------
mkdir -p "$T/rv/conf.d"
cat > "$T/rv/conf.d/bench.yaml" <<EOC
server:
  hostname: bench.local.test
  spool: $T/rv/spool
  control: $T/rv/run/relayvisor.sock
  logs: $T/rv/log
  local_domains: [local.test]
lan: [127.0.0.1]
profiles:
  bench: {}
instances:
  bench:
    listen: ["127.0.0.1:$RV_PORT"]
    profile: bench
    max_connections: 1000
    max_per_client: 300
delivery:
  relayhost: "[127.0.0.1]:$SINK_PORT"
  local: "maildir:$T/rv/mail/%d/%u"
EOC
"$BIN/relayvisord" -n -c "$T/rv/conf.d" > "$T/rv.log" 2>&1 &
RV_PID=$!
python3 "$ROOT/bench/wait_smtp.py" 127.0.0.1 "$RV_PORT" || die "relayvisor does not greet"
python3 "$ROOT/bench/wait_smtp.py" 127.0.0.1 "$PF_PORT" || die "postfix does not greet"
for _ in $(seq 100); do
	grep -q "delivery agent .* connected" "$T/rv/log/qmgr.log" 2>/dev/null && break
	sleep 0.1
done

echo "bench: relayhost smtp-sink 127.0.0.1:$SINK_PORT; postfix 127.0.0.1:$PF_PORT," \
	"relayvisor 127.0.0.1:$RV_PORT; $ROUNDS rounds, $SESSIONS sessions, interleaved"
timeout 1500 python3 "$ROOT/bench/relay_runs.py" --rounds "$ROUNDS" --sessions "$SESSIONS" \
	--n1k "$N1K" --n100k "$N100K" --pf-port "$PF_PORT" --pf-queue "$T/pfqueue" \
	--pf-log "$T/postfix.log" --rv-port "$RV_PORT" --rv-pid "$RV_PID" \
	--rv-logs "$T/rv/log"
