"""Cost of one training sample of the paper's CNN against the paper's MLP, at batch 1, side by side.

    python benchmarks/cnn_vs_mlp.py                          # 200 samples per run, 3 rounds, T = 400
    python benchmarks/cnn_vs_mlp.py --samples 600 --rounds 5 --threads 2
    python benchmarks/cnn_vs_mlp.py --data other_mnist.npz     # an MNIST-shaped .npz of your own

Each round trains one epoch of ``--samples`` MNIST images (../shared/data/mnist.npz) with
examples/mnist_mlp.yaml (784-800-10) and then with examples/mnist_cnn.yaml
(15C5-P2-40C5-P2-300-10, augmentation on), both at the authors' batch 1 (one Adam step per
sample), T = ``--steps``, the same seed every round (so every round does the same work). The time
is the trainer's own training time of the epoch (encoding, augmentation, simulation, gradients,
Adam; the one-image test pass is not counted), and beside it the CPU time the process used for the
whole run (``time.process_time``: the same work plus building the trainer and the one-image test;
on a shared machine it does not count the time others held the cores). Printed: per network the
median, min and max over the rounds of the milliseconds per training sample, and the CNN/MLP
ratios of the medians (the authors' GPU ratio is about 2.5: 1,100 s for their first CNN epoch
against 641 s per MLP epoch, issue 15). Rounds alternate the two networks, so a change in the
machine's load hits both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from hm2bp_core.data import load_dataset
from hm2bp_core.spec import TrainingSpec, load_spec
from hm2bp_core.train import train

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"
NETWORKS = {"mlp": ROOT / "examples" / "mnist_mlp.yaml", "cnn": ROOT / "examples" / "mnist_cnn.yaml"}


def spec_for(path: Path, samples: int, steps: int) -> TrainingSpec:
    spec = load_spec(path)
    spec.encoding.time_steps = steps
    spec.training.epochs = 1
    spec.training.batch_size = 1
    spec.training.max_train_samples = samples
    spec.training.max_test_samples = 1
    return TrainingSpec.model_validate(spec.to_dict())


def ms_per_sample(spec: TrainingSpec, dataset, samples: int) -> tuple[float, float]:
    """(training wall-clock ms, process CPU ms) per training sample of one run."""
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as out:
        metrics = train(spec, dataset, out)
    cpu = time.process_time() - cpu
    return 1000 * metrics["final"]["train_seconds"] / samples, 1000 * cpu / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200, help="training samples per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400, help="time steps T")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine has 2 shared cores)")
    parser.add_argument("--data", type=Path, default=SHARED_MNIST, help="an MNIST-shaped .npz")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.data.exists():
        raise SystemExit(f"MNIST is not at {args.data}")
    dataset = load_dataset(str(args.data))
    specs = {name: spec_for(path, args.samples, args.steps) for name, path in NETWORKS.items()}
    wall: dict[str, list[float]] = {name: [] for name in NETWORKS}
    cpu: dict[str, list[float]] = {name: [] for name in NETWORKS}
    for round_ in range(args.rounds):
        for name, spec in specs.items():
            ms, cpu_ms = ms_per_sample(spec, dataset, args.samples)
            wall[name].append(ms)
            cpu[name].append(cpu_ms)
            print(f"round {round_ + 1}/{args.rounds}: {name} {ms:.2f} ms per sample ({cpu_ms:.2f} ms CPU)", flush=True)
    print(f"\nbatch 1, T = {args.steps}, {args.samples} samples per run, {args.rounds} rounds, "
          f"{args.threads} thread(s)")
    print(f"{'network':<8} {'ms/sample median':>17} {'min':>8} {'max':>8} {'CPU ms/sample median':>21} "
          f"{'min':>8} {'max':>8} {'s per 60k epoch':>16}")
    for name in NETWORKS:
        w, c = wall[name], cpu[name]
        print(f"{name:<8} {statistics.median(w):>17.2f} {min(w):>8.2f} {max(w):>8.2f} {statistics.median(c):>21.2f} "
              f"{min(c):>8.2f} {max(c):>8.2f} {60 * statistics.median(w):>16.0f}")
    for label, values in (("training time", wall), ("CPU time", cpu)):
        ratio = statistics.median(values["cnn"]) / statistics.median(values["mlp"])
        print(f"CNN/MLP cost ratio per sample, {label} (medians): {ratio:.2f}  (the authors' GPU: about 2.5)")


if __name__ == "__main__":
    main()
