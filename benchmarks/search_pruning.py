"""What early stopping saves a search: a TPE search over ``training.lr`` and the hidden layer's
threshold on ``builtin:digits``, 12 trials, with the median pruner (or successive halving) fed by
each epoch's test accuracy, against the same 12 trials run to the end.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/search_pruning.py [--pruner median|halving]

The search is the service's own (``hm2bp_service.search``: the same sampler and pruner calls and
the same trial records a sweep's jobs give), run in this process one trial at a time (a search with
``max_concurrent: 1``), so the figures are the training alone, without the service's process
start-up. The run to the end trains exactly the points the pruned search tried. Printed: a table of
both runs (trials, pruned, epochs trained, training time, best test accuracy and its point), and
whether the best found is the same.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import Any

from hm2bp_core.data import load_dataset
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import Trainer, TrainingCancelled
from hm2bp_service.search import Trial, prune_reason, suggest
from hm2bp_service.states import JobState
from hm2bp_service.sweeps import normalized, parse_path, set_path

BASE = {"network": {"layers": [{"type": "dense", "units": 100, "threshold": 5},
                               {"type": "dense", "units": 10, "threshold": 5}]},
        "encoding": {"time_steps": 100},
        "training": {"epochs": 4, "batch_size": 8, "max_train_samples": 400, "max_test_samples": 200}}
SPACE = {"training.lr": {"low": 1e-3, "high": 5e-2, "log": True},
         "network.layers[0].threshold": {"low": 2.0, "high": 30.0, "log": True}}
BUDGET = 12


def spec_of(point: dict[str, Any]) -> TrainingSpec:
    raw = TrainingSpec.model_validate(BASE).to_dict()
    for key, value in point.items():
        set_path(raw, normalized(parse_path(key), raw), copy.deepcopy(value), key)
    return TrainingSpec.model_validate(raw)


def train(point: dict[str, Any], dataset, judge=None) -> tuple[Trial, float]:
    """One trial: (its record, wall seconds). ``judge(trial, epoch)`` -> a reason stops it."""
    trial = Trial(point, JobState.RUNNING)
    stop: list[str] = []

    def callback(event: dict[str, Any]) -> None:
        if event["type"] == "epoch":
            trial.values[event["epoch"]] = event["test_accuracy"]
            if judge is not None and event["epoch"] < BASE["training"]["epochs"]:
                reason = judge(trial, event["epoch"])
                if reason:
                    stop.append(reason)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        try:
            Trainer(spec_of(point), dataset, Path(out), callback=callback, should_stop=lambda: bool(stop)).run()
            trial.state = JobState.SUCCEEDED
        except TrainingCancelled:
            trial.state = JobState.PRUNED
    return trial, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pruner", choices=("median", "halving"), default="median")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    search = {"method": "tpe", "space": SPACE, "budget": BUDGET, "max_concurrent": 1, "objective": "test_accuracy",
              "pruner": args.pruner, "prune_startup_trials": 2, "seed": args.seed}
    dataset = load_dataset("builtin:digits")

    pruned_run: list[tuple[Trial, float]] = []
    for _ in range(BUDGET):
        history = [trial for trial, _ in pruned_run]
        point = suggest(search, history, 1)[0]
        pruned_run.append(train(point, dataset, lambda trial, epoch, h=history: prune_reason(search, h, trial, epoch)))
        trial, seconds = pruned_run[-1]
        print(f"  trial {len(pruned_run):2d} {trial.state.value:9s} after {len(trial.values)} epochs, "
              f"{seconds:5.1f} s, "
              f"best test {max(trial.values.values()):.4f}  lr={point['training.lr']:.4g} "
              f"threshold={point['network.layers[0].threshold']:.3g}", flush=True)
    full_run = [train(trial.params, dataset) for trial, _ in pruned_run]

    def row(name: str, run: list[tuple[Trial, float]]) -> tuple[str, float, int]:
        best_k = max(range(len(run)), key=lambda k: max(run[k][0].values.values()))
        best = run[best_k][0]
        seconds = sum(s for _, s in run)
        print(f"| {name} | {len(run)} | {sum(t.state == JobState.PRUNED for t, _ in run)} | "
              f"{sum(len(t.values) for t, _ in run)} | {seconds:.1f} | {max(best.values.values()):.4f} | "
              f"trial {best_k + 1}: lr {best.params['training.lr']:.4g}, threshold "
              f"{best.params['network.layers[0].threshold']:.3g} |")
        return name, max(best.values.values()), best_k

    epochs = BASE["training"]["epochs"]
    print(f"\nTPE search, {BUDGET} trials of {epochs} epochs on builtin:digits "
          f"({BASE['training']['max_train_samples']} train / {BASE['training']['max_test_samples']} test samples)\n")
    print("| run | trials | pruned | epochs trained | training time (s) | best test accuracy | best point |")
    print("|---|---|---|---|---|---|---|")
    _, pruned_best, pruned_k = row(f"{args.pruner} pruner", pruned_run)
    _, full_best, full_k = row("every trial to the end", full_run)
    saved = 1 - sum(s for _, s in pruned_run) / sum(s for _, s in full_run)
    same = "the same trial" if pruned_k == full_k else "a different trial"
    print(f"\ntime saved by pruning: {100 * saved:.0f} %; best found: {same}"
          f" ({pruned_best:.4f} with pruning, {full_best:.4f} without)")


if __name__ == "__main__":
    main()
