"""Compiled kernels, built on first use with torch's C++ extension loader (needs a C++ compiler).

``load_lif()`` returns the module of ``lif.cpp`` or ``None`` when it cannot be built (no compiler,
or ``HM2BP_NO_EXTENSIONS=1``); callers then use the tensor loop of :mod:`hm2bp_core.neuron`, which
computes the same rasters. Each build lives in a folder named after the hash of the source and
the torch version (under ``HM2BP_KERNEL_CACHE``, default ~/.cache/hm2bp/kernels), so checkouts
with different sources never rebuild over each other, and each version is compiled once.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


@functools.cache
def load_lif():
    if os.environ.get("HM2BP_NO_EXTENSIONS") == "1":
        return None
    try:
        import torch
        from torch.utils.cpp_extension import load

        source = Path(__file__).with_name("lif.cpp")
        digest = hashlib.sha256(source.read_bytes() + torch.__version__.encode()).hexdigest()[:16]
        cache = Path(os.environ.get("HM2BP_KERNEL_CACHE", Path.home() / ".cache" / "hm2bp" / "kernels"))
        build = cache / f"lif-{digest}"
        build.mkdir(parents=True, exist_ok=True)
        return load("hm2bp_lif", sources=[str(source)], extra_cflags=["-O3"], build_directory=str(build),
                    verbose=False)
    except Exception as exc:  # no compiler, no ninja, read-only cache: fall back, loudly
        log.warning("hm2bp: the C++ LIF kernel could not be built (%s); using the (slower) tensor loop", exc)
        return None
