#!/usr/bin/python3
"""Training throughput of lowband against PyTorch on the same GPT shapes and threads.

For each shape it runs `lowband bench train --model NAME --json` (median step of forward,
backward and AdamW on random tokens, MFU against the OpenBLAS/cuBLAS GEMM peak measured in
the same process) and then the same step in PyTorch (Debian's python3-torch) with the model of
scripts/reference/make_fixtures.py, with torch.set_num_threads(OMP_NUM_THREADS). Prints one
JSON object per line and shape:
  {"config", "lowband_tokens_per_s", "pytorch_tokens_per_s", "ratio", "mfu", "pytorch_mfu",
   "gemm_peak_gflops"}
Usage: OMP_NUM_THREADS=2 /usr/bin/python3 bench/train_vs_pytorch.py [--steps N] [--only NAME]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))

SHAPES = {  # name: (n_layer, d_model, n_head, seq_len, vocab, batch)
    "small": (6, 256, 8, 256, 256, 8),
    "gpt2": (12, 768, 12, 64, 50257, 4),
}


def flops_per_token(L, C, T, V):
    vp = (V + 63) // 64 * 64
    return 6 * (L * 12 * C * C + C * vp) + 3 * L * 2 * 2 * C * (T / 2)


def pytorch_tokens_per_s(shape, steps):
    import torch
    import torch.nn.functional as F
    from make_fixtures import Gpt

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    L, C, H, T, V, B = shape
    model = Gpt(L, C, H, T, V)
    params = list(model.p.values())
    opt = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step >= 2:
            times.append(time.perf_counter() - start)
    return B * T / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only", choices=sorted(SHAPES))
    ap.add_argument("--lowband", default=os.path.join(ROOT, "build", "lowband"))
    args = ap.parse_args()
    for name, shape in SHAPES.items():
        if args.only and name != args.only:
            continue
        out = subprocess.run([args.lowband, "bench", "train", "--model", name, "--json",
                              "--steps", str(args.steps)], check=True, capture_output=True, text=True)
        lb = json.loads(out.stdout.strip().splitlines()[-1])
        torch_tps = pytorch_tokens_per_s(shape, args.steps)
        L, C, H, T, V, B = shape
        peak = lb["gemm_peak_gflops"]
        print(json.dumps({
            "config": name,
            "lowband_tokens_per_s": round(lb["lowband_tokens_per_s"], 1),
            "pytorch_tokens_per_s": round(torch_tps, 1),
            "ratio": round(lb["lowband_tokens_per_s"] / torch_tps, 3),
            "mfu": lb["mfu"],
            "pytorch_mfu": round(flops_per_token(L, C, T, V) * torch_tps / (peak * 1e9), 4),
            "gemm_peak_gflops": peak,
            "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())),
        }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
