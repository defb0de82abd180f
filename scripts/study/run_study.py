#!/usr/bin/python3
"""Bandwidth-throttled scaling study: methods x bandwidths x replica counts.

Every point trains the same small GPT on the KJV bytes with `lowband train` under mpiexec (one
rank per replica, one OpenMP thread each) over one `wan` tier of the given bandwidth and
latency: emulated by lowband's link model (topology.emulate), and, with --real (root, network
namespaces), shaped for real by tc between namespaces (scripts/netns/cluster.sh; tc has no
latency here, so the real points are simulated with the measured ~0 latency). Per point it
reads metrics.jsonl and reports
  step_s       wall seconds per step over the steady window (steps 2H .. the last)
  utilization  compute share of the wall: 1 - (time the training thread was blocked in
               communication, metrics' comm_blocked_s) / wall, over the same window
  predicted    `lowband simulate --config` of the same config, its step the run's own compute
               (step_s x utilization), its latency the tier's plus the machine's floor
  predicted_link  the same with the tier's latency alone (the link model without the machine)
  val_loss, bytes_across (what one rank sent over `wan`)
The machine's floor: what a collective costs on this machine besides the link (4 ranks on 2
cores wait for each other's time slices; TCP through veth pays its stack), measured once per mode
and replica count by a ddp run over the tier unshaped (emulation off; tc at 10 Gbit/s) and
expressed as the extra per-exchange latency with which `lowband simulate` predicts that run's
utilisation. It is added to the tier's latency, as if the machine's share came after the link's.
and writes CSV + plots (matplotlib): val loss vs bytes, step time vs bandwidth, measured vs
predicted utilisation.

Usage: scripts/study/run_study.py [--quick] [--real] [--out results/study] [--lowband PATH]
"""
import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# name -> sync section (YAML flow); the study's rows, in the order the papers rank them.
METHODS = {
    "ddp": "{inner: {method: ddp}, outer: {method: ddp, tier: wan}}",
    "diloco": "{outer: {method: diloco, tier: wan, H: %(H)d, codec: none}}",
    "streaming": "{outer: {method: streaming_diloco, tier: wan, H: %(H)d, fragments: 4, "
                 "overlap: 0, codec: none}}",
    "streaming_overlap": "{outer: {method: streaming_diloco, tier: wan, H: %(H)d, fragments: 4, "
                         "overlap: 1, codec: none}}",
    "streaming_overlap_fp4": "{outer: {method: streaming_diloco, tier: wan, H: %(H)d, "
                             "fragments: 4, overlap: 1, codec: fp4}}",
}


def grid(quick):
    if quick:
        return dict(methods=["ddp", "diloco", "streaming_overlap_fp4"], mbit=[100],
                    replicas=[2], steps=60, H=10)
    return dict(methods=list(METHODS), mbit=[30, 100, 300, 1000], replicas=[2, 4], steps=80,
                H=10)


def config_text(name, sync, mbit, latency, out_dir, steps, emulate):
    return (
        f"run: {{name: {name}, seed: 7, steps: {steps}, out_dir: {out_dir}, log_every: 1, "
        f"eval_every: 0, eval_batches: 8, checkpoint_every: 0}}\n"
        "device: cpu\n"
        "model: {kind: gpt, n_layer: 4, d_model: 128, n_head: 4, seq_len: 128, vocab: 256}\n"
        f"data: {{train: {ROOT}/data/kjv/train_*.bin, val: {ROOT}/data/kjv/val_*.bin, "
        "batch_size: 8}\n"
        "optimizer: {kind: adamw, lr: 2e-3, warmup: 10, schedule: cosine}\n"
        "comm: {bucket: 4KB}\n"  # one bucket per block: ddp exchanges layer by layer
        f"topology:\n  emulate: {'true' if emulate else 'false'}\n  tiers:\n"
        f"    - {{name: wan, size: rest, bandwidth: {mbit}Mbit, latency: {latency}}}\n"
        f"sync: {sync}\n")


def read_metrics(path, H):
    """Steady window from step 2H to the last: wall seconds per step, the share of it not spent
    blocked in communication, final val loss, bytes sent over wan."""
    steps, val_loss = [], None
    with open(path) as f:
        for line in f:
            m = json.loads(line)
            if "val_loss" in m:
                val_loss = m["val_loss"]
            elif "loss" in m:
                steps.append(m)
    first = next(m for m in steps if m["step"] >= 2 * H)
    last = steps[-1]
    wall = last["elapsed_s"] - first["elapsed_s"]
    blocked = last["comm_blocked_s"] - first["comm_blocked_s"]
    step_s = wall / (last["step"] - first["step"])
    wan = last.get("tiers", {}).get("wan", {}).get("bytes", 0)
    return step_s, 1 - blocked / wall, val_loss, wan


def run(lowband, cfg_path, replicas, real):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if real:
        env["UCX_TLS"] = "tcp,self"
        hosts = ",".join(f"10.231.0.{i + 1}" for i in range(replicas))
        cmd = ["mpiexec", "-launcher", "ssh", "-launcher-exec",
               os.path.join(ROOT, "scripts/netns/exec.sh"), "-iface", "lbbr0", "-hosts", hosts,
               "-n", str(replicas), "-ppn", "1"]
    else:
        cmd = ["mpiexec", "-n", str(replicas)]
    cmd += [lowband, "train", cfg_path, "--overwrite"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.exit(f"run_study: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")


def predicted(lowband, cfg_path, replicas, compute_s, mbit, latency_s):
    bits = mbit * 1e6
    r = subprocess.run([lowband, "simulate", "--config", cfg_path, "--world", str(replicas),
                        "--step-time", repr(compute_s), "--latency", f"{latency_s * 1e3}ms",
                        "--min", repr(bits), "--max", repr(bits * 1.001), "--points", "2",
                        "--format", "json"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.splitlines()[0])["curve"][0]["utilization"]


UNSHAPED_MBIT = 10000  # the floor run's tc rate; emulation is simply off


def train_point(args, mode, g, method, replicas, mbit, latency, emulate):
    """Trains one point; returns its config path and (step_s, utilisation, val loss, bytes)."""
    name = f"{mode}_{method}_r{replicas}_{mbit}mbit"
    run_dir = os.path.join(args.out, "runs", name)
    cfg_dir = os.path.join(args.out, "configs")
    os.makedirs(cfg_dir, exist_ok=True)
    cfg = os.path.join(cfg_dir, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(config_text(name, METHODS[method] % g, mbit, latency, run_dir, g["steps"],
                            emulate))
    run(args.lowband, cfg, replicas, mode == "tc")
    return cfg, read_metrics(os.path.join(run_dir, "metrics.jsonl"), g["H"])


def machine_floor(args, mode, g, replicas):
    """Seconds of latency per exchange that make `lowband simulate` predict the utilisation of
    ddp over the unshaped tier (bisection: utilisation falls as latency grows)."""
    cfg, (step_s, share, _, _) = train_point(args, mode, g, "ddp", replicas, UNSHAPED_MBIT,
                                             "0ms", False)
    compute_s = step_s * share
    lo, hi = 0.0, 1.0
    if predicted(args.lowband, cfg, replicas, compute_s, 1e6, lo) <= share:
        return 0.0
    for _ in range(20):
        mid = (lo + hi) / 2
        if predicted(args.lowband, cfg, replicas, compute_s, 1e6, mid) > share:
            lo = mid
        else:
            hi = mid
    floor = (lo + hi) / 2
    print(f"{mode:9s} machine floor r{replicas}: ddp unshaped at utilisation {share:.3f}, "
          f"{floor * 1e3:.1f} ms per exchange", flush=True)
    return floor


def cluster(cmd, *rest):
    subprocess.run(["bash", os.path.join(ROOT, "scripts/netns/cluster.sh"), cmd, *rest],
                   check=cmd == "up")


def study(args, mode, g, rows):
    real = mode == "tc"
    latency = "0ms" if real else args.latency
    latency_s = 0.0 if real else float(args.latency.rstrip("ms")) / 1e3
    for replicas in g["replicas"]:
        if real:
            cluster("up", str(replicas), f"{UNSHAPED_MBIT}mbit")
        try:
            floor_s = machine_floor(args, mode, g, replicas)
        finally:
            if real:
                cluster("down")
        for mbit in g["mbit"]:
            if real:
                cluster("up", str(replicas), f"{mbit}mbit")
            try:
                for method in g["methods"]:
                    cfg, (step_s, share, val_loss, wan) = train_point(
                        args, mode, g, method, replicas, mbit, latency, not real)
                    compute_s = step_s * share  # the step without its blocked time
                    pred = predicted(args.lowband, cfg, replicas, compute_s, mbit,
                                     latency_s + floor_s)
                    link = predicted(args.lowband, cfg, replicas, compute_s, mbit, latency_s)
                    row = dict(mode=mode, method=method, replicas=replicas, mbit=mbit,
                               latency_ms=latency_s * 1e3, floor_ms=round(floor_s * 1e3, 2),
                               steps=g["steps"], H=g["H"], step_s=round(step_s, 5),
                               compute_step_s=round(compute_s, 5), utilization=round(share, 4),
                               predicted=round(pred, 4), predicted_link=round(link, 4),
                               val_loss=val_loss, bytes_across=int(wan))
                    rows.append(row)
                    print(f"{mode:9s} {method:22s} r{replicas} {mbit:5d} Mbit/s: step "
                          f"{step_s * 1e3:7.1f} ms, utilisation {row['utilization']:.3f} "
                          f"(simulate {pred:.3f}; link alone {link:.3f}), val {val_loss:.4f}, "
                          f"{wan / 1e6:.2f} MB across", flush=True)
            finally:
                if real:
                    cluster("down")


def plot(rows, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("run_study: matplotlib missing; no plots (apt-get install python3-matplotlib)")
        return
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.6))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for m in methods:
        pts = [r for r in rows if r["method"] == m and r["mode"] == "emulated"]
        ax[0].scatter([r["bytes_across"] for r in pts], [r["val_loss"] for r in pts], label=m)
        for rep, style in ((2, "-o"), (4, "--s")):
            line = sorted((r["mbit"], r["step_s"] * 1e3) for r in pts if r["replicas"] == rep)
            if line:
                ax[1].plot(*zip(*line), style, label=f"{m} ({rep} replicas)")
    ax[0].set(xscale="log", xlabel="bytes one rank sent across replicas", ylabel="final val loss",
              title="val loss vs bytes exchanged")
    ax[0].legend(fontsize=7)
    ax[1].set(xscale="log", yscale="log", xlabel="bandwidth (Mbit/s)", ylabel="step (ms)",
              title="step time vs bandwidth")
    ax[1].legend(fontsize=6)
    for mode, marker in (("emulated", "o"), ("tc", "x")):
        pts = [r for r in rows if r["mode"] == mode]
        if pts:
            ax[2].scatter([r["predicted"] for r in pts], [r["utilization"] for r in pts],
                          marker=marker, label=mode)
    ax[2].plot([0, 1], [0, 1], "k-", lw=0.8)
    ax[2].fill_between([0, 1], [-0.1, 0.9], [0.1, 1.1], color="grey", alpha=0.2, label="±10 pp")
    ax[2].set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="lowband simulate",
              ylabel="measured utilisation", title="measured vs simulated utilisation")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "study.png"), dpi=110)
    print(f"run_study: wrote {os.path.join(out, 'study.png')}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the CI grid (about 3 minutes)")
    p.add_argument("--real", action="store_true",
                   help="also the same points over tc-shaped network namespaces (root)")
    p.add_argument("--latency", default="5ms", help="emulated latency of the wan tier")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless every emulated point is within 10 pp of lowband simulate "
                        "(with the machine's floor) and, at 100 Mbit/s, ddp < diloco < streaming "
                        "< streaming with overlap (with and without fp4) in utilisation")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "study"))
    p.add_argument("--lowband", default=os.path.join(ROOT, "build", "lowband"))
    p.add_argument("--readme", help="rewrite the tables between the study markers of this file")
    p.add_argument("--from-csv", help="skip the runs: tables and plots from this study.csv")
    args = p.parse_args()
    if not args.latency.endswith("ms"):
        sys.exit("run_study: --latency takes milliseconds, e.g. 5ms")
    if args.real and os.geteuid() != 0:
        sys.exit("run_study: --real needs root (network namespaces and tc)")
    if args.from_csv:
        with open(args.from_csv) as f:
            rows = [{k: (v if k in ("mode", "method") else float(v)) for k, v in r.items()}
                    for r in csv.DictReader(f)]
        for r in rows:
            for k in ("replicas", "mbit", "steps", "H", "bytes_across"):
                r[k] = int(r[k])
    else:
        g = grid(args.quick)
        if os.path.isdir(os.path.join(args.out, "runs")):
            shutil.rmtree(os.path.join(args.out, "runs"))  # the study's own runs only
        rows = []
        study(args, "emulated", g, rows)
        if args.real:
            study(args, "tc", g, rows)
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "study.csv")
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"run_study: wrote {path}")
    if args.readme:
        write_readme(args.readme, rows)
    for mode in ("emulated", "tc"):
        gaps = [abs(r["utilization"] - r["predicted"]) for r in rows if r["mode"] == mode]
        link = [abs(r["utilization"] - r["predicted_link"]) for r in rows if r["mode"] == mode]
        if gaps:
            print(f"run_study: largest |measured - simulated| utilisation ({mode}): "
                  f"{max(gaps) * 100:.1f} pp (tier latency alone: {max(link) * 100:.1f} pp)")
    plot(rows, args.out)
    if args.check:
        failures = check(rows)
        for f in failures:
            print(f"run_study: check failed: {f}")
        if failures:
            sys.exit(1)
        print("run_study: checks passed (within 10 pp of simulate; the papers' ordering)")


def tables(rows):
    """Markdown: utilisation measured (simulated) per method and bandwidth, for each mode and
    replica count; then bytes and final val loss per method (they do not depend on bandwidth)."""
    out = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for mode, replicas in sorted({(r["mode"], r["replicas"]) for r in rows}):
        pts = [r for r in rows if r["mode"] == mode and r["replicas"] == replicas]
        mbits = sorted({r["mbit"] for r in pts})
        how = "an emulated link" if mode == "emulated" else "tc-shaped network namespaces"
        out.append(f"Utilisation, measured (lowband simulate), {replicas} replicas over {how}, "
                   f"latency {pts[0]['latency_ms']:g} ms + the machine's floor "
                   f"{pts[0]['floor_ms']:.1f} ms:\n")
        out.append("| method | " + " | ".join(f"{m} Mbit/s" for m in mbits) + " |")
        out.append("|---|" + "---|" * len(mbits))
        for m in methods:
            cells = []
            for mb in mbits:
                r = next((r for r in pts if r["method"] == m and r["mbit"] == mb), None)
                cells.append(f"{r['utilization'] * 100:.1f}% ({r['predicted'] * 100:.1f}%)"
                             if r else "")
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("Bytes one rank sent across replicas and final val loss (emulated runs):\n")
    out.append("| method | replicas | bytes across | val loss |")
    out.append("|---|---|---|---|")
    seen = set()
    for r in rows:
        key = (r["method"], r["replicas"])
        if r["mode"] != "emulated" or key in seen:
            continue
        seen.add(key)
        out.append(f"| {r['method']} | {r['replicas']} | {r['bytes_across'] / 1e6:.2f} MB | "
                   f"{r['val_loss']:.4f} |")
    for mode, how in (("emulated", "under emulation"), ("tc", "over tc-shaped namespaces")):
        gaps = [abs(r["utilization"] - r["predicted"]) for r in rows if r["mode"] == mode]
        link = [abs(r["utilization"] - r["predicted_link"]) for r in rows if r["mode"] == mode]
        if gaps:
            out.append(f"\nLargest |measured - simulated| {how}: {max(gaps) * 100:.1f} pp "
                       f"({max(link) * 100:.1f} pp with the tier's latency alone).")
    return "\n".join(out) + "\n"


def write_readme(path, rows):
    with open(path) as f:
        text = f.read()
    begin, end = "<!-- study:begin -->\n", "<!-- study:end -->"
    if begin not in text or end not in text:
        sys.exit(f"run_study: {path} has no study markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + tables(rows) + end + tail)
    print(f"run_study: rewrote the study tables in {path}")


def check(rows):
    failures = [f"{r['mode']} {r['method']} r{r['replicas']} {r['mbit']} Mbit/s: measured "
                f"{r['utilization']:.3f} vs simulated {r['predicted']:.3f}"
                for r in rows
                if r["mode"] == "emulated" and abs(r["utilization"] - r["predicted"]) > 0.10]
    order = [["ddp"], ["diloco"], ["streaming"], ["streaming_overlap", "streaming_overlap_fp4"]]
    for mode, replicas in sorted({(r["mode"], r["replicas"]) for r in rows}):
        u = {r["method"]: r["utilization"] for r in rows
             if r["mode"] == mode and r["replicas"] == replicas and r["mbit"] == 100}
        ranks = [[u[m] for m in group if m in u] for group in order]
        ranks = [g for g in ranks if g]
        for lower, higher in zip(ranks, ranks[1:]):
            if max(lower) >= min(higher):
                failures.append(f"{mode} r{replicas} at 100 Mbit/s: utilisation not in the "
                                f"papers' order: {u}")
                break
    return failures


if __name__ == "__main__":
    main()
