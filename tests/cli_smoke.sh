#!/usr/bin/env bash
# End-to-end checks of the real binary: exit statuses and messages, as a user sees them.
# Usage: cli_smoke.sh LOWBAND [MPIEXEC]
set -u
lowband=$1
mpiexec=${2:-}
src=${LOWBAND_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# All shipped configs validate, as a singleton.
"$lowband" validate "$src"/configs/*.yaml >"$tmp/out" 2>&1 || fail "validate configs/*.yaml: $(cat "$tmp/out")"

# A misspelled key on line 3: key path, :3:, a suggestion, exit status 1.
printf 'run:\n  name: x\n  stepz: 5\nmodel: {kind: gpt}\ndata: {train: a}\n' >"$tmp/bad.yaml"
"$lowband" validate "$tmp/bad.yaml" >"$tmp/out" 2>"$tmp/err"
status=$?
[ "$status" -eq 1 ] || fail "misspelled key: exit status $status, expected 1"
grep -q "bad.yaml:3:3: run.stepz: unknown key (did you mean 'steps'?)" "$tmp/err" ||
  fail "misspelled key message: $(cat "$tmp/err")"

"$lowband" --version | grep -q '^lowband ' || fail "--version"
"$lowband" >/dev/null 2>&1
[ $? -eq 1 ] || fail "no subcommand must exit 1"

if [ -n "$mpiexec" ]; then
  # Under mpiexec the job's world size is checked and only rank 0 prints. Every shipped
  # config fits 4 ranks; quickstart and ddp fit 2.
  "$mpiexec" -n 4 "$lowband" validate "$src"/configs/*.yaml >"$tmp/out" 2>&1 ||
    fail "mpiexec -n 4 validate: $(cat "$tmp/out")"
  lines=$(grep -c ': ok: ' "$tmp/out")
  configs=$(ls "$src"/configs/*.yaml | wc -l)
  [ "$lines" -eq "$configs" ] || fail "mpiexec -n 4: $lines ok lines for $configs configs (only rank 0 may print)"
  "$mpiexec" -n 2 "$lowband" validate "$src/configs/quickstart.yaml" "$src/configs/ddp.yaml" >"$tmp/out" 2>&1 ||
    fail "mpiexec -n 2 validate: $(cat "$tmp/out")"
  [ "$(grep -c ': ok: ' "$tmp/out")" -eq 2 ] || fail "mpiexec -n 2 output: $(cat "$tmp/out")"
  # 3 ranks cannot be split into node tiers of 2: every rank fails, rank 0 says why.
  "$mpiexec" -n 3 "$lowband" validate "$src/configs/ddp.yaml" >"$tmp/out" 2>&1
  status=$?
  [ "$status" -eq 1 ] || fail "mpiexec -n 3 ddp.yaml: exit status $status, expected 1"
  [ "$(grep -c 'do not divide the world of 3 ranks' "$tmp/out")" -eq 1 ] ||
    fail "mpiexec -n 3 message: $(cat "$tmp/out")"

  # Multi-rank training end to end: 2 replicas of 2 ranks, streaming DiLoCo with overlap and
  # fp4 over an emulated slow tier; rank 0 alone writes metrics with per-tier bytes and outer
  # steps per fragment (fragment 0 syncs at 8, 16, 24; fragment 1 at 12, 20 and in the flush
  # after the last step).
  # shellcheck source=tests/tiny_run.sh
  . "$(dirname "$0")/tiny_run.sh"
  tiny_data "$tmp" || fail "prepare_text.py"
  cat >"$tmp/multi.yaml" <<YAML
run: {name: multi, steps: 24, out_dir: $tmp/multi, log_every: 8, eval_every: 12, eval_batches: 2}
$(tiny_model "$tmp")
optimizer: {kind: adamw, lr: 1e-3, warmup: 4}
topology:
  emulate: true
  tiers:
    - {name: node, size: 2, bandwidth: 10Gbit, latency: 10us}
    - {name: wan, size: rest, bandwidth: 100Mbit, latency: 2ms}
sync:
  outer: {method: streaming_diloco, tier: wan, H: 8, fragments: 2, overlap: 1, codec: fp4}
YAML
  OMP_NUM_THREADS=1 "$mpiexec" -n 4 "$lowband" train "$tmp/multi.yaml" >"$tmp/out" 2>&1 ||
    fail "mpiexec -n 4 train: $(cat "$tmp/out")"
  [ "$(grep -c '^done: 24 steps' "$tmp/out")" -eq 1 ] || fail "multi-rank train output: $(cat "$tmp/out")"
  grep -q '^sync *2 replica(s) of 2 rank(s)' "$tmp/out" || fail "start-up table: $(cat "$tmp/out")"
  last=$(grep '"step":24,"loss"' "$tmp/multi/metrics.jsonl")
  case "$last" in
    *'"wan":{"bytes_per_step":'*'"outer_steps":[3,3]'*) ;;
    *) fail "metrics.jsonl last line: $last" ;;
  esac

  # scripts/plot_metrics.py draws the run (when Debian's matplotlib is there).
  if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    /usr/bin/python3 "$src/scripts/plot_metrics.py" "$tmp/multi" --labels multi --out "$tmp/m.png" >"$tmp/out" 2>&1 &&
      [ -s "$tmp/m.png" ] || fail "plot_metrics.py: $(cat "$tmp/out")"
  fi

  # lowband plan of the same config: one JSON object with the documented keys; the world must
  # fit the tiers.
  "$lowband" plan "$tmp/multi.yaml" --world 4 --json >"$tmp/plan" 2>&1 || fail "plan: $(cat "$tmp/plan")"
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$tmp/plan" || fail "plan --json is not JSON: $(cat "$tmp/plan")"
  for key in world replicas tiers name bytes_per_step memory_per_rank_bytes params grads optimizer \
    outer_state activations predicted_step_s predicted_utilization; do
    grep -q "\"$key\":" "$tmp/plan" || fail "plan --json lacks $key: $(cat "$tmp/plan")"
  done
  # --auto writes a chosen config that validates, and never over an existing file.
  "$lowband" plan "$tmp/multi.yaml" --world 4 --step-time 0.01 --auto --out "$tmp/auto.yaml" >"$tmp/out" 2>&1 &&
    grep -q '^auto ' "$tmp/out" && "$lowband" validate --world 4 "$tmp/auto.yaml" >/dev/null 2>&1 ||
    fail "plan --auto: $(cat "$tmp/out")"
  "$lowband" plan "$tmp/multi.yaml" --world 4 --auto --out "$tmp/auto.yaml" >"$tmp/out" 2>&1
  [ $? -eq 1 ] && grep -q 'already exists' "$tmp/out" || fail "plan --auto over an existing file: $(cat "$tmp/out")"
  "$lowband" plan "$tmp/multi.yaml" --world 3 >"$tmp/out" 2>&1
  [ $? -eq 1 ] && grep -q 'do not divide the world of 3 ranks' "$tmp/out" || fail "plan --world 3: $(cat "$tmp/out")"
fi

if [ "$failures" -eq 0 ]; then echo "cli_smoke: all checks passed"; fi
exit $((failures > 0))
