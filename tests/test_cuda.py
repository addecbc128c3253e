"""The same HM2-BP code on CUDA: rasters, S-PSP weights and gradients match the CPU's."""

import pytest
import torch

from hm2bp_core.layers import DenseLayer, LayerTrace
from hm2bp_core.network import SpikingNetwork
from hm2bp_core.neuron import LIFParameters, simulate_lif
from hm2bp_core.spec import Hm2bp, Regularization, TrainingSpec
from hm2bp_core.spsp import spsp
from hm2bp_core.train import resolve_device

from conftest import random_raster

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")]


def test_lif_and_spsp_match_cpu():
    p = LIFParameters()
    g = torch.Generator().manual_seed(0)
    currents = torch.randn(300, 4, 50, generator=g, dtype=torch.float64) * 2 + 0.7
    assert torch.equal(simulate_lif(currents, 3.0, p).cpu(), simulate_lif(currents.cuda(), 3.0, p).cpu())
    pre = random_raster(500, 2, 30, 0.03, g)
    post = random_raster(500, 2, 20, 0.01, g, refractory=2)
    assert torch.allclose(spsp(pre, post, p), spsp(pre.cuda(), post.cuda(), p).cpu(), atol=1e-10)


def test_gradients_match_cpu():
    p = LIFParameters()
    g = torch.Generator().manual_seed(1)
    pre = random_raster(200, 3, 40, 0.05, g)
    post = random_raster(200, 3, 12, 0.05, g, refractory=2)
    w = torch.randn(12, 40, generator=g, dtype=torch.float64)
    delta = torch.randn(3, 12, generator=g, dtype=torch.float64)
    reg = Regularization()
    cpu = DenseLayer(w, 2.0, p, reg).backward(LayerTrace(pre, post), delta, Hm2bp())
    gpu = DenseLayer(w.cuda(), 2.0, p, reg).backward(LayerTrace(pre.cuda(), post.cuda()), delta.cuda(), Hm2bp())
    assert torch.allclose(cpu.weight, gpu.weight.cpu(), atol=1e-9)
    assert torch.allclose(cpu.delta_below, gpu.delta_below.cpu(), atol=1e-9)


def test_auto_device_picks_cuda_and_a_network_trains_there():
    assert resolve_device("auto").type == "cuda"
    spec = TrainingSpec.model_validate({"network": {"layers": [{"type": "dense", "units": 30, "threshold": 3},
                                                               {"type": "dense", "units": 10, "threshold": 3}]},
                                        "encoding": {"time_steps": 100}})
    net = SpikingNetwork(spec, 64, "cuda")
    inputs = random_raster(100, 8, 64, 0.1, torch.Generator().manual_seed(2), dtype=torch.float32).cuda()
    result = net.run(inputs, torch.arange(8).cuda() % 10)
    assert all(gr.is_cuda and torch.isfinite(gr).all() for gr in result.gradients)
