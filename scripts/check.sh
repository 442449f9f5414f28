#!/bin/sh
# Runs every test suite and totals them: Check unit binaries, the integration suite
# (real binaries, real clients), and whatever else is listed below. The last line is
# "N passed, M failed" over all of them; a suite that crashes or prints no count is
# counted as one failure, so a skipped or broken suite cannot hide.
set -u
cd "$(dirname "$0")/.." || exit 2
passed=0 failed=0 skipped=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

count_check() {	# "100%: Checks: 12, Failures: 0, Errors: 0"
	line=$(grep -E '^[0-9]+%: Checks: ' "$out" | tail -1)
	if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
	n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
	f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
	e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
	passed=$((passed + n - f - e)); failed=$((failed + f + e))
}

count_plain() {	# "suite: N passed, M failed, K skipped"
	line=$(grep -E '^[a-z-]+: [0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
	if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
	p=$(echo "$line" | sed -E 's/^[a-z-]+: ([0-9]+) passed.*/\1/')
	f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
	s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
}

for t in "${B:-build}"/tests/check_*; do
	[ -x "$t" ] || continue
	echo "== unit: $(basename "$t")"
	"$t" >"$out" 2>&1
	cat "$out"
	count_check
done

echo "== integration"
python3 tests/integration/run.py 2>&1 | tee "$out"
count_plain

for s in scripts/check.d/*.sh; do
	[ -f "$s" ] || continue
	echo "== $(basename "$s" .sh)"
	sh "$s" 2>&1 | tee "$out"
	count_plain
done

echo
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
