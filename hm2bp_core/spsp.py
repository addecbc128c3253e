"""Spike-train level PSP (S-PSP) e_{i|j} without loops over spike pairs (algorithm sections 3.1-3.3).

Definition (authors' code, algorithm section 3.1): with p = t_j^f + shift (shift = T_ref), for every spike t_k of
post neuron i with restart time r_k (r_1 = 1, r_k = t_{k-1} + T_ref) and s_k = t_k - r_k::

    e_{i|j} = sum_k sum_{f in F_k} eps(s_k, t_k - p),
    F_k = { f : max(1, t_k - W) <= t_j^f < t_k  and  p <= t_k },      W = 4 * tau_m

Writing d(tau) = exp(-tau/tau_m) - exp(-tau/tau_s), the kernel of one pair is (algorithm section 3.3)::

    eps(s_k, t_k - p) / c = d(t_k - p) - exp(-s_k/tau_m) * d(r_k - p) * [p < r_k]

so e_{i|j} is linear in the pre spike train: every pre spike at step t adds the same amount
Q[i, t] to e_{i|j}, whatever j is. This module computes that **spike weight** matrix Q
(B x N_post x T) from the post raster alone, and then

    E = Q @ S_pre                  (per sample: N_post x T  times  T x N_pre)

Q is built in two steps: each post spike puts a few coefficients on the traces
M(t) = sum_{p<=t} e^{-(t-p)/tau_m} and S(t) = sum_{p<=t} e^{-(t-p)/tau_s} of the shifted pre train
(at t_k, at r_k - 1 for the reset, and at the window edge for the spikes older than W), then an
anti-causal exponential filter turns coefficients on traces into weights on spikes. The window is
exact: the old spikes are subtracted with the same kernel, so no pair is ever enumerated.
On the CPU the compiled ``spike_weights`` of ``kernels/cpu.cpp`` does the same per post neuron
(coefficients, then one backward sweep of both filters); the tensor code here is the CUDA path and
the fallback.

Special cases of the code (algorithm sections 3.1-3.2): a silent pre neuron gives e = 0 (no spikes); a silent post
neuron with an active pre neuron gets e = ``silent_value`` (0.1), applied by :func:`spsp`.
"""

from __future__ import annotations

import math

import torch

from .neuron import LIFParameters

_FILTER_BLOCK = 32


def restart_times(post: torch.Tensor, refractory: int) -> torch.Tensor:
    """r[t] for every step (T x ...): when the neuron last restarted integrating before step t.

    r = 1 before the first spike, and t_prev + T_ref after a spike at t_prev (algorithm section 3.1).
    """
    steps = post.shape[0]
    t = torch.arange(steps, device=post.device).view(-1, *([1] * (post.dim() - 1)))
    spike_time = torch.where(post > 0, t, torch.full_like(t, -1)).expand_as(post)
    last = torch.cummax(spike_time, dim=0).values
    before = torch.cat([torch.full_like(last[:1], -1), last[:-1]], dim=0)
    return torch.where(before >= 0, before + refractory, torch.ones_like(before))


def _reverse_exp_filter(x: torch.Tensor, decay: float) -> torch.Tensor:
    """y[..., p] = sum_{t >= p} x[..., t] * decay**(t - p).

    Blockwise: within a block of 32 steps the sum is a reversed cumulative sum of x scaled by
    decay**t (the scales span at most decay**-32, e^4 for tau_s = 8: no overflow, full precision);
    the value at each block's start is then carried into the block before it.
    """
    steps = x.shape[-1]
    blocks = -(-steps // _FILTER_BLOCK)
    padded = torch.nn.functional.pad(x, (0, blocks * _FILTER_BLOCK - steps))
    lag = torch.arange(_FILTER_BLOCK, device=x.device, dtype=x.dtype)
    scaled = padded.reshape(*x.shape[:-1], blocks, _FILTER_BLOCK) * decay**lag
    # reversed cumulative sum within each block: total - cumsum + own term
    local = (scaled.sum(-1, keepdim=True) - scaled.cumsum(-1) + scaled) * decay**-lag
    # y at the start of block b+1, chained from the last block backwards on B x N x blocks values only
    starts = local[..., 0]
    carried = torch.zeros_like(starts)
    hop = decay**_FILTER_BLOCK
    for b in range(blocks - 2, -1, -1):
        carried[..., b] = starts[..., b + 1] + hop * carried[..., b + 1]
    out = local + carried.unsqueeze(-1) * decay ** (_FILTER_BLOCK - lag)  # decay^(block_end - p)
    return out.reshape(*x.shape[:-1], blocks * _FILTER_BLOCK)[..., :steps]


def spike_weights(
    post: torch.Tensor,
    p: LIFParameters,
    *,
    shift: bool = True,
    window: bool = True,
) -> torch.Tensor:
    """Q (B x N_post x T): what one pre spike at step t adds to e_{i|j} over all spikes of post i.

    ``post`` is the post raster (T x B x N_post, 0/1 or bool); Q is float64 for a float64 raster,
    float32 otherwise. ``shift``: pre spikes count T_ref steps
    late (authors' code); ``window``: only pre spikes less than 4 * tau_m steps before a post
    spike count. Pre spikes at t = 0 never count (the code's window starts at 1).
    Work is done on the list of post spikes only; the dense part is the final filter.
    """
    from .kernels import for_tensor

    kernel = for_tensor(post)
    if kernel is not None:
        return kernel.spike_weights(post if post.dtype == torch.bool else post > 0, post.dtype == torch.float64,
                                    p.tau_m, p.tau_s, p.refractory, shift, window)
    return _spike_weights_tensor(post, p, shift=shift, window=window)


def _spike_weights_tensor(post: torch.Tensor, p: LIFParameters, *, shift: bool, window: bool) -> torch.Tensor:
    """:func:`spike_weights` in tensor operations (CUDA, or a CPU without a C++ compiler)."""
    steps, batch, units = post.shape
    dtype = torch.float64 if post.dtype == torch.float64 else torch.float32
    sigma = p.refractory if shift else 0
    tm, ts = p.tau_m, p.tau_s
    # post spikes as (row = b * N + i, t), sorted by row then time
    row, t = torch.nonzero(post.permute(1, 2, 0).reshape(batch * units, steps) > 0, as_tuple=True)
    same_neuron = torch.zeros_like(row, dtype=torch.bool)
    same_neuron[1:] = row[1:] == row[:-1]
    previous = torch.zeros_like(t)
    previous[1:] = t[:-1]
    r = torch.where(same_neuron, previous + p.refractory, torch.ones_like(t))  # restart r_k
    s = (t - r).to(dtype)
    decay_s_k = torch.exp(-s / tm)

    coef_m = torch.zeros(batch * units * steps, dtype=dtype, device=post.device)
    coef_s = torch.zeros_like(coef_m)

    def put(at: torch.Tensor, cm: torch.Tensor, cs: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        index = row * steps + at
        if keep is not None:
            index, cm, cs = index[keep], cm[keep], cs[keep]
        coef_m.index_add_(0, index, cm)
        coef_s.index_add_(0, index, cs)

    ones = torch.ones_like(s)
    # every pre spike up to t_k, as if none arrived before the restart:  M(t_k) - S(t_k)
    put(t, ones, -ones)
    # spikes before the restart r_k: their PSP restarts from u = 0 at r_k:  -e^{-s/tm} D-(r_k)
    put(r - 1, -decay_s_k * math.exp(-1 / tm), decay_s_k * math.exp(-1 / ts))
    if window:
        # subtract the spikes older than the window: p <= P_k = t_k - W - 1 + shift
        old = t - p.window - 1 + sigma
        has_old = old >= 0
        if bool(has_old.any()):
            old_c = old.clamp(min=0)
            gap = (t - old_c).to(dtype)
            put(old_c, -torch.exp(-gap / tm), torch.exp(-gap / ts), has_old)
            q = torch.minimum(old_c, r - 1).clamp(min=0)
            lag = (r - q).to(dtype)
            put(q, decay_s_k * torch.exp(-lag / tm), -decay_s_k * torch.exp(-lag / ts), has_old)

    coef_m = coef_m.view(batch, units, steps)
    coef_s = coef_s.view(batch, units, steps)
    weights = _reverse_exp_filter(coef_m, math.exp(-1 / tm)) + _reverse_exp_filter(coef_s, math.exp(-1 / ts))
    weights = weights * p.psp_scale
    # back from shifted pre times p = t + shift to the pre spike's own step t; t = 0 never counts
    q_weights = torch.zeros_like(weights)
    if steps - sigma > 1:
        q_weights[..., 1 : steps - sigma] = weights[..., 1 + sigma :]
    return q_weights


def spsp(
    pre: torch.Tensor,
    post: torch.Tensor,
    p: LIFParameters,
    *,
    shift: bool = True,
    window: bool = True,
    silent_value: float = 0.1,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """E (B x N_post x N_pre): the S-PSP e_{i|j} of every pair, code semantics (algorithm section 3.1).

    ``pre``: T x B x N_pre raster, ``post``: T x B x N_post raster. Pass ``weights`` (from
    :func:`spike_weights`) to reuse them. Silent post neurons get ``silent_value`` for every
    active pre neuron.
    """
    q = spike_weights(post, p, shift=shift, window=window) if weights is None else weights
    e = torch.bmm(q, pre.permute(1, 0, 2).to(q.dtype))
    silent_post = post.sum(0) == 0  # B x N_post
    active_pre = (pre.sum(0) > 0).to(e.dtype)  # B x N_pre
    return torch.where(silent_post.unsqueeze(-1), silent_value * active_pre.unsqueeze(1), e)
