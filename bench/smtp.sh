#!/bin/bash
# SMTP benchmark: relayvisor-smtpd against a Postfix configured the same way
# (../shared/BENCH-NOTES.md), both on loopback, driven by Postfix's smtp-source,
# interleaved over several rounds. Prints msgs/s, server CPU ms per message and
# the ratios for: accept 1 KB, accept 100 KB (20 sessions, one message per
# connection), relay attempts refused at RCPT (one per connection) and STARTTLS
# then one 1 KB message per connection (both servers with the same self-signed
# certificate, bench/tls_source.c as the client, built here); then the
# listener's memory with 10,000 concurrent idle sessions and the time a fresh
# client waits for its greeting meanwhile.
#
# The Postfix is private: its own config_directory, queue_directory and log under
# a temporary directory, started with `postfix -c DIR`; the system's Postfix and
# port 25 are never touched. It is stopped on every exit path (trap).
#
# Usage: bench/smtp.sh            (RV_BIN=dir of relayvisor-smtpd, default ./bin)
# Tunables (environment): ROUNDS=3 SESSIONS=20 N1K=2000 N100K=600 NREJ=3000 NTLS=1000
#                         IDLE=10000 KEEP=1 (keep the temporary directory)
# Bounded: the defaults take 35-60 s on a 2-core machine; hard limits keep any run
# under 5 minutes.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${RV_BIN:-$ROOT/bin}
SMTPD=$BIN/relayvisor-smtpd
ROUNDS=${ROUNDS:-3}
SESSIONS=${SESSIONS:-20}
N1K=${N1K:-2000}
N100K=${N100K:-600}
NREJ=${NREJ:-3000}
NTLS=${NTLS:-1000}
IDLE=${IDLE:-10000}

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (postfix -c DIR start)"
[ -x "$SMTPD" ] || die "no $SMTPD (make, or set RV_BIN)"
for p in postfix postconf smtp-source python3 openssl cc; do
	command -v $p >/dev/null || die "$p not found (scripts/deps.sh)"
done

. "$ROOT/bench/lib/bench.sh"

T=$(mktemp -d /tmp/rvbench.XXXXXX)
chmod 755 "$T"
PF_STARTED=
RV_PIDFILE=$T/rv.pid
CHILD=

# long steps run in the background and are waited for, so a signal reaches the
# trap at once instead of after the step
run_bg() {
	"$@" &
	CHILD=$!
	wait "$CHILD"
	CHILD=
}

cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	[ -z "$CHILD" ] || kill "$CHILD" 2>/dev/null || true
	postfix_stop "$T"
	# a listener the helpers left behind (only ours: its command line names $T)
	for f in "$RV_PIDFILE" "$T/rv-idle.pid"; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		[ -r /proc/"$p"/cmdline ] || continue
		if tr '\0' ' ' < /proc/"$p"/cmdline 2>/dev/null | grep -q "$T"; then
			kill -9 "$p" 2>/dev/null || true
		fi
	done
	if [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "bench: kept $T"; fi
	exit $rc
}
bench_traps cleanup

PF_PORT=$(free_port)
RV_PORT=$(free_port)

# --- the STARTTLS client (C, OpenSSL: fast enough not to be the bottleneck) ----
cc -O2 -o "$T/tls_source" "$ROOT/bench/tls_source.c" -lssl -lcrypto ||
	die "building bench/tls_source.c failed (libssl-dev: scripts/deps.sh)"

# --- one self-signed certificate for both ----------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=bench.local.test -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null ||
	die "openssl req failed"
chmod 600 "$T/key.pem"

# --- Postfix, configured as BENCH-NOTES.md says (bench/lib/bench.sh) ------------
postfix_start "$T" "$PF_PORT" <<EOF
mynetworks = 192.0.2.1/32
local_transport = discard:
default_transport = discard:
relay_transport = discard:
smtpd_tls_cert_file = $T/cert.pem
smtpd_tls_key_file = $T/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
EOF

# --- relayvisor-smtpd, standalone, the same policy -------------------------------
mkdir -p "$T/rv/conf.d"
cat > "$T/rv/conf.d/bench.yaml" <<EOF
server:
  hostname: bench.local.test
  spool: $T/rv/spool
  control: $T/rv/run/relayvisor.sock
  logs: $T/rv/log
  local_domains: [local.test]
lan: [192.0.2.1]
profiles:
  bench:
    lan: [192.0.2.1]          # 127.0.0.1 is outside, as for Postfix's mynetworks
instances:
  bench:
    listen: ["127.0.0.1:$RV_PORT"]
    profile: bench
    max_connections: 12000
    max_per_client: 300
    tls: {cert: $T/cert.pem, key: $T/key.pem}
EOF

# the idle-sessions phase needs >10,000 descriptors in the listener and the client
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((IDLE + 200)) ] || die "ulimit -n $(ulimit -n) is too small for IDLE=$IDLE"

python3 "$ROOT/bench/wait_smtp.py" 127.0.0.1 "$PF_PORT" || die "postfix does not greet"

echo "bench: postfix on 127.0.0.1:$PF_PORT, relayvisor-smtpd on 127.0.0.1:$RV_PORT," \
	"$ROUNDS rounds, interleaved"
run_bg timeout 280 python3 "$ROOT/bench/smtp_runs.py" --rounds "$ROUNDS" --sessions "$SESSIONS" \
	--n1k "$N1K" --n100k "$N100K" --nrej "$NREJ" --ntls "$NTLS" \
	--pf-port "$PF_PORT" --pf-queue "$T/pfqueue" --pf-log "$T/postfix.log" \
	--rv-bin "$SMTPD" --rv-conf "$T/rv/conf.d" --rv-instance bench \
	--rv-port "$RV_PORT" --rv-spool "$T/rv/spool" --rv-log "$T/rv.log" \
	--rv-pidfile "$RV_PIDFILE" --tls-source "$T/tls_source"

postfix_stop "$T"

# --- 10,000 idle sessions ----------------------------------------------------------
rm -rf "$T/rv/spool"
"$SMTPD" -c "$T/rv/conf.d" --instance bench >> "$T/rv.log" 2>&1 &
echo $! > "$T/rv-idle.pid"
python3 "$ROOT/bench/wait_smtp.py" 127.0.0.1 "$RV_PORT" || die "relayvisor-smtpd does not greet"
echo
run_bg timeout 60 python3 "$ROOT/bench/idle_sessions.py" --port "$RV_PORT" \
	--pid "$(cat "$T/rv-idle.pid")" --sessions "$IDLE" > "$T/idle.out" || die "idle sessions run failed: $(cat "$T/idle.out")"
kill "$(cat "$T/rv-idle.pid")" 2>/dev/null || true
wait "$(cat "$T/rv-idle.pid")" 2>/dev/null || true
rm -f "$T/rv-idle.pid"

v() { awk -v k="$1" '$1 == k { print $2 }' "$T/idle.out"; }
printf '%-44s %s of %s\n' "idle sessions greeted (220) and held" \
	"$(v idle_sessions_alive_at_end)" "$(v idle_sessions_requested)"
printf '%-44s %.1f MiB (idle listener %.1f MiB, %s bytes/session)\n' \
	"listener PSS with the sessions open" \
	"$(awk "BEGIN { print $(v pss_with_sessions_kib) / 1024 }")" \
	"$(awk "BEGIN { print $(v pss_idle_listener_kib) / 1024 }")" "$(v pss_per_session_bytes)"
printf '%-44s median %s ms, max %s ms (unloaded: %s ms)\n' \
	"fresh client's wait for its greeting" "$(v greeting_ms_median)" \
	"$(v greeting_ms_max)" "$(v greeting_ms_unloaded_median)"
