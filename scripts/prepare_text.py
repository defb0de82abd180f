#!/usr/bin/python3
"""Turns a text file into byte-level token shards (vocab 256) for lowband.

    prepare_text.py INPUT OUT_DIR [--val-fraction 0.05] [--shard-tokens N]

Every byte of INPUT is one token. The first (1 - val_fraction) of the bytes go to
OUT_DIR/train_000000.bin, train_000001.bin, ...; the rest to val_000000.bin, ... Shards use the
llm.c/nanoGPT format that nn/data.h reads: 256 little-endian int32 {20240520, 1, count, 0...},
then `count` little-endian uint16 tokens.

Idempotent: OUT_DIR/.prepared records the input's sha256 and the options; when they match and
the shards are there, nothing is written. Every file is written under a temp name, fsynced and
renamed, and .prepared is marked complete last, so an interrupted run is redone in full next
time. Standard library only.

Ownership: .prepared lists every shard this script wrote in OUT_DIR (before writing a shard it
records it there, so an interrupted run still knows its files). It overwrites and deletes only
files listed there: shards of an earlier, larger preparation are removed (a train_*.bin glob
would pick them up). A train_*.bin or val_*.bin in OUT_DIR that .prepared does not list (or any,
when there is no .prepared) makes it refuse with exit 1 and touch nothing: move those away or
pick another OUT_DIR. Other files in OUT_DIR are left alone. Errors are one line and exit 1.
"""

import argparse
import fnmatch
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
SHARD_GLOBS = ("train_*.bin", "val_*.bin")  # what configs read: what must be ours alone


class Refused(Exception):
    """Bad input or an OUT_DIR this script will not touch: one line, exit 1."""


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


def shard_names(split, n_tokens, shard_tokens):
    return ["%s_%06d.bin" % (split, i) for i in range((n_tokens + shard_tokens - 1) // shard_tokens)]


def write_split(out_dir, names, data, shard_tokens):
    for i, name in enumerate(names):
        start = i * shard_tokens
        write_atomic(os.path.join(out_dir, name),
                     shard_bytes(data[start:start + shard_tokens]))


def read_marker(marker):
    """Returns (marker dict or None, why it is unusable or None). A usable marker has a
    list of plain shard names in "files"; nothing else in it decides what is deleted."""
    try:
        with open(marker) as f:
            done = json.load(f)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, RecursionError) as e:
        return None, "%s is unreadable: %s" % (MARKER, getattr(e, "strerror", None) or e)
    files = done.get("files") if isinstance(done, dict) else None
    if not (isinstance(files, list) and
            all(isinstance(n, str) and SHARD_NAME.match(n) for n in files)):
        return None, "%s does not list its shards" % MARKER
    return done, None


def write_marker(marker, content):
    write_atomic(marker, [(json.dumps(content, indent=1, sort_keys=True) + "\n").encode()])


def main(prog):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="text file (any bytes)")
    p.add_argument("out_dir", help="directory for train_*.bin, val_*.bin and .prepared")
    p.add_argument("--val-fraction", type=float, default=0.05,
                   help="fraction of the bytes, taken from the end, for val (default 0.05)")
    p.add_argument("--shard-tokens", type=int, default=100_000_000,
                   help="tokens per shard (default 100000000)")
    args = p.parse_args()

    if not 0 <= args.val_fraction < 1:
        p.error("--val-fraction %g is outside [0, 1)" % args.val_fraction)
    if not 1 <= args.shard_tokens <= 2**31 - 1:
        p.error("--shard-tokens %d is outside 1..2^31-1 (the header count is an int32)"
                % args.shard_tokens)
    out_dir = args.out_dir
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise Refused("%s: not a directory" % out_dir)
    digest = sha256_of(args.input)

    recipe = {"sha256": digest, "val_fraction": args.val_fraction,
              "shard_tokens": args.shard_tokens, "vocab": 256}
    marker = os.path.join(out_dir, MARKER)
    done, marker_problem = read_marker(marker)
    if (done is not None and done.get("complete", True) is True and  # no key: an older marker,
            all(done.get(k) == v for k, v in recipe.items()) and     # written when complete
            all(os.path.isfile(os.path.join(out_dir, n)) for n in done["files"])):
        print("%s: %s is up to date (%s train, %s val tokens)"
              % (prog, out_dir, done.get("train_tokens"), done.get("val_tokens")))
        return

    with open(args.input, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != digest:
        raise Refused("%s changed while being read; run again" % args.input)
    n_val = int(len(data) * args.val_fraction)
    n_train = len(data) - n_val
    if n_train == 0 or (args.val_fraction > 0 and n_val == 0):
        raise Refused("%s has %d bytes, too few for a train and a val split at --val-fraction %g"
                      % (args.input, len(data), args.val_fraction))
    train_names = shard_names("train", n_train, args.shard_tokens)
    val_names = shard_names("val", n_val, args.shard_tokens)
    files = train_names + val_names

    # Only files an earlier run of this script recorded are ever overwritten or deleted.
    ours = set(done["files"]) if done is not None else set()
    present = os.listdir(out_dir) if os.path.isdir(out_dir) else []
    foreign = sorted(n for n in present
                     if any(fnmatch.fnmatchcase(n, g) for g in SHARD_GLOBS) and n not in ours)
    if foreign:
        if marker_problem:
            why = marker_problem
        elif done is None:
            why = "there is no %s" % MARKER
        else:
            why = "%s does not list %s" % (MARKER, "it" if len(foreign) == 1 else "them")
        more = " and %d more" % (len(foreign) - 1) if len(foreign) > 1 else ""
        raise Refused("%s holds %s%s that %s did not write (%s); move %s away or choose "
                      "another OUT_DIR" % (out_dir, foreign[0], more, prog, why,
                                           "it" if len(foreign) == 1 else "them"))

    os.makedirs(out_dir, exist_ok=True)
    # Record what this run will write before writing it: if it dies half way, the next run
    # still knows these files are its own (and starts over, the marker being incomplete).
    write_marker(marker, dict(recipe, complete=False, files=sorted(ours | set(files))))
    write_split(out_dir, train_names, data[:n_train], args.shard_tokens)
    write_split(out_dir, val_names, data[n_train:], args.shard_tokens)
    # Shards of an earlier, larger preparation would be picked up by train_*.bin globs.
    for name in sorted(ours - set(files)):
        try:
            os.unlink(os.path.join(out_dir, name))
        except FileNotFoundError:
            pass

    recipe.update(input=os.path.abspath(args.input), files=files, train_tokens=n_train,
                  val_tokens=n_val, complete=True)
    write_marker(marker, recipe)
    print("%s: %s -> %s: %d train tokens in %d shard%s, %d val tokens in %d shard%s"
          % (prog, args.input, out_dir, n_train, len(train_names),
             "" if len(train_names) == 1 else "s", n_val, len(val_names),
             "" if len(val_names) == 1 else "s"))


if __name__ == "__main__":
    PROG = os.path.basename(sys.argv[0])
    try:
        main(PROG)
    except Refused as e:
        sys.exit("%s: %s" % (PROG, e))
    except OSError as e:
        where = e.filename if e.filename is not None else "error"
        sys.exit("%s: %s: %s" % (PROG, where, e.strerror or e))
    except MemoryError:
        sys.exit("%s: out of memory reading the input (it is read whole)" % PROG)
    except KeyboardInterrupt:
        sys.exit(130)
