"""S-PSP e_{i|j}: the worked values of algorithm section 11, and the fast trace form against the slow pair loop."""

import pytest
import torch

from hm2bp_core.neuron import LIFParameters
from hm2bp_core.spsp import restart_times, spsp

from conftest import random_raster, raster
from reference import spsp_pair


@pytest.mark.parametrize(
    "pre, post, expected",
    [([10], [30], 0.742218), ([5], [20, 40], 0.821554), ([3, 10, 20], [15, 30], 2.080023), ([5], [15, 30], 0.790903)],
)
def test_worked_values(lif, pre, post, expected):
    assert spsp_pair(pre, post, lif) == pytest.approx(expected, abs=1e-6)
    e = spsp(raster([pre], 64), raster([post], 64), lif)
    assert float(e[0, 0, 0]) == pytest.approx(expected, abs=1e-5)


def test_silent_cases(lif):
    e = spsp(raster([[4], []], 40), raster([[], [20]], 40), lif)
    assert float(e[0, 0, 0]) == pytest.approx(0.1)  # silent post, active pre
    assert float(e[0, 0, 1]) == 0.0  # silent post, silent pre
    assert float(e[0, 1, 1]) == 0.0  # silent pre
    assert float(spsp(raster([[4]], 40), raster([[]], 40), lif, silent_value=0.3)[0, 0, 0]) == pytest.approx(0.3)


def test_restart_times():
    post = raster([[5, 9, 30]], 40)
    r = restart_times(post, 2)[:, 0, 0]
    assert [int(r[t]) for t in (5, 9, 30)] == [1, 7, 11]


@pytest.mark.parametrize("shift, window", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("steps, post_rate", [(120, 0.08), (900, 0.004)])
@pytest.mark.usefixtures("core_path")
def test_fast_equals_pair_loop_on_random_rasters(shift, window, steps, post_rate):
    """900 steps with sparse post spikes exercises the 4*tau_m window (gaps > 256 steps)."""
    p = LIFParameters(tau_m=64.0, tau_s=8.0, refractory=2)
    g = torch.Generator().manual_seed(steps)
    pre = random_raster(steps, 3, 7, 0.03, g)
    post = random_raster(steps, 3, 5, post_rate, g, refractory=p.refractory)
    fast = spsp(pre, post, p, shift=shift, window=window)
    worst = 0.0
    for b in range(3):
        for i in range(5):
            for j in range(7):
                slow = spsp_pair(
                    pre[:, b, j].nonzero().flatten().tolist(), post[:, b, i].nonzero().flatten().tolist(), p,
                    shift=shift, window=window,
                )
                worst = max(worst, abs(slow - float(fast[b, i, j])))
    assert worst < 1e-9
    assert float(fast.abs().sum()) > 1.0


def test_window_matters_for_long_gaps(lif):
    # one pre spike 300 steps before a post spike: outside the 256-step window of the authors' code
    pre, post = raster([[10]], 400), raster([[312]], 400)
    assert abs(float(spsp(pre, post, lif, window=True)[0, 0, 0])) < 1e-12
    assert float(spsp(pre, post, lif, window=False)[0, 0, 0]) > 0.005


def test_float32_close_to_float64(lif):
    g = torch.Generator().manual_seed(1)
    pre = random_raster(400, 2, 30, 0.03, g)
    post = random_raster(400, 2, 20, 0.06, g, refractory=2)
    e64 = spsp(pre, post, lif)
    e32 = spsp(pre.float(), post.float(), lif)
    assert torch.allclose(e32.double(), e64, atol=1e-5, rtol=1e-5)
