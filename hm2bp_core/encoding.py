"""Input encoding: static intensities to Bernoulli spike trains (algorithm section 8.1).

For every step t = 1 .. T-1 an input fires with probability p = intensity * max_rate
(max_rate = 1/5.5 reproduces the authors' pixel / (5.5 * 255)); no spike at t = 0; zero inputs
never fire. Each sample's train is drawn from its own generator, seeded by (run seed, split,
sample index), so a sample gets the same train in every epoch, whatever the batch it falls in,
and a resumed run sees exactly the trains of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch

SPLITS = {"train": 0, "test": 1}


def sample_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit seed for one sample's spike train, independent across (seed, split, index)."""
    state = np.random.SeedSequence([seed, SPLITS[split], int(index)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def rate_encode(
    intensity: torch.Tensor,
    indices: list[int] | np.ndarray,
    *,
    seed: int,
    split: str,
    time_steps: int,
    max_rate: float,
) -> torch.Tensor:
    """Spike raster T x B x D (bool, on ``intensity``'s device) for intensities B x D in [0, 1]."""
    batch, size = intensity.shape
    host = intensity.detach().to("cpu", torch.float32)
    raster = torch.zeros(batch, time_steps, size, dtype=torch.bool)  # sample-major while drawing
    generator = torch.Generator()
    for b, index in enumerate(indices):
        active = torch.nonzero(host[b] > 0).flatten()
        if active.numel() == 0:
            continue
        generator.manual_seed(sample_seed(seed, split, int(index)))
        draws = torch.rand(time_steps - 1, active.numel(), generator=generator)
        raster[b, 1:].index_copy_(1, active, draws < host[b, active] * max_rate)
    return raster.transpose(0, 1).contiguous().to(intensity.device)
