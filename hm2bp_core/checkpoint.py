"""Checkpoints and model files: tensors in safetensors, everything else in JSON (nothing unpickles).

A checkpoint holds what a run needs to continue bit for bit: weights, the optimizer's moments and
step counts, the boosting weights, the current sample order, the numpy generator's state, the
epoch reached and the metrics so far. Files are written to a temporary name and renamed, so a
crash never leaves a half-written checkpoint in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.safetensors"
SPEC_FILE = "spec.json"
METRICS_FILE = "metrics.json"


def _atomic_write_json(path: Path, payload: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2))
    os.replace(temporary, path)


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    temporary = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict into named tensors and JSON-able rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    slots: dict[str, list[str]] = {}
    for index, values in state["state"].items():
        slots[str(index)] = []
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value)
            slots[str(index)].append(key)
    return tensors, {"param_groups": state["param_groups"], "slots": slots}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    state = {
        int(index): {key: tensors[f"optimizer.{index}.{key}"] for key in keys} for index, keys in info["slots"].items()
    }
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_checkpoint(out_dir: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    folder = out_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_save_tensors(folder / "state.safetensors", tensors)
    _atomic_write_json(folder / "state.json", info)  # written last: its presence marks a complete checkpoint


def load_checkpoint(out_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    folder = out_dir / CHECKPOINT_DIR
    if not (folder / "state.json").exists():
        return None
    return load_file(str(folder / "state.safetensors")), json.loads((folder / "state.json").read_text())


def save_model(out_dir: Path, weights: dict[str, torch.Tensor], spec_json: str, metrics: dict[str, Any],
               dataset: dict[str, Any] | None = None) -> None:
    """The model file (weights; the spec and, when known, the dataset it was trained on,
    ``{"ref", "name", "sha256"}``, in its metadata), spec.json and metrics.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "hm2bp", "spec": spec_json}
    if dataset is not None:
        metadata["dataset"] = json.dumps(dataset)
    _atomic_save_tensors(out_dir / MODEL_FILE, weights, metadata=metadata)
    (out_dir / SPEC_FILE).write_text(spec_json)
    _atomic_write_json(out_dir / METRICS_FILE, metrics)


def load_model(model_dir: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(weights, spec JSON) of a model folder written by :func:`save_model`."""
    path = model_dir / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model file (expected {MODEL_FILE} from `hm2bp train`)")
    spec_path = model_dir / SPEC_FILE
    spec_json = spec_path.read_text() if spec_path.exists() else None
    if spec_json is None:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            spec_json = (handle.metadata() or {}).get("spec")
        if spec_json is None:
            raise FileNotFoundError(f"{model_dir}: no {SPEC_FILE} and no spec in the model's metadata")
    return load_file(str(path)), spec_json


def model_dataset(model_dir: Path) -> dict[str, Any] | None:
    """The dataset a model folder's model file was trained on, ``{"ref", "name", "sha256"}``
    (``ref``: ``builtin:NAME``, a file path, or a service dataset id), or None when not recorded."""
    from safetensors import safe_open

    path = model_dir / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model file (expected {MODEL_FILE} from `hm2bp train`)")
    with safe_open(str(path), "pt") as handle:
        recorded = (handle.metadata() or {}).get("dataset")
    return json.loads(recorded) if recorded else None
