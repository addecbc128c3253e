"""Spiking layers and their HM2-BP backward rules (algorithm sections 2.2, 5 and 6).

A layer's forward pass maps an input raster (T x B x N_in, 0/1 floats) to its output raster.
Its backward pass takes delta = dE/da_out (B x N_out, the macro-level error on firing counts) and
returns the error on the input counts and the weight gradient, built from the S-PSP matrix
E = Q @ S_in of :mod:`hm2bp_core.spsp`:

    d_i        = delta_i / nu                                          (g_divide_by_threshold)
    R_ij       = e_ij / a_j  if a_i > 0 and a_j > 0, else 1            (de_ij / da_pre, "effect ratio")
    rho_ij     = e_ij / a_i  if a_i > 0, else 0.5                      (de_ij / da_post, "side effect")
    s_i        = (1/nu) sum_l w_il rho_il
    delta_j^-  = sum_i d_i w_ij R_ij                                   (error passed down)
    g_ij       = d_i e_ij (1 + s_i) L_i  +  reg_ij                     (L_i: lateral factor, output only)

E is never materialised for a whole batch: every quantity above is linear in E, so it is folded
into products with the spike weights Q and the sparse input raster.

Memory: rasters are kept as booleans (1 byte per neuron and step); input currents are computed in
chunks of ``CHUNK_ROWS`` (steps x samples) while simulating and again, per group of samples,
in the backward pass (``CHUNK_WEIGHTS`` S-PSP weights at a time), so no float history of the whole
run is ever held for the whole batch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch.nn.grad import conv2d_input, conv2d_weight

from .geometry import conv_output, pool_output
from .kernels import for_tensor
from .neuron import LIFParameters, LIFState, firing_threshold, lif_step_chunk
from .spec import Hm2bp, Regularization
from .spsp import spike_weights

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")

CHUNK_ROWS = 4096  # (steps x samples) of input current computed at once in the forward pass
CHUNK_WEIGHTS = 4_000_000  # S-PSP weights (samples x neurons x steps) held at once in the backward pass
SPARSE_BELOW = 0.15  # rasters sparser than this are multiplied as CSR matrices


def as_bool(raster: torch.Tensor) -> torch.Tensor:
    return raster if raster.dtype == torch.bool else raster > 0


def spike_counts(raster: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spikes per neuron of a T x B x N raster (B x N in ``dtype``); bool rasters are summed as bytes."""
    if raster.dtype == torch.bool:
        return raster.view(torch.uint8).sum(0, dtype=torch.int32).to(dtype)
    return raster.sum(0).to(dtype)


def spikes_times(raster: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """raster (... x K, 0/1 or bool) @ dense (K x N) in ``dense``'s dtype; sparse when the raster is.

    A sparse raster is turned into a CSR matrix straight from its non-zero positions (one scan of
    the raster), then multiplied; dense rasters use the ordinary product.
    """
    flat = raster.reshape(-1, raster.shape[-1])
    rows, cols = torch.nonzero(flat, as_tuple=True)
    if len(rows) < SPARSE_BELOW * flat.numel():
        crow = torch.zeros(flat.shape[0] + 1, dtype=torch.int64, device=flat.device)
        crow[1:] = torch.bincount(rows, minlength=flat.shape[0]).cumsum(0)
        values = torch.ones(len(cols), dtype=dense.dtype, device=flat.device)
        product = torch.sparse_csr_tensor(crow, cols, values, size=tuple(flat.shape), check_invariants=False) @ dense
    else:
        product = flat.to(dense.dtype) @ dense
    return product.reshape(*raster.shape[:-1], dense.shape[1])


def times_spikes(dense: torch.Tensor, raster: torch.Tensor) -> torch.Tensor:
    """dense (M x K) @ raster (K x N, 0/1 or bool), sparse when the raster is: (raster^T @ dense^T)^T."""
    return spikes_times(raster.T, dense.T).T


Events = tuple[torch.Tensor, torch.Tensor]
"""A raster's spikes as step-major event lists (off: B x (T + 1) int64, idx: int32), as the CPU conv and
pool kernels return them and take them back (``GivenEvents`` in kernels/cpu.cpp)."""
NO_EVENTS: Events = (torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int32))  # the kernel scans


@dataclass
class LayerTrace:
    """What the backward pass needs from one forward pass of a layer (rasters T x B x N, bool or 0/1)."""

    inputs: torch.Tensor
    spikes: torch.Tensor
    weight_t: torch.Tensor | None = None  # dense layers on the CPU: W^T of this pass, reused by its backward
    counts: torch.Tensor | None = None  # B x N spikes per neuron, when the compiled kernel counted them
    events: Events | None = None  # the spikes as event lists, when a CPU conv or pool kernel made them
    input_events: Events | None = None  # the inputs' event lists, when the layer below handed them on

    def spike_counts(self, dtype: torch.dtype) -> torch.Tensor:
        """Spikes per neuron (B x N in ``dtype``): the kernel's count, or the raster summed over time."""
        return spike_counts(self.spikes, dtype) if self.counts is None else self.counts.to(dtype)


@dataclass
class LayerGradient:
    weight: torch.Tensor | None  # mean over the batch (or B x ... when per_sample); None for a pool layer
    delta_below: torch.Tensor | None  # B x N_in


def post_events(trace: LayerTrace, post_spikes: torch.Tensor | None) -> Events:
    """The event lists of the post raster a backward pass uses: the trace's own spikes' (when it has
    them), never those of other ``post_spikes`` (the output layer's with the dummy label train)."""
    return (trace.events or NO_EVENTS) if post_spikes is None else NO_EVENTS


def exponential_penalty_grad(weight: torch.Tensor, reg: Regularization) -> torch.Tensor:
    """reg_ij = lambda * beta * (w_ij/W) * exp(beta * (S_i - 1)), S_i = mean_j (w_ij/W)^2 (algorithm section 7.1).

    Rows are the post neurons (dense) or output maps (conv: all of a map's kernel weights).
    """
    if reg.lambda_ == 0 or reg.beta == 0:
        return torch.zeros_like(weight)
    rows = weight.detach().reshape(weight.shape[0], -1)
    mean_sq = torch.linalg.vector_norm(rows, dim=1).square() / (rows.shape[1] * reg.weight_limit**2)
    factor = reg.lambda_ * reg.beta / reg.weight_limit * torch.exp(reg.beta * (mean_sq - 1.0))  # per row
    return weight.detach() * factor.view(-1, *([1] * (weight.dim() - 1)))


class SpikingLayer:
    """A layer of LIF neurons fed through a linear map W of its input raster (dense or convolution).

    Subclasses give the map and its adjoints; the HM2-BP rules (module docstring) are written once,
    here, in terms of them:

    * ``currents(S)``: I = W S for rasters T x B x N_in -> T x B x N_out;
    * ``adjoint(x)``: W^T x for B x N_out -> B x N_in (the error sent down);
    * ``weight_grad(out, in)``: sum_r out_r (x) in_r folded onto the weight's shape (R x N_out, R x N_in);
    * ``fan_in_sum()``: sum of the weights into each output neuron (N_out).
    """

    strict_threshold = False  # the authors' conv layers test v > nu, the others v > nu - 1e-6

    def __init__(self, weight: torch.Tensor, threshold: float, neuron: LIFParameters,
                 regularization: Regularization, lateral: float = 0.0):
        self.weight = weight
        self.threshold = threshold
        self.neuron = neuron
        self.regularization = regularization
        self.lateral = lateral  # output layer: fixed -lateral between its neurons (algorithm section 2.4)

    @property
    def units(self) -> int:
        raise NotImplementedError

    def currents(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weight_grad(self, out_side: torch.Tensor, in_side: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fan_in_sum(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor, input_events: Events | None = None) -> LayerTrace:  # noqa: ARG002
        """The layer's spikes for ``inputs`` (T x B x N_in); ``input_events``: the inputs' event lists, which
        the CPU conv and pool kernels use instead of scanning the raster (the tensor code ignores them)."""
        steps, batch = inputs.shape[:2]
        state = LIFState.zeros(batch, self.units, self.weight.dtype, self.weight.device)
        spikes = torch.empty(steps, batch, self.units, dtype=torch.bool, device=self.weight.device)
        size = max(16, CHUNK_ROWS // batch)
        for start in range(0, steps, size):
            chunk = self.currents(inputs[start:start + size])
            spikes[start:start + size] = lif_step_chunk(
                chunk, state, self.threshold, self.neuron, strict_threshold=self.strict_threshold,
                lateral_strength=self.lateral) > 0
        return LayerTrace(inputs=inputs, spikes=spikes)

    def backward(
        self,
        trace: LayerTrace,
        delta: torch.Tensor,
        switches: Hm2bp,
        *,
        post_spikes: torch.Tensor | None = None,
        lateral_factor: torch.Tensor | None = None,
        need_delta_below: bool = True,
        per_sample: bool = False,
    ) -> LayerGradient:
        """HM2-BP gradients of this layer for a batch (see the module docstring).

        ``post_spikes`` replaces the layer's own raster in the S-PSP (the output layer passes the
        raster with the dummy label train). ``per_sample`` returns B x (weight shape) gradients
        without the penalty (for tests); otherwise the batch mean with the penalty is returned.
        """
        post = trace.spikes if post_spikes is None else post_spikes
        steps, batch, fan_in = trace.inputs.shape
        size = max(1, CHUNK_WEIGHTS // (max(self.units, fan_in) * steps))  # bounds Q and W^T Q alike
        grads, belows = [], []
        for start in range(0, batch, size):
            part = slice(start, start + size)
            grad, below = self._backward_chunk(
                trace.inputs[:, part], post[:, part], delta[part], switches,
                None if lateral_factor is None else lateral_factor[part], need_delta_below, per_sample)
            grads.append(grad)
            belows.append(below)
        if per_sample:
            grad = torch.cat(grads)
        else:
            grad = grads[0] if len(grads) == 1 else torch.stack(grads).sum(0)
        return self._gradient(grad, torch.cat(belows) if need_delta_below else None, batch, per_sample)

    def _gradient(self, grad: torch.Tensor, below: torch.Tensor | None, batch: int,
                  per_sample: bool) -> LayerGradient:
        """The result of :meth:`backward` from the per-sample gradients or their sum over the batch."""
        if not per_sample:
            if batch > 1:
                grad = grad.div_(batch)
            reg = self.regularization
            if reg.lambda_ != 0 and reg.beta != 0:  # else the penalty is 0 (batch 1 pays no ops for it)
                grad += exponential_penalty_grad(self.weight, reg)
        return LayerGradient(weight=grad, delta_below=below)

    def _backward_chunk(self, inputs, post, delta, switches: Hm2bp, lateral_factor, need_delta_below, per_sample):
        """(summed or per-sample gradient, delta_below) of a few samples."""
        nu = self.threshold
        dtype = self.weight.dtype
        post = post.to(dtype)
        q = spike_weights(post, self.neuron, shift=switches.refractory_shift, window=switches.psp_window)
        a_in = inputs.sum(0).to(dtype)  # B x N_in
        a_out = post.sum(0)  # B x N_out
        firing = a_out > 0
        silent = ~firing
        active_in = (a_in > 0).to(dtype)
        d = delta / nu
        e_silent = switches.silent_post_spsp

        # s_i = (1/nu) sum_l w_il rho_il.  For a firing neuron sum_l w_il e_il = sum_t Q[i,t] I[t,i],
        # the spike weights against the layer's own input currents (no N_in x N_out product).
        side = torch.zeros_like(a_out)
        if switches.side_effect:
            weighted_psp = (q * self.currents(inputs).permute(1, 2, 0)).sum(-1)  # B x N_out
            side = torch.where(firing, weighted_psp / (nu * a_out.clamp(min=1)), side)
            if switches.ratio_fallbacks:
                side = torch.where(silent, 0.5 * self.fan_in_sum() / nu, side)
        v = d * (1.0 + side)
        if lateral_factor is not None:
            v = v * lateral_factor

        # g_ij = sum_b v_bi e_bij: firing rows through Q @ S_in, silent rows through e = 0.1 * [a_j > 0]
        vq = (v * firing).unsqueeze(-1) * q  # B x N_out x T
        silent_v = e_silent * v * silent
        steps, batch = inputs.shape[:2]
        if per_sample:
            grad = torch.stack([self.weight_grad(vq[b].T, inputs[:, b]) + self.weight_grad(silent_v[b:b + 1],
                                active_in[b:b + 1]) for b in range(batch)])
        else:
            grad = self.weight_grad(vq.permute(0, 2, 1).reshape(batch * steps, -1),
                                    inputs.permute(1, 0, 2).reshape(batch * steps, -1))
            grad = grad + self.weight_grad(silent_v, active_in)
        below = self._delta_below(inputs, q, d, firing, a_in, switches) if need_delta_below else None
        return grad, below

    def _delta_below(self, inputs, q, d, firing, a_in, switches: Hm2bp) -> torch.Tensor:
        """delta_j = sum_i d_i w_ij R_ij with R = e/a_j where both fire, 1 elsewhere (algorithm sections 5.1-5.2)."""
        d_firing = d * firing
        d_silent = d * ~firing
        # sum_{i firing} d_i w_ij e_ij = sum_t S_in[t,j] * (W^T (d Q[:, t]))_j
        steps, batch = inputs.shape[:2]
        through = self.adjoint((d_firing.unsqueeze(-1) * q).permute(0, 2, 1).reshape(batch * steps, -1))
        psp_sum = (through.view(batch, steps, -1) * inputs.permute(1, 0, 2).to(through.dtype)).sum(1)  # B x N_in
        active = a_in > 0
        ratio_part = torch.where(active, psp_sum / a_in.clamp(min=1), torch.zeros_like(psp_sum))
        if switches.ratio_fallbacks:
            # R = 1 when the post neuron is silent, or when the pre neuron is silent
            return ratio_part + self.adjoint(d_silent) + torch.where(active, torch.zeros_like(psp_sum),
                                                                      self.adjoint(d_firing))
        silent_part = switches.silent_post_spsp * self.adjoint(d_silent) / a_in.clamp(min=1)
        return ratio_part + torch.where(active, silent_part, torch.zeros_like(psp_sum))


class DenseLayer(SpikingLayer):
    """Fully connected LIF layer: I[t] = W s_in[t], W is N_out x N_in, no bias (algorithm sections 2.2, 5).

    On the CPU both passes run in the compiled kernels of ``kernels/cpu.cpp``: the forward pass sums
    the weight rows of the inputs that fire at each step straight into the LIF loop (no current
    tensor), and the backward pass builds each sample's S-PSP matrix E from its input spikes and
    applies the rules of the module docstring to it. Elsewhere (CUDA, no compiler) the tensor code
    of :class:`SpikingLayer` computes the same.
    """

    @property
    def units(self) -> int:
        return self.weight.shape[0]

    def forward(self, inputs: torch.Tensor, input_events: Events | None = None) -> LayerTrace:  # noqa: ARG002
        kernel = for_tensor(self.weight)
        if kernel is None:
            return super().forward(inputs)
        state = LIFState.zeros(inputs.shape[1], self.units, self.weight.dtype, self.weight.device)
        weight_t = self.weight.detach().T.contiguous()
        spikes = kernel.dense_lif(
            as_bool(inputs), weight_t, state.last_currents, state.last_spikes, state.v, state.x,
            state.r, firing_threshold(self.threshold, self.strict_threshold), self.neuron.tau_m, self.neuron.tau_s,
            self.neuron.refractory, self.lateral, 0)
        return LayerTrace(inputs=inputs, spikes=spikes, weight_t=weight_t)

    def backward(
        self,
        trace: LayerTrace,
        delta: torch.Tensor,
        switches: Hm2bp,
        *,
        post_spikes: torch.Tensor | None = None,
        lateral_factor: torch.Tensor | None = None,
        need_delta_below: bool = True,
        per_sample: bool = False,
    ) -> LayerGradient:
        """:meth:`SpikingLayer.backward`; on the CPU the whole batch in one call of the compiled
        kernel (its memory is per thread, whatever the batch), with the forward pass's W^T."""
        kernel = for_tensor(self.weight)
        if kernel is None:
            return super().backward(trace, delta, switches, post_spikes=post_spikes, lateral_factor=lateral_factor,
                                    need_delta_below=need_delta_below, per_sample=per_sample)
        post = trace.spikes if post_spikes is None else post_spikes
        dtype = self.weight.dtype
        factor = torch.empty(0, dtype=dtype) if lateral_factor is None else lateral_factor.to(dtype)
        weight_t = self.weight.detach().T.contiguous() if trace.weight_t is None else trace.weight_t
        grad, below = kernel.dense_backward(
            as_bool(trace.inputs), as_bool(post), weight_t, delta.to(dtype), factor, self.threshold,
            self.neuron.tau_m, self.neuron.tau_s, self.neuron.refractory, switches.refractory_shift,
            switches.psp_window, switches.side_effect, switches.ratio_fallbacks, switches.silent_post_spsp,
            need_delta_below, per_sample)
        return self._gradient(grad, below if need_delta_below else None, trace.inputs.shape[1], per_sample)

    def currents(self, inputs: torch.Tensor) -> torch.Tensor:
        """Feed-forward input I[t] = W s_in[t] of every step in one product (T x B x N_out)."""
        return spikes_times(inputs, self.weight.T)

    def adjoint(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight

    def weight_grad(self, out_side: torch.Tensor, in_side: torch.Tensor) -> torch.Tensor:
        return times_spikes(out_side.T, in_side) if in_side.dtype == torch.bool else out_side.T @ in_side

    def fan_in_sum(self) -> torch.Tensor:
        return self.weight.sum(1)


class ConvLayer(SpikingLayer):
    """Spiking convolution (cross-correlation, shared kernel K: C_out x C_in x k x k, no bias).

    I[t, co, x, y] = sum_{ci,i,j} K[co,ci,i,j] S_in[t, ci, s*x+i-p, s*y+j-p] (algorithm section 6.1); neurons
    fire on v > nu (no 1e-6 slack, as the authors' ConvSpiking). The weight gradient sums the
    per-position S-PSP terms over all positions sharing the kernel (summed, not averaged).

    On the CPU both passes run in the compiled kernels of ``kernels/cpu.cpp`` (event driven, like
    :class:`DenseLayer`'s): the forward pass adds the kernel footprint of each input that fires
    into the output maps inside the LIF loop, and the backward pass builds each output position's
    S-PSP terms e_{o|q} from its receptive field's input spikes and its own spike weights Q, sums
    the kernel gradient over the positions and scatters the error down. Elsewhere (CUDA, no
    compiler) the tensor code of :class:`SpikingLayer` computes the same.
    """

    strict_threshold = True

    def __init__(self, weight, threshold, neuron, regularization, *, in_shape: tuple[int, int, int],
                 stride: int = 1, padding: int = 0):
        super().__init__(weight, threshold, neuron, regularization)
        self.in_shape, self.stride, self.padding = in_shape, stride, padding
        k = weight.shape[-1]
        self.out_shape = conv_output(in_shape, weight.shape[0], k, stride, padding)
        if min(self.out_shape[1:]) < 1:
            raise ValueError(f"a {k}x{k} kernel does not fit an input of {in_shape[1]}x{in_shape[2]} "
                             f"(padding {padding})")

    @property
    def units(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    def forward(self, inputs: torch.Tensor, input_events: Events | None = None) -> LayerTrace:
        kernel = for_tensor(self.weight)
        if kernel is None:
            return super().forward(inputs)
        _, height, width = self.in_shape
        spikes, counts, off, idx = kernel.conv_lif(
            as_bool(inputs), self.weight.detach(), height, width, self.stride, self.padding,
            firing_threshold(self.threshold, self.strict_threshold), self.neuron.tau_m, self.neuron.tau_s,
            self.neuron.refractory, *(input_events or NO_EVENTS))
        return LayerTrace(inputs=inputs, spikes=spikes, counts=counts, events=(off, idx), input_events=input_events)

    def backward(
        self,
        trace: LayerTrace,
        delta: torch.Tensor,
        switches: Hm2bp,
        *,
        post_spikes: torch.Tensor | None = None,
        lateral_factor: torch.Tensor | None = None,
        need_delta_below: bool = True,
        per_sample: bool = False,
    ) -> LayerGradient:
        """:meth:`SpikingLayer.backward`; on the CPU the whole batch in one call of the compiled kernel."""
        kernel = for_tensor(self.weight)
        if kernel is None:
            return super().backward(trace, delta, switches, post_spikes=post_spikes, lateral_factor=lateral_factor,
                                    need_delta_below=need_delta_below, per_sample=per_sample)
        post = trace.spikes if post_spikes is None else post_spikes
        dtype = self.weight.dtype
        factor = torch.empty(0, dtype=dtype) if lateral_factor is None else lateral_factor.to(dtype)
        _, height, width = self.in_shape
        grad, below = kernel.conv_backward(
            as_bool(trace.inputs), as_bool(post), self.weight.detach(), delta.to(dtype), factor, height, width,
            self.stride, self.padding, self.threshold, self.neuron.tau_m, self.neuron.tau_s, self.neuron.refractory,
            switches.refractory_shift, switches.psp_window, switches.side_effect, switches.ratio_fallbacks,
            switches.silent_post_spsp, need_delta_below, per_sample, *(trace.input_events or NO_EVENTS),
            *post_events(trace, post_spikes))
        return self._gradient(grad, below if need_delta_below else None, trace.inputs.shape[1], per_sample)

    def _maps(self, x: torch.Tensor, shape) -> torch.Tensor:
        return x.reshape(-1, *shape).to(self.weight.dtype)

    def currents(self, inputs: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.conv2d(self._maps(inputs, self.in_shape), self.weight,
                                         stride=self.stride, padding=self.padding)
        return out.reshape(*inputs.shape[:-1], self.units)

    def adjoint(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        out = conv2d_input((rows, *self.in_shape), self.weight, self._maps(x, self.out_shape),
                           stride=self.stride, padding=self.padding)
        return out.reshape(rows, -1)

    def weight_grad(self, out_side: torch.Tensor, in_side: torch.Tensor) -> torch.Tensor:
        return conv2d_weight(self._maps(in_side, self.in_shape), self.weight.shape,
                             self._maps(out_side, self.out_shape), stride=self.stride, padding=self.padding)

    def fan_in_sum(self) -> torch.Tensor:
        ones = torch.ones(1, *self.in_shape, dtype=self.weight.dtype, device=self.weight.device)
        return torch.nn.functional.conv2d(ones, self.weight, stride=self.stride, padding=self.padding).reshape(-1)


class PoolLayer:
    """Spiking pooling: unit weights over size x size windows (stride = size), LIF neurons (algorithm section 6.2).

    Not learnable. The error sent down follows the authors' code, which divides by size^2 rather
    than by the pooling threshold: delta_q = delta_o / size^2 * R_oq, R = e_oq / a_q if both fire, else 1.
    On the CPU both passes run in the compiled kernels of ``kernels/cpu.cpp`` (each input spike adds
    1 to its window's neuron inside the LIF loop; e_oq from the window's input spikes and Q of o);
    elsewhere the tensor code below computes the same.
    """

    lateral = 0.0  # never an output layer (the output layer is dense): no lateral inhibition

    def __init__(self, threshold: float, neuron: LIFParameters, *, in_shape: tuple[int, int, int], size: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        self.threshold, self.neuron, self.in_shape, self.size = threshold, neuron, in_shape, size
        self.out_shape = pool_output(in_shape, size)
        if min(self.out_shape[1:]) < 1:
            raise ValueError(f"a {size}x{size} pool does not fit an input of {in_shape[1]}x{in_shape[2]}")
        self.dtype, self.device = dtype, torch.device(device)

    @property
    def units(self) -> int:
        c, h, w = self.out_shape
        return c * h * w

    def currents(self, inputs: torch.Tensor) -> torch.Tensor:
        maps = inputs.reshape(-1, *self.in_shape).to(self.dtype)
        pooled = torch.nn.functional.avg_pool2d(maps, self.size) * (self.size * self.size)
        return pooled.reshape(*inputs.shape[:-1], self.units)

    def forward(self, inputs: torch.Tensor, input_events: Events | None = None) -> LayerTrace:
        """:meth:`SpikingLayer.forward` with unit weights over each window."""
        kernel = for_tensor(inputs)
        if kernel is not None:
            spikes, counts, off, idx = kernel.pool_lif(
                as_bool(inputs), *self.in_shape, self.size, self.dtype == torch.float64,
                firing_threshold(self.threshold, False), self.neuron.tau_m, self.neuron.tau_s, self.neuron.refractory,
                *(input_events or NO_EVENTS))
            return LayerTrace(inputs=inputs, spikes=spikes, counts=counts, events=(off, idx),
                              input_events=input_events)
        steps, batch = inputs.shape[:2]
        state = LIFState.zeros(batch, self.units, self.dtype, self.device)
        spikes = lif_step_chunk(self.currents(inputs), state, self.threshold, self.neuron) > 0
        return LayerTrace(inputs=inputs, spikes=spikes)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        """Each output neuron's value on the inputs of its window (B x ... x N_out -> ... x N_in)."""
        c, h, w = self.in_shape
        lead = x.shape[:-1]
        maps = x.reshape(-1, *self.out_shape)
        up = maps.repeat_interleave(self.size, -2).repeat_interleave(self.size, -1)
        full = torch.zeros(maps.shape[0], c, h, w, dtype=x.dtype, device=x.device)
        full[:, :, : up.shape[-2], : up.shape[-1]] = up
        return full.reshape(*lead, c * h * w)

    def backward(
        self,
        trace: LayerTrace,
        delta: torch.Tensor,
        switches: Hm2bp,
        *,
        post_spikes: torch.Tensor | None = None,
        lateral_factor: torch.Tensor | None = None,  # noqa: ARG002 (SpikingLayer.backward's signature: no weight to scale)
        need_delta_below: bool = True,
        per_sample: bool = False,  # noqa: ARG002 (SpikingLayer.backward's signature: no weight gradient to split)
    ) -> LayerGradient:
        """The error sent down (no weight gradient); the arguments are those of :meth:`SpikingLayer.backward`."""
        if not need_delta_below:
            return LayerGradient(weight=None, delta_below=None)
        kernel = for_tensor(trace.inputs)
        if kernel is not None:
            below = kernel.pool_backward(
                as_bool(trace.inputs), as_bool(trace.spikes if post_spikes is None else post_spikes),
                delta.to(self.dtype), *self.in_shape, self.size, self.neuron.tau_m, self.neuron.tau_s,
                self.neuron.refractory, switches.refractory_shift, switches.psp_window, switches.ratio_fallbacks,
                *(trace.input_events or NO_EVENTS), *post_events(trace, post_spikes))
            return LayerGradient(weight=None, delta_below=below)
        post = (trace.spikes if post_spikes is None else post_spikes).to(self.dtype)
        q = spike_weights(post, self.neuron, shift=switches.refractory_shift, window=switches.psp_window)
        a_in = trace.inputs.sum(0).to(self.dtype)
        a_out = post.sum(0)
        # e_oq for q in o's window: sum_t Q[o, t] S_q[t]
        e = (self._up(q.permute(0, 2, 1)) * trace.inputs.permute(1, 0, 2).to(self.dtype)).sum(1)
        both = (self._up(a_out) > 0) & (a_in > 0)
        ratio = torch.where(both, e / a_in.clamp(min=1), torch.ones_like(e))
        if not switches.ratio_fallbacks:
            ratio = torch.where(both, ratio, torch.zeros_like(e))
        below = self._up(delta) / (self.size * self.size) * ratio  # _up is 0 on inputs outside every window
        return LayerGradient(weight=None, delta_below=below)
