#!/usr/bin/env bash
# Regenerates the synchronisation-method results of README.md from a real run:
#   quality: `mpiexec -n 4 lowband bench schedules --study quality` (4 replicas, equal tokens)
#   overlap: `mpiexec -n 2 lowband bench schedules --study overlap` (2 replicas, emulated
#            100 Mbit/s, 20 ms link)
# then plots docs/schedules.png and rewrites the table between the schedules markers in
# README.md. Raw output: results/schedules.jsonl; runs: runs/bench_schedules/.
# Usage: scripts/bench_schedules.sh [--quick]     (full: about 30 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
[ "${1:-}" = "--quick" ] && quick=(--quick)
bash scripts/setup.sh
bash scripts/prepare_kjv.sh
bash scripts/need_matplotlib.sh
mkdir -p results docs
# One thread per rank: 4 ranks share 2 cores in the quality study, 2 in the overlap study.
OMP_NUM_THREADS=1 mpiexec -n 4 ./build/lowband bench schedules --study quality --json \
  "${quick[@]}" --out-dir runs/bench_schedules >results/schedules.jsonl
OMP_NUM_THREADS=1 mpiexec -n 2 ./build/lowband bench schedules --study overlap --json \
  "${quick[@]}" --out-dir runs/bench_schedules >>results/schedules.jsonl
/usr/bin/python3 scripts/plot_schedules.py results/schedules.jsonl runs/bench_schedules \
  docs/schedules.png --readme README.md
