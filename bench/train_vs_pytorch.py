#!/usr/bin/python3
"""Training throughput of lowband against PyTorch on the same GPT shapes and threads (or GPU).

For each shape it runs `lowband bench train --model NAME --json` (median step of forward,
backward and AdamW on random tokens, MFU against the OpenBLAS/cuBLAS GEMM peak measured in
the same process) and then the same step in PyTorch (Debian's python3-torch) with the model of
scripts/reference/make_fixtures.py, with torch.set_num_threads(OMP_NUM_THREADS). Prints one
JSON object per line and shape:
  {"config", "lowband_tokens_per_s", "pytorch_tokens_per_s", "ratio", "mfu", "pytorch_mfu",
   "gemm_peak_gflops"}
Usage: OMP_NUM_THREADS=2 /usr/bin/python3 bench/train_vs_pytorch.py [--steps N] [--only NAME]

--device cuda runs both on the same GPU (PyTorch >= 2 with CUDA): shapes small (6x256, T 256,
batch 8), gpt2-b8 and gpt2-b16 (GPT-2 124M at T 1024, batch 8 and 16), each in three precisions:
lowband's model.precision fp32 / tf32 / bf16 against PyTorch eager in f32 with TF32 off, with
TF32 on, and bf16 autocast; PyTorch's attention is scaled_dot_product_attention (flash/cuDNN
kernels) and its AdamW the fused one, the fastest eager setup. One JSON line per shape and
precision: {"config", "precision", "lowband_tokens_per_s", "pytorch_tokens_per_s", "ratio",
"mfu", "pytorch_mfu", "gemm_peak_gflops", "gpu"}; MFU is against the GEMM peak lowband measured
in the same run for that precision (f32 SIMT, TF32 or bf16 tensor cores).

--quality CONFIG instead trains CONFIG (a gpt config on token shards, e.g.
configs/quickstart.yaml) with `lowband train` and the same model, optimizer, schedule, token
budget and validation batches in PyTorch, and prints
  {"study": "quality", "config", "tokens", "lowband_val_loss", "pytorch_val_loss",
   "relative_difference", "lowband_wall_s", "pytorch_wall_s"}
PyTorch reads the same shards but draws its own random windows (same count per step).
"""
import argparse
import math
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
# GPU shapes: name: (lowband preset, (n_layer, d_model, n_head, seq_len, vocab, batch)).
CUDA_SHAPES = {
    "small": ("small", (6, 256, 8, 256, 256, 8)),
    "gpt2-b8": ("gpt2-1024", (12, 768, 12, 1024, 50257, 8)),
    "gpt2-b16": ("gpt2-1024", (12, 768, 12, 1024, 50257, 16)),
}
PRECISIONS = ("fp32", "tf32", "bf16")


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


def cuda_model(L, C, H, T, V):
    """The GPT of make_fixtures.py (tied head, GELU-tanh, pre-LN) with PyTorch's fused causal
    attention, on the GPU, with GPT-2's initialisation."""
    import torch
    import torch.nn.functional as F

    class SdpaGpt(torch.nn.Module):
        def __init__(self):
            super().__init__()
            Vp = (V + 63) // 64 * 64
            p = torch.nn.ParameterDict()
            p["wte"] = torch.nn.Parameter(torch.randn(Vp, C) * 0.02)
            p["wpe"] = torch.nn.Parameter(torch.randn(T, C) * 0.02)
            p["lnf_w"], p["lnf_b"] = torch.nn.Parameter(torch.ones(C)), torch.nn.Parameter(torch.zeros(C))
            proj_std = 0.02 / math.sqrt(2 * L)
            for l in range(L):
                def add(name, *shape, std=None, fill=None):
                    t = torch.full(shape, fill) if fill is not None else torch.randn(*shape) * std
                    p[f"h{l}_{name}"] = torch.nn.Parameter(t)
                add("ln1_w", C, fill=1.0), add("ln1_b", C, fill=0.0)
                add("attn_w", 3 * C, C, std=0.02), add("attn_b", 3 * C, fill=0.0)
                add("proj_w", C, C, std=proj_std), add("proj_b", C, fill=0.0)
                add("ln2_w", C, fill=1.0), add("ln2_b", C, fill=0.0)
                add("fc_w", 4 * C, C, std=0.02), add("fc_b", 4 * C, fill=0.0)
                add("fcp_w", C, 4 * C, std=proj_std), add("fcp_b", C, fill=0.0)
            self.p = p

        def forward(self, idx):
            B, T_ = idx.shape
            P = self.p
            x = P["wte"][idx] + P["wpe"][:T_]
            for l in range(L):
                w = lambda n: P[f"h{l}_{n}"]
                h = F.layer_norm(x, (C,), w("ln1_w"), w("ln1_b"), 1e-5)
                q, k, v = F.linear(h, w("attn_w"), w("attn_b")).split(C, dim=-1)
                q, k, v = [t.view(B, T_, H, C // H).transpose(1, 2) for t in (q, k, v)]
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                x = x + F.linear(y.transpose(1, 2).reshape(B, T_, C), w("proj_w"), w("proj_b"))
                h = F.layer_norm(x, (C,), w("ln2_w"), w("ln2_b"), 1e-5)
                h = F.gelu(F.linear(h, w("fc_w"), w("fc_b")), approximate="tanh")
                x = x + F.linear(h, w("fcp_w"), w("fcp_b"))
            x = F.layer_norm(x, (C,), P["lnf_w"], P["lnf_b"], 1e-5)
            return F.linear(x, P["wte"])[..., :V]

    return SdpaGpt().cuda()


def pytorch_cuda_tokens_per_s(shape, precision, steps):
    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.manual_seed(0)
    L, C, H, T, V, B = shape
    model = cuda_model(L, C, H, T, V)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    x = torch.randint(0, V, (B, T), device="cuda")
    y = torch.randint(0, V, (B, T), device="cuda")
    times = []
    for step in range(steps + 2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        torch.cuda.synchronize()
        if step >= 2:
            times.append(time.perf_counter() - start)
    del model, opt
    torch.cuda.empty_cache()
    return B * T / statistics.median(times)


def bench_cuda(args):
    import torch
    if not torch.cuda.is_available() or not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        sys.exit("train_vs_pytorch.py: --device cuda needs PyTorch >= 2 with a usable GPU "
                 f"(this is torch {torch.__version__}, cuda available: {torch.cuda.is_available()})")
    gpu = torch.cuda.get_device_name(0)
    for name, (preset, shape) in CUDA_SHAPES.items():
        if args.only and name != args.only:
            continue
        L, C, H, T, V, B = shape
        for precision in PRECISIONS:
            if args.precision and precision != args.precision:
                continue
            out = subprocess.run([args.lowband, "bench", "train", "--device", "cuda", "--model", preset,
                                  "--batch", str(B), "--seq", str(T), "--precision", precision,
                                  "--json", "--steps", str(args.steps)],
                                 check=True, capture_output=True, text=True)
            lb = json.loads(out.stdout.strip().splitlines()[-1])
            torch_tps = pytorch_cuda_tokens_per_s(shape, precision, args.steps)
            peak = lb["gemm_peak_gflops"]
            print(json.dumps({
                "config": name, "precision": precision,
                "lowband_tokens_per_s": round(lb["lowband_tokens_per_s"], 1),
                "pytorch_tokens_per_s": round(torch_tps, 1),
                "ratio": round(lb["lowband_tokens_per_s"] / torch_tps, 3),
                "mfu": lb["mfu"],
                "pytorch_mfu": round(flops_per_token(L, C, T, V) * torch_tps / (peak * 1e9), 4),
                "gemm_peak_gflops": peak, "gpu": gpu,
            }), flush=True)


def read_shards(pattern):
    import glob
    import numpy as np
    parts = []
    for path in sorted(glob.glob(pattern)):
        header = np.fromfile(path, dtype="<i4", count=256)
        assert header[0] == 20240520 and header[1] == 1, path
        parts.append(np.fromfile(path, dtype="<u2", offset=1024, count=int(header[2])))
    return np.concatenate(parts).astype(np.int64)


def gpt2_init(model, n_layer):
    import torch
    with torch.no_grad():
        for name, p in model.p.items():
            if name.endswith(("ln1.w", "ln2.w", "lnf.w")):
                p.fill_(1.0)
            elif name.endswith(".b"):
                p.zero_()
            elif name.endswith(("attn_proj.w", "fc_proj.w")):
                p.normal_(0, 0.02 / math.sqrt(2 * n_layer))
            else:
                p.normal_(0, 0.02)


def quality(config_path, lowband):
    import tempfile
    import numpy as np
    import torch
    import torch.nn.functional as F
    import yaml_lite
    from make_fixtures import Gpt

    cfg = yaml_lite.resolved(lowband, config_path)
    run, model_cfg, data, opt_cfg = cfg["run"], cfg["model"], cfg["data"], cfg["optimizer"]
    out_dir = tempfile.mkdtemp(prefix="lowband-quality-")
    start = time.perf_counter()
    subprocess.run([lowband, "train", config_path, "--set", "run.out_dir=" + out_dir,
                    "--set", "run.eval_every=0"], check=True, stdout=subprocess.DEVNULL)
    lowband_wall = time.perf_counter() - start
    evals = [json.loads(l) for l in open(os.path.join(out_dir, "metrics.jsonl")) if "val_loss" in l]
    lowband_val = evals[-1]["val_loss"]

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(int(run["seed"]))
    L, C, H, T, V = (int(model_cfg[k]) for k in ("n_layer", "d_model", "n_head", "seq_len", "vocab"))
    B, steps = int(data["batch_size"]), int(run["steps"])
    model = Gpt(L, C, H, T, V)
    gpt2_init(model, L)
    decay = [p for n, p in model.p.items() if model.decayed(n)]
    rest = [p for n, p in model.p.items() if not model.decayed(n)]
    lr, warmup, floor = float(opt_cfg["lr"]), int(opt_cfg["warmup"]), float(opt_cfg["min_lr_ratio"])
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(opt_cfg["weight_decay"])},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=tuple(float(b) for b in opt_cfg["betas"]), eps=float(opt_cfg["eps"]))

    def lr_at(step):  # nn/optimizer.h
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return lr * floor + (lr - lr * floor) * 0.5 * (1 + math.cos(math.pi * progress))

    train = read_shards(data["train"])
    val = read_shards(data["val"])
    rng = np.random.default_rng(int(run["seed"]))
    windows = (len(train) - 1) // (T + 1)
    start = time.perf_counter()
    for step in range(steps):
        idx = rng.integers(0, windows, B) * (T + 1)
        batch = torch.from_numpy(np.stack([train[i:i + T + 1] for i in idx]))
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(batch[:, :-1]).reshape(-1, V), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.p.values()), float(opt_cfg["grad_clip"]))
        opt.step()
    pytorch_wall = time.perf_counter() - start
    # Validation as lowband does it: the first eval_batches batches of consecutive windows.
    losses = []
    with torch.no_grad():
        val_windows = (len(val) - 1) // (T + 1)
        for b in range(min(int(run["eval_batches"]), val_windows // B)):
            batch = torch.from_numpy(np.stack([val[(b * B + i) * (T + 1):(b * B + i + 1) * (T + 1)] for i in range(B)]))
            losses.append(F.cross_entropy(model(batch[:, :-1]).reshape(-1, V), batch[:, 1:].reshape(-1)).item())
    pytorch_val = sum(losses) / len(losses)
    print(json.dumps({"study": "quality", "config": config_path, "tokens": steps * B * T,
                      "lowband_val_loss": round(lowband_val, 4), "pytorch_val_loss": round(pytorch_val, 4),
                      "relative_difference": round((pytorch_val - lowband_val) / lowband_val, 4),
                      "lowband_wall_s": round(lowband_wall, 1), "pytorch_wall_s": round(pytorch_wall, 1)}),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", metavar="CONFIG")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only", choices=sorted(set(SHAPES) | set(CUDA_SHAPES)))
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=PRECISIONS, help="with --device cuda: only this one")
    ap.add_argument("--lowband", default=os.path.join(ROOT, "build", "lowband"))
    args = ap.parse_args()
    if args.quality:
        return quality(args.quality, args.lowband)
    if args.device == "cuda":
        return bench_cuda(args)
    if args.only and args.only not in SHAPES:
        sys.exit(f"train_vs_pytorch.py: --only {args.only} is a --device cuda shape")
    for name, shape in SHAPES.items():
        if args.only and name != args.only:
            continue
        out = subprocess.run([args.lowband, "bench", "train", "--device", "cpu", "--model", name, "--json",
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
