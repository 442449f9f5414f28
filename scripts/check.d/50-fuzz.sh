#!/bin/sh
# Fuzz smoke: each libFuzzer target (tests/fuzz/) runs for FUZZ_SMOKE seconds (default
# 10) under ASan and UBSan, starting from its committed seed corpus. A crash, leak or
# sanitizer report fails that target. Closing line: "fuzz: N passed, M failed".
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${B:-build}
secs=${FUZZ_SMOKE:-10}
if ! make --no-print-directory -s B="$B" fuzz-bins >/dev/null 2>"$B/fuzz-build.log"; then
	cat "$B/fuzz-build.log"
	echo "fuzz: 0 passed, 1 failed (build)"
	exit 1
fi
passed=0 failed=0
for src in tests/fuzz/fuzz_*.c; do
	t=$(basename "$src" .c); t=${t#fuzz_}
	work="$B/fuzz/smoke-$t"
	rm -rf "$work"; mkdir -p "$work"
	if "$B/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -close_fd_mask=2 \
		-artifact_prefix="$work/" "$work" "tests/fuzz/corpus/$t" >"$work.log" 2>&1; then
		runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$work.log")
		echo "fuzz $t: ok, ${runs:-?} executions in ${secs}s"
		passed=$((passed + 1))
	else
		echo "fuzz $t: FAILED"; tail -40 "$work.log"
		failed=$((failed + 1))
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
