#!/usr/bin/python3
"""Turns a text file into byte-level token shards (vocab 256) for lowband.

    prepare_text.py INPUT OUT_DIR [--val-fraction 0.05] [--shard-tokens N]

Every byte of INPUT is one token. The first (1 - val_fraction) of the bytes go to
OUT_DIR/train_000000.bin, train_000001.bin, ...; the rest to val_000000.bin, ... Shards use the
llm.c/nanoGPT format that nn/data.h reads: 256 little-endian int32 {20240520, 1, count, 0...},
then `count` little-endian uint16 tokens.

Idempotent: OUT_DIR/.prepared records the input's sha256 and the options; when they match and
the shards are there, nothing is written. Every file is written under a temp name, fsynced and
renamed, and .prepared is written last, so an interrupted run is redone in full next time.
Standard library only.
"""

import argparse
import hashlib
import json
import os
import re
import struct
import sys
import tempfile

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
MARKER = ".prepared"
SHARD_NAME = re.compile(r"^(train|val)_\d{6}\.bin$")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path, chunks):
    """Writes the byte chunks to a temp file beside `path`, fsyncs, renames."""
    out_dir = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def shard_bytes(data):
    """Header + the bytes of `data` widened to little-endian uint16."""
    header = struct.pack("<%di" % HEADER_INTS, MAGIC, VERSION, len(data),
                         *([0] * (HEADER_INTS - 3)))
    tokens = bytearray(2 * len(data))
    tokens[0::2] = data  # low byte = the token, high byte stays 0
    return [header, tokens]


def write_split(out_dir, split, data, shard_tokens):
    names = []
    for i, start in enumerate(range(0, len(data), shard_tokens)):
        name = "%s_%06d.bin" % (split, i)
        write_atomic(os.path.join(out_dir, name),
                     shard_bytes(data[start:start + shard_tokens]))
        names.append(name)
    return names


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="text file (any bytes)")
    p.add_argument("out_dir", help="directory for train_*.bin, val_*.bin and .prepared")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="fraction of the bytes, taken from the end, for val (default 0.05)")
    p.add_argument("--shard-tokens", type=int, default=100_000_000,
                   help="tokens per shard (default 100000000)")
    args = p.parse_args()
    prog = os.path.basename(sys.argv[0])

    if not 0 <= args.val_fraction < 1:
        p.error("--val-fraction %g is outside [0, 1)" % args.val_fraction)
    if not 1 <= args.shard_tokens <= 2**31 - 1:
        p.error("--shard-tokens %d is outside 1..2^31-1 (the header count is an int32)"
                % args.shard_tokens)
    try:
        digest = sha256_of(args.input)
    except OSError as e:
        sys.exit("%s: %s: %s" % (prog, args.input, e.strerror))

    recipe = {"sha256": digest, "val_fraction": args.val_fraction,
              "shard_tokens": args.shard_tokens, "vocab": 256}
    marker = os.path.join(args.out_dir, MARKER)
    try:
        with open(marker) as f:
            done = json.load(f)
        if (all(done.get(k) == v for k, v in recipe.items()) and
                all(os.path.isfile(os.path.join(args.out_dir, n)) for n in done["files"])):
            print("%s: %s is up to date (%d train, %d val tokens)"
                  % (prog, args.out_dir, done["train_tokens"], done["val_tokens"]))
            return
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no marker or an unreadable one: prepare from scratch

    with open(args.input, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != digest:
        sys.exit("%s: %s changed while being read; run again" % (prog, args.input))
    n_val = int(len(data) * args.val_fraction)
    n_train = len(data) - n_val
    if n_train == 0 or (args.val_fraction > 0 and n_val == 0):
        sys.exit("%s: %s has %d bytes, too few for a train and a val split at --val-fraction %g"
                 % (prog, args.input, len(data), args.val_fraction))

    os.makedirs(args.out_dir, exist_ok=True)
    # Drop the marker first: if this run dies half way, the next one starts over.
    if os.path.exists(marker):
        os.unlink(marker)
    files = write_split(args.out_dir, "train", data[:n_train], args.shard_tokens)
    files += write_split(args.out_dir, "val", data[n_train:], args.shard_tokens)
    # Shards of an earlier, larger preparation would be picked up by train_*.bin globs.
    for name in os.listdir(args.out_dir):
        if SHARD_NAME.match(name) and name not in files:
            os.unlink(os.path.join(args.out_dir, name))

    recipe.update(input=os.path.abspath(args.input), files=files, train_tokens=n_train,
                  val_tokens=n_val)
    write_atomic(marker, [(json.dumps(recipe, indent=1, sort_keys=True) + "\n").encode()])
    n_train_files = sum(1 for n in files if n.startswith("train_"))
    n_val_files = len(files) - n_train_files
    print("%s: %s -> %s: %d train tokens in %d shard%s, %d val tokens in %d shard%s"
          % (prog, args.input, args.out_dir, n_train, n_train_files,
             "" if n_train_files == 1 else "s", n_val, n_val_files, "" if n_val_files == 1 else "s"))


if __name__ == "__main__":
    main()
