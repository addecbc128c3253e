"""Compiled CPU kernels, built on first use with torch's C++ extension loader (needs a C++ compiler).

``cpu_kernels()`` returns the module of ``cpu.cpp`` (``lif_chunk``, ``dense_lif``,
``spike_weights``, ``dense_backward``) or ``None`` when it cannot be built (no compiler, or
``HM2BP_NO_EXTENSIONS=1``); callers then use the tensor code of :mod:`hm2bp_core.neuron`,
:mod:`hm2bp_core.spsp` and :mod:`hm2bp_core.layers`, which computes the same results (the tests
check both against each other). Each build lives in a folder named after the hash of the source and
the torch version and the CPU (it is compiled for the machine's instruction set), under
``HM2BP_KERNEL_CACHE`` (default ~/.cache/hm2bp/kernels), so checkouts with different sources never
rebuild over each other, and each version is compiled once per kind of machine.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
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


def build_cpu_kernels() -> ModuleType:
    """Build ``cpu.cpp`` (or load it from its cache folder) and return the module; raises when it
    cannot be built. ``hm2bp kernels build`` calls this, so images and clusters build it once."""
    import torch
    from torch.utils.cpp_extension import load

    source = Path(__file__).with_name("cpu.cpp")
    digest = hashlib.sha256(source.read_bytes() + torch.__version__.encode() + _cpu_key()).hexdigest()[:16]
    cache = Path(os.environ.get("HM2BP_KERNEL_CACHE", Path.home() / ".cache" / "hm2bp" / "kernels"))
    build = cache / f"cpu-{digest}"
    build.mkdir(parents=True, exist_ok=True)
    return load("hm2bp_cpu", sources=[str(source)], extra_cflags=["-O3", "-march=native"],
                build_directory=str(build), verbose=False)


@functools.cache
def cpu_kernels() -> ModuleType | None:
    """The kernels module, or None (disabled, or the build failed: then the tensor code runs)."""
    if os.environ.get("HM2BP_NO_EXTENSIONS") == "1":
        return None
    try:
        return build_cpu_kernels()
    except Exception as exc:  # no compiler, no ninja, read-only cache: fall back, loudly
        log.warning("hm2bp: the C++ kernels could not be built (%s); using the (slower) tensor code", exc)
        return None


def for_tensor(tensor) -> ModuleType | None:
    """The CPU kernels when ``tensor`` lives on the CPU and they can be built, else None."""
    return cpu_kernels() if tensor.device.type == "cpu" else None
