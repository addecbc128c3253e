"""benchmarks/reproduce.py as the docs run it, on a few real MNIST samples: the fast recipe of
docs/reproduction.md (two epochs recorded as JSONL with the cosine schedule's learning rates, a
killed run resumed, the table) and the CNN epoch of docs/cnn.md."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist.npz"


def reproduce(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "reproduce.py", *args], cwd=REPO / "benchmarks", capture_output=True,
                          text=True, timeout=600, check=True)


@pytest.mark.skipif(not MNIST.exists(), reason="the real MNIST copy (../shared/data/mnist.npz) is not here")
def test_the_fast_recipes_command_records_both_epochs(tmp_path):
    results, runs = tmp_path / "r.jsonl", tmp_path / "runs"
    command = ["run", "--tag", "fast-cosine", "--epochs", "2", "--seed", "0",
               "--set", "training.regularization.lambda=0", "--set", "training.lr_schedule=cosine",
               "--train-samples", "30", "--test-samples", "20",
               "--set", "encoding.time_steps=60", "--results", str(results), "--runs", str(runs)]
    reproduce(*command)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["epoch"], r["lr"]) for r in rows] == [(1, 1e-3), (2, pytest.approx(5e-4))]  # cosine: half-way at epoch 2
    assert all(r["train_samples"] == 30 and len(r["train_accuracy_per_1000"]) == 1 for r in rows)
    reproduce(*command)  # the same command again continues from the checkpoint: nothing left to train
    assert len(results.read_text().splitlines()) == 2
    table = reproduce("show", "--results", str(results), "--tag", "fast-cosine").stdout
    assert "fast-cosine" in table and "authors mnist-fc" in table


@pytest.mark.skipif(not MNIST.exists(), reason="the real MNIST copy (../shared/data/mnist.npz) is not here")
def test_the_cnn_epochs_command_records_its_epoch(tmp_path):
    """docs/cnn.md's epoch of the paper's CNN (row mnist-cnn: conv, pool, augmentation), on a few samples."""
    results = tmp_path / "r.jsonl"
    reproduce("run", "--row", "mnist-cnn", "--tag", "cnn-blocks", "--epochs", "1", "--seed", "0", "--threads", "1",
              "--train-samples", "6", "--test-samples", "4", "--set", "encoding.time_steps=30",
              "--results", str(results), "--runs", str(tmp_path / "runs"))
    [row] = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["row"] == "mnist-cnn" and row["tag"] == "cnn-blocks" and row["epoch"] == 1
    assert row["train_samples"] == 6 and row["test_samples"] == 4 and len(row["firing_rates"]) == 6  # six layers
