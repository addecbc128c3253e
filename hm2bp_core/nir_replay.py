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

from .objective import predict


def import_snntorch(path: str | Path) -> torch.nn.Module:
    """The snnTorch module of a NIR file (the importer's progress prints are swallowed)."""
    import nir
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):
        return import_from_nir(nir.read(str(path)))


def replay(module: torch.nn.Module, raster: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """The output raster (T x B x C) of the imported ``module`` fed the input ``raster`` (T x B x D)."""
    import snntorch.utils

    has_flatten = any(isinstance(m, torch.nn.Flatten) for m in module.modules())
    groups = [slice(b, b + 1) for b in range(raster.shape[1])] if has_flatten else [slice(None)]
    outputs = []
    with torch.no_grad():
        for group in groups:
            snntorch.utils.reset(module)  # the Synaptic layers keep syn and mem between calls
            state, steps = None, []
            for frame in raster[:, group].float():
                x = frame.reshape(-1, *input_shape)
                out, state = module(x[0] if has_flatten else x, state)
                steps.append(out.reshape(frame.shape[0], -1))
            outputs.append(torch.stack(steps))
    return torch.cat(outputs, 1)


@dataclass
class Agreement:
    """Our output raster against the importer's, aligned (module docstring)."""

    counts_equal: float  # fraction of (sample, neuron) pairs whose spike counts are equal
    spike_agreement: float  # coincident spikes / spikes in either raster (1 = the same spike times)
    predictions_equal: float  # fraction of samples with the same predicted class
    ours_counts: torch.Tensor  # B x C
    importer_counts: torch.Tensor  # B x C

    @property
    def ours_predictions(self) -> torch.Tensor:
        return predict(self.ours_counts)

    @property
    def importer_predictions(self) -> torch.Tensor:
        return predict(self.importer_counts)


def compare(ours: torch.Tensor, importer: torch.Tensor, layers: int) -> Agreement:
    """Compare our output raster over T steps with the importer's over its first T - ``layers`` steps."""
    steps = ours.shape[0]
    a = ours[layers:].bool()
    b = importer[: steps - layers].bool()
    ours_counts = ours.float().sum(0)
    importer_counts = b.float().sum(0)
    union = (a | b).sum().item()
    return Agreement(
        counts_equal=(ours_counts == importer_counts).float().mean().item(),
        spike_agreement=(a & b).sum().item() / union if union else 1.0,
        predictions_equal=(predict(ours_counts) == predict(importer_counts)).float().mean().item(),
        ours_counts=ours_counts,
        importer_counts=importer_counts,
    )
