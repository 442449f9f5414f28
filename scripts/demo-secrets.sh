#!/bin/sh
# The secrets the shipped conf.d's submission instance needs, made once under a
# state directory (default ./var; `make run` and the tests that start the shipped
# configuration call this):
#
#   VAR/tls/cert.pem, VAR/tls/key.pem  a self-signed certificate for the
#       configuration's host name (mail.example.test, also localhost and
#       127.0.0.1), made with the openssl command; the key mode 0600
#   VAR/auth/passwd                    the password file, with the user `demo`
#   VAR/auth/demo-password             demo's password, random, mode 0600,
#                                      printed once, when it is made
#
# Idempotent: what exists is left alone (a certificate is made again only when
# cert.pem or key.pem is missing, the password only when the demo user is not in
# the password file). Each file is written beside its place and renamed into it,
# so an interrupted run leaves no half key. Usage: demo-secrets.sh [VAR]
# Environment: RELAYVISORCTL names relayvisorctl (default bin/relayvisorctl next
# to this script), which writes the yescrypt hash.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
var=${1:-./var}
ctl=${RELAYVISORCTL:-$here/bin/relayvisorctl}
host=mail.example.test

# the state directory itself as `mkdir` makes it (the spool and logs below it
# have their own modes); what this script writes below it is private
mkdir -p "$var"
umask 077
mkdir -p "$var/tls" "$var/auth"
chmod 0700 "$var/tls" "$var/auth"

if [ ! -s "$var/tls/cert.pem" ] || [ ! -s "$var/tls/key.pem" ]; then
	if ! command -v openssl >/dev/null 2>&1; then
		echo "demo-secrets: the openssl command is missing (scripts/deps.sh installs it)" >&2
		exit 1
	fi
	rm -f "$var/tls/.key.pem.new" "$var/tls/.cert.pem.new"
	if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-nodes -days 825 -subj "/CN=$host" \
		-addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
		-keyout "$var/tls/.key.pem.new" -out "$var/tls/.cert.pem.new" \
		>"$var/tls/.openssl.log" 2>&1; then
		cat "$var/tls/.openssl.log" >&2
		rm -f "$var/tls/.key.pem.new" "$var/tls/.cert.pem.new"
		echo "demo-secrets: openssl could not make the certificate" >&2
		exit 1
	fi
	rm -f "$var/tls/.openssl.log"
	chmod 0600 "$var/tls/.key.pem.new"
	chmod 0644 "$var/tls/.cert.pem.new"
	mv -f "$var/tls/.key.pem.new" "$var/tls/key.pem"
	mv -f "$var/tls/.cert.pem.new" "$var/tls/cert.pem"
	echo "demo-secrets: made a self-signed certificate for $host: $var/tls/cert.pem"
fi

if ! grep -q '^demo:' "$var/auth/passwd" 2>/dev/null; then
	if [ ! -x "$ctl" ]; then
		echo "demo-secrets: $ctl is missing (make builds it)" >&2
		exit 1
	fi
	pw=$(openssl rand -hex 12)
	printf '%s\n' "$pw" >"$var/auth/.demo-password.new"
	printf '%s\n' "$pw" | "$ctl" passwd --stdin demo "$var/auth/passwd"
	mv -f "$var/auth/.demo-password.new" "$var/auth/demo-password"
	echo "demo-secrets: user demo, password $pw (kept in $var/auth/demo-password)"
fi
