"""The C++ CPU kernels made ready before a service process takes jobs: ``hm2bp serve`` and every
worker call ``prepare_cpu_kernels`` at start, before they say they are ready, so that no job
waits for a compiler and no build time lands in a job's epoch seconds.

The build runs in a child interpreter (``hm2bp kernels build``), so the calling process never
imports torch; it is a no-op load (a second or two) when the kernels are already in their cache
(``HM2BP_KERNEL_CACHE``, see ``hm2bp_core.kernels``), which builders share under a lock.
The worker that ``hm2bp serve`` starts is told (``HM2BP_KERNELS_CHECKED``) that serve has just
checked them in the same environment, and does not check again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

CHECKED_ENV = "HM2BP_KERNELS_CHECKED"  # set by `hm2bp serve` for the worker it starts: "PREFIX:MODULE"


def checked_by_parent(module: str | None) -> dict[str, str]:
    """The environment that tells a child (the embedded worker) of the same Python environment
    that ``module`` was just checked, so it does not load the kernels once more to find them."""
    return {CHECKED_ENV: f"{sys.prefix}:{module}"} if module else {}


def prepare_cpu_kernels(say: Callable[[str], None]) -> str | None:
    """Build or find the CPU kernels, saying so through ``say`` (a line before, one after); the
    module's path, or None when they are disabled or cannot be built (training then uses the
    tensor code, which the line says)."""
    if os.environ.get("HM2BP_NO_EXTENSIONS") == "1":
        say("hm2bp: CPU kernels disabled (HM2BP_NO_EXTENSIONS=1); CPU jobs use the tensor code")
        return None
    checked = os.environ.get(CHECKED_ENV, "")
    prefix, _, module = checked.partition(":")
    if prefix == sys.prefix and module and os.path.exists(module):
        say(f"hm2bp: CPU kernels ready (checked by hm2bp serve): {module}")
        return module
    say("hm2bp: preparing the C++ CPU kernels (a first build in this environment takes a minute or more)...")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hm2bp_core.cli", "kernels", "build"],
                          capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        say(f"hm2bp: no CPU kernels ({reason}); CPU jobs use the (slower) tensor code")
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    how = f"built now in {seconds:.0f} s" if result.get("built") else f"found in the cache, loaded in {seconds:.1f} s"
    say(f"hm2bp: CPU kernels ready ({how}): {result['module']}")
    return str(result["module"])
