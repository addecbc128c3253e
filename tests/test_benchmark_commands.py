"""The commands of benchmarks/speed.py, cnn_batches.py and cnn_vs_mlp.py run (tiny settings), so they don't rot."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hm2bp_core.spec import BatchSchedule, load_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from cnn_batches import schedule_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIDE = r"\s+([\d.e+-]+)\s+(\d+)\s+(-?\d+) \|"  # samples/s, peak MiB, step MiB
ROW = re.compile(rf"^\s*(\d+) \|{SIDE}{SIDE}\s+([\d.]+)\s+([\d.]+)$")  # T | hm2bp | BPTT | speed x, mem x


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize(("network", "extra", "title"), [
    ("cnn", [], "28x28-15C5-P2-40C5-P2-300-10, batch 1,"),
    ("mlp", ["--batch", "2"], "784-800-10, batch 2,"),
])
def test_speed_benchmark_prints_both_methods_side_by_side(network, extra, title):
    out = run("benchmarks/speed.py", "--network", network, "--steps", "3", "5", "--repeats", "1", *extra)
    assert title in out, out
    rows = [ROW.match(line) for line in out.splitlines()]
    rows = [m for m in rows if m]
    assert [int(m.group(1)) for m in rows] == [3, 5], out  # each T: hm2bp and snnTorch measured, with the ratios
    for m in rows:
        hm2bp, bptt = float(m.group(2)), float(m.group(5))
        assert hm2bp > 0 and bptt > 0 and float(m.group(8)) == pytest.approx(hm2bp / bptt, rel=0.1, abs=0.02)
    assert "# hm2bp: peak memory at T=5 / at T=3" in out and "# snntorch: peak memory" in out


def tiny_mnist(folder: Path) -> Path:
    """An MNIST-shaped .npz of 10 training images (all 10 classes) and 3 test images."""
    rng = np.random.default_rng(0)
    np.savez(folder / "mnist.npz", x_train=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
             y_train=np.arange(10), x_test=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
             y_test=np.arange(3))
    return folder / "mnist.npz"


def test_cnn_vs_mlp_prints_both_networks_and_the_ratio_of_their_medians(tmp_path):
    out = run("benchmarks/cnn_vs_mlp.py", "--samples", "4", "--rounds", "2", "--steps", "6",
              "--data", str(tiny_mnist(tmp_path)))
    assert len(re.findall(r"^round [12]/2: (mlp|cnn) ", out, re.M)) == 4, out
    medians = {m.group(1): (float(m.group(2)), float(m.group(3)))
               for m in re.finditer(r"^(mlp|cnn)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)", out, re.M)}
    assert set(medians) == {"mlp", "cnn"}, out
    for label, index in (("training time", 0), ("CPU time", 1)):
        ratio = float(re.search(rf"ratio per sample, {label} \(medians\): ([\d.]+)", out).group(1))
        assert ratio == pytest.approx(medians["cnn"][index] / medians["mlp"][index], rel=0.02, abs=0.01), out


def test_cnn_batches_records_each_epoch_and_shows_the_table(tmp_path):
    tiny_mnist(tmp_path)
    spec = tmp_path / "cnn.yaml"
    spec.write_text((REPO / "examples" / "mnist_cnn_batch32.yaml").read_text().replace("batch_size: 32",
                                                                                       "batch_size: 2"))
    results = tmp_path / "runs.jsonl"
    out = run("benchmarks/cnn_batches.py", str(spec), "--train-samples", "10", "--test-samples", "3", "--epochs", "2",
              "--time-steps", "6", "--data", str(tmp_path / "mnist.npz"), "--results", str(results))
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["batch_size"] == 2
    example = load_spec(REPO / "examples" / "mnist_cnn_batch32.yaml").training.batch_schedule
    assert rows[0]["batch_schedule"] == example.model_dump() != BatchSchedule().model_dump()
    assert rows[0]["train_samples"] == 10 and rows[0]["test_samples"] == 3 and rows[0]["time_steps"] == 6
    assert json.loads(out.splitlines()[0])["epoch"] == 1
    table = run("benchmarks/cnn_batches.py", "--show", "--results", str(results))
    lines = [line for line in table.splitlines() if line.startswith(f"| {rows[0]['run']} |")]
    assert len(lines) == 2 and f"| 2 | {schedule_text(rows[0])} | 0.001 | 10 | 3 | 6 | 1 |" in lines[0], table
