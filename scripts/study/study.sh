#!/usr/bin/env bash
# Runs the bandwidth-throttled scaling study (scripts/study/run_study.py) from a fresh checkout:
# installs what is missing, builds, prepares the KJV shards, then runs the grid and writes
# results/study/study.csv and results/study/study.png.
# Usage: scripts/study/study.sh [--quick] [--real] [--check] [run_study.py options]
#   default grid: 5 methods x 30/100/300/1000 Mbit/s x 2 and 4 replicas (about 17 minutes on
#   2 cores); --quick: ddp, diloco, streaming+overlap+fp4 at 100 Mbit/s, 2 replicas (about 2);
#   --real: the same points again over tc-shaped network namespaces (root).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
bash scripts/prepare_kjv.sh
bash scripts/need_matplotlib.sh
exec /usr/bin/python3 scripts/study/run_study.py "$@"
