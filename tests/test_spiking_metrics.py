"""NeuroBench's spiking metrics (hm2bp_core/spiking_metrics.py) of the paper's MNIST MLP after one
epoch, against a hand computation from the spike rasters of the same test samples; and the
fan-out rule of convolution and pooling layers counted by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from hm2bp_core.data import load_dataset
from hm2bp_core.layers import ConvLayer, PoolLayer
from hm2bp_core.neuron import LIFParameters
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.spiking_metrics import fan_out
from hm2bp_core.train import Trainer

from conftest import MNIST_NPZ, REPO


@pytest.mark.skipif(not MNIST_NPZ.exists(), reason="../shared/data/mnist.npz is not on this machine")
def test_mnist_mlp_metrics_after_one_epoch_match_a_hand_count(tmp_path):
    raw = yaml.safe_load((REPO / "examples" / "mnist_mlp.yaml").read_text())
    raw["training"].update(epochs=1, max_train_samples=3, max_test_samples=4)
    spec = TrainingSpec.model_validate(raw)
    trainer = Trainer(spec, load_dataset(MNIST_NPZ), tmp_path)
    metrics = trainer.run()
    row = metrics["epochs"][0]
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"][0]["synaptic_operations"] == \
        pytest.approx(row["synaptic_operations"])

    # by hand: the test samples' input spikes and each layer's spikes, straight from the rasters
    steps, hidden, classes = 400, 800, 10
    inputs = trainer.encode("test", trainer.test_indices)
    rasters = [trace.spikes for trace in trainer.net.forward(inputs)]
    n = len(trainer.test_indices)
    input_spikes = np.count_nonzero(inputs.numpy()) / n
    hidden_spikes = np.count_nonzero(rasters[0].numpy()) / n
    output_spikes = np.count_nonzero(rasters[1].numpy()) / n
    assert input_spikes > 0 and hidden_spikes > 0
    assert row["spikes_per_sample"] == pytest.approx([hidden_spikes, output_spikes])
    # every input spike reaches the 800 hidden neurons, every hidden spike the 10 output neurons
    assert row["synaptic_operations"] == pytest.approx(input_spikes * hidden + hidden_spikes * classes)
    assert row["activation_sparsity"] == pytest.approx(
        1 - (hidden_spikes + output_spikes) / ((hidden + classes) * steps))
    assert 0 < row["activation_sparsity"] < 1


def test_fan_out_of_convolution_and_pooling():
    weight = torch.zeros(2, 1, 3, 3)  # 2 output channels, 3x3 kernel over a 5x5 image
    conv = ConvLayer(weight, 1.0, LIFParameters(64, 8, 2), TrainingSpec().training.regularization,
                     in_shape=(1, 5, 5), stride=1, padding=0)
    counts = fan_out(conv, 25).reshape(5, 5)
    # a pixel feeds the 3x3 output positions whose window covers it (clipped at the edges), in both channels
    by_hand = torch.tensor([[min(i, 2, 4 - i) + 1 for i in range(5)]], dtype=torch.float64)
    assert torch.equal(counts, 2 * by_hand.T @ by_hand)
    pool = PoolLayer(1.0, LIFParameters(64, 8, 2), in_shape=(1, 5, 5), size=2)
    inside = fan_out(pool, 25).reshape(5, 5)
    assert inside[:4, :4].eq(1).all() and inside[4].eq(0).all() and inside[:, 4].eq(0).all()
