#!/usr/bin/python3
"""Loads a lowband model.safetensors with PyTorch and prints one line per tensor:
NAME SHAPE SUM (shape as 64x256, sum in float64). Uses the safetensors package when it is
installed, else reads the format directly (u64 header length, JSON header, raw data).

The layout is checked first either way (header length within the file, a JSON object without
repeated keys, F32 tensors whose shapes match their data_offsets, data covered exactly with no
holes or overlaps): a file that fails ends with one line `load_safetensors.py: FILE: problem`
and exit 1, never a traceback."""
import json
import math
import struct
import sys

MAX_HEADER = 100 * 1024 * 1024  # the safetensors package refuses larger headers too
F32_BYTES = 4


class BadFile(Exception):
    """The file is not a well-formed safetensors file of F32 tensors."""


def _object(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        # json.loads would keep the last one silently; the safetensors package refuses these.
        raise BadFile("header: key %r appears twice" % next(k for k in keys if keys.count(k) > 1))
    return dict(pairs)


def parse(data):
    """Checks the layout of `data` (the whole file); returns [(name, shape, begin, end)] with
    begin/end as offsets into `data`."""
    if len(data) < 8:
        raise BadFile("%d bytes, too short for the 8-byte header length" % len(data))
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > MAX_HEADER:
        raise BadFile("header length %d runs past the file (%d bytes) or over %d"
                      % (n, len(data), MAX_HEADER))
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=_object)
    except UnicodeDecodeError:
        raise BadFile("header is not UTF-8") from None
    except RecursionError:
        raise BadFile("header is nested too deeply") from None
    except ValueError as e:
        raise BadFile("header is not JSON: %s" % e) from None
    if not isinstance(header, dict):
        raise BadFile("header is not a JSON object")
    base = 8 + n
    size = len(data) - base
    tensors = []
    for name, meta in header.items():
        if name == "__metadata__":
            if not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
                raise BadFile("__metadata__ is not an object of strings")
            continue
        if not isinstance(meta, dict):
            raise BadFile("%s: not an object" % name)
        dtype, shape, offsets = meta.get("dtype"), meta.get("shape"), meta.get("data_offsets")
        if dtype != "F32":
            raise BadFile("%s: dtype %r, expected F32" % (name, dtype))
        # type() is int: json gives bool for true/false, and bool is an int subclass.
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise BadFile("%s: shape %r is not a list of non-negative integers" % (name, shape))
        if not (isinstance(offsets, list) and len(offsets) == 2 and
                all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= size):
            raise BadFile("%s: data_offsets %r are not [begin, end] within the %d data bytes"
                          % (name, offsets, size))
        need = math.prod(shape) * F32_BYTES
        if offsets[1] - offsets[0] != need:
            raise BadFile("%s: shape %r needs %d bytes, data_offsets %r hold %d"
                          % (name, shape, need, offsets, offsets[1] - offsets[0]))
        tensors.append((name, shape, base + offsets[0], base + offsets[1]))
    at = 0
    for name, _, begin, end in sorted(tensors, key=lambda t: (t[2], t[3])):
        if begin - base != at:
            raise BadFile("%s: data starts at byte %d, expected %d (a hole or an overlap)"
                          % (name, begin - base, at))
        at = end - base
    if at != size:
        raise BadFile("the tensors cover %d of the %d data bytes" % (at, size))
    return tensors


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    tensors = parse(data)
    try:
        import torch
    except ImportError:
        raise BadFile("needs PyTorch (python3 -m pip install torch)") from None
    try:
        from safetensors.torch import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        try:
            return load_file(path)
        except Exception as e:  # the package's own errors: one line, as for ours
            raise BadFile("safetensors: %s" % e) from None
    out = {}
    for name, shape, begin, end in tensors:
        if begin == end:  # frombuffer refuses an empty buffer
            out[name] = torch.zeros(shape, dtype=torch.float32)
        else:
            out[name] = torch.frombuffer(bytearray(data[begin:end]),
                                         dtype=torch.float32).reshape(shape)
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: load_safetensors.py model.safetensors")
    path = sys.argv[1]
    try:
        tensors = load(path)
    except BadFile as e:
        sys.exit("load_safetensors.py: %s: %s" % (path, e))
    except OSError as e:
        sys.exit("load_safetensors.py: %s: %s" % (path, e.strerror or e))
    except MemoryError:
        sys.exit("load_safetensors.py: %s: out of memory (the file is read whole)" % path)
    for name, t in tensors.items():
        shape = "x".join(str(d) for d in t.shape)
        print(f"{name} {shape} {t.double().sum().item():.9e}")


if __name__ == "__main__":
    main()
