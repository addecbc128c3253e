"""One API of the package's own (tests/service/harness.py ``Cluster``: its own redis-server,
SQLite), without a worker: fuzzed and crafted requests queue nothing that trains. Tests that
need a finished job start a worker for it. Archive caps are small, so bombs stay cheap."""

from __future__ import annotations

import pytest
from service.harness import Cluster

MAX_UNCOMPRESSED_BYTES = 20_000_000


@pytest.fixture(scope="package")
def secured(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("security"), max_uncompressed_bytes=str(MAX_UNCOMPRESSED_BYTES),
                      max_compression_ratio="100", lease_seconds="5", sweep_seconds="1")
    try:
        cluster.start_api()
        yield cluster
    finally:
        cluster.close()
