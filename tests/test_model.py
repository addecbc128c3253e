"""A trained model used from Python, as README documents it (the README's block is run here
verbatim); the model file records its dataset, which ``hm2bp evaluate`` uses without ``--data``;
layer geometry is checked before training; the kernels are loaded before the first epoch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hm2bp_core.checkpoint import model_dataset
from hm2bp_core.data import file_sha256, load_dataset
from hm2bp_core.geometry import GeometryError, layer_shapes
from hm2bp_core.kernels import cpu_kernels
from hm2bp_core.model import TrainedModel
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import check_fit, train

REPO = Path(__file__).resolve().parents[1]
HM2BP = [sys.executable, "-m", "hm2bp_core.cli"]
TINY = {
    "network": {"layers": [{"type": "dense", "units": 30, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 120},
    "training": {"epochs": 3, "batch_size": 16, "lr": 0.01, "max_train_samples": 300, "max_test_samples": 60},
}
SNIPPET_MARK = "<!-- python-model-snippet: tests/test_model.py runs this block -->"


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(re.escape(SNIPPET_MARK) + r"\n```python\n(.*?)```", text, re.S)
    assert found, "README lost its Python model snippet"
    return found.group(1)


def test_the_readme_snippet_loads_a_trained_model_and_runs_it(tmp_path, monkeypatch, capsys):
    digits = load_dataset("builtin:digits")
    train(TrainingSpec.model_validate(TINY), digits, tmp_path / "runs" / "digits",
          dataset_record={"ref": "builtin:digits", "name": digits.name, "sha256": None, "input_shape": [8, 8]})
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_snippet(), "README.md", "exec"), scope)
    counts, classes = scope["counts"], scope["classes"]
    assert tuple(counts.shape) == (10, 10) and float(counts.sum()) > 0
    assert classes.shape == (10,) and np.array_equal(classes, counts.argmax(1).numpy())
    assert "digits" in capsys.readouterr().out
    # the same predictions as the trainer's own evaluation of those samples, spike train for spike train
    model = scope["model"]
    again = TrainedModel.load(tmp_path / "runs" / "digits")
    assert np.array_equal(again.predict(scope["images"]), classes)
    assert model.input_shape == (8, 8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.predict(scope["images"] * 16)


def test_the_model_file_records_its_dataset_and_evaluate_uses_it(tmp_path):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = tmp_path / "mine.npz"
    x = (bunch.images / 16.0).astype(np.float32)
    np.savez(data, x_train=x[:300], y_train=bunch.target[:300], x_test=x[1000:1100], y_test=bunch.target[1000:1100])
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**TINY, "training": {**TINY["training"], "max_test_samples": None}}))  # all 100
    out = tmp_path / "run"
    done = subprocess.run([*HM2BP, "train", str(spec), "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert model_dataset(out) == {"ref": str(data.resolve()), "name": "mine", "sha256": file_sha256(data),
                                  "input_shape": [8, 8]}
    trained = json.loads(done.stdout.strip().splitlines()[-1])

    evaluated = subprocess.run([*HM2BP, "evaluate", str(out)], capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["dataset"] == str(data.resolve())  # not builtin:digits
    assert result["test_accuracy"] == pytest.approx(trained["test_accuracy"])

    np.savez(data, x_train=x[:200], y_train=bunch.target[:200], x_test=x[:50], y_test=bunch.target[:50])
    changed = subprocess.run([*HM2BP, "evaluate", str(out)], capture_output=True, text=True, timeout=300)
    assert changed.returncode == 1 and "has changed since" in changed.stderr and "--data" in changed.stderr


PAPER_CNN = [
    {"type": "conv", "channels": 15, "kernel": 5, "threshold": 5},
    {"type": "pool", "size": 2, "threshold": 2},
    {"type": "conv", "channels": 40, "kernel": 5, "threshold": 12},
    {"type": "pool", "size": 2, "threshold": 4},
    {"type": "dense", "units": 300, "threshold": 10},
    {"type": "dense", "units": 10, "threshold": 10},
]


def test_layer_geometry_is_checked_for_every_layer_type():
    spec = TrainingSpec.model_validate({"network": {"layers": PAPER_CNN}})
    assert layer_shapes(spec.network.layers, (28, 28)) == [(15, 24, 24), (15, 12, 12), (40, 8, 8), (40, 4, 4),
                                                           (300,), (10,)]
    with pytest.raises(GeometryError, match=r"^network.layers\[2\].kernel is 5 but the layer's input is only 2x2 "
                                            r"\(the dataset's samples \(8x8\) -> conv 4x4 -> pool 2x2\)"):
        check_fit(spec, load_dataset("builtin:digits").facts())
    padded = TrainingSpec.model_validate({"network": {"layers": [
        {"type": "conv", "channels": 2, "kernel": 5, "padding": 2, "stride": 2, "threshold": 1},
        {"type": "pool", "size": 4, "threshold": 1}, {"type": "dense", "units": 10, "threshold": 1}]}})
    assert layer_shapes(padded.network.layers, (8, 8)) == [(2, 4, 4), (2, 1, 1), (10,)]
    too_big = TrainingSpec.model_validate({"network": {"layers": [
        {"type": "pool", "size": 3, "threshold": 1}, {"type": "pool", "size": 3, "threshold": 1},
        {"type": "dense", "units": 10, "threshold": 1}]}})
    with pytest.raises(GeometryError, match=r"^network.layers\[1\].size is 3 but the layer's input is only 2x2"):
        layer_shapes(too_big.network.layers, (8, 8))
    flat = TrainingSpec.model_validate({"network": {"layers": [
        {"type": "dense", "units": 20, "threshold": 1}, {"type": "pool", "size": 2, "threshold": 1},
        {"type": "dense", "units": 10, "threshold": 1}]}})
    with pytest.raises(GeometryError, match=r"^network.layers\[1\].type is 'pool' but its input is a flat vector"):
        layer_shapes(flat.network.layers, (8, 8))


def test_the_kernels_are_loaded_and_logged_before_the_first_epoch_starts(tmp_path):
    cpu_kernels.cache_clear()
    seen: list[tuple[str, str, int]] = []
    spec = TrainingSpec.model_validate({**TINY, "training": {**TINY["training"], "epochs": 1, "device": "cpu"}})
    train(spec, load_dataset("builtin:digits"), tmp_path / "k",
          callback=lambda e: seen.append((e["type"], e.get("message", ""), cpu_kernels.cache_info().currsize)))
    kernel = next(i for i, (kind, message, _) in enumerate(seen) if message.startswith("kernels: "))
    first_progress = next(i for i, (kind, _, _) in enumerate(seen) if kind == "progress")
    assert kernel < first_progress
    assert seen[kernel][2] == 1  # loaded (or built) when the line was logged, before the epoch's clock started
    assert any(message == "epoch 1/1: testing: 60 samples" for _, message, _ in seen)
