#!/usr/bin/env bash
# Installs and builds (scripts/setup.sh), prepares the King James Bible byte shards
# (scripts/prepare_kjv.sh, skipped when up to date) and trains configs/quickstart.yaml: a 6-layer
# byte-level GPT, about 8-10 minutes on 2 CPU cores, into runs/quickstart. Extra arguments go
# to `lowband train` (e.g. --overwrite, --set run.steps=100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/prepare_kjv.sh
./build/lowband train configs/quickstart.yaml "$@"
