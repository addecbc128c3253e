"""Admission estimate against measured memory (not a test): for six differently sized jobs on
``builtin:digits``, the core's estimate of the training child's peak memory
(``hm2bp_core.footprint``, what ``POST /v1/jobs`` checks against the workers' limits) beside the
peak RSS of a real training run in a fresh interpreter (the worker's training child imports the
same modules), read with ``wait4`` as the worker's supervisor reads it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/admission.py

Each run is one short epoch (seconds); it prints one row per job, sizes in MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hm2bp_core.data import BUILTINS
from hm2bp_core.footprint import footprint
from hm2bp_core.spec import TrainingSpec

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20
RUN = """
import json, sys
from pathlib import Path
import worker.child  # the training child's imports (service, store, events)
from hm2bp_core.data import load_dataset
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import Trainer
spec = TrainingSpec.model_validate(json.loads(sys.argv[1]))
Trainer(spec, load_dataset("builtin:digits"), Path(sys.argv[2])).run()
"""


def job(hidden: list[int], batch: int, steps: int) -> dict:
    layers = [{"type": "dense", "units": n, "threshold": 5} for n in (*hidden, 10)]
    return {"network": {"layers": layers}, "encoding": {"time_steps": steps},
            "training": {"epochs": 1, "batch_size": batch, "max_train_samples": 128, "max_test_samples": 64,
                         "device": "cpu"}}


JOBS = {
    "64-10, B 16, T 40": job([64], 16, 40),
    "800-10, B 64, T 100": job([800], 64, 100),
    "2000-2000-10, B 64, T 100": job([2000, 2000], 64, 100),
    "8000-10, B 128, T 200": job([8000], 128, 200),
    "4000-10, B 128, T 200": job([4000], 128, 200),
    "1000-1000-10, B 128, T 300": job([1000, 1000], 128, 300),
}


def measured_peak(spec: dict) -> int:
    """Peak RSS (bytes) of one run of ``spec`` in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as out:
        child = subprocess.Popen([sys.executable, "-c", RUN, json.dumps(spec), out], cwd=REPO,
                                 stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"the run of {spec} failed ({child.returncode})")
        return usage.ru_maxrss * 1024


def main() -> None:
    facts = BUILTINS["digits"].facts
    print(f"{'job (layers, batch, time steps)':<30} {'estimate':>9} {'measured':>9} {'ratio':>6}  largest part")
    for name, spec in JOBS.items():
        estimate = footprint(TrainingSpec.model_validate(spec), facts)
        peak = measured_peak(spec)
        print(f"{name:<30} {estimate.peak_bytes / MIB:>9.0f} {peak / MIB:>9.0f} "
              f"{estimate.peak_bytes / peak:>6.2f}  {estimate.largest_part()}", flush=True)


if __name__ == "__main__":
    main()
