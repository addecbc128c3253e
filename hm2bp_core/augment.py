"""Image augmentation of the authors' spiking CNN run (algorithm section 8.3): elastic distortion, scaling, rotation.

One random field per draw: a uniform displacement field in [-1, 1] smoothed by a Gaussian
(sigma 4, 21 x 21) and scaled by ``distortion`` pixels, a scale factor in [1, 1 + scale] per axis
(the authors clip the negative part of their random number at 0) and a rotation uniform in
+-``rotation`` degrees, applied by bilinear resampling. The authors draw the field once per epoch
(every sample of the epoch gets the same distortion); ``per: sample`` draws one per sample.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SMOOTH_SIGMA = 4.0
SMOOTH_SIZE = 21


def _gaussian_kernel(dtype, device) -> torch.Tensor:
    r = torch.arange(SMOOTH_SIZE, dtype=dtype, device=device) - SMOOTH_SIZE // 2
    g = torch.exp(-(r * r) / (2 * SMOOTH_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, SMOOTH_SIZE, SMOOTH_SIZE)


def random_grids(count: int, height: int, width: int, *, scale: float, rotation: float, distortion: float,
                 rng: np.random.Generator, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """``count`` sampling grids (count x H x W x 2, normalised coordinates) for :func:`warp`."""
    field = torch.from_numpy(rng.uniform(-1, 1, size=(count * 2, 1, height, width))).to(dtype=dtype, device=device)
    field = F.conv2d(field, _gaussian_kernel(dtype, device), padding=SMOOTH_SIZE // 2) * distortion
    field = field.view(count, 2, height, width).permute(0, 2, 3, 1)  # pixels, (dx, dy)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                            torch.arange(width, dtype=dtype, device=device), indexing="ij")
    cy, cx = (height - 1) / 2, (width - 1) / 2
    grids = []
    for n in range(count):
        sx, sy = 1 + scale * max(rng.uniform(-1, 1), 0.0), 1 + scale * max(rng.uniform(-1, 1), 0.0)
        angle = math.radians(rng.uniform(-rotation, rotation))
        c, s = math.cos(angle), math.sin(angle)
        # source pixel of each output pixel: inverse rotation and scaling about the centre, plus the field
        u, v = (xs - cx) / sx, (ys - cy) / sy
        src_x = c * u + s * v + cx + field[n, ..., 0]
        src_y = -s * u + c * v + cy + field[n, ..., 1]
        grids.append(torch.stack([src_x / (width - 1) * 2 - 1, src_y / (height - 1) * 2 - 1], dim=-1))
    return torch.stack(grids)


def warp(images: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """Resample images (B x H x W, intensities) through grids (B or 1 x H x W x 2); outside is 0."""
    grids = grids.expand(images.shape[0], -1, -1, -1)
    out = F.grid_sample(images.unsqueeze(1), grids, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.squeeze(1).clamp(0, 1)
