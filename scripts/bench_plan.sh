#!/usr/bin/env bash
# `lowband plan` against measured runs under link emulation: for each method, the plan's bytes
# per tier and step time next to what a 2-rank run over an emulated 100 Mbit/s, 2 ms link
# measures (OMP_NUM_THREADS=1 per rank, one rank per core on a 2-core machine). Prints one JSON
# object per method with the ratios, and a line per method to stderr.
# Usage: scripts/bench_plan.sh [--quick] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
build=${1:-build}
lowband=$build/lowband
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$PWD
# shellcheck source=tests/tiny_run.sh
. tests/tiny_run.sh
tiny_data "$tmp"
steps=$((quick ? 60 : 200))

run_one() {  # name, sync yaml
  local name=$1 sync=$2
  cat >"$tmp/$name.yaml" <<YAML
run: {name: $name, steps: $steps, out_dir: $tmp/$name, log_every: $steps, eval_every: 0, checkpoint_every: 0}
device: cpu
model: {kind: gpt, n_layer: 4, d_model: 128, n_head: 4, seq_len: 128, vocab: 256}
data: {train: $tmp/data/train_*.bin, batch_size: 8}
optimizer: {kind: adamw, lr: 1e-3, warmup: 10}
topology:
  emulate: true
  tiers:
    - {name: wan, size: rest, bandwidth: 100Mbit, latency: 2ms}
sync: $sync
YAML
  "$lowband" plan "$tmp/$name.yaml" --world 2 --json >"$tmp/$name.plan"
  mpiexec -n 2 "$lowband" train "$tmp/$name.yaml" >"$tmp/$name.out" 2>&1 ||
    { cat "$tmp/$name.out" >&2; exit 1; }
  /usr/bin/env python3 - "$name" "$tmp/$name.plan" "$tmp/$name/metrics.jsonl" <<'PY'
import json, sys
name, plan_path, metrics_path = sys.argv[1:]
plan = json.load(open(plan_path))
last = [json.loads(l) for l in open(metrics_path) if '"loss"' in l][-1]
measured_step = last["elapsed_s"] / last["step"]
planned_bytes = sum(t["bytes_per_step"] for t in plan["tiers"]) * last["step"]
measured_bytes = sum(t["bytes"] for t in last["tiers"].values())
out = {"method": name, "predicted_step_s": plan["predicted_step_s"],
       "measured_step_s": round(measured_step, 6),
       "step_time_ratio": round(measured_step / plan["predicted_step_s"], 3),
       "predicted_utilization": plan["predicted_utilization"],
       "planned_bytes": planned_bytes, "counted_bytes": measured_bytes,
       "bytes_ratio": round(measured_bytes / planned_bytes, 4) if planned_bytes else None}
print(json.dumps(out))
print(f"{name}: step {measured_step*1e3:.1f} ms measured vs {plan['predicted_step_s']*1e3:.1f} ms "
      f"planned ({out['step_time_ratio']}x); bytes {out['bytes_ratio']}x", file=sys.stderr)
PY
}

run_one ddp "{outer: {method: ddp}}"
run_one diloco "{outer: {method: diloco, H: 20}}"
run_one streaming "{outer: {method: streaming_diloco, H: 20, fragments: 2, overlap: 1, codec: fp4}}"
run_one co2 "{outer: {method: co2, H: 20}}"

# Memory (plan only, 8 ranks): optimizer + outer state per rank with k ranks per replica
# (zero2 inside, diloco across) against the unsharded k = 1 (ddp inside, one-rank replicas).
for k in 1 2 4; do
  inner=$([ "$k" -eq 1 ] && echo ddp || echo zero2)
  cat >"$tmp/mem$k.yaml" <<YAML
run: {name: mem, steps: 100}
device: cpu
model: {kind: gpt, n_layer: 4, d_model: 128, n_head: 4, seq_len: 128, vocab: 256}
data: {train: $tmp/data/train_*.bin, batch_size: 8}
topology:
  tiers:
    - {name: node, size: $k, bandwidth: 100Gbit, latency: 5us}
    - {name: wan, size: rest, bandwidth: 100Mbit, latency: 2ms}
sync: {inner: {method: $inner}, outer: {method: diloco, tier: wan, H: 20}}
YAML
  "$lowband" plan "$tmp/mem$k.yaml" --world 8 --step-time 0.1 --json >"$tmp/mem$k.plan"
done
/usr/bin/env python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
state = lambda k: (lambda m: m["optimizer"] + m["outer_state"])(
    json.load(open(f"{tmp}/mem{k}.plan"))["memory_per_rank_bytes"])
base = state(1)
for k in (2, 4):
    ratio = state(k) / base
    print(json.dumps({"memory_k": k, "optimizer_plus_outer_bytes": state(k), "unsharded_bytes": base,
                      "ratio": round(ratio, 4), "target": round(1 / k * 1.01, 4),
                      "meets_target": ratio <= 1 / k * 1.01}))
PY
