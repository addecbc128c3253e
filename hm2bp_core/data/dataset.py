"""The in-memory dataset every reader returns, and the one error type they raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch


class DatasetError(ValueError):
    """A dataset file is missing, corrupt, truncated or inconsistent; the message names file and fault."""


@dataclass(frozen=True)
class DatasetFacts:
    """What a fit check needs to know of a dataset, without its samples: recorded once (at upload,
    or in the registry of built-ins) so that nothing has to load a dataset to refuse a job."""

    name: str
    kind: Literal["image", "spikes"]
    input_shape: tuple[int, ...]  # one sample, without the time axis of spike data
    num_classes: int
    num_train: int
    num_test: int
    time_steps: int | None = None  # spike data: steps per sample


@dataclass
class Dataset:
    """Train and test arrays of one dataset.

    ``kind == "image"``: ``x_*`` are N x ... intensities; dividing by ``scale`` gives [0, 1]
    (uint8 / 255, scikit-learn digits / 16, floats as given). ``kind == "spikes"``: ``x_*`` are
    N x T x ... 0/1 spike rasters used directly as input (event data): a numpy array or a sparse
    :class:`~hm2bp_core.data.events.SpikeRaster` (indexing by sample returns dense numpy arrays).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    kind: Literal["image", "spikes"] = "image"
    scale: float = 1.0
    num_classes: int = field(default=0)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.num_classes:
            self.num_classes = int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1
        self.validate()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the time axis for spike data."""
        shape = tuple(int(s) for s in self.x_train.shape[1:])
        return shape[1:] if self.kind == "spikes" else shape

    @property
    def time_steps(self) -> int | None:
        return int(self.x_train.shape[1]) if self.kind == "spikes" else None

    def facts(self) -> DatasetFacts:
        return DatasetFacts(self.name, self.kind, self.input_shape, self.num_classes, len(self.x_train),
                            len(self.x_test), self.time_steps)

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    def validate(self) -> None:
        where = self.source or self.name
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.ndim < 2:
                raise DatasetError(f"{where}: x_{split} must be N x ... samples, got shape {x.shape}")
            if len(x) == 0:
                raise DatasetError(f"{where}: x_{split} holds 0 samples")
            if y.ndim != 1 or len(y) != len(x):
                raise DatasetError(
                    f"{where}: y_{split} must hold one label per sample: {len(x)} samples, labels of shape {y.shape}"
                )
            if not np.issubdtype(y.dtype, np.integer):
                raise DatasetError(f"{where}: y_{split} must hold integer class labels, got dtype {y.dtype}")
            if y.min() < 0 or y.max() >= self.num_classes:
                raise DatasetError(
                    f"{where}: y_{split} labels must lie in [0, {self.num_classes}), found {y.min()}..{y.max()}"
                )
            if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
                raise DatasetError(f"{where}: x_{split} must be numeric, got dtype {x.dtype}")
            if np.issubdtype(x.dtype, np.floating):
                if not np.isfinite(x).all():
                    raise DatasetError(f"{where}: x_{split} contains NaN or infinite values")
                low, high = float(x.min()), float(x.max())
                if low < 0 or high > self.scale:
                    raise DatasetError(
                        f"{where}: x_{split} values must lie in [0, {self.scale:g}], found {low:g}..{high:g}"
                    )
            elif x.size and (x.min() < 0 or x.max() > self.scale):
                raise DatasetError(
                    f"{where}: x_{split} values must lie in [0, {self.scale:g}], found {x.min()}..{x.max()}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetError(
                f"{where}: train and test samples differ in shape: {self.x_train.shape[1:]} vs {self.x_test.shape[1:]}"
            )
        if self.num_classes < 2:
            raise DatasetError(f"{where}: at least 2 classes are needed, found {self.num_classes}")

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)

    def inputs(self, split: str, indices: np.ndarray) -> torch.Tensor:
        """Samples as float32: B x D intensities in [0, 1] (images) or T x B x D rasters (spikes)."""
        x = self.split(split)[0][indices]
        if self.kind == "spikes":  # transposed as 1-byte booleans, converted to float once
            spikes = torch.from_numpy(np.asarray(x).reshape(x.shape[0], x.shape[1], -1) > 0)
            return spikes.permute(1, 0, 2).contiguous().float()
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(len(indices), -1) / self.scale)

    def labels(self, split: str, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.split(split)[1][indices].astype(np.int64))
