"""The output layer's objective: dead-zone count targets, dummy label train, lateral factor.

Loss (algorithm section 4.1): y_i = desired (35) for the label neuron, undesired (5) for the others; a term
counts only outside the dead zone |a_i - y_i| > margin (5)::

    delta_i = (a_i - y_i) * [|a_i - y_i| > margin] * beta_n        (beta_n: boosting weight, algorithm section 7.5)
    cost    = sum_i (a_i - y_i)^2 * [|a_i - y_i| > margin]          (no 1/2)

The authors log this cost after their g_modifySpikes has put the dummy label train on a silent
label neuron, i.e. with a_label = the number of dummy spikes (36 for T = 400): ``logged_cost``.

Prediction = argmax of the output counts (ties and all-silent -> the lowest index; algorithm section 4.2).
"""

from __future__ import annotations

import torch

from .neuron import LIFParameters
from .spec import Output
from .spsp import spsp


def count_error(counts: torch.Tensor, labels: torch.Tensor, out: Output) -> tuple[torch.Tensor, torch.Tensor]:
    """(delta before boosting, cost) for output counts (B x C) and labels (B,)."""
    target = torch.full_like(counts, out.undesired_count)
    target.scatter_(1, labels.view(-1, 1), out.desired_count)
    diff = counts - target
    outside = diff.abs() > out.margin
    delta = torch.where(outside, diff, torch.zeros_like(diff))
    return delta, (delta * delta).sum(1)


def dummy_spike_times(steps: int, desired: float) -> range:
    """Steps of the dummy label train: k * floor(T / desired), k = 1, 2, ... while < T (authors' g_modifySpikes)."""
    spacing = max(1, int(steps // desired)) if desired > 0 else steps
    return range(spacing, steps, spacing)


def logged_cost(counts: torch.Tensor, labels: torch.Tensor, out: Output, steps: int) -> torch.Tensor:
    """The cost (B,) that the authors' log averages: ``count_error``'s cost with a silent label neuron's
    count replaced by the length of the dummy label train (their Spiking::calCost runs after
    g_modifySpikes changed the fire counts)."""
    rows = torch.arange(counts.shape[0], device=counts.device)
    label_counts = counts[rows, labels]
    dummy = torch.full_like(label_counts, float(len(dummy_spike_times(steps, out.desired_count))))
    filled = counts.clone()
    filled[rows, labels] = torch.where(label_counts == 0, dummy, label_counts)
    return count_error(filled, labels, out)[1]


def predict(counts: torch.Tensor) -> torch.Tensor:
    """Class with the most output spikes; torch.argmax returns the first maximum (lowest index)."""
    return counts.argmax(dim=1)


def with_dummy_label_train(spikes: torch.Tensor, labels: torch.Tensor, desired: float) -> torch.Tensor:
    """The output raster with a regular train on every silent label neuron (algorithm section 4.3).

    Spikes at t = k * floor(T / desired), k = 1, 2, ... while t < T (36 spikes for T = 400).
    They only make the label neuron's S-PSP non-zero; the output error is not recomputed.
    """
    steps, batch, _ = spikes.shape
    rows = torch.arange(batch, device=spikes.device)
    silent_label = spikes[:, rows, labels].sum(0) == 0  # B
    if not bool(silent_label.any()):
        return spikes
    train = torch.zeros(steps, dtype=spikes.dtype, device=spikes.device)
    train[list(dummy_spike_times(steps, desired))] = 1.0
    out = spikes.clone()
    chosen = rows[silent_label]
    out[:, chosen, labels[chosen]] = train.view(-1, 1)
    return out


def lateral_factor(
    spikes: torch.Tensor,
    labels: torch.Tensor,
    threshold: float,
    strength: float,
    p: LIFParameters,
    *,
    shift: bool = True,
    window: bool = True,
) -> torch.Tensor:
    """L_j (B x C) for the output layer's lateral inhibition (algorithm section 4.4), on the real spikes.

    d_m = 1/nu if (a_m > 0 or m is the label) else 0;  rho_jm = e_{m|j}/a_j, rho_mj = e_{j|m}/a_m
    when a_j, a_m > 0, else 1;  L_j = 1 / (1 - w0^2 sum_{m != j} rho_jm d_m rho_mj d_j).
    """
    e = spsp(spikes, spikes, p, shift=shift, window=window)  # e[b, m, j] = e_{m|j}
    counts = spikes.sum(0).to(e.dtype)  # B x C
    both = (counts.unsqueeze(2) > 0) & (counts.unsqueeze(1) > 0)  # [b, m, j]
    rho_to = torch.where(both, e / counts.clamp(min=1).unsqueeze(1), torch.ones_like(e))  # [b,m,j] = rho_jm
    rho_back = rho_to.transpose(1, 2)  # [b, m, j] = e_{j|m}/a_m = rho_mj
    is_label = torch.zeros_like(counts, dtype=torch.bool)
    is_label.scatter_(1, labels.view(-1, 1), True)
    d = torch.where((counts > 0) | is_label, 1.0 / threshold, 0.0).to(e.dtype)  # B x C
    loop = rho_to * rho_back * d.unsqueeze(2)  # [b, m, j] = rho_jm rho_mj d_m
    off_diagonal = 1.0 - torch.eye(counts.shape[1], dtype=e.dtype, device=e.device)
    gain = (loop * off_diagonal).sum(1) * d  # sum over m != j, times d_j
    return 1.0 / (1.0 - strength * strength * gain)
