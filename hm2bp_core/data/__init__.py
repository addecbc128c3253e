"""Dataset readers and the registry: ``load_dataset("builtin:mnist" | PATH)``.

Formats, told apart by content: ``.npz`` (x_train, y_train, x_test, y_test; images or spike
rasters), N-MNIST event files (a folder or zip of ``Train|Test/<class>/*.bin``), EMNIST IDX files
(``emnist-<split>-...``, one split per folder or zip), other IDX files of the MNIST family (a folder
or a zip of them, gz or not), and the built-ins of :mod:`hm2bp_core.data.builtin`.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

from .builtin import BUILTINS, Builtin
from .dataset import Dataset, DatasetError, DatasetFacts
from .emnist import emnist_splits, read_emnist
from .events import SpikeRaster
from .idx import read_idx, read_idx_dataset
from .nmnist import looks_like_nmnist, read_nmnist
from .npz import read_npz

__all__ = [
    "Dataset", "DatasetError", "SpikeRaster", "load_dataset", "read_idx", "read_idx_dataset", "read_npz",
    "read_nmnist", "read_emnist", "BUILTINS", "Builtin", "DatasetFacts", "file_sha256", "provenance",
]


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def provenance(ref: str | Path, dataset: Dataset) -> dict[str, Any]:
    """What a model records of the dataset it was trained on: ``{"ref", "name", "sha256",
    "input_shape"}``; the sha256 of a dataset file (None for a built-in or a folder)."""
    text = str(ref)
    path = Path(text)
    sha = file_sha256(path) if not text.startswith("builtin:") and path.is_file() else None
    return {"ref": text if text.startswith("builtin:") or not path.exists() else str(path.resolve()),
            "name": dataset.name, "sha256": sha, "input_shape": list(dataset.input_shape)}


def load_dataset(ref: str | Path, *, data_dir: str | Path | None = None) -> Dataset:
    """A dataset by reference: ``builtin:NAME`` or a path to an ``.npz`` file, or a folder or zip of
    N-MNIST ``.bin`` files or IDX files."""
    text = str(ref)
    if text.startswith("builtin:"):
        name = text.split(":", 1)[1]
        if name not in BUILTINS:
            available = sorted("builtin:" + n for n in BUILTINS)
            raise DatasetError(f"unknown built-in dataset {text!r}; available: {available}")
        builtin = BUILTINS[name]
        if builtin.download_bytes == 0:
            return builtin.load()
        return builtin.load(Path(data_dir) / builtin.folder if data_dir else None)
    path = Path(text)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.suffix == ".npz" and not path.is_dir():
        return read_npz(path)
    if path.is_dir() or zipfile.is_zipfile(path):
        if looks_like_nmnist(path):
            return read_nmnist(path)
        if emnist_splits(path):
            return read_emnist(path)
        return read_idx_dataset(path)
    raise DatasetError(
        f"{path}: unknown dataset format (expected .npz, a folder or zip of N-MNIST .bin or IDX files, or builtin:NAME)"
    )
