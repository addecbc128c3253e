"""Confusion matrix and spike rasters of a trained network (what the dashboard plots)."""

import json

import numpy as np
import torch

from hm2bp_core.data import load_dataset
from hm2bp_core.diagnostics import confusion_matrix, spike_rasters
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import Trainer

SPEC = {
    "network": {"layers": [{"type": "dense", "units": 30, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 60},
    "training": {"epochs": 1, "batch_size": 16, "lr": 0.01, "max_train_samples": 96, "max_test_samples": 50},
}


def test_confusion_matrix_and_rasters_match_the_final_evaluation(tmp_path):
    trainer = Trainer(TrainingSpec.model_validate(SPEC), load_dataset("builtin:digits"), tmp_path)
    metrics = trainer.run()

    confusion = json.loads(json.dumps(confusion_matrix(trainer)))  # JSON-ready
    matrix = np.array(confusion["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == confusion["samples"] == 50
    truth = trainer.dataset.labels("test", trainer.test_indices).numpy()
    assert (matrix.sum(1) == np.bincount(truth, minlength=10)).all()  # rows are the true classes
    # same spike trains as the evaluation after the last epoch, so the same accuracy
    assert confusion["accuracy"] == metrics["final"]["test_accuracy"] == np.trace(matrix) / 50

    rasters = json.loads(json.dumps(spike_rasters(trainer, 3, max_spikes=500)))
    assert rasters["time_steps"] == 60 and [s["index"] for s in rasters["samples"]] == [0, 1, 2]
    for b, sample in enumerate(rasters["samples"]):
        assert [layer["name"] for layer in sample["layers"]] == ["input", "dense 30", "dense 10"]
        assert [layer["size"] for layer in sample["layers"]] == [64, 30, 10]
        inputs = trainer.encode("test", trainer.test_indices[b:b + 1])[:, 0]
        first = sample["layers"][0]
        kept = torch.zeros_like(inputs, dtype=torch.bool)
        kept[first["times"], first["neurons"]] = True
        total = int(inputs.sum())
        assert first["truncated"] == (total > 500) and len(first["times"]) == min(total, 500)
        assert bool(inputs.bool()[kept].all()) and first["times"] == sorted(first["times"])
        output = sample["layers"][-1]
        counts = np.bincount(output["neurons"], minlength=10)
        assert counts.tolist() == sample["output_counts"] and sample["label"] == int(truth[b])
        assert sample["prediction"] == int(np.argmax(counts)) or counts.max() == 0
