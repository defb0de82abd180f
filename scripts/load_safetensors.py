#!/usr/bin/python3
"""Loads a lowband model.safetensors with PyTorch and prints one line per tensor:
NAME SHAPE SUM (shape as 64x256, sum in float64). Uses the safetensors package when it is
installed, else reads the format directly (u64 header length, JSON header, raw data)."""
import json
import struct
import sys

import torch


def load(path):
    try:
        from safetensors.torch import load_file
        return load_file(path)
    except ImportError:
        pass
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            sys.exit(f"{path}: {name}: dtype {meta['dtype']}, expected F32")
        b, e = meta["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + b:base + e]), dtype=torch.float32)
        out[name] = t.reshape(meta["shape"])
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: load_safetensors.py model.safetensors")
    for name, t in load(sys.argv[1]).items():
        shape = "x".join(str(d) for d in t.shape)
        print(f"{name} {shape} {t.double().sum().item():.9e}")
