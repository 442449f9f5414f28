#!/bin/sh
# Fuzz smoke: each libFuzzer target (tests/fuzz/) runs for FUZZ_SMOKE seconds (default
# 10) under ASan and UBSan, JOBS of them at a time, starting from its committed seed
# corpus. A crash, leak or sanitizer report fails that target. Closing line:
# "fuzz: N passed, M failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${B:-build}
secs=${FUZZ_SMOKE:-10}
if ! make --no-print-directory -s -j"${JOBS:-2}" B="$B" fuzz-bins >/dev/null \
	2>"$B/fuzz-build.log"; then
	cat "$B/fuzz-build.log"
	echo "fuzz: 0 passed, 1 failed (build)"
	exit 1
fi
# the targets run JOBS at a time (one core each), every one for its full time
smoke() {	# target: its verdict line in $B/fuzz/smoke-TARGET.result
	t=$1 work="$B/fuzz/smoke-$1"
	rm -rf "$work"; mkdir -p "$work"
	if "$B/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -close_fd_mask=2 \
		-artifact_prefix="$work/" "$work" "tests/fuzz/corpus/$t" >"$work.log" 2>&1; then
		runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$work.log")
		echo "ok, ${runs:-?} executions in ${secs}s" >"$work.result"
	else
		echo "FAILED" >"$work.result"
	fi
}
targets=""
for src in tests/fuzz/fuzz_*.c; do
	t=$(basename "$src" .c); targets="$targets ${t#fuzz_}"
done
n=0
for t in $targets; do
	smoke "$t" &
	n=$((n + 1))
	[ $((n % ${JOBS:-2})) -eq 0 ] && wait
done
wait
passed=0 failed=0
for t in $targets; do
	r=$(cat "$B/fuzz/smoke-$t.result" 2>/dev/null || echo "FAILED (no result)")
	echo "fuzz $t: $r"
	case $r in
	ok,*) passed=$((passed + 1)) ;;
	*) tail -40 "$B/fuzz/smoke-$t.log"; failed=$((failed + 1)) ;;
	esac
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
