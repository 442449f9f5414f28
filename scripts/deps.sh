#!/bin/sh
# Installs the Debian packages relayvisor builds and tests with, only when one is
# missing. Idempotent and quiet when everything is there; `make check` and
# `make run` call it. Postfix is preseeded with "No configuration" so installing
# it (for smtp-source/smtp-sink) never starts an MTA on port 25.
set -eu

pkgs="libev-dev libyaml-dev libcidr-dev liblmdb-dev libedit-dev check pkg-config make gcc
      swaks libio-socket-inet6-perl python3 postfix fail2ban pflogsumm clang libclang-rt-14-dev
      iproute2 procps psmisc mandoc man-db libc-ares-dev dnsmasq-base
      libssl-dev libcrypt-dev openssl ca-certificates dovecot-core
      dovecot-lmtpd libio-socket-ssl-perl libnet-ssleay-perl testssl.sh"

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: missing Debian packages:$missing" >&2
	echo "deps.sh: run as root, or: sudo apt-get install$missing" >&2
	exit 1
fi

echo "deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# fail2ban's package starts its service; we only use fail2ban-regex.
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now fail2ban >/dev/null 2>&1 || true
fi
pkill -x fail2ban-server >/dev/null 2>&1 || true
# dovecot-core's package starts a system Dovecot; the tests start their own (private
# configuration, no network port), so the system one stays off.
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now dovecot >/dev/null 2>&1 || true
fi
echo "deps.sh: done" >&2
