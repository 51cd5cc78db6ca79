#!/usr/bin/env bash
# Runs each test program, prints one line per program with its time, and
# ends with the sum over all test cases: "N passed, N failed, N skipped".
# A program that dies before CMocka's summary counts as one failed case.
set -u
passed=0 failed=0 skipped=0 bad_programs=()
logdir=${TEST_LOG_DIR:-build/test-logs}
mkdir -p "$logdir"
for t in "$@"; do
	name=$(basename "$t")
	log="$logdir/$name.log"
	start=$(date +%s.%N)
	"$t" >"$log" 2>&1
	rc=$?
	secs=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
	s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ]; then
		printf '  PASS  %-28s %3d cases  %6.2fs\n' "$name" "$p" "$secs"
	else
		printf '  FAIL  %-28s %3d failed %6.2fs  (exit %d, log %s)\n' "$name" "$f" "$secs" "$rc" "$log"
		bad_programs+=("$log")
	fi
done
for log in "${bad_programs[@]}"; do
	echo "---- $log"
	tail -n 40 "$log"
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
