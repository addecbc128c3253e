"""The spec, the trainer and the local CLI, end to end in real processes."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from hm2bp_core.checkpoint import checkpoint_folders, latest_epoch
from hm2bp_core.data import load_dataset
from hm2bp_core.spec import TrainingSpec, load_spec
from hm2bp_core.train import Trainer, TrainingCancelled, TrainingDiverged, check_fit, learning_rate, train

REPO = Path(__file__).resolve().parents[1]
HM2BP = [sys.executable, "-m", "hm2bp_core.cli"]
TINY = {
    "network": {"layers": [{"type": "dense", "units": 30, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 120},
    "training": {"epochs": 4, "batch_size": 16, "lr": 0.01, "max_train_samples": 160, "max_test_samples": 60},
}


def test_spec_defaults_are_the_papers():
    spec = TrainingSpec()
    assert [(layer.units, layer.threshold) for layer in spec.network.layers] == [(800, 20.0), (10, 8.0)]
    assert (spec.neuron.tau_m, spec.neuron.tau_s, spec.neuron.refractory) == (64.0, 8.0, 2)
    assert (spec.encoding.time_steps, round(spec.encoding.max_rate * 5.5, 9)) == (400, 1.0)
    assert (spec.output.desired_count, spec.output.undesired_count, spec.output.margin) == (35, 5, 5)
    assert (spec.training.epochs, spec.training.batch_size, spec.training.lr) == (200, 1, 1e-3)
    assert spec.training.regularization.lambda_ == 10 and spec.training.regularization.beta == 0.04
    rates = [learning_rate(spec, e) for e in (0, 1, 2, 199)]
    assert rates == pytest.approx([1e-3, 1e-3, 7.0711e-4, 7.089e-5], rel=1e-3)


def test_cosine_schedule_anneals_each_update_to_zero():
    spec = TrainingSpec.model_validate({"training": {"epochs": 2, "lr": 2e-3, "lr_schedule": "cosine"}})
    rates = [learning_rate(spec, e, p) for e, p in ((0, 0.0), (0, 0.5), (1, 0.0), (1, 0.5), (1, 1.0))]
    assert rates == pytest.approx([2e-3, 2e-3 * (1 + math.cos(math.pi / 4)) / 2, 1e-3,
                                   2e-3 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.0], abs=1e-12)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))


def test_training_flushes_subnormals_and_restores_them_after():
    from hm2bp_core.train import flushed_denormals

    tiny = torch.tensor([1e-40], dtype=torch.float32)
    with flushed_denormals():
        assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) > 0.0


def test_spec_rejects_unknown_and_bad_fields(tmp_path):
    with pytest.raises(ValidationError, match="training.epoch\n"):
        TrainingSpec.model_validate({"training": {"epoch": 3}})
    with pytest.raises(ValidationError, match="network.layers.0.dense.units"):
        TrainingSpec.model_validate({"network": {"layers": [{"type": "dense", "units": -1, "threshold": 1}]}})
    with pytest.raises(ValidationError, match="set mode: custom"):
        TrainingSpec.model_validate({"hm2bp": {"boosting": False}})
    assert TrainingSpec.model_validate({"hm2bp": {"mode": "custom", "boosting": False}}).hm2bp.boosting is False
    (tmp_path / "s.yaml").write_text("training:\n  epochs: 3\n")
    (tmp_path / "s.json").write_text('{"encoding": {"time_steps": 50}}')
    assert load_spec(tmp_path / "s.yaml").training.epochs == 3
    assert load_spec(tmp_path / "s.json").encoding.time_steps == 50


def test_check_fit_names_the_field():
    digits = load_dataset("builtin:digits")
    with pytest.raises(ValueError, match=r"network.input_shape is \[28, 28\]"):
        check_fit(TrainingSpec.model_validate({"network": {"input_shape": [28, 28]}}), digits.facts())
    spec = TrainingSpec.model_validate({"network": {"layers": [{"type": "dense", "units": 5, "threshold": 1}]}})
    with pytest.raises(ValueError, match="network.layers\\[-1\\].units is 5 but the dataset has 10 classes"):
        check_fit(spec, digits.facts())


def test_callbacks_cancel_and_divergence(tmp_path):
    digits = load_dataset("builtin:digits")
    events = []
    metrics = train(TrainingSpec.model_validate({**TINY, "training": {**TINY["training"], "epochs": 1}}), digits,
                    tmp_path / "a", callback=events.append)
    kinds = [e["type"] for e in events]
    assert kinds.index("progress") < kinds.index("epoch") and events[-1]["type"] == "log"
    epoch = next(e for e in events if e["type"] == "epoch")
    assert len(epoch["firing_rates"]) == 2 and all(0 < r < 1 for r in epoch["firing_rates"])
    # online accuracy per 1,000 samples: 160 samples make one block, equal to the epoch's online accuracy
    assert epoch["train_accuracy_per_1000"] == [pytest.approx(epoch["train_accuracy"])]
    assert 0 < epoch["logged_loss"] <= epoch["loss"]  # the dummy label train only lowers a silent label's term
    assert metrics["final"]["test_accuracy"] == epoch["test_accuracy"]
    calls = []
    with pytest.raises(TrainingCancelled):
        train(TrainingSpec.model_validate(TINY), digits, tmp_path / "b",
              should_stop=lambda: calls.append(1) or len(calls) > 3)
    diverging = {**TINY, "network": {"layers": [{"type": "dense", "units": 30, "threshold": 5, "init_range": 1e38},
                                                {"type": "dense", "units": 10, "threshold": 5, "init_range": 1e38}]}}
    with pytest.raises(TrainingDiverged, match="Training diverged in epoch 1"):
        train(TrainingSpec.model_validate(diverging), digits, tmp_path / "c")


def run_cli(*args, **kwargs):
    return subprocess.run([*HM2BP, *args], capture_output=True, text=True, cwd=REPO, **kwargs)


@pytest.mark.slow
def test_cli_trains_digits_to_90_percent(tmp_path):
    # runs in about 30 s on this 2-core machine when it is idle (see pytest --durations); not asserted
    done = run_cli("train", "examples/digits.yaml", "--data", "builtin:digits", "--out", str(tmp_path / "run"),
                   timeout=120)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["test_accuracy"] >= 0.90
    for name in ("model.safetensors", "spec.json", "metrics.json", "checkpoint/epoch-000004/state.safetensors",
                 "checkpoint/epoch-000004/state.json", "checkpoint/epoch-000003/state.json"):
        assert (tmp_path / "run" / name).exists(), name
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 4 and metrics["final"]["best_test_accuracy"] >= final["test_accuracy"]
    evaluated = run_cli("evaluate", str(tmp_path / "run"), "--data", "builtin:digits", timeout=60)
    assert evaluated.returncode == 0
    assert json.loads(evaluated.stdout)["test_accuracy"] == pytest.approx(final["test_accuracy"])


def test_cli_failures_exit_nonzero_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {epochs: 0}\n")
    for args, message in (((str(bad),), "invalid spec: training.epochs"),
                          (("--data", str(tmp_path / "none.npz")), "no such file")):
        done = run_cli("train", *args, "--out", str(tmp_path / "o"), timeout=60)
        assert done.returncode == 1
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_resume_after_kill_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TINY))
    full = run_cli("train", str(spec), "--out", str(tmp_path / "full"), timeout=120)
    assert full.returncode == 0, full.stderr

    killed = subprocess.Popen([*HM2BP, "train", str(spec), "--out", str(tmp_path / "cut")], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (latest_epoch(tmp_path / "cut") or 0) >= 2:
            break
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    reached = latest_epoch(tmp_path / "cut") or 0
    assert 2 <= reached < 4, "the kill must land before the run ends"
    assert not (tmp_path / "cut" / "model.safetensors").exists()

    resumed = run_cli("train", str(spec), "--out", str(tmp_path / "cut"), "--resume", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = json.loads((tmp_path / "full" / "metrics.json").read_text())["epochs"]
    mb = json.loads((tmp_path / "cut" / "metrics.json").read_text())["epochs"]
    assert [r["test_accuracy"] for r in ma] == [r["test_accuracy"] for r in mb] and len(mb) == 4


def test_example_specs_validate():
    for path in sorted((REPO / "examples").glob("*.yaml")):
        assert load_spec(path).training.epochs >= 1, path


def test_encoding_is_seeded_per_sample():
    from hm2bp_core.encoding import rate_encode

    x = torch.rand(4, 50)
    a = rate_encode(x, [0, 1, 2, 3], seed=5, split="train", time_steps=100, max_rate=0.2)
    b = rate_encode(x[2:3], [2], seed=5, split="train", time_steps=100, max_rate=0.2)
    assert torch.equal(a[:, 2], b[:, 0]) and float(a[0].sum()) == 0.0
    rate = float(a[1:].float().mean(0).mean(0).sum()) / float((x * 0.2).sum(0).sum() / 4)
    assert 0.9 < rate < 1.1
    c = rate_encode(x, [0, 1, 2, 3], seed=6, split="train", time_steps=100, max_rate=0.2)
    assert not torch.equal(a, c)


def test_precision_switch_trains_in_float64_from_the_same_weights(tmp_path):
    digits = load_dataset("builtin:digits")
    one = {**TINY, "training": {**TINY["training"], "epochs": 1}}
    runs = {}
    for precision in ("float32", "float64"):
        spec = TrainingSpec.model_validate({**one, "training": {**one["training"], "precision": precision}})
        trainer = Trainer(spec, digits, tmp_path / precision)
        start = [p.detach().clone() for p in trainer.net.parameters]
        trainer.run()
        runs[precision] = (start, trainer)
    (start32, t32), (start64, t64) = runs["float32"], runs["float64"]
    assert [p.dtype for p in t64.net.parameters] == [torch.float64] * 2
    assert t64.optimizer.state[t64.net.parameters[0]]["exp_avg"].dtype == torch.float64
    assert all(torch.equal(a.double(), b) for a, b in zip(start32, start64, strict=True))  # both drawn in float32
    moved = [(a.double() - b).abs().max().item() for a, b in zip(t32.net.parameters, t64.net.parameters, strict=True)]
    assert 0 < max(moved) < 0.5  # the same training, apart from rounding (and the spikes it flips)


def test_resume_accepts_a_checkpoint_written_before_the_spec_gained_a_field(tmp_path):
    digits = load_dataset("builtin:digits")
    spec = TrainingSpec.model_validate({**TINY, "training": {**TINY["training"], "epochs": 2}})
    first = Trainer(spec, digits, tmp_path)
    first._train_epoch()
    first.epoch = 1
    first._checkpoint()
    state = tmp_path / "checkpoint" / "epoch-000001" / "state.json"
    info = json.loads(state.read_text())
    del info["spec"]["training"]["precision"]  # as written by a version without the field
    state.write_text(json.dumps(info))
    assert Trainer(spec, digits, tmp_path).run(resume=True)["final"]["epochs"] == 2
    state = checkpoint_folders(tmp_path)[0] / "state.json"  # the newest (epoch 2), which a resume reads
    info = json.loads(state.read_text())
    info["spec"]["training"]["lr"] = 0.5
    state.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="different spec"):
        Trainer(spec, digits, tmp_path).run(resume=True)
