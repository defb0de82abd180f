#!/usr/bin/env bash
# Installs and builds (scripts/setup.sh), runs the whole test suite with meson, then the
# libFuzzer harnesses for 20 s each (scripts/fuzz.sh; LOWBAND_FUZZ_SECONDS changes it, 0 skips
# them) and the scaling study's quick grid (about a minute; LOWBAND_STUDY=0 skips it). Ends with
# one line "lowband: N passed, N failed, N skipped" (the fuzz run and the study count as one
# test each) and a non-zero exit status when anything failed.
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
passed=$(count Ok)
skipped=$(count Skipped)

# One more test: `tally ENABLED COMMAND...` runs COMMAND when ENABLED is 1 and counts it.
tally() {
  if [ "$1" != 1 ]; then
    skipped=$((skipped + 1))
  elif "${@:2}"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    status=1
  fi
}
fuzz_seconds=${LOWBAND_FUZZ_SECONDS:-20}
tally "$([ "$fuzz_seconds" -gt 0 ] && echo 1)" bash scripts/fuzz.sh "$fuzz_seconds"
# The scaling study's quick grid (scripts/study/run_study.py --quick --check: measured
# utilisation under emulation within 10 pp of lowband simulate, and the papers' ordering at
# 100 Mbit/s); LOWBAND_STUDY=0 skips it.
quick_study() {
  bash scripts/prepare_kjv.sh >/dev/null &&
    /usr/bin/python3 scripts/study/run_study.py --quick --check --out build/study-quick
}
tally "${LOWBAND_STUDY:-1}" quick_study
echo "lowband: ${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$status"
