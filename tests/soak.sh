#!/usr/bin/env bash
# The fault tests, N times in a row, with every core kept busy by `yes` (a noisy CI machine).
# Usage: tests/soak.sh [runs] [pytest args...]   (make soak RUNS=10)
# Prints one line per run and the count at the end; exits non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
shift || true
tests=(tests/e2e/test_faults*.py)
load=()
for _ in $(seq "$(nproc)"); do yes > /dev/null & load+=($!); done
trap 'kill "${load[@]}" 2>/dev/null' EXIT
passed=0
for i in $(seq "$runs"); do
    start=$SECONDS
    if .venv/bin/pytest -q -p no:cacheprovider "${tests[@]}" "$@" > "/tmp/pgvault-soak-$i.log" 2>&1; then
        passed=$((passed + 1)); result=passed
    else
        result="FAILED (log: /tmp/pgvault-soak-$i.log)"
    fi
    echo "run $i/$runs: $result, $((SECONDS - start)) s, $(tail -1 "/tmp/pgvault-soak-$i.log")"
done
echo "fault tests under load: $passed of $runs runs passed"
[ "$passed" = "$runs" ]
