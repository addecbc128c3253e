"""A short, bounded run of the chaos soak (benchmarks/chaos.py): a few jobs on two workers under
frequent random faults (SIGKILL of workers, training children and the API; Redis restarts; a
worker frozen past its lease; on PostgreSQL also its restarts), then the whole audit of the
stored history, which must find nothing. About a minute of faults each, plus starts and settling."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from service.harness import REPO

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def soak_module():
    spec = importlib.util.spec_from_file_location("chaos", REPO / "benchmarks" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_chaos_soak_audit_finds_nothing(db, tmp_path):
    chaos = soak_module()
    outcome = chaos.run(jobs=6, workers=2, duration=60, fault_rate=12, seed=17, db=db, settle_seconds=240,
                        sample=1, root=tmp_path)
    print(outcome.tables())
    assert len(outcome.faults) >= 5, outcome.tables()
    assert sum(outcome.states.values()) == 6, outcome.tables()
    assert outcome.failures == 0, outcome.tables()
