"""A feed-forward spiking network and one HM2-BP gradient computation over a batch (algorithm section 5.5).

Per sample the authors process the layers top-down: each layer computes the error for the layer
below with its current weights, then its own gradient. With batches, every sample's gradients are
computed in parallel and averaged; the optimizer takes one step per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .geometry import layer_shapes
from .layers import ConvLayer, DenseLayer, LayerTrace, PoolLayer, SpikingLayer
from .neuron import LIFParameters
from .objective import count_error, lateral_factor, with_dummy_label_train
from .spec import TrainingSpec


@dataclass
class BatchResult:
    counts: torch.Tensor  # B x C output spike counts (real spikes)
    cost: torch.Tensor  # B, the authors' dead-zone cost
    layer_counts: list[torch.Tensor]  # per layer, B x N spike counts
    gradients: list[torch.Tensor] | None = None  # per learnable layer (see .parameters), like its weight


def maps(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``shape`` as C x H x W (``geometry.layer_shapes`` has checked that a conv or pool layer gets that)."""
    channels, height, width = shape
    return channels, height, width


class SpikingNetwork:
    """Layers built from ``spec.network``; weights are leaf tensors of ``spec.training.precision`` on ``device``
    (drawn in float32 whatever the precision, so both precisions start from the same weights)."""

    def __init__(self, spec: TrainingSpec, input_shape: int | tuple[int, ...], device: torch.device | str = "cpu",
                 seed: int = 0):
        self.spec = spec
        self.neuron = LIFParameters(spec.neuron.tau_m, spec.neuron.tau_s, spec.neuron.refractory)
        generator = torch.Generator().manual_seed(seed)
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        if len(shape) == 2:
            shape = (1, *shape)  # a gray image is one input channel
        reg = spec.training.regularization
        dtype = getattr(torch, spec.training.precision)
        self.layers: list[SpikingLayer | PoolLayer] = []
        configs = spec.network.layers
        layer_shapes(configs, shape)  # GeometryError naming the layer field when a conv or pool layer does not fit
        for k, cfg in enumerate(configs):
            is_output = k == len(configs) - 1
            layer: SpikingLayer | PoolLayer
            if cfg.type == "pool":
                layer = PoolLayer(cfg.threshold, self.neuron, in_shape=maps(shape), size=cfg.size, dtype=dtype,
                                  device=device)
                shape = layer.out_shape
            elif cfg.type == "conv":
                weight = self._uniform((cfg.channels, shape[0], cfg.kernel, cfg.kernel), cfg.init_range, generator)
                layer = ConvLayer(torch.nn.Parameter(weight.to(device, dtype)), cfg.threshold, self.neuron, reg,
                                  in_shape=maps(shape), stride=cfg.stride, padding=cfg.padding)
                shape = layer.out_shape
            else:
                fan_in = int(torch.tensor(shape).prod())  # dense layers flatten their input
                weight = self._uniform((cfg.units, fan_in), cfg.init_range, generator)
                layer = DenseLayer(torch.nn.Parameter(weight.to(device, dtype)), cfg.threshold, self.neuron, reg,
                                   lateral=spec.output.lateral_inhibition if is_output else 0.0)
                shape = (cfg.units,)
            self.layers.append(layer)

    @staticmethod
    def _uniform(shape, init_range, generator):
        """initType "Bernoulli" of the authors' code is uniform U(-initW, initW) (algorithm section 7.4)."""
        return (torch.rand(*shape, generator=generator) * 2 - 1) * init_range

    @property
    def learnable(self) -> list[tuple[int, SpikingLayer]]:
        return [(k, layer) for k, layer in enumerate(self.layers) if isinstance(layer, SpikingLayer)]

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [layer.weight for _, layer in self.learnable]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"layers.{k}.weight": layer.weight.detach() for k, layer in self.learnable}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        for k, layer in self.learnable:
            value = tensors[f"layers.{k}.weight"]
            if value.shape != layer.weight.shape:
                raise ValueError(
                    f"layers.{k}.weight has shape {tuple(value.shape)}, expected {tuple(layer.weight.shape)}")
            with torch.no_grad():
                layer.weight.copy_(value.to(layer.weight.device, layer.weight.dtype))

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> list[LayerTrace]:
        traces = []
        events = None  # the CPU conv and pool kernels hand each raster's event lists on with it
        for layer in self.layers:
            trace = layer.forward(inputs, events)
            traces.append(trace)
            inputs, events = trace.spikes, trace.events
        return traces

    @torch.no_grad()
    def run(self, inputs: torch.Tensor, labels: torch.Tensor | None = None,
            sample_weights: torch.Tensor | None = None, *, per_sample: bool = False,
            learn: bool = True) -> BatchResult:
        """Forward a batch (inputs T x B x N_in) and, with ``labels`` and ``learn``, its gradients."""
        traces = self.forward(inputs)
        dtype = self.parameters[0].dtype
        layer_counts = [trace.spike_counts(dtype) for trace in traces]
        counts = layer_counts[-1]
        if labels is None:
            return BatchResult(counts, torch.zeros(counts.shape[0], device=counts.device), layer_counts)
        delta, cost = count_error(counts, labels, self.spec.output)
        if not learn:
            return BatchResult(counts, cost, layer_counts)
        if sample_weights is not None and self.spec.hm2bp.boosting:
            delta = delta * sample_weights.unsqueeze(1)
        return BatchResult(counts, cost, layer_counts, self._gradients(traces, labels, delta, per_sample))

    def _gradients(self, traces, labels, delta, per_sample):
        switches = self.spec.hm2bp
        out_layer, out_trace = self.layers[-1], traces[-1]
        factor = None
        if out_layer.lateral and switches.lateral_factor:
            factor = lateral_factor(out_trace.spikes, labels, out_layer.threshold, out_layer.lateral,
                                    self.neuron, shift=switches.refractory_shift, window=switches.psp_window)
        post = out_trace.spikes
        if switches.dummy_label_train:
            post = with_dummy_label_train(post, labels, self.spec.output.desired_count)
        gradients: dict[int, torch.Tensor] = {}
        for k in range(len(self.layers) - 1, -1, -1):
            result = self.layers[k].backward(
                traces[k], delta, switches,
                post_spikes=post if k == len(self.layers) - 1 else None,
                lateral_factor=factor if k == len(self.layers) - 1 else None,
                need_delta_below=k > 0,
                per_sample=per_sample,
            )
            if result.weight is not None:
                gradients[k] = result.weight
            delta = result.delta_below
        return [gradients[k] for k, _ in self.learnable]
