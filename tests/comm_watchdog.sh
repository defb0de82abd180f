#!/usr/bin/env bash
# One rank skips a collective: every rank must exit 2 within timeout (2 s) + 10 s, with the
# watchdog's message naming the op, the communicator and its ranks. 5 jobs: the message must
# reach the output every time (hydra used to drop an aborting rank's last lines now and then).
# Usage: comm_watchdog.sh MPIEXEC PROBE
set -u
mpiexec=$1
probe=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail=0
for trial in 1 2 3 4 5; do
  start=$(date +%s)
  timeout 60 "$mpiexec" -n 2 "$probe" >"$out" 2>&1
  status=$?
  elapsed=$(($(date +%s) - start))
  [ "$status" -ne 124 ] || { echo "FAIL: job $trial hung (killed after 60 s)"; fail=1; }
  [ "$status" -eq 2 ] || { echo "FAIL: job $trial exited $status, not 2"; fail=1; }
  [ "$elapsed" -le 12 ] || { echo "FAIL: job $trial took ${elapsed}s, more than timeout + 10 s"; fail=1; }
  grep -q "comm watchdog on rank 0: all-reduce of 1 elements on mpi(world) (world ranks 0,1) not complete after" "$out" ||
    { echo "FAIL: job $trial: watchdog message missing:"; cat "$out"; fail=1; }
  [ "$fail" -eq 0 ] || break
done
[ "$fail" -eq 0 ] && echo "comm_watchdog: 5 jobs aborted with the message, the last in ${elapsed}s"
exit "$fail"
