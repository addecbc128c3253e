"""The kernel cache: one build folder per source, torch, CPU and environment, and a builder that
died mid-build (leaving torch's ``lock`` file) never makes the next one wait for ever."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

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
