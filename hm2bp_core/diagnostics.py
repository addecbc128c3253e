"""What a researcher looks at after training, beyond accuracy: the test set's confusion matrix
and the spike rasters of a few test samples, layer by layer.

Both are computed from a ``Trainer`` (its network, its test indices and its input encoding, so the
spike trains are exactly those the final evaluation saw) and return plain JSON-ready dicts:

- ``confusion_matrix``: ``{"num_classes", "samples", "accuracy", "matrix"}`` where
  ``matrix[true][predicted]`` counts test samples.
- ``spike_rasters``: ``{"time_steps", "samples": [{"index", "label", "prediction", "output_counts",
  "layers": [{"name", "size", "times", "neurons", "truncated"}]}]}``; ``times[k]`` (time step) and
  ``neurons[k]`` (flat neuron index; conv maps are flattened channel-major) are the k-th spike.
  The first layer is the encoded input. At most ``max_spikes`` spikes are kept per layer and sample
  (the earliest), with ``truncated`` saying whether any were dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .objective import predict

if TYPE_CHECKING:
    from .train import Trainer

MAX_SPIKES = 20_000


def confusion_matrix(trainer: Trainer) -> dict[str, Any]:
    """The confusion matrix of the trained network on the trainer's test samples."""
    indices = trainer.test_indices
    classes = trainer.dataset.num_classes
    truth = trainer.dataset.labels("test", indices).numpy()
    predicted = trainer.test_predictions
    if predicted is None or len(predicted) != len(indices):
        predicted = trainer.predict("test", indices)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return {"num_classes": classes, "samples": int(len(indices)),
            "accuracy": float(np.trace(matrix) / max(len(indices), 1)), "matrix": matrix.tolist()}


def _layer_name(config: Any) -> str:
    if config.type == "dense":
        return f"dense {config.units}"
    if config.type == "conv":
        return f"conv {config.channels}x{config.kernel}x{config.kernel}"
    return f"pool {config.size}x{config.size}"


def _spikes(raster: torch.Tensor, max_spikes: int) -> dict[str, Any]:
    """Spike times and neuron ids of one sample's raster (T x ...)."""
    flat = raster.reshape(raster.shape[0], -1)
    times, neurons = torch.nonzero(flat, as_tuple=True)  # row-major: ordered by time
    return {"size": int(flat.shape[1]), "times": times[:max_spikes].tolist(),
            "neurons": neurons[:max_spikes].tolist(), "truncated": bool(len(times) > max_spikes)}


def spike_rasters(trainer: Trainer, count: int = 8, max_spikes: int = MAX_SPIKES) -> dict[str, Any]:
    """Input and per-layer spike trains of the first ``count`` test samples."""
    indices = trainer.test_indices[:count]
    result: dict[str, Any] = {"time_steps": trainer.spec.encoding.time_steps, "samples": []}
    if len(indices) == 0:
        return result
    inputs = trainer.encode("test", indices)  # T x B x ...
    traces = trainer.net.forward(inputs)
    labels = trainer.dataset.labels("test", indices).tolist()
    output_counts = traces[-1].spikes.sum(0).float()
    predicted = predict(output_counts).tolist()
    names = ["input"] + [_layer_name(config) for config in trainer.spec.network.layers]
    result["time_steps"] = int(inputs.shape[0])
    for b, index in enumerate(indices.tolist()):
        layers = [{"name": name, **_spikes(raster[:, b], max_spikes)}
                  for name, raster in zip(names, [inputs, *(trace.spikes for trace in traces)], strict=True)]
        result["samples"].append({"index": index, "label": labels[b], "prediction": predicted[b],
                                  "output_counts": output_counts[b].tolist(), "layers": layers})
    return result
