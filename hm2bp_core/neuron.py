"""LIF neuron with a first-order synapse: discrete simulation and PSP kernel (spec section 1).

Continuous model (Gerstner & Kistler SRM form), time in steps:

    tau_s dx/dt = -x + tau_s * sum_j w_ij sum_f delta(t - t_j^f)     (synaptic trace, never reset)
    du/dt       = -u / tau_m + x / tau_s                              (membrane)
    u > nu  ->  spike, u := 0, u held at 0 for T_ref steps

Discrete simulation used by the authors' CUDA code (spec 1.2), with a one-step input delay::

    for t = 0 .. T-1:
        v -= v / tau_m ;  x -= x / tau_s
        if t == 0: s[0] = 0; continue
        x += I[t-1]                    # I[t] = sum_j w_ij s_j[t]  (+ lateral term of the output layer)
        v += x / tau_s
        if r > 0: v = 0; r -= 1        # absolute refractory clamp
        s[t] = v > nu - 1e-6           # conv layers: v > nu
        if s[t]: r = T_ref; v = 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# The authors' dense/pool layers test v > nu - 1e-6; conv layers test v > nu (spec 1.2).
THRESHOLD_SLACK = 1e-6


@dataclass(frozen=True)
class LIFParameters:
    """Time constants in steps; ``refractory`` is T_ref."""

    tau_m: float = 64.0
    tau_s: float = 8.0
    refractory: int = 2

    @property
    def psp_scale(self) -> float:
        """c = 1 / (1 - tau_s / tau_m), the normalisation of the PSP kernel."""
        return 1.0 / (1.0 - self.tau_s / self.tau_m)

    @property
    def window(self) -> int:
        """The S-PSP look-back window of the authors' code: 4 * tau_m steps."""
        return int(4 * self.tau_m)


def psp_kernel(s: float, tau: float, p: LIFParameters) -> float:
    """Reset-aware SRM kernel epsilon(s, tau) of one unit-weight pre spike (spec 1.1).

    ``tau`` = time since the (shifted) pre spike, ``s`` = time since the post neuron restarted
    integrating. A spike that arrived before the restart (tau > s) contributes its synaptic
    current, decayed to exp(-(tau - s)/tau_s) at the restart, re-integrated from u = 0::

        eps(s, tau) = exp(-max(tau - s, 0)/tau_s) * [exp(-min(s, tau)/tau_m) - exp(-min(s, tau)/tau_s)] * c
    """
    if tau <= 0:
        return 0.0
    m = min(s, tau)
    return math.exp(-max(tau - s, 0.0) / p.tau_s) * (math.exp(-m / p.tau_m) - math.exp(-m / p.tau_s)) * p.psp_scale


def simulate_lif(
    currents: torch.Tensor,
    threshold: float,
    p: LIFParameters,
    *,
    strict_threshold: bool = False,
    lateral_strength: float = 0.0,
) -> torch.Tensor:
    """Spike raster of a layer of LIF neurons driven by ``currents`` (T x B x N), as 0/1 floats.

    ``currents[t]`` is the feed-forward input I[t] = W s_in[t]; it reaches the synaptic trace at
    t + 1 (one-step delay). ``lateral_strength`` w0 > 0 adds the output layer's fixed inhibition
    -w0 * (number of other neurons of the layer that spiked at t - 1), with the same delay.
    """
    steps, batch, units = currents.shape
    nu = threshold if strict_threshold else threshold - THRESHOLD_SLACK
    spikes = torch.zeros_like(currents)
    v = torch.zeros(batch, units, dtype=currents.dtype, device=currents.device)
    x = torch.zeros_like(v)
    refractory = torch.zeros_like(v)
    for t in range(1, steps):
        # t = 0 only decays the zero state, so the loop starts at t = 1.
        v = v - v / p.tau_m  # the authors' Euler form, kept literally for bit parity
        x = x - x / p.tau_s
        x = x + currents[t - 1]
        if lateral_strength:
            previous = spikes[t - 1]
            x = x - lateral_strength * (previous.sum(dim=1, keepdim=True) - previous)
        v = v + x / p.tau_s
        clamped = refractory > 0
        v = v.masked_fill(clamped, 0.0)
        refractory = refractory - clamped.to(refractory.dtype)
        fired = v > nu
        spikes[t] = fired.to(spikes.dtype)
        v = v.masked_fill(fired, 0.0)
        refractory = refractory.masked_fill(fired, float(p.refractory))
    return spikes
