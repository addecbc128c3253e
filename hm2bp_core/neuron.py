"""LIF neuron with a first-order synapse: discrete simulation and PSP kernel (algorithm section 2).

Continuous model (Gerstner & Kistler SRM form), time in steps:

    tau_s dx/dt = -x + tau_s * sum_j w_ij sum_f delta(t - t_j^f)     (synaptic trace, never reset)
    du/dt       = -u / tau_m + x / tau_s                              (membrane)
    u > nu  ->  spike, u := 0, u held at 0 for T_ref steps

Discrete simulation used by the authors' CUDA code (algorithm section 2.2), with a one-step input delay::

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

# The authors' dense/pool layers test v > nu - 1e-6; conv layers test v > nu (algorithm section 2.3).
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
    """Reset-aware SRM kernel epsilon(s, tau) of one unit-weight pre spike (algorithm section 2.5).

    ``tau`` = time since the (shifted) pre spike, ``s`` = time since the post neuron restarted
    integrating. A spike that arrived before the restart (tau > s) contributes its synaptic
    current, decayed to exp(-(tau - s)/tau_s) at the restart, re-integrated from u = 0::

        eps(s, tau) = exp(-max(tau - s, 0)/tau_s) * [exp(-min(s, tau)/tau_m) - exp(-min(s, tau)/tau_s)] * c
    """
    if tau <= 0:
        return 0.0
    m = min(s, tau)
    return math.exp(-max(tau - s, 0.0) / p.tau_s) * (math.exp(-m / p.tau_m) - math.exp(-m / p.tau_s)) * p.psp_scale


@dataclass
class LIFState:
    """Membrane v, synaptic trace x and refractory counter r of a layer (each B x N)."""

    v: torch.Tensor
    x: torch.Tensor
    r: torch.Tensor
    last_currents: torch.Tensor  # I of the last simulated step (it reaches x one step later)
    last_spikes: torch.Tensor  # spikes of the last simulated step (lateral input one step later)
    t: int = 0  # steps simulated so far

    @classmethod
    def zeros(cls, batch: int, units: int, dtype: torch.dtype, device: torch.device) -> LIFState:
        zero = torch.zeros(batch, units, dtype=dtype, device=device)
        return cls(zero.clone(), zero.clone(), torch.zeros(batch, units, dtype=torch.int64, device=device),
                   zero.clone(), zero.clone())


def _lif_loop(currents: torch.Tensor, prev_currents: torch.Tensor, prev_spikes: torch.Tensor,
              v: torch.Tensor, x: torch.Tensor, r: torch.Tensor, nu: float, tau_m: float, tau_s: float,
              refractory: int, lateral: float, t0: int) -> torch.Tensor:
    """The loop of the module docstring over one chunk of steps; v, x, r are updated in place.

    Plain tensor code: the path on CUDA (where each line is one fused-enough kernel) and on a CPU
    without a C++ compiler; ``lif_chunk`` of ``kernels/cpu.cpp`` is the same loop compiled for the CPU.
    """
    spikes = torch.zeros_like(currents)
    vv, xx, rr = v.clone(), x.clone(), r.clone()
    for k in range(currents.shape[0]):
        if t0 + k == 0:
            continue  # t = 0 only decays the zero state
        cur = prev_currents if k == 0 else currents[k - 1]
        prev = prev_spikes if k == 0 else spikes[k - 1]
        vv = vv - vv / tau_m  # the authors' Euler form, kept literally for bit parity
        xx = xx - xx / tau_s
        xx = xx + cur
        if lateral != 0.0:
            xx = xx - lateral * (prev.sum(1, keepdim=True) - prev)
        vv = vv + xx / tau_s
        clamped = rr > 0
        vv = vv.masked_fill(clamped, 0.0)
        rr = rr - clamped.to(rr.dtype)
        fired = vv > nu
        spikes[k] = fired.to(spikes.dtype)
        vv = vv.masked_fill(fired, 0.0)
        rr = rr.masked_fill(fired, refractory)
    v.copy_(vv)
    x.copy_(xx)
    r.copy_(rr)
    return spikes


def firing_threshold(threshold: float, strict: bool) -> float:
    """The value v must exceed: nu for conv layers (strict), nu - 1e-6 for the others (algorithm section 2.3)."""
    return threshold if strict else threshold - THRESHOLD_SLACK


def lif_step_chunk(currents: torch.Tensor, state: LIFState, threshold: float, p: LIFParameters, *,
                   strict_threshold: bool = False, lateral_strength: float = 0.0) -> torch.Tensor:
    """Simulate the next ``currents.shape[0]`` steps from ``state`` (updated); returns their raster."""
    from .kernels import for_tensor

    args = (currents, state.last_currents, state.last_spikes, state.v, state.x, state.r,
            firing_threshold(threshold, strict_threshold), p.tau_m, p.tau_s, p.refractory, lateral_strength, state.t)
    kernel = for_tensor(currents)
    spikes = kernel.lif_chunk(*args) if kernel is not None else _lif_loop(*args)
    state.last_currents = currents[-1]
    state.last_spikes = spikes[-1]
    state.t += currents.shape[0]
    return spikes


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
    state = LIFState.zeros(currents.shape[1], currents.shape[2], currents.dtype, currents.device)
    return lif_step_chunk(currents, state, threshold, p, strict_threshold=strict_threshold,
                          lateral_strength=lateral_strength)
