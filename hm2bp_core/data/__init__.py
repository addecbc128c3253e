"""Dataset readers and the registry: ``load_dataset("builtin:mnist" | PATH)``.

Formats: ``.npz`` (x_train, y_train, x_test, y_test), IDX files of the MNIST family (a folder or a
zip of them, gz or not), and the built-ins of :mod:`hm2bp_core.data.builtin`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from .builtin import BUILTINS
from .dataset import Dataset, DatasetError
from .idx import read_idx, read_idx_dataset
from .npz import read_npz

__all__ = ["Dataset", "DatasetError", "load_dataset", "read_idx", "read_idx_dataset", "read_npz", "BUILTINS"]


def load_dataset(ref: str | Path, *, data_dir: str | Path | None = None) -> Dataset:
    """A dataset by reference: ``builtin:NAME`` or a path to an ``.npz`` file, IDX folder or IDX zip."""
    text = str(ref)
    if text.startswith("builtin:"):
        name = text.split(":", 1)[1]
        if name not in BUILTINS:
            raise DatasetError(f"unknown built-in dataset {text!r}; available: {sorted('builtin:' + n for n in BUILTINS)}")
        if name == "digits":
            return BUILTINS[name]()
        return BUILTINS[name](Path(data_dir) / name if data_dir else None)
    path = Path(text)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_idx_dataset(path)
    if path.suffix == ".npz":
        return read_npz(path)
    if zipfile.is_zipfile(path):
        return read_idx_dataset(path)
    raise DatasetError(f"{path}: unknown dataset format (expected .npz, a folder or zip of IDX files, or builtin:NAME)")
