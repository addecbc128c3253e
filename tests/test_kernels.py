"""The kernel cache: one build folder per source, torch, CPU and environment, and a builder that
died mid-build (leaving torch's ``lock`` file) never makes the next one wait for ever; and the
kernels' calls release the GIL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from hm2bp_core import kernels


def test_build_folder_is_keyed_by_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HM2BP_KERNEL_CACHE", str(tmp_path))
    here = kernels.build_dir()
    assert here.parent == tmp_path and here == kernels.build_dir()  # stable
    monkeypatch.setattr(sys, "prefix", "/some/other/venv")
    other_env = kernels.build_dir()
    monkeypatch.undo()
    monkeypatch.setenv("HM2BP_KERNEL_CACHE", str(tmp_path))
    copy = tmp_path / "checkout" / "cpu.cpp"
    copy.parent.mkdir()
    shutil.copy(kernels.SOURCE, copy)
    monkeypatch.setattr(kernels, "SOURCE", copy)  # the same source in another checkout
    other_checkout = kernels.build_dir()
    assert len({here, other_env, other_checkout}) == 3


def test_a_stale_torch_lock_is_not_waited_on(tmp_path):
    """A copy of this environment's build with the ``lock`` file a killed builder leaves: loading
    it returns at once (torch's loader alone would wait on that file for ever)."""
    if kernels.cpu_kernels() is None:
        pytest.skip("no C++ compiler here")
    built = kernels.build_dir()
    cache = tmp_path / "cache"
    shutil.copytree(built, cache / built.name, ignore=shutil.ignore_patterns("*.lock"))
    (cache / built.name / "lock").touch()
    code = "from hm2bp_core.kernels import build_cpu_kernels; print(build_cpu_kernels().__file__)"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HM2BP_KERNEL_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(cache / built.name))
    assert not (cache / built.name / "lock").exists()


def test_a_kernel_call_lets_other_threads_run():
    """The kernels run without the GIL: during one long call (a large batch) another thread of the
    process (the training child's control thread, which moves its lease fence on) keeps running.
    Holding the GIL, the other thread's longest pause was the whole call (0.16 s of 0.18 s)."""
    module = kernels.cpu_kernels()
    if module is None:
        pytest.skip("no C++ compiler here")
    import torch

    steps, batch, neurons = 1000, 16, 8192
    currents = torch.rand(steps, batch, neurons) * 0.3
    state = [torch.zeros(batch, neurons) for _ in range(4)] + [torch.zeros(batch, neurons, dtype=torch.int64)]
    stamps: list[float] = []
    done = threading.Event()

    def tick() -> None:
        while not done.is_set():
            stamps.append(time.monotonic())
            time.sleep(0.001)

    other = threading.Thread(target=tick)
    other.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        time.sleep(0.05)
        began = time.monotonic()
        module.lif_chunk(currents, *state, 1.0, 64.0, 8.0, 2, 0.0, 0)
        ended = time.monotonic()
    finally:
        torch.set_num_threads(threads)
        done.set()
        other.join()
    inside = [t for t in stamps if began <= t <= ended]
    longest = max(b - a for a, b in zip([began, *inside], [*inside, ended], strict=True))
    assert longest < (ended - began) / 2, f"the other thread paused {longest:.3f} s of a {ended - began:.3f} s call"
