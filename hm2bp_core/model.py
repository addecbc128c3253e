"""A trained model from Python: load a model folder (``hm2bp train --out DIR``, or a service job's
downloaded artifacts) and run it on your own samples.

    from hm2bp_core.model import TrainedModel
    model = TrainedModel.load("runs/digits")
    counts = model.spike_counts(images)      # N x classes output spike counts (float tensor)
    classes = model.predict(images)          # N predicted classes (argmax of the counts), numpy

``images`` are N samples of the model's input shape (or flattened to N x D) with intensities in
[0, 1], rate-coded exactly as in training (``encoding``: ``time_steps`` steps, ``max_rate``;
spike trains seeded per sample index by the run's seed, so a call is repeatable). For a model of
spike data, pass T x N x D (or N x T x ...) rasters with ``spikes=`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_model, model_dataset
from .encoding import rate_encode
from .network import SpikingNetwork
from .objective import predict as argmax_counts
from .spec import TrainingSpec


@dataclass
class TrainedModel:
    """A trained network, its spec, and the dataset it was trained on (``{"ref", "name", "sha256",
    "input_shape"}`` when the model file records it)."""

    spec: TrainingSpec
    net: SpikingNetwork
    input_shape: tuple[int, ...]
    dataset: dict[str, Any] | None

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str = "cpu",
             input_shape: tuple[int, ...] | None = None) -> TrainedModel:
        """The model of ``model_dir`` on ``device``. Its input shape: ``input_shape``, else the
        spec's ``network.input_shape``, else the recorded dataset's, else the first dense layer's width."""
        folder = Path(model_dir)
        weights, spec_json = load_model(folder)
        spec = TrainingSpec.model_validate_json(spec_json)
        recorded = model_dataset(folder)
        shape = input_shape or spec.network.input_shape or (recorded or {}).get("input_shape")
        if not shape:
            if spec.network.layers[0].type != "dense":
                raise ValueError(f"{folder}: the model records no input shape; pass input_shape=(H, W)")
            shape = (int(weights["layers.0.weight"].shape[1]),)  # a dense first layer's width
        net = SpikingNetwork(spec, tuple(int(n) for n in shape), device, seed=spec.training.seed)
        net.load_state_dict({k: v.to(device) for k, v in weights.items()})
        return cls(spec, net, tuple(int(n) for n in shape), recorded)

    def _rasters(self, images: Any) -> torch.Tensor:
        data = torch.as_tensor(np.asarray(images, dtype=np.float32))
        data = data.reshape(data.shape[0], -1)
        if data.numel() and (float(data.min()) < 0 or float(data.max()) > 1):
            raise ValueError("images must hold intensities in [0, 1] (divide 8-bit images by 255)")
        enc = self.spec.encoding
        return rate_encode(data.to(self.net.parameters[0].device), np.arange(len(data)), seed=self.spec.training.seed,
                           split="test", time_steps=enc.time_steps, max_rate=enc.max_rate)

    def spike_counts(self, images: Any = None, *, spikes: Any = None, batch_size: int = 256) -> torch.Tensor:
        """Output spike counts, N x classes: of ``images`` (N x input shape, in [0, 1]) rate-coded as
        in training, or of ``spikes`` (spike rasters T x N x D)."""
        if spikes is not None:
            raster = torch.as_tensor(np.asarray(spikes)).float()
            raster = raster.reshape(raster.shape[0], raster.shape[1], -1).to(self.net.parameters[0].device)
        elif images is not None:
            raster = self._rasters(images)
        else:
            raise ValueError("pass images= (N x input shape) or spikes= (T x N x D)")
        return torch.cat([self.net.run(raster[:, i:i + batch_size]).counts
                          for i in range(0, raster.shape[1], batch_size)]).cpu()

    def predict(self, images: Any = None, *, spikes: Any = None) -> np.ndarray:
        """Predicted classes (argmax of the output spike counts), an N-vector of ints."""
        return argmax_counts(self.spike_counts(images, spikes=spikes)).numpy()
