"""What a run costs before it starts: its peak memory and its work, from the spec and the dataset's facts.

The memory model follows what the trainer holds at its peak (a batch's backward pass), sized
by the same constants the layers use to size their chunks (``layers.CHUNK_ROWS``,
``layers.CHUNK_WEIGHTS``):

    peak = base                        the interpreter with torch and the trainer loaded
         + dataset                     train + test samples in memory (images: 4 bytes a value,
                                       an upper bound for uint8/float32; spike rasters: 1 byte)
         + weights * itemsize * 6      weight, gradient, Adam's two moments, the kernels' W^T,
                                       the summed chunk gradients
         + rasters                     T x B x (inputs + every layer's neurons) booleans, kept for
                                       the backward pass (B: the larger of the training batch and
                                       the evaluation batch, at least 64), the input raster twice
                                       (drawn sample-major, then transposed), and the widest
                                       layer's raster once more in floats (the backward pass
                                       takes a layer's spikes in the weights' precision)
         + chunks * itemsize           forward currents: CHUNK_ROWS x widest layer (x 2); backward:
                                       CHUNK_WEIGHTS S-PSP weights (x 4: Q, v Q, W^T Q, products);
                                       pooling layers' whole-run currents (T x B x N_in)

Work is counted in sample-steps: epochs x (train + test samples) x time steps.
``benchmarks/admission.py`` sets this estimate beside the measured peak RSS of real runs.
The layer shapes are walked here as the network builds them (``network.SpikingNetwork``);
geometry that does not fit is the fit check's to refuse, so it is clamped to 1 here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .data import DatasetFacts
from .layers import CHUNK_ROWS, CHUNK_WEIGHTS
from .spec import TrainingSpec

BASE_BYTES = 400 << 20  # a training child's RSS before its first batch: python, torch, numpy, the service
EVAL_BATCH = 64  # Trainer.predict evaluates at least this many samples at once
STATE_COPIES = 6  # per weight: see the module docstring
FORWARD_COPIES = 2
BACKWARD_COPIES = 4


@dataclass(frozen=True)
class Footprint:
    """A run's estimated peak memory (bytes, by part) and work (sample-steps)."""

    base: int
    dataset: int
    weights: int
    rasters: int
    chunks: int
    sample_steps: int

    @property
    def peak_bytes(self) -> int:
        return self.base + self.dataset + self.weights + self.rasters + self.chunks

    def largest_part(self) -> str:
        """``"dataset"``, ``"weights"``, ``"rasters"`` or ``"chunks"``: what most of the peak is for."""
        parts = {"dataset": self.dataset, "weights": self.weights, "rasters": self.rasters, "chunks": self.chunks}
        return max(parts, key=lambda name: parts[name])


def layer_sizes(spec: TrainingSpec, input_shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """(weights, neurons) of each layer of ``spec.network`` on samples of ``input_shape`` (pool: 0 weights)."""
    shape = tuple(input_shape)
    if len(shape) == 2:
        shape = (1, *shape)  # a gray image is one input channel
    sizes = []
    for cfg in spec.network.layers:
        if cfg.type == "pool" and len(shape) == 3:
            c, h, w = shape
            shape = (c, max(1, h // cfg.size), max(1, w // cfg.size))
            sizes.append((0, math.prod(shape)))
        elif cfg.type == "conv" and len(shape) == 3:
            c, h, w = shape
            side = [max(1, (n + 2 * cfg.padding - cfg.kernel) // cfg.stride + 1) for n in (h, w)]
            sizes.append((cfg.channels * c * cfg.kernel * cfg.kernel, cfg.channels * side[0] * side[1]))
            shape = (cfg.channels, *side)
        else:
            units = getattr(cfg, "units", 1)
            sizes.append((units * math.prod(shape), units))
            shape = (units,)
    return sizes


def footprint(spec: TrainingSpec, facts: DatasetFacts) -> Footprint:
    """The estimate of the module docstring for a run of ``spec`` on a dataset with ``facts``."""
    cfg, steps = spec.training, spec.encoding.time_steps
    itemsize = 8 if cfg.precision == "float64" else 4
    inputs = math.prod(facts.input_shape)
    samples = facts.num_train + facts.num_test
    dataset = samples * inputs * ((facts.time_steps or steps) if facts.kind == "spikes" else 4)
    sizes = layer_sizes(spec, facts.input_shape)
    batch = max(cfg.batch_size, EVAL_BATCH)
    widest = max([inputs, *(neurons for _, neurons in sizes)])
    rasters = steps * batch * (2 * inputs + sum(neurons for _, neurons in sizes) + itemsize * widest)
    pooled_inputs = [below for (weights, _), below in zip(sizes, [inputs, *(n for _, n in sizes)], strict=False)
                     if weights == 0]
    chunks = itemsize * (FORWARD_COPIES * CHUNK_ROWS * widest + BACKWARD_COPIES * CHUNK_WEIGHTS
                         + steps * batch * sum(pooled_inputs))
    n_train = min(facts.num_train, cfg.max_train_samples or facts.num_train)
    n_test = min(facts.num_test, cfg.max_test_samples or facts.num_test)
    return Footprint(base=BASE_BYTES, dataset=dataset,
                     weights=STATE_COPIES * itemsize * sum(weights for weights, _ in sizes),
                     rasters=rasters, chunks=chunks, sample_steps=cfg.epochs * (n_train + n_test) * steps)
