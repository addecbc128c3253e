"""The authors' logged learning curves (jinyyy666/mm-bp-snn, ``Result/log_*.txt``) and which paper row a spec is.

``paper_curves.json`` (written by benchmarks/reference/extract.py from the logs in their git
history) holds, per logged run: the repository, commit and file, and per epoch the online train
accuracy, the test accuracy after the epoch (and the best so far), the logged cost, the learning
rate and the seconds, each with the 1-based line of the log it was read from.

``paper_row(spec)`` names the paper row whose model a spec trains: the same network layers,
neuron, encoding, output targets and augmentation as the row's spec below (training settings such
as batch size, lr, epochs or seed may differ: a faster recipe of the same model still compares with
the paper's curve). ``reference_for(spec)`` gives that row's logged runs for a dashboard to draw.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..spec import TrainingSpec

CURVES_FILE = Path(__file__).with_name("paper_curves.json")
MODEL_SECTIONS = ("network", "neuron", "encoding", "output", "augmentation")

# the model of each row, as benchmarks/paper_table.py trains it (tests/test_reference.py checks they agree)
ROW_SPECS: dict[str, dict[str, Any]] = {
    "mnist-fc": {},  # every default is the authors' MNIST MLP (examples/mnist_mlp.yaml)
    "mnist-cnn": {  # examples/mnist_cnn.yaml
        "network": {"layers": [
            {"type": "conv", "channels": 15, "kernel": 5, "threshold": 5},
            {"type": "pool", "size": 2, "threshold": 2},
            {"type": "conv", "channels": 40, "kernel": 5, "threshold": 12},
            {"type": "pool", "size": 2, "threshold": 4},
            {"type": "dense", "units": 300, "threshold": 10},
            {"type": "dense", "units": 10, "threshold": 10},
        ]},
        "augmentation": {"enabled": True, "scale": 0.12, "rotation": 12, "distortion": 3.4, "per": "epoch"},
    },
    "nmnist-fc": {
        "network": {"layers": [{"type": "dense", "units": 800, "threshold": 15},
                               {"type": "dense", "units": 10, "threshold": 15}]},
        "encoding": {"kind": "spikes", "time_steps": 540},
    },
}


@lru_cache(maxsize=1)
def _curves() -> dict[str, Any]:
    return json.loads(CURVES_FILE.read_text())


def paper_curves() -> dict[str, Any]:
    """Every logged run, by name (``mnist-fc``, ``mnist-fc-ovth5``, ``mnist-cnn``, ``nmnist-fc``)."""
    return _curves()


def paper_curve(name: str) -> dict[str, Any]:
    """One logged run; a KeyError names the runs there are."""
    curves = _curves()
    if name not in curves:
        raise KeyError(f"no logged run {name!r}; there are {sorted(curves)}")
    return curves[name]


def _model(spec: TrainingSpec) -> dict[str, Any]:
    data = spec.to_dict()
    return {section: data[section] for section in MODEL_SECTIONS}


def paper_row(spec: TrainingSpec) -> str | None:
    """The paper row (a key of ROW_SPECS) whose model ``spec`` trains, or None."""
    model = _model(spec)
    for row, fragment in ROW_SPECS.items():
        if _model(TrainingSpec.model_validate(fragment)) == model:
            return row
    return None


def reference_for(spec: TrainingSpec) -> dict[str, Any] | None:
    """``{"row": ROW, "runs": {name: logged run}}`` for the paper row of ``spec``, or None."""
    row = paper_row(spec)
    if row is None:
        return None
    return {"row": row, "runs": {name: run for name, run in _curves().items() if run["row"] == row}}
