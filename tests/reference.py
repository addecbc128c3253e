"""Slow reference implementations written straight from the definitions of docs/algorithm.md (loops over spikes).

They exist only to check the fast tensor code; nothing in the package imports them.
"""

from __future__ import annotations

from hm2bp_core.neuron import LIFParameters, psp_kernel


def spsp_pair(pre_times, post_times, p: LIFParameters, *, shift=True, window=True, silent_value=0.1) -> float:
    """e_{i|j} by the loop of the authors' `d_Spiking_accumulate_effect` (algorithm section 3.1)."""
    pre_times, post_times = sorted(pre_times), sorted(post_times)
    if not pre_times:
        return 0.0
    if not post_times:
        return silent_value
    sigma = p.refractory if shift else 0
    total = 0.0
    restart = 1
    for t_post in post_times:
        lower = max(1, t_post - p.window) if window else 1
        for t_pre in pre_times:
            if lower <= t_pre < t_post and t_pre + sigma <= t_post:
                total += psp_kernel(t_post - restart, t_post - (t_pre + sigma), p)
        restart = t_post + p.refractory
    return total


def lif_reference(currents, threshold, p: LIFParameters, *, strict=False, lateral=0.0):
    """Spike lists of the discrete LIF of algorithm section 2.2, one neuron after another, in plain floats.

    ``currents``: list over t of lists over neurons (one sample). Returns a list per neuron.
    """
    steps, units = len(currents), len(currents[0])
    v = [0.0] * units
    x = [0.0] * units
    r = [0] * units
    spikes = [[0] * units for _ in range(steps)]
    for t in range(steps):
        for i in range(units):
            v[i] -= v[i] / p.tau_m
            x[i] -= x[i] / p.tau_s
        if t == 0:
            continue
        others = sum(spikes[t - 1])
        for i in range(units):
            x[i] += currents[t - 1][i] - lateral * (others - spikes[t - 1][i])
            v[i] += x[i] / p.tau_s
            if r[i] > 0:
                v[i] = 0.0
                r[i] -= 1
            fired = v[i] > threshold if strict else v[i] > threshold - 1e-6
            if fired:
                spikes[t][i] = 1
                r[i] = p.refractory
                v[i] = 0.0
    return [[t for t in range(steps) if spikes[t][i]] for i in range(units)]
