"""PostgreSQL stopped for a while in the middle of a run (a server of the test's own,
``PostgresServer``: the machine's is never touched). While it is down the API answers 503 with
``Retry-After``, never 500, and reconnects when it is back; the training run skips its progress
rows and waits for its other writes (an epoch's metrics, its events), its supervisor misses lease
renewals and renews once the database is back, and everything lands once: the job succeeds in
its first attempt, with one metrics row and one ``epoch`` event per epoch and each transition once.

Before ``hm2bp_service.outages`` the API answered 500, and the run's first write during the
outage crashed it."""

from __future__ import annotations

import copy
import time

import pytest
from service.harness import Cluster, PostgresServer
from service.test_training_jobs import stream_events

from .conftest import FAULT_SPEC, SWEEP_SECONDS, TERMINAL
from .test_worker_loss import wait_for_progress

LEASE_SECONDS = "30"  # renewed every 5 s: an outage of 5-25 s misses a renewal without losing the lease
START_SECONDS = 300  # a bound on each start of the API or the worker, for a loaded machine


@pytest.fixture
def postgres():
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_cluster(tmp_path, postgres):
    made = Cluster(tmp_path / "service", START_SECONDS, database_url=postgres.url, lease_seconds=LEASE_SECONDS,
                   sweep_seconds=SWEEP_SECONDS)
    try:
        yield made
    finally:
        made.close()


OUTAGE_SECONDS = 12  # more than two renewals of the lease, and a dozen progress events


def test_api_answers_503_while_postgres_is_down_and_reconnects(pg_cluster, postgres):
    cluster = pg_cluster
    cluster.start_api()
    client = cluster.service.client()
    assert client.get("/v1/jobs").status_code == 200  # the pool holds a connection now
    postgres.stop()  # -m immediate: every connection cut at once
    for path in ("/v1/jobs", "/v1/datasets"):
        down = client.get(path)
        assert down.status_code == 503, (path, down.status_code, down.text)
        assert int(down.headers["Retry-After"]) > 0 and "database" in down.json()["detail"]
    postgres.start()
    assert client.get("/v1/jobs").status_code == 200  # pool_pre_ping replaced the broken connections


def test_postgres_restart_mid_run_lands_every_write_once(pg_cluster, postgres):
    cluster = pg_cluster
    cluster.start_api()
    cluster.add_worker("only")
    client = cluster.service.client()
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": copy.deepcopy(FAULT_SPEC)}).json()
    wait_for_progress(client, job["id"], epoch=2, seconds=600)  # a bound for a loaded machine

    log = cluster.logs["worker-only"]
    start = log.stat().st_size
    postgres.stop()
    time.sleep(OUTAGE_SECONDS)
    postgres.start()

    done = cluster.service.wait_for(job["id"], TERMINAL, seconds=180)
    assert done["state"] == "succeeded", (done, cluster.worker_logs())
    metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert done["attempts"] == 1, metrics["transitions"]  # the outage cost no attempt
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3, 4]
    assert [t["to_state"] for t in metrics["transitions"]] == ["queued", "running", "succeeded"]
    events = stream_events(cluster.service, job["id"])
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"]["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4]  # each epoch once
    assert "lease not renewed, the database is unavailable" in log.read_text()[start:]  # one met the outage
