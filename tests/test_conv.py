"""Spiking convolution and pooling: HM2-BP gradients against brute-force loops over positions."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hm2bp_core.layers import ConvLayer, LayerTrace, PoolLayer
from hm2bp_core.network import SpikingNetwork
from hm2bp_core.spec import Hm2bp, Regularization, TrainingSpec, load_spec

from conftest import random_raster
from reference import spsp_pair

NO_REG = Regularization(**{"lambda": 0.0})


def trains(raster, b):
    return [raster[:, b, n].nonzero().flatten().tolist() for n in range(raster.shape[2])]


def brute_conv_backward(pre, post, kernel, delta, nu, lif, in_shape, stride, padding):
    """Algorithm section 6.1 for one sample, with explicit loops over output and input positions."""
    c_in, h, w = in_shape
    c_out, _, k, _ = kernel.shape
    h_out, w_out = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    pre_t, post_t = trains(pre, 0), trains(post, 0)

    def q_index(ci, x, y):
        return ci * h * w + x * w + y

    def o_index(co, x, y):
        return co * h_out * w_out + x * w_out + y

    grad = torch.zeros_like(kernel)
    below = torch.zeros(c_in * h * w, dtype=torch.float64)
    for co in range(c_out):
        for x in range(h_out):
            for y in range(w_out):
                o = o_index(co, x, y)
                a_o = len(post_t[o])
                field = []
                for ci in range(c_in):
                    for i in range(k):
                        for j in range(k):
                            px, py = stride * x + i - padding, stride * y + j - padding
                            if 0 <= px < h and 0 <= py < w:
                                q = q_index(ci, px, py)
                                e = spsp_pair(pre_t[q], post_t[o], lif)
                                field.append((ci, i, j, q, e))
                rho = [(e / a_o if a_o else 0.5) for *_, e in field]
                s = sum(float(kernel[co, ci, i, j]) * r for (ci, i, j, _, _), r in zip(field, rho, strict=True)) / nu
                d = float(delta[0, o]) / nu
                for ci, i, j, q, e in field:
                    grad[co, ci, i, j] += d * e * (1 + s)
                    a_q = len(pre_t[q])
                    ratio = e / a_q if (a_o > 0 and a_q > 0) else 1.0
                    below[q] += d * float(kernel[co, ci, i, j]) * ratio
    return grad, below


@pytest.mark.usefixtures("core_path")
@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_conv_gradients_equal_brute_force(lif, stride, padding):
    g = torch.Generator().manual_seed(stride * 10 + padding)
    in_shape = (2, 5, 5)
    kernel = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    layer = ConvLayer(kernel, 2.0, lif, NO_REG, in_shape=in_shape, stride=stride, padding=padding)
    pre = random_raster(150, 1, 50, 0.06, g)
    post = random_raster(150, 1, layer.units, 0.05, g, refractory=2)
    post[:, 0, 1] = 0  # a silent output neuron
    delta = torch.randn(1, layer.units, generator=g, dtype=torch.float64)
    got = layer.backward(LayerTrace(pre, post), delta, Hm2bp())
    grad, below = brute_conv_backward(pre, post, kernel, delta, 2.0, lif, in_shape, stride, padding)
    assert torch.allclose(got.weight, grad, atol=1e-9)
    assert torch.allclose(got.delta_below[0], below, atol=1e-9)
    assert float(grad.abs().sum()) > 0.1


@pytest.mark.usefixtures("core_path")
def test_conv_forward_is_cross_correlation(lif):
    kernel = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    kernel[0, 0, 0, 1] = 5.0
    layer = ConvLayer(kernel, 1.0, lif, NO_REG, in_shape=(1, 3, 3))
    spikes = torch.zeros(6, 1, 9, dtype=torch.float64)
    spikes[1, 0, 1 * 3 + 2] = 1.0  # input (1, 2) drives output (1, 1) through kernel (0, 1)
    currents = layer.currents(spikes)
    assert currents[1, 0].nonzero().flatten().tolist() == [1 * 2 + 1]
    # the current reaches x at t = 2 (v = 5/8), then v = 5/8 * 63/64 + 4.375/8 > 1 at t = 3
    fired = layer.forward(spikes).spikes[:, 0].nonzero().tolist()
    assert fired == [[3, 1 * 2 + 1]]


@pytest.mark.usefixtures("core_path")
def test_pool_error_equals_brute_force(lif):
    g = torch.Generator().manual_seed(4)
    layer = PoolLayer(1.5, lif, in_shape=(2, 5, 4), size=2, dtype=torch.float64)
    pre = random_raster(120, 1, 40, 0.08, g, refractory=2)
    trace = layer.forward(pre)
    post = trace.spikes.double()
    assert float(post.sum()) > 5
    delta = torch.randn(1, layer.units, generator=g, dtype=torch.float64)
    got = layer.backward(trace, delta, Hm2bp()).delta_below[0]
    pre_t, post_t = trains(pre, 0), trains(post, 0)
    expected = torch.zeros(40, dtype=torch.float64)
    for c in range(2):
        for x in range(2):
            for y in range(2):
                o = c * 4 + x * 2 + y
                for i in range(2):
                    for j in range(2):
                        q = c * 20 + (2 * x + i) * 4 + (2 * y + j)
                        both = post_t[o] and pre_t[q]
                        ratio = spsp_pair(pre_t[q], post_t[o], lif) / len(pre_t[q]) if both else 1.0
                        expected[q] = float(delta[0, o]) / 4 * ratio
    assert torch.allclose(got, expected, atol=1e-9)  # row 4 of the 5 input rows lies outside every window


@pytest.mark.usefixtures("core_path")
def test_pool_forward_sums_windows(lif):
    layer = PoolLayer(0.5, lif, in_shape=(1, 2, 3), size=2)  # the third column lies outside every window
    spikes = torch.zeros(4, 1, 6)
    spikes[1, 0, [0, 1, 3]] = 1.0
    spikes[1, 0, 2] = 1.0  # outside: never counted
    assert float(layer.currents(spikes)[1, 0, 0]) == 3.0
    # x = 3 at t = 2: v = 3/8 > 0.5 - 1e-6 is false, then v = 3/8 * 63/64 + 2.625/8 > 0.5 at t = 3
    assert layer.forward(spikes).spikes[:, 0].nonzero().tolist() == [[3, 0]]


def test_paper_cnn_is_a_few_lines_of_spec():
    spec = load_spec(Path(__file__).resolve().parents[1] / "examples" / "mnist_cnn.yaml")
    net = SpikingNetwork(spec, (28, 28))
    assert [layer.units for layer in net.layers] == [15 * 24 * 24, 15 * 12 * 12, 40 * 8 * 8, 40 * 4 * 4, 300, 10]
    assert [tuple(p.shape) for p in net.parameters] == [(15, 1, 5, 5), (40, 15, 5, 5), (300, 640), (10, 300)]
    assert float(net.parameters[0].abs().max()) <= 0.5  # conv init U(-0.5, 0.5) (algorithm section 7.4)
    # one Adam step per sample, as the authors: its deep layers start silent and need many steps to wake
    assert spec.training.batch_size == 1 and spec.training.lr == 1e-3
    g = torch.Generator().manual_seed(0)
    inputs = random_raster(60, 2, 784, 0.1, g, dtype=torch.float32)
    result = net.run(inputs, torch.tensor([3, 7]))
    assert len(result.gradients) == 4 and all(torch.isfinite(gr).all() for gr in result.gradients)


def test_augmentation_switch_trains_and_resamples(tmp_path):
    import numpy as np

    from hm2bp_core.augment import random_grids, warp
    from hm2bp_core.data import load_dataset
    from hm2bp_core.train import train

    rng = np.random.default_rng(0)
    image = torch.zeros(1, 8, 8)
    image[0, 2:6, 3:5] = 1.0
    identity = random_grids(1, 8, 8, scale=0, rotation=0, distortion=0, rng=rng)
    assert torch.allclose(warp(image, identity), image, atol=1e-5)
    moved = warp(image, random_grids(1, 8, 8, scale=0.12, rotation=12, distortion=3.4, rng=rng))
    assert not torch.allclose(moved, image) and 0 < float(moved.sum()) < 20
    spec = TrainingSpec.model_validate({
        "network": {"layers": [{"type": "conv", "channels": 4, "kernel": 3, "threshold": 3},
                               {"type": "pool", "size": 2, "threshold": 1},
                               {"type": "dense", "units": 10, "threshold": 5}]},
        "encoding": {"time_steps": 120}, "augmentation": {"enabled": True},
        "training": {"epochs": 2, "batch_size": 16, "lr": 0.01, "max_train_samples": 64, "max_test_samples": 32},
    })
    metrics = train(spec, load_dataset("builtin:digits"), tmp_path)
    assert len(metrics["epochs"]) == 2 and metrics["epochs"][0]["firing_rates"][0] > 0


def compiled_kernels():
    from hm2bp_core import kernels

    if kernels.cpu_kernels() is None:
        pytest.skip("no C++ compiler here: only the tensor code runs")
    return kernels


SWITCHES = [Hm2bp(), Hm2bp(mode="custom", side_effect=False, ratio_fallbacks=False, refractory_shift=False,
                           psp_window=False)]


def sparse_inputs(g, steps, batch, units, rate):
    """A random boolean raster of a few samples in which every 7th input neuron stays silent."""
    inputs = random_raster(steps, batch, units, rate, g, refractory=1).bool()
    inputs[:, :, ::7] = False
    return inputs


def both_paths(monkeypatch, run):
    """run() on the compiled kernels, then on the tensor code (the CUDA path and the fallback)."""
    kernels = compiled_kernels()
    compiled = run()
    monkeypatch.setattr(kernels, "cpu_kernels", lambda: None)
    tensor = run()
    monkeypatch.undo()
    return compiled, tensor


def assert_close(a, b, dtype):
    scale = float(b.abs().max())
    assert scale > 0
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert torch.allclose(a, b, rtol=tol, atol=tol * scale), float((a - b).abs().max()) / scale


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("stride, padding, channels", [(1, 0, 4), (2, 1, 11), (1, 2, 4), (3, 0, 11)])
def test_event_driven_conv_equals_the_tensor_path(lif, monkeypatch, stride, padding, channels, dtype):
    """The compiled conv layer against the tensor code on random rasters of 3 samples: the same
    output spikes, and the same summed and per-sample kernel gradients and error sent down (with the
    faithful switches and with every heuristic off, with and without a lateral factor); 4 output
    channels (part of one block of the kernels' 8) and 11 (a whole block and part of another)."""
    g = torch.Generator().manual_seed(100 + 10 * stride + padding)
    in_shape = (3, 9, 8)
    kernel = (torch.rand(channels, 3, 3, 3, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    layer = ConvLayer(kernel, 2.0, lif, NO_REG, in_shape=in_shape, stride=stride, padding=padding)
    inputs = sparse_inputs(g, 200, 3, 3 * 9 * 8, 0.06)
    delta = torch.randn(3, layer.units, generator=g, dtype=torch.float64).to(dtype)
    factor = (torch.rand(3, layer.units, generator=g, dtype=torch.float64) + 0.5).to(dtype)

    def run():
        trace = layer.forward(inputs)
        grads = [layer.backward(trace, delta, switches, lateral_factor=lateral, per_sample=per)
                 for switches in SWITCHES for lateral in (None, factor) for per in (False, True)]
        assert torch.equal(trace.spike_counts(dtype), trace.spikes.sum(0).to(dtype))
        return trace.spikes, grads

    (spikes, grads), (tensor_spikes, tensor_grads) = both_paths(monkeypatch, run)
    assert spikes.dtype == torch.bool and torch.equal(spikes, tensor_spikes)
    firing = spikes.any(0).double().mean()
    assert 0.2 < float(firing) < 0.95  # firing and silent output neurons alike
    for got, expected in zip(grads, tensor_grads, strict=True):
        assert_close(got.weight, expected.weight, dtype)
        assert_close(got.delta_below, expected.delta_below, dtype)
    assert not torch.allclose(grads[0].weight, grads[4].weight)  # the switches matter


def test_event_driven_conv_on_blank_borders_equals_the_tensor_path(lif, monkeypatch):
    """Inputs silent on their first and last rows (an image's blank border), and one sample silent
    until step 120: the compiled conv layer leaves output rows that no input has reached yet
    unstepped, which must change no spike and no gradient."""
    g = torch.Generator().manual_seed(77)
    in_shape = (2, 12, 10)
    layer = ConvLayer(torch.rand(9, 2, 3, 3, generator=g) * 2 - 0.6, 2.0, lif, NO_REG, in_shape=in_shape, padding=1)
    inputs = sparse_inputs(g, 200, 2, 2 * 12 * 10, 0.08).view(200, 2, 2, 12, 10)
    inputs[:, :, :, :3] = False
    inputs[:, :, :, -2:] = False
    inputs[:120, 1] = False
    inputs = inputs.reshape(200, 2, -1)
    delta = torch.randn(2, layer.units, generator=g)

    def run():
        trace = layer.forward(inputs)
        return trace.spikes, layer.backward(trace, delta, Hm2bp())

    (spikes, grad), (tensor_spikes, tensor_grad) = both_paths(monkeypatch, run)
    assert torch.equal(spikes, tensor_spikes)
    rows = spikes.view(200, 2, 9, 12, 10).any(0).any(1).any(-1)  # per sample and output row: did it fire
    assert bool(rows[:, 4:8].all()) and not bool(rows[:, :2].any())  # fired in the middle, never at the top
    assert not bool(spikes[:121, 1].any()) and bool(spikes[121:, 1].any())
    assert_close(grad.weight, tensor_grad.weight, torch.float32)
    assert_close(grad.delta_below, tensor_grad.delta_below, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("size, in_shape", [(2, (3, 9, 7)), (3, (2, 9, 9))])
def test_event_driven_pool_equals_the_tensor_path(lif, monkeypatch, size, in_shape, dtype):
    """The compiled pool layer against the tensor code: the same spikes and error sent down, windows
    that cover the input and windows that leave its last rows and columns out."""
    g = torch.Generator().manual_seed(7 + size)
    layer = PoolLayer(1.5, lif, in_shape=in_shape, size=size, dtype=dtype)
    units_in = in_shape[0] * in_shape[1] * in_shape[2]
    inputs = sparse_inputs(g, 250, 3, units_in, 0.08)
    inputs[:, :, : 2 * in_shape[2] * size] = False  # the first two rows of windows of channel 0 stay silent
    delta = torch.randn(3, layer.units, generator=g, dtype=torch.float64).to(dtype)

    def run():
        trace = layer.forward(inputs)
        assert torch.equal(trace.spike_counts(dtype), trace.spikes.sum(0).to(dtype))
        return trace.spikes, [layer.backward(trace, delta, switches).delta_below for switches in SWITCHES]

    (spikes, belows), (tensor_spikes, tensor_belows) = both_paths(monkeypatch, run)
    assert spikes.dtype == torch.bool and torch.equal(spikes, tensor_spikes)
    assert 0.2 < float(spikes.any(0).double().mean()) < 1
    for got, expected in zip(belows, tensor_belows, strict=True):
        assert_close(got, expected, dtype)


def test_event_driven_cnn_equals_the_tensor_path(monkeypatch):
    """A whole small CNN (conv with padding, pool, strided conv, pool, dense): every layer's spike
    counts and every layer's per-sample and mean gradients of both paths, float64."""
    spec = TrainingSpec.model_validate({
        "network": {"layers": [{"type": "conv", "channels": 4, "kernel": 3, "padding": 1, "threshold": 2},
                               {"type": "pool", "size": 2, "threshold": 1},
                               {"type": "conv", "channels": 6, "kernel": 3, "stride": 2, "threshold": 2},
                               {"type": "pool", "size": 2, "threshold": 1},
                               {"type": "dense", "units": 10, "threshold": 3}]},
        "encoding": {"time_steps": 160}, "training": {"precision": "float64"},
        "output": {"lateral_inhibition": 0},  # its factor L comes from float32 spike weights on both paths
    })
    net = SpikingNetwork(spec, (14, 14), seed=2)
    with torch.no_grad():
        for weight in net.parameters[:2]:
            weight.mul_(3).add_(0.3)  # deep maps that fire at this T
    g = torch.Generator().manual_seed(9)
    inputs = sparse_inputs(g, 160, 3, 14 * 14, 0.1)
    labels = torch.tensor([0, 3, 7])

    def run():
        return [net.run(inputs, labels, per_sample=per) for per in (True, False)]

    compiled, tensor = both_paths(monkeypatch, run)
    for a, b in zip(compiled, tensor, strict=True):
        assert all(torch.equal(ca, cb) for ca, cb in zip(a.layer_counts, b.layer_counts, strict=True))
        assert all(float(counts.sum()) > 0 for counts in a.layer_counts)
        for ga, gb in zip(a.gradients, b.gradients, strict=True):
            assert_close(ga, gb, torch.float64)


def test_event_lists_are_the_rasters_spikes_and_change_nothing(lif):
    """The compiled conv and pool layers return their spikes also as step-major event lists, which the
    layer above and both backward passes take instead of scanning the raster again: the lists hold
    the raster's spikes in order, and a layer given them computes exactly what it computes from the
    raster alone."""
    compiled_kernels()
    g = torch.Generator().manual_seed(31)
    kernel = torch.rand(11, 3, 3, 3, generator=g) * 2 - 1
    conv = ConvLayer(kernel, 2.0, lif, NO_REG, in_shape=(3, 9, 8), padding=1)
    pool = PoolLayer(1.0, lif, in_shape=conv.out_shape, size=2, dtype=torch.float32)
    conv_trace = conv.forward(sparse_inputs(g, 200, 3, 3 * 9 * 8, 0.06))
    spikes = conv_trace.spikes
    off, idx = conv_trace.events
    assert off.shape == (3, 201) and len(idx) == int(spikes.sum()) > 0
    for b in range(3):
        for t in range(200):
            assert torch.equal(idx[off[b, t]:off[b, t + 1]].long(), spikes[t, b].nonzero().flatten())

    handed, scanned = pool.forward(spikes, conv_trace.events), pool.forward(spikes)
    assert handed.input_events is conv_trace.events and scanned.input_events is None
    assert torch.equal(handed.spikes, scanned.spikes) and 0 < int(handed.spikes.sum())
    assert all(torch.equal(a, b) for a, b in zip(handed.events, scanned.events, strict=True))
    no_spikes = (torch.zeros(3, 201, dtype=torch.int64), torch.empty(0, dtype=torch.int32))
    assert int(pool.forward(spikes, no_spikes).spikes.sum()) == 0  # the lists are read, not the raster
    pool_delta = torch.randn(3, pool.units, generator=g)
    below = pool.backward(handed, pool_delta, Hm2bp()).delta_below
    assert torch.equal(below, pool.backward(replace(scanned, events=None), pool_delta, Hm2bp()).delta_below)

    delta = torch.randn(3, conv.units, generator=g)
    for per_sample in (False, True):
        given = conv.backward(conv_trace, delta, Hm2bp(), per_sample=per_sample)
        alone = conv.backward(replace(conv_trace, events=None), delta, Hm2bp(), per_sample=per_sample)
        assert torch.equal(given.weight, alone.weight) and torch.equal(given.delta_below, alone.delta_below)


def test_threads_give_the_same_result_on_every_run():
    """With several threads the kernels split the work into chunks whose partial sums (the kernels'
    gradients, the errors sent down) are added in chunk order, not in the order the threads finish:
    every run of the same batch is bit-identical, and one thread's result differs only by rounding."""
    compiled_kernels()
    spec = TrainingSpec.model_validate({
        "network": {"layers": [{"type": "conv", "channels": 12, "kernel": 3, "padding": 1, "threshold": 2},
                               {"type": "pool", "size": 2, "threshold": 1},
                               {"type": "dense", "units": 30, "threshold": 3},
                               {"type": "dense", "units": 10, "threshold": 3}]},
        "encoding": {"time_steps": 120},
    })
    net = SpikingNetwork(spec, (12, 12), seed=5)
    with torch.no_grad():
        net.parameters[0].mul_(3).add_(0.3)
    inputs = sparse_inputs(torch.Generator().manual_seed(3), 120, 7, 144, 0.1)
    labels = torch.arange(7) % 10
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = net.run(inputs, labels).gradients
        torch.set_num_threads(3)
        runs = [net.run(inputs, labels).gradients for _ in range(4)]
    finally:
        torch.set_num_threads(threads)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], run, strict=True))
    for a, b in zip(runs[0], one, strict=True):
        assert float(b.abs().sum()) > 0 and torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(b.abs().max()))
