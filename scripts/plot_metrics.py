#!/usr/bin/python3
"""Plots one or more lowband runs from their metrics.jsonl (schema: docs/operations.md).

    scripts/plot_metrics.py runs/a runs/b [--labels A B] [--out plots.png]

Three panels: loss vs step, vs wall time and vs bytes rank 0 sent (all tiers); training loss
as lines, validation loss as markers. A resumed run's clock and byte counters restart at the
resume: they are stitched so both axes keep growing. Needs Debian's python3-matplotlib; run it
with /usr/bin/python3.
"""
import argparse
import json
import os
import sys


def load(path):
    """(train, val): lists of dicts with step, loss, time, bytes; stitched over resumes."""
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    train, val = [], []
    time_offset = bytes_offset = last_time = last_bytes = 0.0
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                m = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: not JSON ({e.msg}); expected one object per line")
            if "loss" in m:
                elapsed = m.get("elapsed_s") or 0.0
                sent = sum(t.get("bytes", 0) for t in (m.get("tiers") or {}).values())
                if elapsed < last_time:  # resumed: counters restarted
                    time_offset += last_time
                    bytes_offset += last_bytes
                last_time, last_bytes = elapsed, sent
                if m["loss"] is not None:
                    train.append({"step": m["step"], "loss": m["loss"],
                                  "time": time_offset + elapsed, "bytes": bytes_offset + sent})
            elif "val_loss" in m and m["val_loss"] is not None:
                val.append({"step": m["step"], "loss": m["val_loss"]})
    if not train and not val:
        sys.exit(f"{path}: no loss lines")
    # Validation points take the time and bytes of the training line of the same step.
    at = {t["step"]: t for t in train}
    for v in val:
        t = at.get(v["step"])
        v["time"] = t["time"] if t else None
        v["bytes"] = t["bytes"] if t else None
    return train, val


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files")
    p.add_argument("--labels", nargs="+", help="legend labels (default: directory names)")
    p.add_argument("--out", default="metrics.png", help="PNG to write (default metrics.png)")
    a = p.parse_args()
    if a.labels and len(a.labels) != len(a.runs):
        sys.exit(f"--labels: {len(a.labels)} labels for {len(a.runs)} runs")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is missing: apt-get install python3-matplotlib, run with /usr/bin/python3")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("step", "step", 1), ("time", "wall time (s)", 1), ("bytes", "MB sent by rank 0", 1e-6)]
    for i, run in enumerate(a.runs):
        label = a.labels[i] if a.labels else os.path.basename(os.path.normpath(run))
        train, val = load(run)
        color = f"C{i % 10}"
        for ax, (key, title, scale) in zip(axes, panels):
            if train:
                ax.plot([t[key] * scale for t in train], [t["loss"] for t in train], color=color,
                        label=f"{label} train")
            vs = [v for v in val if v[key] is not None]
            if vs:
                ax.plot([v[key] * scale for v in vs], [v["loss"] for v in vs], "o--", color=color,
                        markersize=4, label=f"{label} val")
            ax.set_xlabel(title)
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
    axes[2].set_xscale("symlog", linthresh=1e-3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
