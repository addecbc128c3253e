"""Extract the authors' per-epoch curves from their logs into hm2bp_core/reference/paper_curves.json.

    python benchmarks/reference/extract.py [--mirror PATH]

Reads the logs straight from a git clone of jinyyy666/mm-bp-snn (default: the bare mirror at
/work/.mirror/jinyyy666+mm-bp-snn/repo) at the commits named below, and records for every epoch
the numbers each log line prints, with the file, commit and 1-based line number they came from:

    epoch=E time=S cost=C Momentum=M lrate=L    -> epoch (1-based here), seconds, cost, lr
    train performance: A%                       -> online train accuracy (votes of the forward pass
                                                   of each sample before its update, / 60,000)
    test A%/B%                                  -> test accuracy after the epoch / best so far

Their logged cost is the mean over the epoch's samples of sum_i (a_i - y_i)^2 [|a_i - y_i| > margin],
computed after the dummy label train was put on a silent label neuron (Spiking::calCost reads the
fire counts that g_modifySpikes changed): see hm2bp_core.objective.logged_cost.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

MIRROR = Path("/work/.mirror/jinyyy666+mm-bp-snn/repo")
OUT = Path(__file__).resolve().parents[2] / "hm2bp_core" / "reference" / "paper_curves.json"
REPOSITORY = "https://github.com/jinyyy666/mm-bp-snn"

# name -> (commit, log file, which run of the file (a log appended to by a second run holds two), the paper
# row it belongs to, what the run is)
MLP_LOG = "Result/log_clean_se=0.5_ts=8_beta=0.04_hvth=20_ovth=10_mnist_best.txt"
LOGS = {
    "mnist-fc": ("bd31fe2", MLP_LOG, 0, "mnist-fc",
                 "the authors' logged MNIST MLP run (output threshold 8, the config they ship)"),
    "mnist-fc-ovth5": ("f3471d6", MLP_LOG, 0, "mnist-fc",
                       "an earlier MNIST MLP run of theirs with output threshold 5 (116 epochs; the same file at this "
                       "commit then holds the logged run above)"),
    "mnist-cnn": ("bd31fe2", "Result/log_best_cnn.txt", 0, "mnist-cnn",
                  "the authors' logged spiking CNN run (distortion scale 12, rotation 12, distortion 3.4)"),
    "nmnist-fc": ("bd31fe2", "Result/log_beta=0.01_15_15_best_nmnist.txt", 0, "nmnist-fc",
                  "the authors' logged N-MNIST MLP run (beta 0.01, thresholds 15/15)"),
}
EPOCH = re.compile(r"^epoch=(\d+) time=([\d.]+)s cost=([\d.naninf-]+) Momentum=[\d.]+ lrate=([\d.]+)")
TRAIN = re.compile(r"^train performance: ([\d.]+)%")
TEST = re.compile(r"^test ([\d.]+)%/([\d.]+)%")
INITIAL = re.compile(r"^correct is (\d+)")


def parse(text: str, run: int, where: dict) -> dict:
    """Per-epoch rows of run ``run`` of one log (a run starts at its "correct is" line, the test of the
    initial weights); every number with the line it was read from."""
    runs: list[tuple[dict, list]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if m := INITIAL.match(line):
            runs.append(({"correct": int(m.group(1)), "line": number}, []))
            continue
        if not runs:
            continue
        epochs = runs[-1][1]
        if m := EPOCH.match(line):
            epochs.append({"epoch": int(m.group(1)) + 1, "seconds": float(m.group(2)), "cost": float(m.group(3)),
                           "lr": float(m.group(4)), "lines": {"epoch": number}})
        elif (m := TRAIN.match(line)) and epochs:
            epochs[-1]["train_accuracy"] = round(float(m.group(1)) / 100, 6)
            epochs[-1]["lines"]["train_accuracy"] = number
        elif (m := TEST.match(line)) and epochs:
            epochs[-1]["test_accuracy"] = round(float(m.group(1)) / 100, 6)
            epochs[-1]["best_test_accuracy"] = round(float(m.group(2)) / 100, 6)
            epochs[-1]["lines"]["test_accuracy"] = number
    initial, epochs = runs[run]
    complete = [e for e in epochs if "test_accuracy" in e]  # a log cut off mid-epoch ends without its test line
    return {**where, "initial_test_correct": initial, "epochs": complete}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=MIRROR)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    curves = {}
    for name, (commit, path, run, row, about) in LOGS.items():
        full = subprocess.run(["git", "-C", str(args.mirror), "rev-parse", commit], check=True, capture_output=True,
                              text=True).stdout.strip()
        text = subprocess.run(["git", "-C", str(args.mirror), "show", f"{commit}:{path}"], check=True,
                              capture_output=True, text=True).stdout
        curves[name] = parse(text, run, {"row": row, "about": about, "repository": REPOSITORY, "commit": full,
                                    "file": path})
        last = curves[name]["epochs"][-1]
        print(f"{name:<15} {len(curves[name]['epochs']):>4} epochs, last test {last['test_accuracy']:.4f} "
              f"({path} @ {commit})")
    args.out.write_text(json.dumps(curves, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
