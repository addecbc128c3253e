"""Run an exported NIR file in an independent simulator, snnTorch's NIR importer, and compare.

The importer (``snntorch.import_nir.import_from_nir``, with nirtorch's graph interpreter) turns
each CubaLIF into ``snn.Synaptic`` (syn := alpha syn + input, mem := beta mem + syn, spike on
mem > threshold, mem := 0), with alpha = 1 - dt/tau_syn, beta = 1 - dt/tau_mem at its fixed
dt = 1e-4 s, and runs the recurrent sub-graph with the recurrent input one step late.

Alignment: our layer k only sees its input one step later than the importer's (docs/nir.md), so
with L layers our output at step t is the importer's at t - L; our counts over T steps are the
importer's counts over its first T - L steps, which is the readout the file's metadata names.

snnTorch 1.0 maps NIR's ``Flatten(start_dim=0)`` (NIR shapes have no batch axis) to
``torch.nn.Flatten(0)``, which also flattens the batch; graphs with a Flatten node are therefore
replayed one sample at a time, without a batch axis.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from .network import SpikingNetwork
from .nir_export import input_shape_of
from .objective import predict


def import_snntorch(path: str | Path) -> torch.nn.Module:
    """The snnTorch module of a NIR file (the importer's progress prints are swallowed)."""
    import nir
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):
        return import_from_nir(nir.read(str(path)))


def with_refractory(net: SpikingNetwork, refractory: int) -> SpikingNetwork:
    """``net``'s weights simulated with another refractory period (0: what NIR's CubaLIF can say)."""
    spec = net.spec.model_copy(deep=True)
    spec.neuron.refractory = refractory
    twin = SpikingNetwork(spec, input_shape_of(net))
    twin.load_state_dict(net.state_dict())
    return twin


def replay(module: torch.nn.Module, raster: torch.Tensor, input_shape: tuple[int, ...]) -> list[torch.Tensor]:
    """The spike rasters (T x B x N_k, bool) of every spiking layer of the imported ``module``, in
    layer order, fed the input ``raster`` (T x B x D); the last one is the output layer's."""
    import snntorch
    import snntorch.utils

    layers = [m for m in module.modules() if isinstance(m, snntorch.Synaptic)]  # in node (= layer) order
    has_flatten = any(isinstance(m, torch.nn.Flatten) for m in module.modules())
    groups = [slice(b, b + 1) for b in range(raster.shape[1])] if has_flatten else [slice(None)]
    recorded: list[list[torch.Tensor]] = [[] for _ in layers]
    hooks = [layer.register_forward_hook(lambda _m, _i, out, k=k: recorded[k].append(out.reshape(-1) > 0))
             for k, layer in enumerate(layers)]
    rasters = []
    try:
        with torch.no_grad():
            for group in groups:
                snntorch.utils.reset(module)  # the Synaptic layers keep syn and mem between calls
                for items in recorded:
                    items.clear()
                state = None
                for frame in raster[:, group].float():
                    x = frame.reshape(-1, *input_shape)
                    _, state = module(x[0] if has_flatten else x, state)
                width = raster[:, group].shape[1]
                rasters.append([torch.stack(items).reshape(raster.shape[0], width, -1) for items in recorded])
    finally:
        for hook in hooks:
            hook.remove()
    return [torch.cat([part[k] for part in rasters], 1) for k in range(len(layers))]


@dataclass
class Agreement:
    """Our spike raster of a layer against the importer's, aligned (module docstring), as sums over
    samples, so that batches add up with ``+`` (start from ``Agreement()``)."""

    pairs: int = 0  # (sample, neuron) pairs compared
    counts_equal: int = 0  # ... whose spike counts are equal
    samples: int = 0
    predictions_equal: int = 0  # samples with the same predicted class (argmax of the counts)
    either: torch.Tensor | None = None  # per neuron: (sample, step) with a spike in either raster
    both: torch.Tensor | None = None  # per neuron: ... in both
    identical: torch.Tensor | None = None  # per neuron: its trains are equal on every sample

    def __add__(self, other: Agreement) -> Agreement:
        if self.either is None:
            return other
        assert self.both is not None and self.identical is not None and other.either is not None
        assert other.both is not None and other.identical is not None
        return Agreement(self.pairs + other.pairs, self.counts_equal + other.counts_equal,
                         self.samples + other.samples, self.predictions_equal + other.predictions_equal,
                         self.either + other.either, self.both + other.both, self.identical & other.identical)

    @property
    def spike_agreement(self) -> float:
        """Coincident spikes / spikes in either raster, over all neurons (1: the same spike times)."""
        assert self.either is not None and self.both is not None, "an empty Agreement has no spikes to compare"
        either = int(self.either.sum())
        return int(self.both.sum()) / either if either else 1.0

    @property
    def per_neuron(self) -> torch.Tensor:
        """The spike agreement of each neuron (1 for a neuron silent in both)."""
        assert self.either is not None and self.both is not None, "an empty Agreement has no neurons"
        return torch.where(self.either > 0, self.both / self.either.clamp(min=1),
                           torch.ones_like(self.both, dtype=torch.float64))


def compare(ours: torch.Tensor, importer: torch.Tensor, delay: int) -> Agreement:
    """Our raster over T steps against the importer's over its first T - ``delay`` steps, ``delay``
    being the layer's depth (1 for the first layer, L for the output of L layers)."""
    steps = ours.shape[0]
    a = ours[delay:].bool().flatten(2)
    b = importer[: steps - delay].bool().flatten(2)
    ours_counts = ours.bool().flatten(2).sum(0)
    importer_counts = b.sum(0)
    return Agreement(
        pairs=ours_counts.numel(),
        counts_equal=int((ours_counts == importer_counts).sum()),
        samples=ours_counts.shape[0],
        predictions_equal=int((predict(ours_counts) == predict(importer_counts)).sum()),
        either=(a | b).sum((0, 1)).double(),
        both=(a & b).sum((0, 1)).double(),
        identical=(a == b).all(0).all(0),
    )


def importer_counts(importer_output: torch.Tensor, delay: int) -> torch.Tensor:
    """B x C spike counts of the importer's output raster over our T steps' window (its first T - delay)."""
    return importer_output[: importer_output.shape[0] - delay].sum(0)
