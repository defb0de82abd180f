#!/usr/bin/env bash
# One run per run directory, with real processes (a lock is per process): a second `train` and
# a `--resume auto` on the directory of a run still training are refused with the holder's pid
# and host, and leave its files alone; after the holder is killed (SIGKILL: no clean-up), the
# next run says it takes the dead run's lock over and trains.
# Usage: run_dir_lock.sh LOWBAND
set -u
lowband=$1
src=${LOWBAND_SOURCE_DIR:?}
tmp=$(mktemp -d)
first=""
trap '[ -n "$first" ] && kill -9 "$first" 2>/dev/null; rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# shellcheck source=tests/tiny_run.sh
. "$src/tests/tiny_run.sh"
export OMP_NUM_THREADS=1

tiny_data "$tmp"
{
  echo "run: {name: locked, steps: 100000, out_dir: $tmp/run, log_every: 1, eval_every: 0,"
  echo "      checkpoint_every: 0}"
  tiny_model "$tmp"
} >"$tmp/run.yaml"

"$lowband" train "$tmp/run.yaml" >"$tmp/first.out" 2>&1 &
first=$!
for _ in $(seq 1 600); do  # until it trains (its first metrics line)
  [ -s "$tmp/run/metrics.jsonl" ] && break
  sleep 0.1
done
[ -s "$tmp/run/metrics.jsonl" ] || fail "the first run did not start: $(cat "$tmp/first.out")"
host=$(hostname)

for args in "" "--resume auto"; do
  # shellcheck disable=SC2086
  timeout 60 "$lowband" train "$tmp/run.yaml" $args >"$tmp/second.out" 2>"$tmp/second.err"
  status=$?
  [ "$status" -eq 1 ] || fail "second run ($args): exit $status, expected 1"
  grep -q "run.out_dir: $tmp/run is in use by another lowband run (pid $first on host $host since" \
    "$tmp/second.err" || fail "second run ($args) message: $(cat "$tmp/second.err")"
  [ "$(wc -l <"$tmp/second.err")" -eq 1 ] || fail "second run ($args): not one line"
done
kill -0 "$first" 2>/dev/null || fail "the first run died: $(cat "$tmp/first.out")"

kill -9 "$first"
wait "$first" 2>/dev/null
first=""
timeout 60 "$lowband" train "$tmp/run.yaml" --resume auto --set run.steps=2 >"$tmp/third.out" 2>&1
status=$?
[ "$status" -eq 0 ] || fail "run after the kill: exit $status: $(cat "$tmp/third.out")"
grep -q "was left locked by a run that is no longer running (pid [0-9]* on host $host since" \
  "$tmp/third.out" || fail "no stale-lock line: $(cat "$tmp/third.out")"
[ -s "$tmp/run/lowband.lock" ] && fail "the lock file still names a holder after a clean end"

if [ "$failures" -ne 0 ]; then
  echo "run_dir_lock: $failures failure(s)"
  exit 1
fi
echo "run_dir_lock: ok"
