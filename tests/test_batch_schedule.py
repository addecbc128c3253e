"""training.batch_schedule: a batch-1 warm-up and lr scaling for batches (docs/cnn_batches.md)."""

import pytest
from pydantic import ValidationError

from hm2bp_core.data import load_dataset
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import Trainer, epoch_batches

TINY = {
    "network": {"layers": [{"type": "dense", "units": 30, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 60},
    "training": {"epochs": 1, "batch_size": 16, "lr": 0.01, "max_train_samples": 80, "max_test_samples": 20},
}


def spec_with(**training) -> TrainingSpec:
    return TrainingSpec.model_validate({**TINY, "training": {**TINY["training"], **training}})


def test_the_default_schedule_changes_nothing():
    spec = TrainingSpec()
    assert spec.training.batch_schedule.warmup_samples == 0 and spec.training.batch_schedule.lr_scaling == "none"
    assert epoch_batches(spec, 0, 5) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]  # the authors' batch 1
    assert epoch_batches(spec_with(), 3, 40) == [(0, 16), (16, 32), (32, 40)]
    assert spec_with().training.batch_schedule.factor(16) == 1.0


def test_warmup_counts_samples_of_the_run_across_epochs():
    spec = spec_with(batch_size=4, batch_schedule={"warmup_samples": 15})
    assert epoch_batches(spec, 0, 12) == [(i, i + 1) for i in range(12)]
    assert epoch_batches(spec, 1, 12) == [(0, 1), (1, 2), (2, 3), (3, 7), (7, 11), (11, 12)]
    assert epoch_batches(spec, 2, 12) == [(0, 4), (4, 8), (8, 12)]
    for epoch in range(3):  # every sample exactly once per epoch
        assert [i for a, b in epoch_batches(spec, epoch, 12) for i in range(a, b)] == list(range(12))


def test_lr_scaling_factors_and_bad_values_name_the_field():
    assert spec_with(batch_schedule={"lr_scaling": "linear"}).training.batch_schedule.factor(32) == 32
    assert spec_with(batch_schedule={"lr_scaling": "sqrt"}).training.batch_schedule.factor(16) == 4
    with pytest.raises(ValidationError, match="training.batch_schedule.lr_scaling"):
        spec_with(batch_schedule={"lr_scaling": "quadratic"})
    with pytest.raises(ValidationError, match="training.batch_schedule.warmup_samples"):
        spec_with(batch_schedule={"warmup_samples": -1})


@pytest.mark.parametrize(("schedule", "steps", "last_lr"), [
    ({}, 5, 0.01),  # 80 samples in batches of 16
    ({"warmup_samples": 32}, 32 + 3, 0.01),  # 32 single samples, then 48 in batches of 16
    ({"lr_scaling": "linear"}, 5, 0.16),
    ({"warmup_samples": 32, "lr_scaling": "sqrt"}, 32 + 3, 0.04),
])
def test_the_trainer_takes_the_scheduled_steps_at_the_scaled_lr(tmp_path, schedule, steps, last_lr):
    digits = load_dataset("builtin:digits")
    trainer = Trainer(spec_with(batch_schedule=schedule), digits, tmp_path)
    progress = []
    trainer.callback = lambda event: progress.append(event) if event["type"] == "progress" else None
    trainer._train_epoch()
    state = trainer.optimizer.state[trainer.net.parameters[0]]
    assert int(state["step"]) == steps and progress[-1]["steps"] == steps
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(last_lr)


def test_the_batch_example_trains_the_papers_cnn():
    from pathlib import Path

    from hm2bp_core.reference import paper_row
    from hm2bp_core.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[1] / "examples" / "mnist_cnn_batch32.yaml")
    assert paper_row(spec) == "mnist-cnn"  # the same model as the paper's row: its curve is drawn beside
    assert spec.training.batch_size == 32 and spec.training.batch_schedule != TrainingSpec().training.batch_schedule
