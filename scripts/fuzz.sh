#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ with clang (ASan + UBSan) in ./build-fuzz and runs each
# for SECONDS (default 20; run them for 10 minutes or more by hand: scripts/fuzz.sh 600) from a
# seed corpus: the shipped configs, a token shard, IDX images and labels (plain and gzip), a
# checkpoint state file and marker. The corpus grows in build-fuzz/corpus/; a finding (crash,
# leak, timeout, memory over -rss_limit_mb) is saved in build-fuzz/findings/ and makes the script
# exit 1. Prints one line per harness with its executions.
# Usage: scripts/fuzz.sh [SECONDS] [fuzz_config|fuzz_token_shard|fuzz_idx|fuzz_checkpoint ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_config fuzz_token_shard fuzz_idx fuzz_checkpoint)

if [ ! -f build-fuzz/build.ninja ]; then
  CXX=clang++ meson setup build-fuzz -Dfuzz=true -Dcuda=disabled -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C build-fuzz "${targets[@]/#/fuzz/}" >build-fuzz/build.log 2>&1 || { cat build-fuzz/build.log; exit 1; }

seeds=build-fuzz/seeds
mkdir -p "$seeds"/fuzz_config "$seeds"/fuzz_token_shard "$seeds"/fuzz_idx "$seeds"/fuzz_checkpoint \
  build-fuzz/findings
cp configs/*.yaml "$seeds/fuzz_config/"
/usr/bin/env python3 - "$seeds" <<'PY'
import gzip, struct, sys, zlib
seeds = sys.argv[1]
# A token shard of 64 byte tokens (llm.c header: magic, version, count, then 253 zeros).
tokens = list(range(64))
with open(f"{seeds}/fuzz_token_shard/small.bin", "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, len(tokens), *([0] * 253)))
    f.write(struct.pack(f"<{len(tokens)}H", *tokens))
# IDX images (3 of 4x4) and labels, plain and gzip (big-endian header: magic, dims).
images = struct.pack(">4I", 0x803, 3, 4, 4) + bytes(range(48))
labels = struct.pack(">2I", 0x801, 3) + bytes([0, 7, 9])
for name, data in {"images": images, "labels": labels}.items():
    with open(f"{seeds}/fuzz_idx/{name}.idx", "wb") as f:
        f.write(data)
    with open(f"{seeds}/fuzz_idx/{name}.idx.gz", "wb") as f:
        f.write(gzip.compress(data, mtime=0))
# A rank state (runtime/state_dict.h) with a float entry and an int64 entry, and a marker.
entries = sorted({"model.params": struct.pack("<4f", 1, 2, 3, 4),
                  "trainer.step": struct.pack("<q", 500)}.items())
payload = b"".join(struct.pack("<I", len(k)) + k.encode() + struct.pack("<Q", len(v)) + v
                   for k, v in entries)
header = b"LBSTATE\0" + struct.pack("<IIQII", 1, len(entries), len(payload),
                                    zlib.crc32(payload), 0)
with open(f"{seeds}/fuzz_checkpoint/rank.state", "wb") as f:
    f.write(header + payload)
with open(f"{seeds}/fuzz_checkpoint/COMPLETE", "w") as f:
    f.write("lowband-checkpoint 2\nstep 500\nworld 2\nlayout world\t2\nlayout replicas\t2\n"
            "layout outer\tdiloco\nlayout wan gradients\tint8 with error feedback\n"
            "file model.safetensors 140904 03ef6d07\nfile rank_00000.state 694602 25f8f4e1\n")
PY

status=0
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  log="build-fuzz/$t.log"
  if ./build-fuzz/fuzz/"$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
      -rss_limit_mb=2048 -artifact_prefix="build-fuzz/findings/$t-" \
      "build-fuzz/corpus/$t" "$seeds/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$t: ${runs:-?} executions in ${seconds}s, no findings"
  else
    echo "$t: FINDING (see $log and build-fuzz/findings/)"
    grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -n 5
    status=1
  fi
done
exit "$status"
