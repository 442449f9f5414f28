#!/bin/sh
# The man pages (man/): each must pass `mandoc -T lint` without a warning;
# relayvisor.conf.5 must document exactly the keys README.md's configuration
# reference lists (which check_readme ties to the loader), and relayvisorctl.8
# every verb of relayvisorctl's help. Closing line: "man: N passed, M failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
passed=0 failed=0
pass() { passed=$((passed + 1)); }
fail() { echo "man: FAIL: $*"; failed=$((failed + 1)); }

if ! command -v mandoc >/dev/null 2>&1; then
	echo "man: mandoc missing (scripts/deps.sh installs it)"
	echo "man: 0 passed, 1 failed"
	exit 1
fi
for page in man/*.[0-9]; do
	out=$(mandoc -T lint -W warning "$page" 2>&1)
	if [ -z "$out" ]; then pass; else fail "$page: $out"; fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -n '/^## Configuration reference/,/^## Security/p' README.md |
	sed -nE 's/^\| `([a-z_.*]+)` \|.*/\1/p' | sort -u >"$tmp/readme"
sed -nE 's/^\.It Ic ([a-z_.*]+)( .*)?$/\1/p' man/relayvisor.conf.5 |
	grep -E '^(server\.|lan$|profiles\.|instances\.|delivery\.)' | sort -u >"$tmp/man"
if [ ! -s "$tmp/readme" ]; then
	fail "no keys found in README.md's configuration reference"
elif cmp -s "$tmp/readme" "$tmp/man"; then
	pass
else
	fail "relayvisor.conf.5 and README.md disagree on the keys (< README only, > man only):"
	diff "$tmp/readme" "$tmp/man" | grep '^[<>]'
fi

sed -n '/^} helps\[\] = {/,/^};/p' ctl/ctl.c | sed -nE 's/^[[:space:]]*\{ "([a-z]+)",.*/\1/p' |
	sort -u >"$tmp/verbs"
missing=""
for v in $(cat "$tmp/verbs"); do
	grep -qE "^\.It .*Ic $v( |,|$)" man/relayvisorctl.8 || missing="$missing $v"
done
if [ ! -s "$tmp/verbs" ]; then
	fail "no verbs found in ctl/ctl.c"
elif [ -z "$missing" ]; then
	pass
else
	fail "relayvisorctl.8 does not document:$missing"
fi
echo "man: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
