#!/usr/bin/env bash
# Installs and builds (scripts/setup.sh), then runs the whole test suite with meson. Ends with
# one line "lowband: N passed, N failed, N skipped" and the suite's exit status.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?

log=$(mktemp)
trap 'rm -f "$log"' EXIT
meson test -C build --print-errorlogs 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# meson's summary lines: "Ok: 8", "Fail: 0", "Unexpected Pass: 0", ...
count() { local n; n=$(sed -n "s/^$1: *\([0-9][0-9]*\).*/\1/p" "$log" | tail -n 1); echo "${n:-0}"; }
failed=$(( $(count Fail) + $(count Timeout) + $(count "Unexpected Pass") ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # meson itself failed
echo "lowband: $(count Ok) passed, ${failed} failed, $(count Skipped) skipped"
exit "$status"
