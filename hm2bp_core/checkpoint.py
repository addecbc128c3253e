"""Checkpoints and model files: tensors in safetensors, everything else in JSON (nothing unpickles).

A checkpoint holds what a run needs to continue bit for bit: weights, the optimizer's moments and
step counts, the boosting weights, the current sample order, the numpy generator's state, the
epoch reached and the metrics so far.

Layout: ``checkpoint/epoch-NNNNNN/{state.safetensors, state.json}``, the newest ``KEEP`` of them.
Each is written whole into a temporary folder (``.writing-epoch-NNNNNN``), synced, and renamed
into place, so a crash or a full disk never leaves a half-written checkpoint under a final name
and never touches the previous one; a failed write removes its temporary folder. ``state.json``
records the SHA-256 and size of its ``state.safetensors``: on resume the newest checkpoint whose
files are whole and match is used, and each one passed over is reported (truncated, corrupt,
missing) through ``warn``. A checkpoint of the older layout (``checkpoint/state.*``, one only) is
still read, last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.safetensors"
SPEC_FILE = "spec.json"
METRICS_FILE = "metrics.json"
TENSORS_FILE = "state.safetensors"
INFO_FILE = "state.json"
KEEP = 2  # checkpoints kept: the newest, and the one a resume falls back to when the newest is unreadable
EPOCH_FOLDER = re.compile(r"epoch-\d{6}")


def _atomic_write_json(path: Path, payload: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(payload, indent=2))
        os.replace(temporary, path)
    except BaseException:  # a full disk: no half-written file stays behind
        temporary.unlink(missing_ok=True)
        raise


def _tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors file of ``tensors``, in memory: written with Python's own file calls, a full
    disk is an ``OSError`` (ENOSPC) as anywhere else, not a library error of its own."""
    return save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_bytes(_tensor_bytes(tensors, metadata))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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


class UnreadableCheckpoint(Exception):
    """A checkpoint folder that cannot be used: the sentence says which file and why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_folders(out_dir: Path) -> list[Path]:
    """The complete-by-name checkpoint folders of ``out_dir``, newest (highest epoch) first."""
    folder = out_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and EPOCH_FOLDER.fullmatch(p.name)), reverse=True)


def save_checkpoint(out_dir: Path, tensors: dict[str, torch.Tensor], info: dict[str, Any], keep: int = KEEP) -> Path:
    """Write the checkpoint of epoch ``info["epoch"]`` beside the others and keep the newest ``keep``;
    its folder. On any error (a full disk: ``OSError`` ENOSPC) nothing of it remains and the
    earlier checkpoints are as they were."""
    folder = out_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{int(info['epoch']):06d}"
    writing = folder / f".writing-{name}"
    final = folder / name
    try:
        shutil.rmtree(writing, ignore_errors=True)
        writing.mkdir()
        data = _tensor_bytes(tensors)
        (writing / TENSORS_FILE).write_bytes(data)
        _fsync(writing / TENSORS_FILE)
        recorded = {**info, "tensors": {"file": TENSORS_FILE, "sha256": hashlib.sha256(data).hexdigest(),
                                        "bytes": len(data)}}
        del data
        (writing / INFO_FILE).write_text(json.dumps(recorded, indent=2))
        _fsync(writing / INFO_FILE)
        if final.exists():  # this epoch again (a run that fell back to an earlier checkpoint)
            shutil.rmtree(final)
        os.rename(writing, final)
        _fsync(folder)
    except BaseException:
        shutil.rmtree(writing, ignore_errors=True)
        raise
    for stale in checkpoint_folders(out_dir)[keep:]:
        shutil.rmtree(stale, ignore_errors=True)
    for name_ in ("state.safetensors", "state.json"):  # the older layout's, once a new one is in place
        (folder / name_).unlink(missing_ok=True)
    return final


def read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and info of one checkpoint folder, checked against the digest its info records;
    ``UnreadableCheckpoint`` saying what is wrong."""
    info_path, tensors_path = folder / INFO_FILE, folder / TENSORS_FILE
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError:
        raise UnreadableCheckpoint(f"{INFO_FILE} is missing") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableCheckpoint(f"{INFO_FILE} is not valid JSON (truncated or corrupt: {exc})") from None
    if not isinstance(info, dict):
        raise UnreadableCheckpoint(f"{INFO_FILE} is not a JSON object")
    if not tensors_path.exists():
        raise UnreadableCheckpoint(f"{TENSORS_FILE} is missing")
    recorded = info.pop("tensors", None)
    if recorded is not None:  # the older layout recorded no digest
        size = tensors_path.stat().st_size
        if size != recorded.get("bytes"):
            raise UnreadableCheckpoint(f"{TENSORS_FILE} has {size} bytes, its checkpoint recorded "
                                       f"{recorded.get('bytes')} (truncated)")
        if _sha256(tensors_path) != recorded.get("sha256"):
            raise UnreadableCheckpoint(f"{TENSORS_FILE} does not match the SHA-256 its checkpoint recorded (corrupt)")
    try:
        tensors = load_file(str(tensors_path))
    except Exception as exc:  # safetensors raises its own error type for a malformed file
        raise UnreadableCheckpoint(f"{TENSORS_FILE} cannot be read: {exc}") from None
    return tensors, info


def load_checkpoint(out_dir: Path, warn: Callable[[str], None] | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest readable checkpoint of ``out_dir`` (see the module docstring), or None when
    there is none; ``warn`` is told of each one passed over."""
    candidates = checkpoint_folders(out_dir)
    legacy = out_dir / CHECKPOINT_DIR
    if (legacy / INFO_FILE).exists():
        candidates.append(legacy)
    passed = False
    for folder in candidates:
        label = f"epoch {int(folder.name.split('-')[1])}" if folder != legacy else "the older layout"
        try:
            tensors, info = read_checkpoint(folder)
        except UnreadableCheckpoint as exc:
            passed = True
            if warn is not None:
                warn(f"the checkpoint of {label} is unreadable: {exc}; falling back to the previous one")
            continue
        return tensors, info
    if passed and warn is not None:
        warn("no readable checkpoint is left: training starts from the first epoch")
    return None


def latest_epoch(out_dir: Path) -> int | None:
    """The epoch of the newest checkpoint folder by name (not verified), or None when there is none."""
    folders = checkpoint_folders(out_dir)
    return int(folders[0].name.split("-")[1]) if folders else None


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
