#!/usr/bin/python3
"""Writes the PyTorch reference fixtures that tests/test_nn_reference.cpp compares against.

Run with Debian's python3-torch (1.13): /usr/bin/python3 scripts/reference/make_fixtures.py
Each fixture holds the weights, inputs, logits, loss, every gradient and the losses of 5
optimizer steps of a tiny model, written the way lowband lays its parameters out (names, and
Linear weights as [out, in]). Attention is written by hand: 1.13 has no
scaled_dot_product_attention.

File format (little-endian): b"LBFX", u32 version 1, u32 count, then per tensor: u32 name
length, name bytes, u32 dtype (0 f32, 1 i32), u32 ndim, ndim x i64 dims, data.
"""
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")


def write_fixture(path, tensors):
    with open(path + ".tmp", "wb") as f:
        f.write(b"LBFX" + struct.pack("<II", 1, len(tensors)))
        for name, t in tensors.items():
            t = t.detach().contiguous()
            dtype = {torch.float32: 0, torch.int32: 1}[t.dtype]
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<II", dtype, t.dim()))
            f.write(struct.pack("<%dq" % t.dim(), *t.shape))
            f.write(t.numpy().tobytes())
    os.replace(path + ".tmp", path)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


class Gpt(torch.nn.Module):
    def __init__(self, n_layer, d_model, n_head, seq_len, vocab):
        super().__init__()
        self.n_head = n_head
        C = d_model
        self.p = {}  # plain dict: ParameterDict keys may not contain "."
        self.p["wte"] = (torch.randn(vocab, C) * 0.3).requires_grad_()
        self.p["wpe"] = (torch.randn(seq_len, C) * 0.3).requires_grad_()
        self.p["lnf.w"] = (1 + 0.1 * torch.randn(C)).requires_grad_()
        self.p["lnf.b"] = (0.1 * torch.randn(C)).requires_grad_()
        shapes = [("ln1.w", (C,)), ("ln1.b", (C,)), ("attn.w", (3 * C, C)), ("attn.b", (3 * C,)),
                  ("attn_proj.w", (C, C)), ("attn_proj.b", (C,)), ("ln2.w", (C,)), ("ln2.b", (C,)),
                  ("fc.w", (4 * C, C)), ("fc.b", (4 * C,)), ("fc_proj.w", (C, 4 * C)),
                  ("fc_proj.b", (C,))]
        for l in range(n_layer):
            for name, shape in shapes:
                if name.startswith("ln") and name.endswith(".w"):
                    t = 1 + 0.1 * torch.randn(*shape)
                else:
                    t = torch.randn(*shape) * (0.3 / math.sqrt(shape[-1]) if len(shape) == 2 else 0.1)
                self.p[f"h.{l}.{name}"] = (t).requires_grad_()
        self.n_layer = n_layer

    def forward(self, idx):
        B, T = idx.shape
        P = self.p
        x = P["wte"][idx] + P["wpe"][:T]
        C = x.shape[-1]
        H, hd = self.n_head, C // self.n_head
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for l in range(self.n_layer):
            w = lambda n: P[f"h.{l}.{n}"]
            h = F.layer_norm(x, (C,), w("ln1.w"), w("ln1.b"), 1e-5)
            qkv = h @ w("attn.w").T + w("attn.b")
            q, k, v = qkv.split(C, dim=-1)
            q, k, v = [t.view(B, T, H, hd).transpose(1, 2) for t in (q, k, v)]
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + y @ w("attn_proj.w").T + w("attn_proj.b")
            h = F.layer_norm(x, (C,), w("ln2.w"), w("ln2.b"), 1e-5)
            h = F.gelu(h @ w("fc.w").T + w("fc.b"), approximate="tanh")
            x = x + h @ w("fc_proj.w").T + w("fc_proj.b")
        x = F.layer_norm(x, (C,), P["lnf.w"], P["lnf.b"], 1e-5)
        return x @ P["wte"].T

    def decayed(self, name):
        return name.endswith(("attn.w", "attn_proj.w", "fc.w", "fc_proj.w"))


class Mlp(torch.nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.p = {}  # plain dict: ParameterDict keys may not contain "."
        for i in range(len(sizes) - 1):
            self.p[f"fc{i}.w"] = (torch.randn(sizes[i + 1], sizes[i]) / math.sqrt(sizes[i])).requires_grad_()
            self.p[f"fc{i}.b"] = (0.1 * torch.randn(sizes[i + 1])).requires_grad_()
        self.layers = len(sizes) - 1

    def forward(self, x):
        for i in range(self.layers):
            x = x @ self.p[f"fc{i}.w"].T + self.p[f"fc{i}.b"]
            if i + 1 < self.layers:
                x = F.relu(x)
        return x

    def decayed(self, name):
        return name.endswith(".w")


def record(model, inputs, targets, n_classes, optimizer_steps=5):
    tensors = {}
    for name, p in model.p.items():
        tensors["param." + name] = p.detach().clone()
    logits = model(inputs)
    loss = F.cross_entropy(logits.reshape(-1, n_classes), targets.reshape(-1))
    loss.backward()
    tensors["logits"] = logits.reshape(-1, n_classes)
    tensors["loss"] = loss.reshape(1)
    for name, p in model.p.items():
        tensors["grad." + name] = p.grad.detach().clone()
    decay = [p for n, p in model.p.items() if model.decayed(n)]
    rest = [p for n, p in model.p.items() if not model.decayed(n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for _ in range(optimizer_steps):
        torch.nn.utils.clip_grad_norm_(list(model.p.values()), 1.0)
        opt.step()
        opt.zero_grad()
        loss = F.cross_entropy(model(inputs).reshape(-1, n_classes), targets.reshape(-1))
        loss.backward()
        losses.append(loss.item())
    tensors["adamw_losses"] = torch.tensor(losses, dtype=torch.float32)
    return tensors


def main():
    torch.manual_seed(1234)
    torch.set_num_threads(1)
    # GPT: 2 layers, d_model 32, 4 heads, seq 16, vocab 61 (lowband pads it to 64).
    gpt = Gpt(2, 32, 4, 16, 61)
    tokens = torch.randint(0, 61, (2, 12), dtype=torch.int64)
    targets = torch.randint(0, 61, (2, 12), dtype=torch.int64)
    t = record(gpt, tokens, targets, 61)
    t["tokens"] = tokens.to(torch.int32)
    t["targets"] = targets.to(torch.int32)
    write_fixture(os.path.join(OUT, "gpt_tiny.bin"), t)

    mlp = Mlp([20, 16, 12, 7])
    x = torch.rand(9, 20)
    y = torch.randint(0, 7, (9,), dtype=torch.int64)
    t = record(mlp, x, y, 7)
    t["features"] = x
    t["targets"] = y.to(torch.int32)
    write_fixture(os.path.join(OUT, "mlp_tiny.bin"), t)


if __name__ == "__main__":
    sys.exit(main())
