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
fi

if [ "$failures" -eq 0 ]; then echo "cli_smoke: all checks passed"; fi
exit $((failures > 0))
