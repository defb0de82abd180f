#!/usr/bin/env bash
# The GPU checks in one run, on a machine with an NVIDIA GPU and either a built tree (run from
# the project root: build/lowband, build/tests/test_cuda*) or an unpacked gpu bundle
# (../shared/gpu/pack.sh build OUT bench: bin/lowband, bin/test_cuda*; source its env.sh first).
#
#   bash scripts/gpu_check.sh [STAGE...]     stages: tests sanitizer quickstart bench profile
#                                             (default: all but profile)
#   tests       the cuda and cuda_sdpa gtest binaries
#   sanitizer   compute-sanitizer memcheck on both (the multi-GB grid tests filtered out)
#   quickstart  configs/quickstart.yaml on the GPU: 300 steps in fp32 against the same run on
#               this machine's CPU (run alongside the GPU stages; val losses within 1e-3 at
#               steps 100, 200, 300), and 800 steps in fp32, tf32 and bf16 (bf16's final val loss
#               within 1% of fp32's)
#   bench       bench/train_vs_pytorch.py --device cuda: lowband and PyTorch side by side
#   profile     ncu's per-kernel summary of a few GPT-2 steps in each precision
# Logs and JSON go to $OUT (the device tool's output folder) or ./gpu-check; the last lines
# printed are one short table. Exit status: the number of failed checks (0: all passed).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 99
out=${OUT:-gpu-check}
mkdir -p "$out"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(tests sanitizer quickstart bench)

bin=""
for d in build bin; do [ -x "$d/lowband" ] && { bin=$d; break; }; done
[ -n "$bin" ] || { echo "gpu_check.sh: no build/lowband or bin/lowband here ($(pwd))" >&2; exit 99; }
tests=$bin/tests
[ -d "$tests" ] || tests=$bin
lowband=$(cd "$bin" && pwd)/lowband
py=python3

failed=0
summary=()
note() { summary+=("$(printf '%-34s %s' "$1" "$2")"); }
check() {  # check NAME STATUS DETAIL
  if [ "$2" -eq 0 ]; then note "$1" "ok   $3"; else note "$1" "FAIL $3"; failed=$((failed + 1)); fi
}
has() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

gpu=0
{ nvidia-smi -L && gpu=1; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } \
  >"$out/gpu.txt" 2>&1
note "gpu" "$(head -1 "$out/gpu.txt")"

val_losses() {  # the val_loss lines of a metrics file as "step loss" pairs
  $py -c 'import json,sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if "val_loss" in d: print(d["step"], d["val_loss"])' "$1"
}

# The CPU reference of the 300-step fp32 quickstart runs on the idle cores while the GPU stages
# run; its val losses are compared at the end of the quickstart stage.
quick300=(configs/quickstart.yaml --set run.steps=300 --set run.eval_every=100)
cpu_ref=""
if has quickstart; then
  rm -rf "$out/quickstart-cpu"
  OMP_NUM_THREADS=$(($(nproc) > 4 ? $(nproc) - 2 : 2)) timeout 1200 "$lowband" train \
    "${quick300[@]}" --set device=cpu --set run.out_dir="$out/quickstart-cpu" \
    >"$out/quickstart-cpu.log" 2>&1 &
  cpu_ref=$!
fi

if has tests; then
  for t in test_cuda test_cuda_sdpa; do
    if [ ! -x "$tests/$t" ]; then check "$t" 1 "missing $tests/$t"; continue; fi
    timeout 600 "$tests/$t" --gtest_color=no >"$out/$t.log" 2>&1
    status=$?
    passed=$(grep -c '^\[       OK \]' "$out/$t.log")
    failed_n=$(grep -c '^\[  FAILED  \] .*(' "$out/$t.log")
    skipped=$(grep -c '^\[  SKIPPED \] .*(' "$out/$t.log")
    # On a GPU machine nothing may skip: a skip there means the tests did not see the GPU.
    [ "$gpu" = 1 ] && [ "$skipped" -gt 0 ] && status=1
    check "$t" "$status" "$passed passed, $failed_n failed, $skipped skipped"
  done
fi

if has sanitizer; then
  if command -v compute-sanitizer >/dev/null; then
    # The grid-stride tests move several GB; under memcheck they would take many minutes.
    heavy='*OverAGrid*:*OverAWarpGrid*:*TallAndWide*:*ManyAndWideRows*:*EmbeddingsMatch*:*Gpt2Shape*'
    for t in test_cuda test_cuda_sdpa; do
      [ -x "$tests/$t" ] || continue
      timeout 600 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$tests/$t" --gtest_color=no --gtest_filter="-$heavy" >"$out/memcheck-$t.log" 2>&1
      status=$?
      errors=$(grep -o 'ERROR SUMMARY: [0-9]* error' "$out/memcheck-$t.log" | tail -1)
      check "memcheck $t" "$status" "${errors:-no summary (see memcheck-$t.log)}"
    done
  else
    check "memcheck" 1 "compute-sanitizer not on PATH"
  fi
fi

if has quickstart; then
  # quickstart NAME PRECISION ARGS...: one GPU run; its val losses in $out/NAME.val.
  quickstart() {
    local name=$1 precision=$2 start status secs tps
    shift 2
    rm -rf "${out:?}/$name"
    start=$(date +%s)
    timeout 600 "$lowband" train "$@" --set device=cuda --set model.precision="$precision" \
      --set run.out_dir="$out/$name" >"$out/$name.log" 2>&1
    status=$?
    secs=$(($(date +%s) - start))
    if [ $status -ne 0 ] || [ ! -f "$out/$name/metrics.jsonl" ]; then
      check "$name" 1 "exit $status after ${secs}s ($name.log)"
      return 1
    fi
    val_losses "$out/$name/metrics.jsonl" >"$out/$name.val"
    tps=$(grep -o '[0-9]* tok/s' "$out/$name.log" | tail -1)
    check "$name" 0 "val loss $(tail -1 "$out/$name.val" | cut -d' ' -f2) after ${secs}s ($tps)"
  }
  quickstart quickstart300-fp32 fp32 "${quick300[@]}"
  for p in fp32 tf32 bf16; do quickstart "quickstart-$p" "$p" configs/quickstart.yaml; done
  # fp32 on the GPU against the CPU, 300 steps.
  if [ -n "$cpu_ref" ]; then
    wait "$cpu_ref"
    status=$?
    if [ $status -eq 0 ] && [ -f "$out/quickstart-cpu/metrics.jsonl" ] &&
      [ -f "$out/quickstart300-fp32.val" ]; then
      val_losses "$out/quickstart-cpu/metrics.jsonl" >"$out/quickstart-cpu.val"
      worst=$(join "$out/quickstart-cpu.val" "$out/quickstart300-fp32.val" |
        awk '{d = $2 - $3; if (d < 0) d = -d; if (d > m) m = d} END {printf "%.2g", m + 0}')
      rows=$(join "$out/quickstart-cpu.val" "$out/quickstart300-fp32.val" | wc -l)
      ok=$(awk -v w="$worst" -v r="$rows" 'BEGIN {print (w <= 1e-3 && r >= 3) ? 0 : 1}')
      check "fp32 val loss == cpu (1e-3)" "$ok" "max |gpu - cpu| $worst over $rows evals"
    else
      check "fp32 val loss == cpu (1e-3)" 1 "the CPU run exited $status (quickstart-cpu.log)"
    fi
  fi
  if [ -f "$out/quickstart-fp32.val" ] && [ -f "$out/quickstart-bf16.val" ]; then
    f32=$(tail -1 "$out/quickstart-fp32.val" | cut -d' ' -f2)
    b16=$(tail -1 "$out/quickstart-bf16.val" | cut -d' ' -f2)
    rel=$(awk -v a="$b16" -v b="$f32" 'BEGIN {printf "%.4f", (a - b) / b}')
    ok=$(awk -v r="$rel" 'BEGIN {print (r <= 0.01 && r >= -0.01) ? 0 : 1}')
    check "bf16 val loss vs fp32 (1%)" "$ok" "bf16 $b16, fp32 $f32: relative difference $rel"
  fi
fi

if has bench; then
  timeout 900 $py bench/train_vs_pytorch.py --device cuda --lowband "$lowband" --steps 10 \
    >"$out/bench.jsonl" 2>"$out/bench.err"
  status=$?
  check "bench" "$status" "$(wc -l <"$out/bench.jsonl") rows (bench.jsonl)"
  while read -r row; do
    note "  $(echo "$row" | $py -c 'import json,sys;d=json.load(sys.stdin);print(d["config"],d["precision"])')" \
      "$(echo "$row" | $py -c 'import json,sys;d=json.load(sys.stdin);print("%.3fx  lowband %.0f  pytorch %.0f tok/s  mfu %.1f%%" % (d["ratio"], d["lowband_tokens_per_s"], d["pytorch_tokens_per_s"], 100 * d["mfu"]))')"
  done <"$out/bench.jsonl"
fi

if has profile; then
  if command -v ncu >/dev/null; then
    for p in fp32 bf16; do
      timeout 600 ncu --print-summary per-kernel --launch-count 1500 "$lowband" bench train \
        --device cuda --model gpt2-1024 --precision $p --steps 1 >"$out/ncu-$p.log" 2>&1
      check "profile $p" $? "ncu-$p.log"
    done
  else
    check "profile" 1 "ncu not on PATH"
  fi
fi

printf '%s\n' "----- gpu_check ($out) -----" "${summary[@]}"
exit "$failed"
