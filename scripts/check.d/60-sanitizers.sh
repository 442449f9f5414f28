#!/bin/sh
# The unit and integration suites again, against an ASan + UBSan + LeakSanitizer
# build of all three programs (build/asan). Sanitizer reports are written to files
# (log_path), so a report from a daemon whose stderr goes to a log is not missed: any
# report fails the run. Closing line: "sanitizers: N passed, M failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${B:-build}
A="$B/asan"
if ! make --no-print-directory -s -j"${JOBS:-2}" B="$B" sanitize >"$B/asan-build.log" 2>&1; then
	tail -30 "$B/asan-build.log"
	echo "sanitizers: 0 passed, 1 failed (build)"
	exit 1
fi
reports="$(pwd)/$A/reports"
rm -rf "$reports"; mkdir -p "$reports"
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0:exitcode=23"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$(pwd)/scripts/lsan.supp"
passed=0 failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in "$A"/tests/check_*; do
	[ -x "$t" ] || continue
	"$t" >"$out" 2>&1
	line=$(grep -E '^[0-9]+%: Checks: ' "$out" | tail -1)
	if [ -z "$line" ]; then
		echo "asan unit $(basename "$t"): no result"; tail -20 "$out"
		failed=$((failed + 1)); continue
	fi
	n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
	f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
	e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
	echo "asan unit $(basename "$t"): $line"
	[ $((f + e)) -gt 0 ] && grep -E ':[EF]:' "$out" | head -20
	passed=$((passed + n - f - e)); failed=$((failed + f + e))
done
RV_BIN="$(pwd)/$A/bin" RV_SANITIZED=1 python3 tests/integration/run.py >"$out" 2>&1
line=$(grep -E '^integration: [0-9]+ passed' "$out" | tail -1)
if [ -z "$line" ]; then
	tail -30 "$out"; failed=$((failed + 1))
else
	echo "asan $line"
	# a failure is reported whole, as in the plain run: every traceback, the
	# log tails of the processes it ran, and any leaked process
	if ! echo "$line" | grep -q ' 0 failed'; then
		grep -E '\.\.\. (FAIL|ERROR)$' "$out"
		sed -n '/^======================================================================$/,/^integration: /p' \
			"$out" | head -1500
		grep -A20 '^LEAK:' "$out"
	fi
	p=$(echo "$line" | sed -E 's/^integration: ([0-9]+) passed.*/\1/')
	f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
	passed=$((passed + p)); failed=$((failed + f))
fi
# every report file is a finding (a confined listener opens its report file
# before its chroot, so an empty one is no report)
n=$(find "$reports" -type f -size +0 | wc -l)
if [ "$n" -gt 0 ]; then
	echo "sanitizer reports: $n"
	for r in $(find "$reports" -type f -size +0 | head -5); do echo "== $r"; head -40 "$r"; done
	failed=$((failed + 1))
else
	echo "sanitizer reports: none"
	passed=$((passed + 1))
fi
echo "sanitizers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
