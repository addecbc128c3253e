"""Hardware-facing metrics of a spiking network, as NeuroBench defines them (NeuroBench v1.0:
Yik et al., "The neurobench framework for benchmarking neuromorphic computing algorithms and
systems", Nature Communications 16, 1545 (2025); the ``neurobench`` package 1.0, modules
``metrics/workload/activation_sparsity.py`` and ``synaptic_operations.py``).

Over the samples of one evaluation (every time step of every sample):

* ``activation_sparsity`` = 1 - (non-zero activations) / (all activations), counted over the
  outputs of every spiking-neuron layer of the model (the input encoding is not an activation
  layer): ``1 - sum_l spikes_l / sum_l (neurons_l * T * samples)``. NeuroBench: "the average
  sparsity of neuron activations over all neuron layers of the model for all timesteps of all
  tested samples".
* ``synaptic_operations`` per sample: NeuroBench's *Effective_ACs* for a spiking model, whose
  inputs are binary so every operation is an accumulate: each spike entering a connection layer
  triggers one accumulate per synapse it drives, ``sum_l sum_i spikes_in_l[i] * fan_out_l[i] /
  samples``, where layer l's input is the encoded input spikes (l = 0) or layer l-1's spikes, and
  ``fan_out_l[i]`` the number of synapses of layer l that input neuron i drives (a dense layer's
  width; for a convolution the output positions and channels its kernel reaches; for a pooling
  layer 1 inside a window, 0 outside).
* ``spikes_per_sample``: per layer, the spikes of the layer's neurons per sample (summed over
  neurons and steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn.grad import conv2d_input

from .layers import ConvLayer, DenseLayer, PoolLayer, spike_counts


def fan_out(layer: object, fan_in: int) -> torch.Tensor:
    """Synapses of ``layer`` driven by each of its ``fan_in`` input neurons (float64, length fan_in)."""
    if isinstance(layer, DenseLayer):
        return torch.full((fan_in,), float(layer.units), dtype=torch.float64)
    if isinstance(layer, ConvLayer):
        ones = torch.ones(1, *layer.out_shape, dtype=torch.float64)
        kernel = torch.ones(tuple(layer.weight.shape), dtype=torch.float64)
        return conv2d_input((1, *layer.in_shape), kernel, ones, stride=layer.stride, padding=layer.padding).reshape(-1)
    if isinstance(layer, PoolLayer):
        return layer._up(torch.ones(1, layer.units, dtype=torch.float64)).reshape(-1)
    raise TypeError(f"no fan-out rule for {type(layer).__name__}")


@dataclass
class SpikingMeter:
    """Accumulates the spikes of evaluation batches; :meth:`summary` gives the three metrics."""

    layers: list
    samples: int = 0
    neuron_steps: float = 0.0
    layer_spikes: list[float] = field(default_factory=list)
    synops: float = 0.0
    _fan_outs: list[torch.Tensor] = field(default_factory=list)

    def add(self, inputs: torch.Tensor, layer_counts: list[torch.Tensor]) -> None:
        """One batch: ``inputs`` its T x B x N_in input spikes, ``layer_counts`` each layer's B x N spike counts."""
        steps, batch = inputs.shape[:2]
        incoming = [spike_counts(inputs, torch.float64).sum(0).cpu()]
        incoming += [counts.to(torch.float64).sum(0).cpu() for counts in layer_counts[:-1]]
        if not self._fan_outs:
            self._fan_outs = [fan_out(layer, len(spikes)) for layer, spikes in zip(self.layers, incoming, strict=True)]
            self.layer_spikes = [0.0] * len(self.layers)
        for k, counts in enumerate(layer_counts):
            self.layer_spikes[k] += float(counts.to(torch.float64).sum())
            self.neuron_steps += counts.shape[1] * steps * batch
        self.synops += sum(float(spikes @ fan) for spikes, fan in zip(incoming, self._fan_outs, strict=True))
        self.samples += batch

    def summary(self) -> dict[str, float | list[float]]:
        samples = max(self.samples, 1)
        return {"activation_sparsity": 1.0 - sum(self.layer_spikes) / max(self.neuron_steps, 1.0),
                "synaptic_operations": self.synops / samples,
                "spikes_per_sample": [spikes / samples for spikes in self.layer_spikes]}
