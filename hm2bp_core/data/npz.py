"""``.npz`` datasets: arrays ``x_train, y_train, x_test, y_test`` (spec of the service's formats).

Images are uint8 (0..255) or floats in [0, 1]; spike data (``kind = "spikes"``, detected from a
``kind`` array or a bool dtype with a time axis) are N x T x ... 0/1 rasters (bool or integer), e.g.
event-camera data as N x T x C x H x W.

Event lists instead of rasters: ``x_train_events`` and ``x_test_events`` replace ``x_train`` and
``x_test``; each is an E x (1 + len(event_shape)) integer array, one row per spike:
``sample, step, channel, row, col`` for ``event_shape = (T, C, H, W)`` (the ``event_shape`` array
is required; repeated rows are one spike). The number of samples is that of the labels. Such a
file is read as ``kind = "spikes"`` with sparse :class:`~hm2bp_core.data.events.SpikeRaster` inputs.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .dataset import Dataset, DatasetError
from .events import SpikeRaster

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
EVENT_ARRAYS = ("x_train_events", "y_train", "x_test_events", "y_test", "event_shape")


def _raster_from_events(events: np.ndarray, samples: int, shape: np.ndarray, where: str) -> SpikeRaster:
    if shape.ndim != 1 or len(shape) < 1 or not np.issubdtype(shape.dtype, np.integer) or shape.min() < 1:
        raise DatasetError(f"{where}: event_shape must be a 1-D array of positive sizes, e.g. (T, C, H, W)")
    if events.ndim != 2 or events.shape[1] != 1 + len(shape) or not np.issubdtype(events.dtype, np.integer):
        raise DatasetError(
            f"{where}: events must be an E x {1 + len(shape)} integer array (sample + one column per axis "
            f"of event_shape {tuple(shape)}), got {events.dtype} {events.shape}"
        )
    bounds = np.array([samples, *shape])
    bad = np.flatnonzero(((events < 0) | (events >= bounds)).any(axis=1))
    if len(bad):
        raise DatasetError(f"{where}: event row {bad[0]} {events[bad[0]].tolist()} lies outside {tuple(bounds)}")
    order = np.argsort(events[:, 0], kind="stable")
    flat = np.ravel_multi_index(tuple(events[order, 1:].T), tuple(shape))
    cuts = np.searchsorted(events[order, 0], np.arange(samples + 1))
    return SpikeRaster.from_samples([flat[cuts[n]:cuts[n + 1]] for n in range(samples)], tuple(shape))


def read_npz(path: str | Path, name: str | None = None) -> Dataset:
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from None
    with archive:
        wanted = EVENT_ARRAYS if "x_train_events" in archive.files else REQUIRED
        missing = [key for key in wanted if key not in archive.files]
        if missing:
            raise DatasetError(f"{path}: missing arrays {missing}; an .npz dataset needs {list(wanted)}")
        try:
            arrays = {key: archive[key] for key in wanted}
            kind = str(archive["kind"]) if "kind" in archive.files else None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"{path}: an array is corrupt or truncated ({exc})") from None
    if wanted is EVENT_ARRAYS:
        shape = arrays.pop("event_shape")
        for split in ("train", "test"):
            events = arrays.pop(f"x_{split}_events")
            samples = len(arrays[f"y_{split}"])
            arrays[f"x_{split}"] = _raster_from_events(events, samples, shape, f"{path}: x_{split}_events")
        if kind not in (None, "spikes"):
            raise DatasetError(f"{path}: event lists are spike data, but 'kind' is {kind!r}")
        kind = "spikes"
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
