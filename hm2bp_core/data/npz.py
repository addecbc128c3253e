"""``.npz`` datasets: arrays ``x_train, y_train, x_test, y_test`` (spec of the service's formats).

Images are uint8 (0..255) or floats in [0, 1]; spike data (``kind = "spikes"``, detected from a
``kind`` array or a bool dtype with a time axis) are N x T x ... 0/1 rasters.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .dataset import Dataset, DatasetError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: str | Path, name: str | None = None) -> Dataset:
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from None
    with archive:
        missing = [key for key in REQUIRED if key not in archive.files]
        if missing:
            raise DatasetError(f"{path}: missing arrays {missing}; an .npz dataset needs {list(REQUIRED)}")
        try:
            arrays = {key: archive[key] for key in REQUIRED}
            kind = str(archive["kind"]) if "kind" in archive.files else None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"{path}: an array is corrupt or truncated ({exc})") from None
    x_train = arrays["x_train"]
    if kind is None:
        kind = "spikes" if x_train.dtype == bool and x_train.ndim >= 3 else "image"
    if kind not in ("image", "spikes"):
        raise DatasetError(f"{path}: 'kind' must be 'image' or 'spikes', got {kind!r}")
    if kind == "spikes" and x_train.ndim < 3:
        raise DatasetError(f"{path}: spike data must be N x T x ... rasters, got shape {x_train.shape}")
    scale = 255.0 if x_train.dtype == np.uint8 and kind == "image" else 1.0
    for key in ("y_train", "y_test"):
        y = arrays[key]
        if np.issubdtype(y.dtype, np.floating) and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            arrays[key] = y.astype(np.int64)
    return Dataset(
        name=name or path.stem,
        kind=kind,  # type: ignore[arg-type]
        scale=scale,
        source=str(path),
        **arrays,
    )
