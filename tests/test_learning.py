"""HM2-BP learning rules: the tiny dense case of algorithm section 11, batching, the rate relation, the objective."""

import math

import pytest
import torch

from hm2bp_core.layers import DenseLayer, LayerTrace, exponential_penalty_grad
from hm2bp_core.network import SpikingNetwork
from hm2bp_core.objective import count_error, lateral_factor, logged_cost, with_dummy_label_train
from hm2bp_core.spec import Hm2bp, Output, Regularization, TrainingSpec
from hm2bp_core.spsp import spsp

from conftest import random_raster, raster
from reference import spsp_pair

NO_REG = Regularization(**{"lambda": 0.0})


def tiny_case(lif):
    pre = raster([[3, 10, 20], [5], []], 40)
    post = raster([[15, 30], []], 40)
    w = torch.tensor([[0.5, -0.2, 0.3], [0.1, 0.4, -0.6]], dtype=torch.float64)
    layer = DenseLayer(w, 1.0, lif, NO_REG)
    return layer, LayerTrace(inputs=pre, spikes=post)


@pytest.mark.usefixtures("core_path")
def test_tiny_dense_case(lif):
    layer, trace = tiny_case(lif)
    e = spsp(trace.inputs, trace.spikes, lif)
    expected_e = torch.tensor([[2.080023, 0.790903, 0.0], [0.1, 0.1, 0.0]], dtype=torch.float64)
    assert torch.allclose(e[0], expected_e, atol=1e-5)
    grad = layer.backward(trace, torch.tensor([[2.0, -1.0]], dtype=torch.float64), Hm2bp())
    expected_g = torch.tensor([[5.994276, 2.279248, 0.0], [-0.095, -0.095, 0.0]], dtype=torch.float64)
    assert torch.allclose(grad.weight, expected_g, atol=1e-5)
    assert torch.allclose(grad.delta_below[0], torch.tensor([0.593341, -0.716361, 1.2], dtype=torch.float64), atol=1e-5)


def test_tiny_case_side_effect_values(lif):
    # s = [0.440916, -0.05]: g_0j / (d_0 e_0j) - 1 and g_1j / (d_1 e_1j) - 1
    layer, trace = tiny_case(lif)
    grad = layer.backward(trace, torch.tensor([[2.0, -1.0]], dtype=torch.float64), Hm2bp()).weight
    assert float(grad[0, 0]) / (2.0 * 2.080023) - 1 == pytest.approx(0.440916, abs=1e-5)
    assert float(grad[1, 0]) / (-1.0 * 0.1) - 1 == pytest.approx(-0.05, abs=1e-6)


def slow_dense_backward(pre, post, w, delta, nu, lif):
    """The rules of algorithm section 5 for one sample, with E from the pair loop."""
    n_out, n_in = w.shape
    pre_t = [pre[:, j].nonzero().flatten().tolist() for j in range(n_in)]
    post_t = [post[:, i].nonzero().flatten().tolist() for i in range(n_out)]
    e = torch.tensor([[spsp_pair(pre_t[j], post_t[i], lif) for j in range(n_in)] for i in range(n_out)],
                     dtype=torch.float64)
    a_in = torch.tensor([len(t) for t in pre_t], dtype=torch.float64)
    a_out = torch.tensor([len(t) for t in post_t], dtype=torch.float64)
    d = delta / nu
    both = (a_out[:, None] > 0) & (a_in[None, :] > 0)
    r = torch.where(both, e / a_in.clamp(min=1)[None, :], torch.ones_like(e))
    below = (d[:, None] * w * r).sum(0)
    rho = torch.where(a_out[:, None] > 0, e / a_out.clamp(min=1)[:, None], torch.full_like(e, 0.5))
    s = (w * rho).sum(1) / nu
    return below, d[:, None] * e * (1 + s)[:, None]


@pytest.mark.usefixtures("core_path")
def test_dense_backward_matches_the_pseudocode_on_random_rasters(lif):
    g = torch.Generator().manual_seed(5)
    pre = random_raster(300, 1, 9, 0.05, g)
    post = random_raster(300, 1, 6, 0.05, g, refractory=2)
    post[:, 0, 4] = 0  # one silent post neuron
    w = torch.randn(6, 9, generator=g, dtype=torch.float64)
    delta = torch.randn(1, 6, generator=g, dtype=torch.float64)
    layer = DenseLayer(w, 3.0, lif, NO_REG)
    got = layer.backward(LayerTrace(pre, post), delta, Hm2bp())
    below, grad = slow_dense_backward(pre[:, 0], post[:, 0], w, delta[0], 3.0, lif)
    assert torch.allclose(got.weight, grad, atol=1e-9)
    assert torch.allclose(got.delta_below[0], below, atol=1e-9)


def small_spec(**hm2bp):
    return TrainingSpec.model_validate({
        "network": {"layers": [{"type": "dense", "units": 12, "threshold": 2.0},
                               {"type": "dense", "units": 4, "threshold": 2.0}]},
        "encoding": {"time_steps": 160},
        "hm2bp": hm2bp,
    })


@pytest.mark.parametrize("switches", [{}, {"mode": "custom", "side_effect": False, "ratio_fallbacks": False}])
@pytest.mark.usefixtures("core_path")
def test_batch_gives_the_per_sample_gradients_of_batch_one(switches):
    torch.manual_seed(0)
    spec = small_spec(**switches)
    net = SpikingNetwork(spec, 20, seed=1)
    g = torch.Generator().manual_seed(2)
    inputs = random_raster(160, 5, 20, 0.08, g, dtype=torch.float32)
    labels = torch.tensor([0, 1, 2, 3, 1])
    boost = torch.tensor([1.0, 1.5, 1.0, 2.0, 1.0])
    batch = net.run(inputs, labels, boost, per_sample=True)
    for b in range(5):
        single = net.run(inputs[:, b:b + 1], labels[b:b + 1], boost[b:b + 1], per_sample=True)
        for layer_grad, single_grad in zip(batch.gradients, single.gradients, strict=True):
            assert torch.allclose(layer_grad[b], single_grad[0], atol=1e-4, rtol=1e-4)
    assert any(float(gr.abs().sum()) > 0 for gr in batch.gradients)
    # the mean path equals the mean of the per-sample gradients plus the penalty
    mean = net.run(inputs, labels, boost)
    for k, layer in enumerate(net.layers):
        expected = batch.gradients[k].mean(0) + exponential_penalty_grad(layer.weight, spec.training.regularization)
        assert torch.allclose(mean.gradients[k], expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("switches", [{}, {"mode": "custom", "side_effect": False, "ratio_fallbacks": False,
                                            "refractory_shift": False, "psp_window": False}])
def test_compiled_network_gradients_equal_the_tensor_code(switches, monkeypatch):
    """Both paths of a whole network (forward rasters, per-sample and mean gradients), float64."""
    from hm2bp_core import kernels

    if kernels.cpu_kernels() is None:
        pytest.skip("no C++ compiler here: only the tensor code runs")
    net = SpikingNetwork(small_spec(**switches), 20, seed=3)
    for layer in net.layers:
        layer.weight = torch.nn.Parameter(layer.weight.double())
    g = torch.Generator().manual_seed(6)
    inputs = random_raster(160, 4, 20, 0.08, g).bool()
    inputs[:, 0, :5] = False  # inputs that never fire in a sample (the kernel skips their rows), other ones
    inputs[:, 2, 4:9] = False  # per sample, so that rows left from the sample before are never read
    labels = torch.tensor([0, 3, 2, 1])
    compiled = [net.run(inputs, labels, per_sample=per) for per in (True, False)]
    monkeypatch.setattr(kernels, "cpu_kernels", lambda: None)
    tensor = [net.run(inputs, labels, per_sample=per) for per in (True, False)]
    for a, b in zip(compiled, tensor, strict=True):
        assert torch.equal(a.counts, b.counts) and float(a.counts.sum()) > 0
        for ga, gb in zip(a.gradients, b.gradients, strict=True):
            assert torch.allclose(ga, gb, atol=1e-10) and float(ga.abs().sum()) > 0


@pytest.mark.parametrize("batch", [1, 2])
def test_a_sample_split_across_threads_computes_what_one_thread_does(batch, monkeypatch):
    """Below the thread count the compiled kernels split a sample's neurons into chunks (cpu.cpp,
    neuron_chunks): the rasters equal one thread's and the tensor code's, the gradients agree to rounding."""
    from hm2bp_core import kernels

    if kernels.cpu_kernels() is None:
        pytest.skip("no C++ compiler here: only the tensor code runs")
    spec = TrainingSpec.model_validate({
        "network": {"layers": [{"type": "dense", "units": 300, "threshold": 2.0},
                               {"type": "dense", "units": 4, "threshold": 2.0}]},
        "encoding": {"time_steps": 160}})
    net = SpikingNetwork(spec, 40, seed=4)
    for layer in net.layers:
        layer.weight = torch.nn.Parameter(layer.weight.double())
    inputs = random_raster(160, batch, 40, 0.08, torch.Generator().manual_seed(8)).bool()
    labels = torch.tensor([1, 3][:batch])
    threads = torch.get_num_threads()
    try:
        runs = {}
        for n in (1, 4):
            torch.set_num_threads(n)
            runs[n] = [net.run(inputs, labels, per_sample=per) for per in (True, False)]
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(kernels, "cpu_kernels", lambda: None)
    tensor = [net.run(inputs, labels, per_sample=per) for per in (True, False)]
    for one, split, slow in zip(runs[1], runs[4], tensor, strict=True):
        assert torch.equal(one.layer_counts[0], split.layer_counts[0]) and float(split.layer_counts[0].sum()) > 0
        assert torch.equal(split.counts, slow.counts)
        for ga, gb, gc in zip(one.gradients, split.gradients, slow.gradients, strict=True):
            assert torch.allclose(ga, gb, atol=1e-12) and torch.allclose(gb, gc, atol=1e-10)
            assert float(gb.abs().sum()) > 0


def test_rate_relation_within_bounds(lif):
    """T-PSP / nu matches the simulated count to about 0..+12 % (algorithm section 3.4) under the paper's
    conditions (uniform +-1 weights, sparse inputs). A direct port of the authors' code found +2.4 % and +10 %;
    for counts near 10 the residue after the last spike can put it a little under 1."""
    g = torch.Generator().manual_seed(7)
    for n_in, nu, rate in ((784, 20.0, 0.03), (800, 8.0, 0.08)):
        inputs = random_raster(400, 4, n_in, rate, g)
        w = torch.rand(300, n_in, generator=g, dtype=torch.float64) * 2 - 1
        trace = DenseLayer(w, nu, lif, NO_REG).forward(inputs)
        counts = trace.spikes.sum(0).double()
        tpsp = (spsp(inputs, trace.spikes.double(), lif) * w).sum(-1) / nu
        active = counts >= 10
        assert int(active.sum()) > 50
        ratio = float(tpsp[active].sum() / counts[active].sum())
        assert 0.98 <= ratio <= 1.12, (n_in, nu, ratio)
        # per neuron, T-PSP / nu tracks the count closely
        assert float(torch.corrcoef(torch.stack([tpsp[active], counts[active]]))[0, 1]) > 0.95


def test_dead_zone_loss():
    counts = torch.tensor([[33.0, 11.0, 10.0, 0.0], [20.0, 4.0, 3.0, 16.0]])
    delta, cost = count_error(counts, torch.tensor([0, 3]), Output())
    assert delta.tolist() == [[0.0, 6.0, 0.0, 0.0], [15.0, 0.0, 0.0, -19.0]]
    assert cost.tolist() == [36.0, 15.0**2 + 19.0**2]


def test_dummy_label_train():
    spikes = torch.zeros(400, 2, 3)
    spikes[50, 1, 2] = 1
    out = with_dummy_label_train(spikes, torch.tensor([1, 2]), 35.0)
    times = out[:, 0, 1].nonzero().flatten()
    assert len(times) == 36 and int(times[0]) == 11 and int(times[-1]) == 396
    assert torch.equal(out[:, 1], spikes[:, 1])  # label neuron fired: untouched
    assert len(with_dummy_label_train(torch.zeros(540, 1, 2), torch.tensor([0]), 35.0)[:, 0, 0].nonzero()) == 35


def test_logged_cost_counts_the_dummy_label_train():
    # the authors' calCost after g_modifySpikes: a silent label neuron counts as its 36 dummy spikes (T = 400)
    counts = torch.tensor([[0.0, 12.0, 5.0], [30.0, 0.0, 9.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0, 2])
    expected = []
    for row, label in zip(counts.tolist(), labels.tolist(), strict=True):
        total = 0.0
        for i, a in enumerate(row):
            if i == label and a == 0:
                a = 36.0
            diff = a - (35.0 if i == label else 5.0)
            total += diff * diff if abs(diff) > 5.0 else 0.0
        expected.append(total)
    assert logged_cost(counts, labels, Output(), 400).tolist() == expected == [49.0, 0.0, 0.0]
    assert count_error(counts, labels, Output())[1].tolist() == [35.0**2 + 49.0, 0.0, 35.0**2]


@pytest.mark.usefixtures("core_path")
def test_lateral_factor_matches_the_formula(lif):
    g = torch.Generator().manual_seed(11)
    spikes = random_raster(300, 2, 4, 0.04, g, refractory=2, dtype=torch.float64)
    spikes[:, 0, 3] = 0  # a silent neuron that is not the label
    labels = torch.tensor([1, 3])
    nu, w0 = 8.0, 1.0
    got = lateral_factor(spikes, labels, nu, w0, lif)
    for b in range(2):
        trains = [spikes[:, b, i].nonzero().flatten().tolist() for i in range(4)]
        a = [len(t) for t in trains]
        d = [1 / nu if (a[m] > 0 or m == int(labels[b])) else 0.0 for m in range(4)]
        for j in range(4):
            total = 0.0
            for m in range(4):
                if m == j:
                    continue
                both = a[j] > 0 and a[m] > 0
                rho_jm = spsp_pair(trains[j], trains[m], lif) / a[j] if both else 1.0
                rho_mj = spsp_pair(trains[m], trains[j], lif) / a[m] if both else 1.0
                total += rho_jm * d[m] * rho_mj * d[j]
            assert float(got[b, j]) == pytest.approx(1 / (1 - w0 * w0 * total), rel=1e-9)


def test_exponential_penalty():
    w = torch.tensor([[8.0, 0.0], [4.0, -4.0]])
    reg = Regularization(**{"lambda": 10.0, "beta": 0.04, "weight_limit": 8.0})
    g = exponential_penalty_grad(w, reg)
    assert float(g[0, 0]) == pytest.approx(10 * 0.04 * 1.0 * math.exp(0.04 * (0.5 - 1)))
    assert float(g[1, 1]) == pytest.approx(10 * 0.04 * -0.5 * math.exp(0.04 * (0.25 - 1)))
