"""Reproduce a paper row over E epochs x K seeds, resumably, with the curves the authors log.

    python benchmarks/reproduce.py run --row mnist-fc --epochs 5 --seed 0            # one run
    python benchmarks/reproduce.py run --tag lr2x --train-samples 10000 --epochs 1 \\
        --set training.lr=2e-3                                                     # a probe
    python benchmarks/reproduce.py show [--tag TAG ...]                              # the table
    python benchmarks/reproduce.py report                                            # PNG plots

``run`` trains the row's spec (benchmarks/paper_table.py's ROWS, the authors' settings) with the
``--set section.field=value`` overrides (values read as YAML), one seed after the other, each in
runs/reproduce/TAG/seedN/. A run killed mid-way continues from its last epoch checkpoint when the
same command is given again (the trainer's resume; a different spec is refused). Every finished
epoch appends one JSON line to --results (default benchmarks/results/reproduce.jsonl):

    tag, row, seed, overrides, train_samples, test_samples, epoch, lr,
    test_accuracy         after the epoch, on test_samples test images
    train_accuracy        online: each sample's vote from its forward pass before its update
    train_accuracy_per_1000   the same per block of 1,000 samples of the epoch
    loss, logged_loss     mean dead-zone cost; the authors' logged cost (dummy label train counted)
    firing_rates          spikes per neuron per step, per layer
    seconds               training seconds of the epoch (evaluation not included)

``show`` prints, per tag and epoch, mean and spread (min-max) over seeds beside the authors' logged
runs (hm2bp_core/reference). ``report`` renders the plots of docs/reproduction.md into docs/img/.
Give torch one thread per process here (--threads, default 1): the machine has 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from paper_table import ROWS, locate, merge

from hm2bp_core.data import load_dataset
from hm2bp_core.reference import paper_curve
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reproduce.jsonl"
RUNS = ROOT / "runs" / "reproduce"
IMAGES = ROOT / "docs" / "img"
REFERENCE_RUNS = {"mnist-fc": ["mnist-fc", "mnist-fc-ovth5"], "mnist-cnn": ["mnist-cnn"], "nmnist-fc": ["nmnist-fc"]}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.field=value`` -> (["section", "field"], YAML value); a clear error otherwise."""
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise SystemExit(f"--set {text!r}: expected section.field=value")
    return path.split("."), yaml.safe_load(value)


def nested(path: list[str], value: Any) -> dict:
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return out


def build_spec(args) -> TrainingSpec:
    spec = ROWS[args.row]["spec"]
    training = {"epochs": args.epochs, "seed": 0, "max_train_samples": args.train_samples,
                "max_test_samples": args.test_samples}
    spec = merge(spec, {"training": training})
    for text in args.set:
        spec = merge(spec, nested(*parse_override(text)))
    return TrainingSpec.model_validate(spec)


def run(args) -> None:
    torch.set_num_threads(args.threads)
    ref = locate(ROWS[args.row]["data"], download=False)
    if ref is None:
        raise SystemExit(f"{args.row}: its data set {ROWS[args.row]['data']} is not on this machine")
    dataset = load_dataset(ref)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seed:
        spec = build_spec(args)
        spec.training.seed = seed
        out = args.runs / args.tag / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        header = {"tag": args.tag, "row": args.row, "seed": seed, "overrides": args.set,
                  "train_samples": min(len(dataset.x_train), args.train_samples or 10**9),
                  "test_samples": min(len(dataset.x_test), args.test_samples or 10**9)}
        last_print = [0.0]

        def on_event(event: dict, header=header, last_print=last_print) -> None:
            if event["type"] == "epoch":
                keep = ("epoch", "lr", "test_accuracy", "train_accuracy", "train_accuracy_per_1000", "loss",
                        "logged_loss", "firing_rates", "seconds")
                line = {**header, **{k: event[k] for k in keep}, "finished_at": time.time()}
                with args.results.open("a") as handle:
                    handle.write(json.dumps(line) + "\n")
                print(f"{args.tag} seed {header['seed']} epoch {event['epoch']}: online {event['train_accuracy']:.4f} "
                      f"test {event['test_accuracy']:.4f} logged cost {event['logged_loss']:.2f} "
                      f"{event['seconds']:.0f} s", flush=True)
            elif event["type"] == "progress" and time.time() - last_print[0] > 120:
                last_print[0] = time.time()
                print(f"  {args.tag} seed {header['seed']} epoch {event['epoch']} step {event['step']}/{event['steps']}"
                      f" loss {event['loss']:.1f} {event['samples_per_sec']:.1f} samples/s", flush=True)
            elif event["type"] == "log":
                print(f"  {event['message']}", flush=True)

        train(spec, dataset, out, callback=on_event, resume=True)


def load_results(path: Path, tags: list[str] | None = None) -> dict[str, dict[int, dict[int, dict]]]:
    """tag -> seed -> epoch -> record (the last line wins: a resumed run may repeat an epoch)."""
    runs: dict[str, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    if path.exists():
        for text in path.read_text().splitlines():
            record = json.loads(text)
            if tags is None or record["tag"] in tags:
                runs[record["tag"]][record["seed"]][record["epoch"]] = record
    return runs


def spread(values: list[float]) -> str:
    """'mean (min-max, n)' in percent."""
    a = 100 * np.asarray(values)
    return f"{a.mean():6.2f} ({a.min():.2f}-{a.max():.2f}, n={len(a)})" if len(a) > 1 else f"{a.mean():6.2f} (n=1)"


def show(args) -> None:
    runs = load_results(args.results, args.tag or None)
    header = (f"{'tag':<22} {'epoch':>5} {'online train % mean (min-max)':<32} {'test % mean (min-max)':<32} "
              f"{'logged cost':>11} {'s/epoch':>7}")
    print(header)
    print("-" * len(header))
    for tag, seeds in runs.items():
        epochs = sorted({e for s in seeds.values() for e in s})
        for e in epochs:
            rows = [s[e] for s in seeds.values() if e in s]
            print(f"{tag:<22} {e:>5} {spread([r['train_accuracy'] for r in rows]):<32} "
                  f"{spread([r['test_accuracy'] for r in rows]):<32} "
                  f"{np.mean([r['logged_loss'] for r in rows]):>11.1f} "
                  f"{np.mean([r['seconds'] for r in rows]):>7.0f}")
    for name in REFERENCE_RUNS["mnist-fc"]:
        curve = paper_curve(name)
        for row in curve["epochs"][:args.reference_epochs]:
            print(f"{'authors ' + name:<22} {row['epoch']:>5} {100 * row['train_accuracy']:6.2f}{'':<26} "
                  f"{100 * row['test_accuracy']:6.2f}{'':<26} {row['cost']:>11.1f} {row['seconds']:>7.0f}")


def report(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_results(args.results)
    IMAGES.mkdir(parents=True, exist_ok=True)
    full = {tag: seeds for tag, seeds in runs.items()
            if all(r["train_samples"] == 60000 and r["test_samples"] == 10000
                   for s in seeds.values() for r in s.values())}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # 1. accuracy per epoch: ours (mean and min-max band over seeds) over the authors' logged runs
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = ((axes[0], "train_accuracy", "train_accuracy", "online train accuracy, %"),
              (axes[1], "test_accuracy", "test_accuracy", "test accuracy, %"),
              (axes[2], "logged_loss", "cost", "logged cost (dummy label train counted)"))  # (ours, their log's)
    for ax, key, theirs, title in panels:
        scale = 1 if key == "logged_loss" else 100
        for name, style in zip(REFERENCE_RUNS["mnist-fc"], ("k-", "k:"), strict=False):
            epochs = paper_curve(name)["epochs"][:args.reference_epochs]
            ax.plot([r["epoch"] for r in epochs], [scale * r[theirs] for r in epochs],
                    style, marker="o", ms=3, label=f"authors: {name}")
        for color, tag in zip(colors, args.tag or sorted(full), strict=False):
            if tag not in full:
                continue
            seeds = full[tag]
            epochs = sorted({e for s in seeds.values() for e in s})
            values = [[scale * s[e][key] for s in seeds.values() if e in s] for e in epochs]
            ax.plot(epochs, [np.mean(v) for v in values], "-", color=color, marker="s", ms=3,
                    label=f"ours: {tag} ({len(seeds)} seeds)")
            ax.fill_between(epochs, [min(v) for v in values], [max(v) for v in values], color=color, alpha=0.2)
        ax.set_title(f"784-800-10 MNIST, batch 1: {title}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMAGES / "reproduction_epochs.png", dpi=110)
    plt.close(fig)

    # 2. online accuracy per 1,000 samples over the first epoch, every tag with a first epoch of >= 10,000
    fig, ax = plt.subplots(figsize=(8, 4))
    for color, (tag, seeds) in zip(colors * 3, sorted(runs.items()), strict=False):
        firsts = [s[1]["train_accuracy_per_1000"] for s in seeds.values() if 1 in s]
        if not firsts or len(firsts[0]) < 10 or (args.tag and tag not in args.tag):
            continue
        n = min(len(f) for f in firsts)
        mean = np.mean([f[:n] for f in firsts], axis=0) * 100
        ax.plot(np.arange(1, n + 1), mean, color=color, label=f"{tag} ({len(firsts)} seeds)")
    for name, style in zip(REFERENCE_RUNS["mnist-fc"], ("k--", "k:"), strict=False):
        ax.axhline(100 * paper_curve(name)["epochs"][0]["train_accuracy"], color="k", ls=style[1:], lw=1,
                   label=f"authors: {name}, epoch-1 mean (their log has no finer figure)")
    ax.set_xlabel("thousand samples into epoch 1")
    ax.set_ylabel("online train accuracy per 1,000 samples, %")
    ax.set_ylim(40, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(IMAGES / "reproduction_first_epoch.png", dpi=110)
    plt.close(fig)
    print(f"wrote {IMAGES / 'reproduction_epochs.png'} and {IMAGES / 'reproduction_first_epoch.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train (or continue) runs and append their epochs to --results")
    p_run.add_argument("--row", choices=sorted(ROWS), default="mnist-fc")
    p_run.add_argument("--tag", default="faithful", help="name of this configuration in the results")
    p_run.add_argument("--epochs", type=int, default=1)
    p_run.add_argument("--seed", type=int, nargs="+", default=[0])
    p_run.add_argument("--train-samples", type=int, default=None)
    p_run.add_argument("--test-samples", type=int, default=None)
    p_run.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p_run.add_argument("--threads", type=int, default=1)
    p_run.add_argument("--runs", type=Path, default=RUNS, help="checkpoint folders (resume from here)")
    for p in (p_run, sub.add_parser("show", help="print the table"), sub.add_parser("report", help="render the plots")):
        p.add_argument("--results", type=Path, default=RESULTS)
        if p is not p_run:
            p.add_argument("--tag", action="append", help="only these tags (default: all)")
            p.add_argument("--reference-epochs", type=int, default=5)
    args = parser.parse_args()
    {"run": run, "show": show, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
