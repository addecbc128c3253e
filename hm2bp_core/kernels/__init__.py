"""Compiled CPU kernels, built on first use with torch's C++ extension loader (needs a C++ compiler).

``cpu_kernels()`` returns the module of ``cpu.cpp`` (``lif_chunk``, ``dense_lif``,
``spike_weights``, ``dense_backward``, ``conv_lif``, ``conv_backward``, ``pool_lif``,
``pool_backward``) or ``None`` when it cannot be built (no compiler, or
``HM2BP_NO_EXTENSIONS=1``); callers then use the tensor code of :mod:`hm2bp_core.neuron`,
:mod:`hm2bp_core.spsp` and :mod:`hm2bp_core.layers`, which computes the same results (the tests
check both against each other).

Each build lives in a folder under ``HM2BP_KERNEL_CACHE`` (default ~/.cache/hm2bp/kernels) named
after the hash of everything the build depends on: the source, the compiler flags, the torch version, the CPU (it is
compiled for the machine's instruction set) and the environment (the interpreter's prefix and the
source's path, which torch's ``build.ninja`` records). So two checkouts or virtualenvs on one
machine each keep their own build instead of rebuilding over each other. Builders of one folder
take turns under an ``flock`` that the kernel releases if a builder dies; a ``lock`` file that
torch's own loader left behind (a builder killed mid-build) is then removed instead of waited on
for ever.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)


def _cpu_key() -> bytes:
    """What ``-march=native`` compiles for: the CPU's model and instruction-set flags (Linux), so
    that a cache shared by different machines (a cluster's home directory) never mixes builds."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(wanted)) or [platform.machine(), platform.processor()]).encode()


SOURCE = Path(__file__).with_name("cpu.cpp")
# -fopenmp: at::parallel_for runs its chunks on threads only where the extension itself is built with OpenMP
# (without it every kernel ran on one thread, whatever torch.set_num_threads said)
CFLAGS = ("-O3", "-march=native", "-fopenmp")
LDFLAGS = ("-fopenmp",)
MODULE_FILE = "hm2bp_cpu.so"  # what torch's loader builds in the cache folder


def build_dir() -> Path:
    """The cache folder of this source, torch, CPU and environment (see the module docstring)."""
    import torch

    key = b"\0".join([SOURCE.read_bytes(), torch.__version__.encode(), _cpu_key(), sys.prefix.encode(),
                      str(SOURCE.resolve()).encode(), " ".join(CFLAGS + LDFLAGS).encode()])
    cache = Path(os.environ.get("HM2BP_KERNEL_CACHE", Path.home() / ".cache" / "hm2bp" / "kernels"))
    return cache / f"cpu-{hashlib.sha256(key).hexdigest()[:16]}"


def build_cpu_kernels() -> ModuleType:
    """Build ``cpu.cpp`` (or load it from its cache folder) and return the module; raises when it
    cannot be built. ``hm2bp kernels build`` calls this, so images and clusters build it once."""
    from torch.utils.cpp_extension import load

    build = build_dir()
    build.mkdir(parents=True, exist_ok=True)
    with open(build / "builder.lock", "w") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)  # one builder at a time; released by the kernel if it dies
        (build / "lock").unlink(missing_ok=True)  # torch's baton: with our turn held, any left is stale
        fresh = not (build / MODULE_FILE).exists()
        if fresh:
            log.warning("hm2bp: building the C++ CPU kernels into %s (once per environment; about a minute)", build)
        started = time.monotonic()
        module = load("hm2bp_cpu", sources=[str(SOURCE)], extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS),
                      build_directory=str(build), verbose=False)
        if fresh:
            log.warning("hm2bp: the CPU kernels were built in %.0f s", time.monotonic() - started)
        return module


_why_not: list[str] = []  # why cpu_kernels() returned None, once it has


@functools.cache
def cpu_kernels() -> ModuleType | None:
    """The kernels module, or None (disabled, or the build failed: then the tensor code runs)."""
    if os.environ.get("HM2BP_NO_EXTENSIONS") == "1":
        _why_not.append("HM2BP_NO_EXTENSIONS=1")
        return None
    try:
        return build_cpu_kernels()
    except Exception as exc:  # no compiler, no ninja, read-only cache: fall back, loudly
        log.warning("hm2bp: the C++ kernels could not be built (%s); using the (slower) tensor code", exc)
        _why_not.append(f"the build failed: {exc}")
        return None


def kernel_path(device) -> str:
    """Which code a run on ``device`` (a ``torch.device``) uses, as one log line; loads (or builds)
    the CPU kernels now, so that a trainer calling this before its first epoch never counts a build
    as training time."""
    if device.type != "cpu":
        return f"kernels: the tensor code on {device} (torch {_torch_version()})"
    module = cpu_kernels()
    if module is None:
        return f"kernels: the tensor code on the CPU ({_why_not[-1] if _why_not else 'no compiled kernels'})"
    return f"kernels: the compiled C++ CPU kernels, {getattr(module, '__file__', build_dir())}"


def _torch_version() -> str:
    import torch

    return torch.__version__


def for_tensor(tensor) -> ModuleType | None:
    """The CPU kernels when ``tensor`` lives on the CPU and they can be built, else None."""
    return cpu_kernels() if tensor.device.type == "cpu" else None
