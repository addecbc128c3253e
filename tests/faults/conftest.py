"""Each fault test gets a ``Cluster`` of its own (tests/service/harness.py): its own redis-server
on a free port (so a restart never touches the machine's Redis), SQLite, an API it may kill and
restart, and workers it may add and kill. Leases and sweeps are short, so a lost worker's job is
re-queued within seconds."""

from __future__ import annotations

import copy

import pytest
from service.harness import TINY_SPEC, Cluster

LEASE_SECONDS = "5"  # renewed every 5/6 s; generous for a loaded 2-core machine
SWEEP_SECONDS = "0.5"

# 4 epochs of about three seconds each on one CPU thread, with a progress event every second
# (an epoch must last well over a second for a progress event to land inside it)
FAULT_SPEC = copy.deepcopy(TINY_SPEC)
FAULT_SPEC["encoding"]["time_steps"] = 250
FAULT_SPEC["training"].update(epochs=4, batch_size=4, max_train_samples=1000, max_test_samples=100, seed=7)
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path, lease_seconds=LEASE_SECONDS, sweep_seconds=SWEEP_SECONDS)
    try:
        yield made
    finally:
        made.close()
