#!/usr/bin/env bash
# Makes the byte-level King James Bible shards the gpt configs train on:
#   data/kjv/kjv.txt, data/kjv/train_*.bin (first 95% of the bytes), data/kjv/val_*.bin (last 5%)
# The text comes from Debian's bible-kjv (the `bible` program) and bible-kjv-text (its data),
# installed if missing. `bible -f` writes one verse per line, "Ge1:1 In the beginning God ...";
# the verse references stay in: they are part of the text and cost nothing to model.
# Idempotent: kjv.txt is rewritten only when the dump differs, and prepare_text.py does
# nothing when its input's sha256 matches the one recorded in data/kjv/.prepared.
# Usage: scripts/prepare_kjv.sh [OUT_DIR]   (default data/kjv, relative to the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-data/kjv}

if ! command -v bible >/dev/null || [ ! -e /usr/lib/bible.data ]; then
  echo "prepare_kjv: installing bible-kjv bible-kjv-text"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
      echo "prepare_kjv: need root or sudo to install bible-kjv bible-kjv-text" >&2
      exit 1
    }
    sudo="sudo"
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    bible-kjv bible-kjv-text >/dev/null
fi

mkdir -p "$out"
tmp=$(mktemp "$out/.kjv.txt.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# stdin from /dev/null and stdout to a file: `bible` never pages or prompts, and does not wrap
# lines to the terminal width.
bible -f "Gen1:1-Rev22:21" </dev/null >"$tmp"
# Sanity check: all 31102 verses, first and last as expected (not a usage text or a prompt).
verses=$(wc -l <"$tmp")
if [ "$verses" -ne 31102 ] || ! head -n1 "$tmp" | grep -q '^Ge1:1 In the beginning' ||
  ! tail -n1 "$tmp" | grep -q '^Rev22:21 The grace of our Lord'; then
  echo "prepare_kjv: unexpected output from bible ($verses lines, expected 31102 verses):" >&2
  head -n3 "$tmp" >&2
  exit 1
fi
if cmp -s "$tmp" "$out/kjv.txt"; then
  rm -f "$tmp"
else
  chmod 644 "$tmp"
  mv -f "$tmp" "$out/kjv.txt"
fi

/usr/bin/python3 scripts/prepare_text.py "$out/kjv.txt" "$out"
