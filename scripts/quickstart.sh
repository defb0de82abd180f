#!/usr/bin/env bash
# Installs and builds (scripts/setup.sh), then checks the quickstart config and shows which
# device lowband would train on.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
./build/lowband --version
./build/lowband validate configs/quickstart.yaml
