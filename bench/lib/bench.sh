# What the bench scripts share (sourced by bench/smtp.sh, bench/relay.sh and
# bench/spool_growth.sh; not run by itself): free loopback ports, a private
# Postfix configured as ../shared/BENCH-NOTES.md says, smtp-sink as a relayhost,
# relayvisor relaying to it. The caller defines die() and stops what it started
# from its own EXIT trap with postfix_stop / kill of the pids these set.
#
# Nothing here touches the system's Postfix, its configuration or port 25: the
# private Postfix has its own config_directory, queue and log under the caller's
# temporary directory, and listens on a free loopback port only.

# a free TCP port on 127.0.0.1 (never 25)
# run function $1 on every exit path: a normal end, Ctrl-C, TERM, HUP (each
# with its own status; the function starts with `trap - EXIT INT TERM HUP`)
bench_traps() {
	trap "$1" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
}

# stop a background process this script started (no-op for "")
stop_pid() {
	[ -z "$1" ] || { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; } || true
}

free_port() {
	local p
	p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	[ "$p" != 25 ] || die "refusing port 25"
	echo "$p"
}

# postfix_start DIR PORT: a private Postfix under DIR (DIR/postfix is its
# config_directory, DIR/pfqueue its queue, DIR/postfix.log its log) listening on
# 127.0.0.1:PORT only, no chroot, no DNS, no peer name lookups. The lines on
# stdin are appended to main.cf: what the caller's case needs (mynetworks,
# transports, relayhost, TLS). Sets PF_STARTED=1 once `postfix start` ran.
postfix_start() {
	local dir=$1 port=$2 pf=$1/postfix
	mkdir -p "$pf" "$dir/pfqueue" "$dir/pfdata"
	chown postfix "$dir/pfdata"
	{
		cat <<EOF
compatibility_level = 3.6
queue_directory = $dir/pfqueue
data_directory = $dir/pfdata
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
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
local_recipient_maps =
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
maillog_file = $dir/postfix.log
maillog_file_prefixes = /var, /dev/stdout, $dir
biff = no
EOF
		cat
	} > "$pf/main.cf"
	# no port-25 listener; ours on the free loopback port; no chroot (Debian's
	# is empty unless its init script fills it)
	sed -e '/^smtp[[:space:]][[:space:]]*inet/d' /etc/postfix/master.cf > "$pf/master.cf"
	echo "127.0.0.1:$port inet n - n - - smtpd" >> "$pf/master.cf"
	postconf -c "$pf" -Fe '*/*/chroot = n'
	postfix -c "$pf" check || die "postfix check failed: $(tail -3 "$dir/postfix.log" 2>/dev/null)"
	PF_STARTED=1
	postfix -c "$pf" start >/dev/null 2>&1 ||
		die "postfix start failed: $(tail -3 "$dir/postfix.log" 2>/dev/null)"
}

# postfix_stop DIR: stop the private Postfix of postfix_start; if `postfix stop`
# fails, kill its master, but only while that pid is a master working in DIR's
# queue (never another Postfix)
postfix_stop() {
	local dir=$1 mp
	[ -n "${PF_STARTED:-}" ] || return 0
	PF_STARTED=
	postfix -c "$dir/postfix" stop >/dev/null 2>&1 || true
	[ -f "$dir/pfqueue/pid/master.pid" ] || return 0
	mp=$(tr -d ' \n' < "$dir/pfqueue/pid/master.pid")
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[ "$(readlink /proc/"$mp"/cwd 2>/dev/null)" = "$dir/pfqueue" ] || return 0
		sleep 0.2
	done
	kill -9 "$mp" 2>/dev/null || true
}

# sink_start PORT LOG: Postfix's smtp-sink on 127.0.0.1:PORT, storing nothing;
# sets SINK_PID
sink_start() {
	smtp-sink -u nobody 127.0.0.1:"$1" 1000 > "$2" 2>&1 &
	SINK_PID=$!
	python3 "$ROOT/bench/wait_smtp.py" 127.0.0.1 "$1" || die "smtp-sink does not greet"
}

# relayvisor_relay_start DIR PORT SINK_PORT: relayvisord (listener, qmgr,
# delivery agent) under DIR, a LAN instance on 127.0.0.1:PORT relaying for
# 127.0.0.1 to smtp-sink as relayhost; sets RV_PID, returns once the listener
# greets and the agent is connected
relayvisor_relay_start() {
	local dir=$1 port=$2 sink=$3
	mkdir -p "$dir/rv/conf.d"
	cat > "$dir/rv/conf.d/bench.yaml" <<EOC
server:
  hostname: bench.local.test
  spool: $dir/rv/spool
  control: $dir/rv/run/relayvisor.sock
  logs: $dir/rv/log
  local_domains: [local.test]
lan: [127.0.0.1]
profiles:
  bench: {}
instances:
  bench:
    listen: ["127.0.0.1:$port"]
    profile: bench
    max_connections: 1000
    max_per_client: 300
delivery:
  relayhost: "[127.0.0.1]:$sink"
  local: "maildir:$dir/rv/mail/%d/%u"
EOC
	"$BIN/relayvisord" -n -c "$dir/rv/conf.d" > "$dir/rv.log" 2>&1 &
	RV_PID=$!
	python3 "$ROOT/bench/wait_smtp.py" 127.0.0.1 "$port" || die "relayvisor does not greet"
	for _ in $(seq 100); do
		grep -q "delivery agent .* connected" "$dir/rv/log/qmgr.log" 2>/dev/null && return 0
		sleep 0.1
	done
	die "relayvisor's delivery agent did not connect: $(tail -3 "$dir/rv.log")"
}
