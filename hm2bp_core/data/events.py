"""Spike rasters of event data, kept sparse: the N-MNIST training set as a dense
60,000 x 540 x 2 x 34 x 34 boolean array would take 75 GB, its distinct spikes take about 1 GB.

:class:`SpikeRaster` stands in for an ``N x T x C x H x W`` boolean array wherever a
:class:`~hm2bp_core.data.dataset.Dataset` holds spike data: ``len``, ``shape``, ``ndim``, ``dtype``,
``size``, ``min()``, ``max()`` and indexing by sample (an int, a slice, or an array of indices),
which returns a dense ``numpy`` array of the selected samples. ``np.asarray(raster)`` densifies it all.
"""

from __future__ import annotations

import numpy as np


class SpikeRaster:
    """Read-only sparse ``N x T x C x H x W`` 0/1 raster.

    ``cells[offsets[n]:offsets[n + 1]]`` are the C-order flat indices, within one ``T x C x H x W``
    sample, of the cells of sample ``n`` that hold a spike (sorted, without repeats).
    """

    dtype = np.dtype(bool)

    def __init__(self, cells: np.ndarray, offsets: np.ndarray, sample_shape: tuple[int, ...]):
        cell_count = int(np.prod(sample_shape))
        self.cells = np.asarray(cells, dtype=np.int32 if cell_count < 2**31 else np.int64)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        if (self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0
                or self.offsets[-1] != len(self.cells)):
            raise ValueError("offsets must run from 0 to len(cells)")
        if len(self.cells) and (self.cells.min() < 0 or self.cells.max() >= cell_count):
            raise ValueError(f"spike cells outside a sample of shape {self.sample_shape}")

    @classmethod
    def from_samples(cls, samples: list[np.ndarray], sample_shape: tuple[int, ...]) -> SpikeRaster:
        """From one array of flat cell indices per sample (any order, repeats collapse to one spike)."""
        unique = [np.unique(np.asarray(s, dtype=np.int64)) for s in samples]
        offsets = np.zeros(len(unique) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(u) for u in unique])
        cells = np.concatenate(unique) if unique else np.zeros(0, dtype=np.int64)
        return cls(cells, offsets, sample_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.offsets) - 1, *self.sample_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.cells.nbytes + self.offsets.nbytes

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def counts(self) -> np.ndarray:
        """Number of spikes of each sample."""
        return np.diff(self.offsets)

    def min(self) -> np.bool_:
        return np.bool_(len(self) > 0 and bool(np.all(self.counts() == int(np.prod(self.sample_shape)))))

    def max(self) -> np.bool_:
        return np.bool_(len(self.cells) > 0)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        if isinstance(key, slice):
            key = np.arange(len(self))[key]
        indices = np.asarray(key)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise TypeError("a SpikeRaster is indexed by sample only: an int, a slice or a 1-D index array")
        indices = np.where(indices < 0, indices + len(self), indices)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"sample index out of range for {len(self)} samples")
        cell_count = int(np.prod(self.sample_shape))
        out = np.zeros((len(indices), cell_count), dtype=bool)
        for row, n in enumerate(indices):
            out[row, self.cells[self.offsets[n]:self.offsets[n + 1]]] = True
        return out.reshape(len(indices), *self.sample_shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        dense = self[:]
        return dense if dtype is None else dense.astype(dtype)

    def __repr__(self) -> str:
        return f"SpikeRaster(shape={self.shape}, spikes={len(self.cells)})"
