#!/usr/bin/python3
"""Plots and tabulates `lowband bench schedules --json` output (scripts/bench_schedules.sh).

    plot_schedules.py RESULTS.jsonl RUNS_DIR OUT.png [--readme README.md]

RESULTS.jsonl: the bench's JSON lines ({"study":"quality",...} and {"study":"overlap",...}).
RUNS_DIR: the bench's run directories (quality_<method>/metrics.jsonl) for the loss curves.
OUT.png: training loss vs step, loss vs bytes sent across replicas, and step time over an
emulated slow link relative to no outer communication. With --readme, the tables between
<!-- schedules:begin --> and <!-- schedules:end --> are replaced.
"""

import argparse
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BEGIN, END = "<!-- schedules:begin -->", "<!-- schedules:end -->"


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def curves(runs_dir, method):
    path = os.path.join(runs_dir, "quality_" + method, "metrics.jsonl")
    if not os.path.exists(path):
        return [], [], []
    steps, losses, sent = [], [], []
    for row in read_jsonl(path):
        if "loss" not in row or row["loss"] is None:
            continue
        steps.append(row["step"])
        losses.append(row["loss"])
        sent.append(sum(t["bytes"] for t in row.get("tiers", {}).values()))
    return steps, losses, sent


def human_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 999.5 or unit == "TB":
            return "%.3g %s" % (n, unit)
        n /= 1000.0


def tables(quality, overlap):
    out = []
    if quality:
        q0 = quality[0]
        out.append(
            "Quality at equal tokens: %d replicas (one rank each), %d steps, %s tokens in all; "
            "bytes are what one rank sent across replicas." % (q0["replicas"], q0["steps"], f"{q0['tokens']:,}"))
        out.append("")
        out.append("| method | final val loss | vs ddp | bytes across replicas | ddp bytes / bytes | outer steps (all fragments) | wall |")
        out.append("|---|---|---|---|---|---|---|")
        for r in quality:
            red = "1x" if r["method"] == "ddp" else "%.0fx" % r["bytes_reduction"]
            out.append("| %s | %.4f | %+.2f%% | %s | %s | %d | %.0f s |" % (
                r["method"], r["final_val_loss"], (r["loss_ratio"] - 1) * 100,
                human_bytes(r["bytes_outer"]), red, r["outer_steps"], r["wall_s"]))
        out.append("")
    if overlap:
        out.append("Step time with 2 replicas joined by an emulated 100 Mbit/s, 20 ms link "
                   "(%d ranks), relative to the same run without outer communication:" % overlap[0]["ranks"])
        out.append("")
        out.append("| method | step | / no outer communication | outer exchange time hidden |")
        out.append("|---|---|---|---|")
        for r in overlap:
            out.append("| %s | %.1f ms | %.3fx | %.0f%% |" % (
                r["method"], r["step_s"] * 1e3, r["step_time_ratio"], r["outer_hidden_fraction"] * 100))
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("runs_dir")
    ap.add_argument("out_png")
    ap.add_argument("--readme")
    a = ap.parse_args()
    rows = read_jsonl(a.results)
    quality = [r for r in rows if r.get("study") == "quality"]
    overlap = [r for r in rows if r.get("study") == "overlap"]
    if not quality and not overlap:
        sys.exit("plot_schedules: no results in " + a.results)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in quality:
        steps, losses, sent = curves(a.runs_dir, r["method"])
        if not steps:
            continue
        axes[0].plot(steps, losses, label=r["method"])
        axes[1].plot([max(s, 1) for s in sent], losses, label=r["method"])
    axes[0].set(xlabel="step", ylabel="training loss (nats/byte)", title="loss vs step")
    axes[1].set(xlabel="bytes sent across replicas (one rank)", ylabel="training loss",
                title="loss vs bytes exchanged", xscale="log")
    for ax in axes[:2]:
        ax.legend()
        ax.grid(alpha=0.3)
    if overlap:
        names = [r["method"] for r in overlap]
        ratios = [r["step_time_ratio"] for r in overlap]
        axes[2].bar(names, ratios, color="tab:blue")
        axes[2].axhline(1.05, color="tab:red", linestyle="--", label="1.05x")
        axes[2].set(ylabel="step time / no outer communication",
                    title="100 Mbit/s, 20 ms between 2 replicas")
        axes[2].legend()
        for i, v in enumerate(ratios):
            axes[2].text(i, v, "%.3f" % v, ha="center", va="bottom")
    fig.tight_layout()
    fig.savefig(a.out_png, dpi=110)
    print("wrote", a.out_png)

    if a.readme:
        with open(a.readme) as f:
            text = f.read()
        if BEGIN not in text or END not in text:
            sys.exit("plot_schedules: %s has no %s ... %s markers" % (a.readme, BEGIN, END))
        body = tables(quality, overlap)
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END),
                      lambda _: BEGIN + "\n" + body + "\n" + END, text, flags=re.S)
        with open(a.readme, "w") as f:
            f.write(text)
        print("updated", a.readme)


if __name__ == "__main__":
    main()
