import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
MNIST_NPZ = REPO.parent / "shared" / "data" / "mnist.npz"


@pytest.fixture(params=["compiled", "tensor"])
def core_path(request, monkeypatch):
    """Run a test on the compiled CPU kernels and on the tensor code (the CUDA path) alike."""
    from hm2bp_core import kernels

    if request.param == "tensor":
        monkeypatch.setattr(kernels, "cpu_kernels", lambda: None)
    elif kernels.cpu_kernels() is None:
        pytest.skip("no C++ compiler here: only the tensor code runs")
    return request.param


@pytest.fixture
def lif():
    from hm2bp_core.neuron import LIFParameters

    return LIFParameters(tau_m=64.0, tau_s=8.0, refractory=2)


def raster(trains, steps, dtype=torch.float64):
    """T x 1 x N raster of one sample from per-neuron spike-time lists."""
    out = torch.zeros(steps, 1, len(trains), dtype=dtype)
    for i, train in enumerate(trains):
        for t in train:
            out[t, 0, i] = 1.0
    return out


def random_raster(steps, batch, units, rate, generator, refractory=0, dtype=torch.float64):
    """Random 0/1 raster without spikes at t = 0 and with gaps > refractory (like a real LIF train)."""
    out = (torch.rand(steps, batch, units, generator=generator, dtype=dtype) < rate).to(dtype)
    out[0] = 0
    if refractory:
        last = torch.full((batch, units), -10**6)
        for t in range(steps):
            keep = (out[t] > 0) & (t - last > refractory)
            out[t] = keep.to(dtype)
            last = torch.where(keep, torch.tensor(t), last)
    return out
