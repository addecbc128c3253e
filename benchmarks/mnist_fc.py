"""Train the paper's 784-800-10 network on MNIST with the paper's settings and print a table.

    python benchmarks/mnist_fc.py --train-samples 10000 --epochs 3 --batch-size 1
    python benchmarks/mnist_fc.py --train-samples 10000 --epochs 3 --batch-size 16

Data: ``--data`` (default: ../shared/data/mnist.npz if present, else builtin:mnist, which
downloads the official IDX files). Columns: epoch, train/test accuracy, seconds, samples/s, peak
memory (the process's peak resident set size, which includes the ~0.4 GiB of torch itself).
For scale: the authors' CUDA code logs 97.32 % after the first full epoch and 98.45 % after five
(683-840 s per epoch on a Titan XP).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from hm2bp_core.data import load_dataset
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import train

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED_MNIST) if SHARED_MNIST.exists() else "builtin:mnist")
    parser.add_argument("--train-samples", type=int, default=10_000)
    parser.add_argument("--test-samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--time-steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = TrainingSpec.model_validate({
        "encoding": {"time_steps": args.time_steps},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "device": args.device, "max_train_samples": args.train_samples,
                     "max_test_samples": args.test_samples},
    })
    dataset = load_dataset(args.data)
    print(f"# 784-800-10, T={args.time_steps}, batch {args.batch_size}, lr {args.lr}, {args.train_samples} train / "
          f"{args.test_samples} test samples, data {args.data}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    header = f"{'epoch':>5} {'train acc':>9} {'test acc':>8} {'train s':>8} {'samples/s':>9} {'peak MiB':>8}"
    print(header)
    print("-" * len(header), flush=True)

    def on_event(event):
        if event["type"] == "epoch":
            print(f"{event['epoch']:>5} {event['train_accuracy']:>9.4f} {event['test_accuracy']:>8.4f} "
                  f"{event['seconds']:>8.1f} {event['samples_per_sec']:>9.1f} {peak_rss_mib():>8.0f}", flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        metrics = train(spec, dataset, out, callback=on_event, progress_bar=sys.stderr.isatty())
    final = metrics["final"]
    print(f"# final test {final['test_accuracy']:.4f}, best {final['best_test_accuracy']:.4f}, "
          f"train {final['train_seconds']:.0f} s, wall {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
