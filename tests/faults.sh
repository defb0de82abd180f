#!/usr/bin/env bash
# Preemption and faults of real jobs (`mpiexec -n 2 lowband train`, diloco between 2 replicas):
#   SIGTERM to mpiexec, SIGUSR1 to every rank (what Slurm's --signal does): a checkpoint at the
#     next step boundary, exit 0, and `--resume auto` ends with the uninterrupted run's model;
#   kill -9 of one rank, 20 times: the job exits non-zero within comm.timeout + 10 s, never
#     hangs, with a message naming the killed process, which the start-up table maps to its rank;
#   SIGSTOP of one rank (a hang): the comm watchdog aborts the job within comm.timeout + 10 s;
#   a corrupt token shard: exit 1, one line naming the file and byte;
#   a full disk while checkpointing (root only: a small tmpfs in a private mount namespace): a
#     clear error, the previous checkpoint intact and resumable.
# Usage: faults.sh LOWBAND MPIEXEC
set -u
lowband=$1
mpiexec=$2
src=${LOWBAND_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'pkill -KILL -f "$tmp/" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# shellcheck source=tests/tiny_run.sh
. "$(dirname "$0")/tiny_run.sh"
tiny_data "$tmp" || fail "prepare_text.py"
cat >"$tmp/run.yaml" <<YAML
run: {name: faults, steps: 3000, out_dir: $tmp/full, log_every: 20, eval_every: 0, checkpoint_every: 0}
$(tiny_model "$tmp")
optimizer: {kind: adamw, lr: 1e-3, warmup: 10}
comm: {timeout: 5s}
sync: {outer: {method: diloco, H: 10}}
YAML
train() { "$mpiexec" -n 2 "$lowband" train "$tmp/run.yaml" "$@"; }

# Waits (up to 60 s) until the run in $1 has logged step >= $2.
wait_for_step() {
  for _ in $(seq 600); do
    local s
    s=$(grep -o '^{"step":[0-9]*,"loss"' "$1/metrics.jsonl" 2>/dev/null | tail -n 1 | tr -dc 0-9)
    [ -n "$s" ] && [ "$s" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}
final_model() { echo "$1/checkpoints/step_00003000/model.safetensors"; }

train >"$tmp/full.out" 2>&1 || fail "uninterrupted run: $(tail -n 3 "$tmp/full.out")"

# ---- preemption: SIGTERM to mpiexec (forwarded to the ranks), SIGUSR1 to each rank ----
for how in mpiexec ranks; do
  dir=$tmp/pre_$how
  "$mpiexec" -n 2 "$lowband" train "$tmp/run.yaml" --set run.out_dir="$dir" >"$tmp/pre.out" 2>&1 &
  job=$!  # mpiexec itself: it forwards SIGTERM to the ranks
  wait_for_step "$dir" 200 || fail "$how: the run did not start"
  if [ "$how" = mpiexec ]; then
    kill -TERM "$job"
    signal=SIGTERM
  else
    pkill -USR1 -f -- "--set run.out_dir=$dir"
    signal=SIGUSR1
  fi
  wait "$job"
  status=$?
  [ "$status" -eq 0 ] || fail "$how: preempted job exited $status: $(tail -n 3 "$tmp/pre.out")"
  grep -q "preempted ($signal) after step" "$tmp/pre.out" || fail "$how: no preemption line: $(tail -n 3 "$tmp/pre.out")"
  ls "$dir"/checkpoints/step_*/COMPLETE >/dev/null 2>&1 || fail "$how: no complete checkpoint"
  [ -e "$(final_model "$dir")" ] && fail "$how: the run finished before the signal (make it longer)"
  train --set run.out_dir="$dir" --resume auto >"$tmp/resume.out" 2>&1 ||
    fail "$how: resume: $(tail -n 3 "$tmp/resume.out")"
  grep -q "resume: from $dir/checkpoints/step_" "$tmp/resume.out" || fail "$how: resume line missing"
  cmp -s "$(final_model "$tmp/full")" "$(final_model "$dir")" ||
    fail "$how: the resumed run's final model differs from the uninterrupted run's"
  dups=$(grep -o '^{"step":[0-9]*,"loss"' "$dir/metrics.jsonl" | sort | uniq -d | wc -l)
  [ "$dups" -eq 0 ] || fail "$how: $dups steps logged twice in metrics.jsonl"
done

# ---- kill -9 of one rank, 20 times ----
worst=0
for i in $(seq 20); do
  dir=$tmp/kill
  rm -rf "$dir"
  start=$(date +%s.%N)
  timeout 60 "$mpiexec" -n 2 "$lowband" train "$tmp/run.yaml" --set run.out_dir="$dir" >"$tmp/kill.out" 2>&1 &
  job=$!
  wait_for_step "$dir" 20 || { fail "kill $i: the run did not start"; break; }
  victim_rank=$((i % 2))
  pid=$(sed -n "s/.*rank $victim_rank pid \([0-9]*\).*/\1/p" "$tmp/kill.out" | head -n 1)
  [ -n "$pid" ] || { fail "kill $i: no pid of rank $victim_rank in the start-up table"; break; }
  kill -KILL "$pid"
  wait "$job"
  status=$?
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  [ "$status" -ne 0 ] || fail "kill $i: job exited 0"
  [ "$status" -ne 124 ] || { fail "kill $i: job hung"; break; }
  # The launcher names a process of the job by pid: hydra's "PID n ... signal 9" for the first
  # process it saw end (the killed one, or sometimes its peer it was already killing), or UCX's
  # "process_vm_readv(pid=n ...)" when the survivor hits the broken link first. The start-up
  # table maps every pid to its rank.
  named=0
  for p in $(grep -o 'rank [0-9]* pid [0-9]*' "$tmp/kill.out" | awk '{print $4}'); do
    grep -Eq "PID $p |pid=$p[^0-9]" "$tmp/kill.out" && named=1
  done
  [ "$named" -eq 1 ] ||
    fail "kill $i: no message naming a pid of the job (killed $pid, rank $victim_rank): $(grep -v '^step' "$tmp/kill.out" | tail -n 12)"
  worst=$(echo "if ($elapsed > $worst) $elapsed else $worst" | bc)
done
[ "$(echo "$worst <= 15" | bc)" -eq 1 ] || fail "kill -9: slowest exit took ${worst}s (timeout 5 s + 10 s)"
echo "kill -9 of one rank: 20 jobs ended, slowest in ${worst}s"

# ---- a hung rank: the watchdog ends the job ----
dir=$tmp/hang
start=$(date +%s)
timeout 60 "$mpiexec" -n 2 "$lowband" train "$tmp/run.yaml" --set run.out_dir="$dir" >"$tmp/hang.out" 2>&1 &
job=$!
wait_for_step "$dir" 20 || fail "hang: the run did not start"
pid=$(sed -n "s/.*rank 1 pid \([0-9]*\).*/\1/p" "$tmp/hang.out" | head -n 1)
kill -STOP "$pid"
wait "$job"
status=$?
elapsed=$(($(date +%s) - start))
kill -KILL "$pid" 2>/dev/null
[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || fail "hang: job exited $status"
grep -q "comm watchdog on rank 0: .* not complete after" "$tmp/hang.out" ||
  fail "hang: no watchdog message: $(tail -n 5 "$tmp/hang.out")"
[ "$elapsed" -le 25 ] || fail "hang: took ${elapsed}s"

# ---- a corrupt token shard ----
cp "$tmp/data/train_000000.bin" "$tmp/bad.bin"
printf '\xff\xff' | dd of="$tmp/bad.bin" bs=1 seek=2000 conv=notrunc 2>/dev/null
"$lowband" train "$tmp/run.yaml" --set run.out_dir="$tmp/bad" --set data.train="$tmp/bad.bin" >"$tmp/bad.out" 2>&1
status=$?
[ "$status" -eq 1 ] || fail "corrupt shard: exit status $status"
grep -q "bad.bin: byte 1024+2\*488=2000: token 65535 >= vocab 256" "$tmp/bad.out" ||
  fail "corrupt shard message: $(cat "$tmp/bad.out")"

# ---- a full disk while checkpointing ----
if [ "$(id -u)" -eq 0 ] && unshare -m true 2>/dev/null; then
  # 2 MiB: the checkpoint of step 100 (about 1.4 MB) fits, the one of step 200 does not.
  unshare -m bash -c "
    mkdir -p '$tmp/disk' && mount -t tmpfs -o size=2m tmpfs '$tmp/disk' || exit 99
    '$mpiexec' -n 2 '$lowband' train '$tmp/run.yaml' --set run.out_dir='$tmp/disk/run' \
      --set run.steps=300 --set run.checkpoint_every=100 >'$tmp/disk.out' 2>&1
    echo \$? >'$tmp/disk.status'
    ls '$tmp/disk/run/checkpoints' >'$tmp/disk.ls'
    cp -r '$tmp/disk/run' '$tmp/disk_copy'
  "
  if [ "$?" -eq 99 ]; then
    echo "disk full: skipped (cannot mount a tmpfs here)"
  else
    [ "$(sed -n 1p "$tmp/disk.status")" -ne 0 ] || fail "disk full: the run exited 0"
    grep -q "cannot write .*step_00000200.*No space left on device" "$tmp/disk.out" ||
      fail "disk full message: $(grep -v '^step' "$tmp/disk.out" | tail -n 20)"
    [ "$(cat "$tmp/disk.ls")" = step_00000100 ] || fail "disk full: checkpoints left: $(cat "$tmp/disk.ls")"
    # The run directory, moved to a disk with room, resumes from the intact checkpoint.
    train --set run.out_dir="$tmp/disk_copy" --set run.steps=300 --resume auto >"$tmp/disk_resume.out" 2>&1 &&
      grep -q "resume: from $tmp/disk_copy/checkpoints/step_00000100" "$tmp/disk_resume.out" ||
      fail "disk full: resume from the intact checkpoint: $(tail -n 3 "$tmp/disk_resume.out")"
  fi
else
  echo "disk full: skipped (needs root and unshare -m)"
fi

[ "$failures" -eq 0 ] && echo "faults: all checks passed"
exit $((failures > 0))
