#!/usr/bin/env bash
# Preemption and faults of real jobs (`mpiexec -n 2 lowband train`, diloco between 2 replicas):
#   SIGTERM to mpiexec while every rank waits in a 3-hour exchange over an emulated 100 bit/s
#     link, SIGUSR1 to rank 1 alone: within seconds a checkpoint at the next step boundary that
#     every rank agrees on, exit 0, a line naming the signal, and `--resume auto` ends with the
#     uninterrupted run's model;
#   an emulated 1 bit/s link: the watchdog's error naming the link (exit 2), not a 13-day wait;
#   kill -9 of one rank, 10 times: the job exits non-zero within comm.timeout + 10 s, never
#     hangs, with a message naming the killed process, which the start-up table maps to its rank;
#   SIGSTOP of one rank (a hang), 5 jobs of 2 or 4 ranks, mostly rank 0: the comm watchdog of a
#     peer ends the job (exit 2) within comm.timeout + 10 s, and its message is there every time;
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
run: {name: faults, steps: 1500, out_dir: $tmp/full, log_every: 20, eval_every: 0, checkpoint_every: 0}
$(tiny_model "$tmp")
optimizer: {kind: adamw, lr: 1e-3, warmup: 10}
comm: {timeout: 5s}
sync: {outer: {method: diloco, H: 10}}
topology: {tiers: [{name: world, size: rest, bandwidth: 10Gbit, latency: 10us}]}
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
# Waits (up to 60 s) until file $1 has a line matching $2.
wait_for_line() {
  for _ in $(seq 600); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# Waits at most $2 seconds for job $1, then kills it; sets $status (124: it was killed).
wait_job() {
  for _ in $(seq $(($2 * 10))); do
    if ! kill -0 "$1" 2>/dev/null; then
      wait "$1"
      status=$?
      return
    fi
    sleep 0.1
  done
  kill -KILL "$1"
  wait "$1"
  status=124
}
seconds_since() { echo "$(date +%s.%N) - $1" | bc; }
final_model() { echo "$1/checkpoints/step_00001500/model.safetensors"; }

train >"$tmp/full.out" 2>&1 || fail "uninterrupted run: $(tail -n 3 "$tmp/full.out")"

# ---- preemption: SIGTERM to mpiexec (forwarded to the ranks) while they wait for a slow
# emulated link, SIGUSR1 to rank 1 only (the others learn of it through the stop vote) ----
# At 100 bit/s the outer exchange of step 10 (139 kB) takes 3 hours; comm.timeout lets it.
slow=(--set topology.emulate=true --set topology.tiers.0.bandwidth=100 --set comm.timeout=10h)
for how in mpiexec rank1; do
  dir=$tmp/pre_$how
  if [ "$how" = mpiexec ]; then extra=("${slow[@]}"); else extra=(); fi
  "$mpiexec" -n 2 "$lowband" train "$tmp/run.yaml" --set run.out_dir="$dir" "${extra[@]}" \
    >"$tmp/pre.out" 2>&1 &
  job=$!  # mpiexec itself: it forwards SIGTERM to the ranks
  if [ "$how" = mpiexec ]; then
    # The start-up table's last line, then time to reach step 10's exchange.
    wait_for_line "$tmp/pre.out" '^memory' || fail "$how: the run did not start"
    sleep 2
    sent=$(date +%s.%N)
    kill -TERM "$job"
    signal=SIGTERM
  else
    wait_for_step "$dir" 200 || fail "$how: the run did not start"
    pid=$(sed -n "s/.*rank 1 pid \([0-9]*\).*/\1/p" "$tmp/pre.out" | head -n 1)
    sent=$(date +%s.%N)
    kill -USR1 "$pid"
    signal=SIGUSR1
  fi
  wait_job "$job" 60
  elapsed=$(seconds_since "$sent")
  [ "$status" -eq 0 ] || fail "$how: preempted job exited $status: $(grep -v '^step' "$tmp/pre.out" | tail -n 3)"
  [ "$(echo "$elapsed <= 10" | bc)" -eq 1 ] || fail "$how: the job took ${elapsed}s to stop after $signal"
  grep -q "preempted ($signal) after step" "$tmp/pre.out" || fail "$how: no preemption line: $(tail -n 3 "$tmp/pre.out")"
  if [ "$how" = mpiexec ]; then
    stopped=$(sed -n 's/.*preempted (SIGTERM) after step \([0-9]*\).*/\1/p' "$tmp/pre.out")
    [ "${stopped:-0}" -gt 10 ] || fail "$how: stopped after step ${stopped:-?}, before the slow exchange of step 10"
  fi
  ls "$dir"/checkpoints/step_*/COMPLETE >/dev/null 2>&1 || fail "$how: no complete checkpoint"
  [ -e "$(final_model "$dir")" ] && fail "$how: the run finished before the signal (make it longer)"
  # Resumed without emulation: the link model changes timing only, never values.
  train --set run.out_dir="$dir" --resume auto >"$tmp/resume.out" 2>&1 ||
    fail "$how: resume: $(tail -n 3 "$tmp/resume.out")"
  grep -q "resume: from $dir/checkpoints/step_" "$tmp/resume.out" || fail "$how: resume line missing"
  cmp -s "$(final_model "$tmp/full")" "$(final_model "$dir")" ||
    fail "$how: the resumed run's final model differs from the uninterrupted run's"
  dups=$(grep -o '^{"step":[0-9]*,"loss"' "$dir/metrics.jsonl" | sort | uniq -d | wc -l)
  [ "$dups" -eq 0 ] || fail "$how: $dups steps logged twice in metrics.jsonl"
done

# ---- an emulated link too slow for an exchange: the watchdog's error, not a 13-day wait ----
"$mpiexec" -n 2 "$lowband" train "$tmp/run.yaml" --set run.out_dir="$tmp/slowlink" \
  --set topology.emulate=true --set topology.tiers.0.bandwidth=1 >"$tmp/slowlink.out" 2>&1 &
job=$!
wait_for_line "$tmp/slowlink.out" '^memory' || fail "1 bit/s: the run did not start"
started=$(date +%s.%N)
wait_job "$job" 30
elapsed=$(seconds_since "$started")  # the error comes at the exchange of step 10, at once
[ "$status" -eq 2 ] || fail "1 bit/s: job exited $status (expected 2): $(grep -v '^step' "$tmp/slowlink.out" | tail -n 3)"
grep -Eq "comm watchdog on rank [01]: all-reduce of [0-9]+ bytes on the emulated link 'world' \(1bit/s, latency 10 us\) would complete .* after it was issued, more than comm.timeout 5.0 s" \
  "$tmp/slowlink.out" || fail "1 bit/s: no watchdog message: $(grep -v '^step' "$tmp/slowlink.out" | tail -n 3)"
[ "$(echo "$elapsed <= 15" | bc)" -eq 1 ] || fail "1 bit/s: took ${elapsed}s after start-up (comm.timeout 5 s + 10 s)"

# ---- kill -9 of one rank, 10 times (5 each; each job costs ~8 s, mostly start-up) ----
worst=0
for i in $(seq 10); do
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
echo "kill -9 of one rank: 10 jobs ended, slowest in ${worst}s"

# ---- a hung rank (SIGSTOP): a peer's watchdog ends the job, and its message is there every
# time (with rank 0 stopped, hydra used to drop it in about 1 job of 6) ----
trial=0
for spec in "2 0" "2 1" "2 0" "4 0" "2 0"; do  # ranks, stopped rank
  read -r n victim <<<"$spec"
  trial=$((trial + 1))
  dir=$tmp/hang
  rm -rf "$dir"
  # comm.timeout stays 5 s: a shorter one can end the job at start-up, where ranks that share
  # two busy cores reach the first collective seconds apart.
  timeout 60 "$mpiexec" -n "$n" "$lowband" train "$tmp/run.yaml" --set run.out_dir="$dir" \
    >"$tmp/hang.out" 2>&1 &
  job=$!
  wait_for_step "$dir" 20 || { fail "hang $trial: the run did not start"; continue; }
  pid=$(sed -n "s/.*rank $victim pid \([0-9]*\).*/\1/p" "$tmp/hang.out" | head -n 1)
  start=$(date +%s.%N)
  kill -STOP "$pid"
  wait "$job"
  status=$?
  elapsed=$(seconds_since "$start")
  kill -KILL "$pid" 2>/dev/null
  [ "$status" -eq 2 ] || fail "hang $trial (-n $n, rank $victim stopped): job exited $status (expected 2)"
  grep -Eq "comm watchdog on rank [0-9]+: .* not complete after [0-9.]+ s \(comm.timeout 5.0 s\)" "$tmp/hang.out" ||
    fail "hang $trial (-n $n, rank $victim stopped): no watchdog message: $(grep -v '^step' "$tmp/hang.out" | tail -n 4)"
  [ "$(echo "$elapsed <= 15" | bc)" -eq 1 ] || fail "hang $trial: took ${elapsed}s (comm.timeout 5 s + 10 s)"
done

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
