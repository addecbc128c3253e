"""The paper's CNN per epoch at the authors' batch 1 and with ``training.batch_schedule``, side by side.

    python benchmarks/cnn_batches.py examples/mnist_cnn.yaml --train-samples 10000 --test-samples 1000 --epochs 3
    python benchmarks/cnn_batches.py examples/mnist_cnn_batch32.yaml --train-samples 10000 --test-samples 1000 \
        --epochs 3
    python benchmarks/cnn_batches.py --show        # the markdown table of every run recorded in --results

Each command trains one spec (an ``examples/`` file: the network, augmentation and training
settings are the spec's own) on the first --train-samples MNIST training images
(../shared/data/mnist.npz) and evaluates on the first --test-samples test images after every epoch.
Every finished epoch is appended at once to --results (JSON lines: the spec file, its batch
size and batch schedule, the epoch, test and online train accuracy, the online accuracy per 1,000
samples, the seconds and samples/s of the epoch's training, each layer's firing rate and the
machine's load average), so a run stopped early keeps the epochs it finished. ``--show`` prints
one markdown table, a row per (run, epoch), runs of the same settings side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from hm2bp_core.data import load_dataset
from hm2bp_core.spec import load_spec
from hm2bp_core.train import train

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"
RESULTS = Path(__file__).parent / "results" / "cnn_batches.jsonl"


def run(args) -> None:
    spec = load_spec(args.spec)
    cfg = spec.training
    cfg.epochs, cfg.seed = args.epochs, args.seed
    cfg.max_train_samples, cfg.max_test_samples = args.train_samples, args.test_samples
    if args.time_steps:
        spec.encoding.time_steps = args.time_steps
    dataset = load_dataset(str(args.data))
    n_train = min(len(dataset.x_train), args.train_samples or len(dataset.x_train))
    n_test = min(len(dataset.x_test), args.test_samples or len(dataset.x_test))
    run_id = f"{Path(args.spec).stem}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    base = {"run": run_id, "spec": str(args.spec), "batch_size": cfg.batch_size,
            "batch_schedule": cfg.batch_schedule.model_dump(), "lr": cfg.lr, "time_steps": spec.encoding.time_steps,
            "train_samples": n_train, "test_samples": n_test, "seed": cfg.seed, "threads": torch.get_num_threads(),
            "torch": torch.__version__}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    last = [0.0]

    def record(event: dict) -> None:
        if event["type"] == "progress" and time.perf_counter() - last[0] >= 60:
            last[0] = time.perf_counter()
            print(f"# epoch {event['epoch']} step {event['step']}/{event['steps']}: loss {event['loss']:.1f}, "
                  f"{event['samples_per_sec']:.2f} samples/s", file=sys.stderr, flush=True)
        if event["type"] != "epoch":
            return
        row = {**base, "epoch": event["epoch"], "test_accuracy": event["test_accuracy"],
               "train_accuracy": event["train_accuracy"], "train_accuracy_per_1000": event["train_accuracy_per_1000"],
               "loss": event["loss"], "lr_epoch": event["lr"], "seconds": event["seconds"],
               "samples_per_sec": event["samples_per_sec"], "firing_rates": event["firing_rates"],
               "load_average": os.getloadavg()[0]}
        with args.results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as out:
        train(spec, dataset, out, callback=record)


def schedule_text(row: dict) -> str:
    s = row["batch_schedule"]
    parts = []
    if s.get("warmup_samples"):
        parts.append(f"warm-up {s['warmup_samples']} at batch 1")
    if s.get("lr_scaling", "none") != "none":
        parts.append(f"lr x {s['lr_scaling']}(batch)")
    return ", ".join(parts) or "-"


def show(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    print("| run | batch | schedule | lr | train n | test n | T | epoch | test % | online train % | "
          "online % per 1,000 | s/epoch | samples/s | load |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r["train_samples"], r["run"], r["epoch"])):
        blocks = " ".join(f"{100 * a:.0f}" for a in r["train_accuracy_per_1000"])
        print(f"| {r['run']} | {r['batch_size']} | {schedule_text(r)} | {r['lr']:g} | {r['train_samples']} | "
              f"{r['test_samples']} | {r['time_steps']} | {r['epoch']} | {100 * r['test_accuracy']:.2f} | "
              f"{100 * r['train_accuracy']:.2f} | {blocks} | {r['seconds']:.0f} | {r['samples_per_sec']:.2f} | "
              f"{r['load_average']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", nargs="?", help="the spec file to train (e.g. examples/mnist_cnn.yaml)")
    parser.add_argument("--train-samples", type=int, default=10_000)
    parser.add_argument("--test-samples", type=int, default=1_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-steps", type=int, default=None, help="override T (tests use a small one)")
    parser.add_argument("--data", type=Path, default=SHARED_MNIST, help="an MNIST-shaped .npz")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--show", action="store_true", help="only print the table of --results")
    args = parser.parse_args()
    if args.spec:
        run(args)
    if args.show or not args.spec:
        show(args.results)


if __name__ == "__main__":
    main()
