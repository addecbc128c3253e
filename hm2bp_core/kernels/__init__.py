"""Compiled kernels, built on first use with torch's C++ extension loader (needs a C++ compiler).

``load_lif()`` returns the module of ``lif.cpp`` or ``None`` when it cannot be built (no compiler,
or ``HM2BP_NO_EXTENSIONS=1``); callers then use the tensor loop of :mod:`hm2bp_core.neuron`, which computes the same
rasters. The build is cached by torch (``TORCH_EXTENSIONS_DIR``, default ~/.cache/torch_extensions).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


@functools.cache
def load_lif():
    if os.environ.get("HM2BP_NO_EXTENSIONS") == "1":
        return None
    try:
        from torch.utils.cpp_extension import load

        return load("hm2bp_lif", sources=[str(Path(__file__).with_name("lif.cpp"))],
                    extra_cflags=["-O3"], verbose=False)
    except Exception as exc:  # no compiler, no ninja, read-only cache: fall back, loudly
        log.warning("hm2bp: the C++ LIF kernel could not be built (%s); using the (slower) tensor loop", exc)
        return None
