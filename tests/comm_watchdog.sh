#!/usr/bin/env bash
# One rank skips a collective: every rank must exit non-zero within timeout (2 s) + 10 s, with
# the watchdog's message naming the op, the communicator and its ranks.
# Usage: comm_watchdog.sh MPIEXEC PROBE
set -u
mpiexec=$1
probe=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s)
timeout 60 "$mpiexec" -n 2 "$probe" >"$out" 2>&1
status=$?
elapsed=$(( $(date +%s) - start ))
fail=0
[ "$status" -ne 0 ] || { echo "FAIL: job exited 0"; fail=1; }
[ "$status" -ne 124 ] || { echo "FAIL: job hung (killed after 60 s)"; fail=1; }
[ "$elapsed" -le 12 ] || { echo "FAIL: took ${elapsed}s, more than timeout + 10 s"; fail=1; }
grep -q "comm watchdog on rank 0: all-reduce of 1 elements on mpi(world) (world ranks 0,1) not complete after" "$out" ||
  { echo "FAIL: watchdog message missing:"; cat "$out"; fail=1; }
[ "$fail" -eq 0 ] && echo "comm_watchdog: aborted in ${elapsed}s with status $status"
exit "$fail"
