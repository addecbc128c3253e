"""The discrete LIF simulation (algorithm section 2.2) and the PSP kernel (section 2.5, worked values of section 11)."""

import pytest
import torch

from hm2bp_core.neuron import LIFParameters, psp_kernel, simulate_lif

from reference import lif_reference


@pytest.mark.parametrize(
    "s, tau, expected",
    [(29, 18, 0.742218), (18, 33, 0.113823), (5, 5, 0.445243), (100, 19, 0.742997), (10, 40, 0.015289), (7, 0, 0.0)],
)
def test_kernel_worked_values(lif, s, tau, expected):
    assert psp_kernel(s, tau, lif) == pytest.approx(expected, abs=1e-6)


def test_kernel_peak(lif):
    values = [psp_kernel(1000, t, lif) for t in range(1, 60)]
    assert max(range(len(values)), key=values.__getitem__) + 1 == 19
    assert max(values) == pytest.approx(0.743, abs=1e-3)


def test_hand_computed_trace(lif):
    # constant input 1 from t = 0, threshold 0.5; by hand (algorithm section 2.2, one-step delay):
    # t1: x=1, v=0.125 | t2: v=0.1230+0.2344=0.3574 | t3: x=2.6406, v=0.3518+0.3301=0.6819 > 0.5 -> spike
    # t4, t5: refractory clamp (v=0) | t6: x=4.4096, v=0.5512 > 0.5 -> spike | t7, t8 clamp | t9: ...
    currents = torch.ones(10, 1, 1, dtype=torch.float64)
    spikes = simulate_lif(currents, 0.5, lif)
    assert spikes[:, 0, 0].nonzero().flatten().tolist() == [3, 6, 9]


def test_threshold_slack_and_strict_threshold(lif):
    # a membrane of exactly nu fires in dense layers (v > nu - 1e-6) but not in conv layers (v > nu)
    currents = torch.zeros(3, 1, 1, dtype=torch.float64)
    currents[0] = 8.0  # t1: x = 8, v = 1
    assert simulate_lif(currents, 1.0, lif)[1, 0, 0] == 1
    assert simulate_lif(currents, 1.0, lif, strict_threshold=True)[1, 0, 0] == 0


@pytest.mark.parametrize("lateral", [0.0, 1.0])
def test_matches_scalar_reference_on_random_currents(lif, lateral):
    g = torch.Generator().manual_seed(3)
    currents = torch.randn(120, 2, 5, generator=g, dtype=torch.float64) * 2 + 0.8
    spikes = simulate_lif(currents, 3.0, lif, lateral_strength=lateral)
    for b in range(2):
        expected = lif_reference(currents[:, b].tolist(), 3.0, lif, lateral=lateral)
        got = [spikes[:, b, i].nonzero().flatten().tolist() for i in range(5)]
        assert got == expected
        assert sum(map(len, got)) > 20


def test_no_spike_at_t0_and_refractory_gap():
    currents = torch.full((50, 1, 3), 100.0, dtype=torch.float64)
    times = simulate_lif(currents, 1.0, LIFParameters(refractory=4))[:, 0, 0].nonzero().flatten()
    assert int(times[0]) == 1
    assert torch.all(times.diff() == 5)


@pytest.mark.parametrize("lateral", [0.0, 1.0])
def test_compiled_kernel_equals_tensor_loop_and_chunking(lif, lateral):
    """The C++ kernel, the tensor loop and a chunked run give bit-identical rasters."""
    from hm2bp_core.kernels import cpu_kernels
    from hm2bp_core.neuron import LIFState, _lif_loop, lif_step_chunk

    kernel = cpu_kernels()
    if kernel is None:
        pytest.skip("no C++ compiler here: only the tensor loop runs")
    g = torch.Generator().manual_seed(9)
    currents = torch.randn(300, 3, 40, generator=g) * 2 + 0.7
    zero = torch.zeros(3, 40)

    def fresh():
        return zero.clone(), zero.clone(), torch.zeros(3, 40, dtype=torch.int64)

    compiled = kernel.lif_chunk(currents, zero, zero, *fresh(), 3.0 - 1e-6, 64.0, 8.0, 2, lateral, 0)
    scripted = _lif_loop(currents, zero, zero, *fresh(), 3.0 - 1e-6, 64.0, 8.0, 2, lateral, 0)
    assert torch.equal(compiled, scripted) and float(compiled.sum()) > 100
    state = LIFState.zeros(3, 40, torch.float32, torch.device("cpu"))
    chunks = [lif_step_chunk(currents[a:a + 70], state, 3.0, lif, lateral_strength=lateral) for a in range(0, 300, 70)]
    assert torch.equal(torch.cat(chunks), compiled)


@pytest.mark.parametrize("lateral", [0.0, 1.0])
def test_event_driven_dense_forward_equals_currents_then_lif(lateral):
    """dense_lif (weight rows of the firing inputs summed per step) = W s_in products + the tensor loop."""
    from hm2bp_core.kernels import cpu_kernels
    from hm2bp_core.neuron import LIFState, _lif_loop

    kernel = cpu_kernels()
    if kernel is None:
        pytest.skip("no C++ compiler here: only the tensor loop runs")
    g = torch.Generator().manual_seed(4)
    inputs = torch.rand(250, 3, 70, generator=g, dtype=torch.float64) < 0.05
    weight = (torch.rand(12, 70, generator=g, dtype=torch.float64) * 2 - 1) * 3
    currents = inputs.double() @ weight.T
    zero = torch.zeros(3, 12, dtype=torch.float64)

    def fresh():
        return zero.clone(), zero.clone(), zero.clone(), zero.clone(), torch.zeros(3, 12, dtype=torch.int64)

    expected = _lif_loop(currents, *fresh()[:2], *fresh()[2:], 2.0, 64.0, 8.0, 2, lateral, 0) > 0
    state = LIFState.zeros(3, 12, torch.float64, torch.device("cpu"))
    parts = []
    for a in range(0, 250, 90):  # chunks carry the last step's current and spikes across
        parts.append(kernel.dense_lif(inputs[a:a + 90], weight.T, state.last_currents, state.last_spikes,
                                      state.v, state.x, state.r, 2.0, 64.0, 8.0, 2, lateral, a))
    assert torch.equal(torch.cat(parts), expected) and int(expected.sum()) > 50
