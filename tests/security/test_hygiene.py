"""Second lines of defence (issue 20, item 10, all but webhook secrets): security headers on every
HTML route, no CDN docs pages, NUL bytes refused on PostgreSQL, owner-only files, failure
messages without server paths, and other users' activity (``/metrics`` job counts, workers'
machines) for admins only. ``hm2bp serve``'s token reuse is in test_orphans.py."""

from __future__ import annotations

import re
import stat
import time

import numpy as np
import pytest
from service.harness import TINY_SPEC, Cluster, npz_bytes, postgres_schema

RNG = np.random.default_rng(0)


def small_dataset() -> bytes:
    return npz_bytes(x_train=RNG.integers(0, 256, (60, 8, 8), dtype=np.uint8), y_train=np.arange(60) % 10,
                     x_test=RNG.integers(0, 256, (20, 8, 8), dtype=np.uint8), y_test=np.arange(20) % 10)


@pytest.fixture(scope="module")
def on_postgres(tmp_path_factory):
    """An API on PostgreSQL, alice an admin, with one worker."""
    with postgres_schema() as url:
        cluster = Cluster(tmp_path_factory.mktemp("hygiene"), database_url=url, admin_users="alice")
        try:
            cluster.start_api()
            cluster.add_worker("hygiene")
            yield cluster
        finally:
            cluster.close()


def test_every_html_route_has_the_security_headers_and_docs_need_no_cdn(secured):
    client = secured.service.client(user=None)
    root, static = client.get("/"), client.get("/static/index.html")
    assert root.status_code == static.status_code == 200
    for header in ("content-security-policy", "x-content-type-options", "referrer-policy"):
        assert static.headers.get(header) == root.headers[header], header
    assert "script-src 'self'" in static.headers["content-security-policy"]
    for path in ("/docs", "/redoc"):  # FastAPI's pages load Swagger UI / ReDoc from a CDN: off unless local
        assert client.get(path).status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_nul_bytes_are_422_naming_the_field(on_postgres):
    client = on_postgres.service.client()
    job = {"dataset": "builtin:digits", "spec": TINY_SPEC}
    for body, field in (({**job, "name": "a\x00b"}, "name"), ({**job, "tags": ["a\x00"]}, "tags[0]"),
                        ({**job, "dataset": "builtin:\x00"}, "dataset")):
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]]
    sweep = {**job, "grid": {"training.seed": [1]}}
    for body in ({**sweep, "name": "\x00"}, {**sweep, "grid": {"training.seed\x00": [1]}},
                 {**sweep, "grid": {"training.device": ["cpu\x00"]}}):
        assert client.post("/v1/sweeps", json=body).status_code == 422, body
    response = client.post("/v1/datasets", files={"file": ("d.npz", small_dataset())}, data={"name": "a\x00b"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "name", response.text
    assert client.get("/readyz").status_code == 200


def test_files_are_owner_only(secured):
    """The data folder, the SQLite file, uploads and artifacts: no access for group or others."""
    client = secured.service.client()
    assert client.post("/v1/datasets", files={"file": ("owner.npz", small_dataset())}).status_code in (200, 201)
    root = secured.root
    assert stat.S_IMODE(root.stat().st_mode) & 0o077 == 0
    made = [root / "hm2bp.db", *(p for p in (root / "artifacts").rglob("*")), root / "artifacts"]
    assert len(made) > 2
    loose = {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in made
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert not loose, loose


def test_metrics_show_job_counts_to_admins_only(on_postgres):
    anonymous, bob, alice = (on_postgres.service.client(user) for user in (None, "bob", "alice"))
    job = bob.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC})
    assert job.status_code == 201
    for client in (anonymous, bob):
        text = client.get("/metrics").text
        assert "hm2bp_http_requests_total" in text and "hm2bp_jobs" not in text
    assert re.search(r'^hm2bp_jobs\{state="(queued|running|succeeded)"\} [1-9]', alice.get("/metrics").text, re.M)
    bob.post(f"/v1/jobs/{job.json()['id']}/cancel")  # the worker is for the tests below


def test_workers_show_their_machine_to_admins_only(on_postgres):
    alice, bob = on_postgres.service.client("alice"), on_postgres.service.client("bob")
    deadline = time.monotonic() + 60
    while not (workers := alice.get("/v1/workers").json()["items"]) or workers[0]["device"] is None:
        assert time.monotonic() < deadline, on_postgres.worker_logs()
        time.sleep(0.5)
    assert workers[0]["host"] and workers[0]["pid"] and workers[0]["device"]["name"]
    seen = bob.get("/v1/workers").json()["items"]
    assert len(seen) == len(workers)
    for worker in seen:
        assert worker["host"] is None and worker["pid"] is None and worker["device"]["name"] is None
        assert worker["name"].startswith("worker ") and workers[0]["host"] not in str(worker)
        assert worker["device"]["kind"] in ("cpu", "cuda") and worker["queues"]


def test_failure_messages_carry_no_server_paths(on_postgres):
    client = on_postgres.service.client("alice")
    dataset = client.post("/v1/datasets", files={"file": ("doomed.npz", small_dataset())}).json()
    stored = [p for p in (on_postgres.root / "artifacts").rglob("*") if p.is_file() and dataset["sha256"] in p.name]
    assert stored, list((on_postgres.root / "artifacts").rglob("*"))
    for path in stored:  # the stored file goes bad behind the service's back
        path.write_bytes(b"PK\x03\x04 not a zip any more")
    job = client.post("/v1/jobs", json={"dataset": dataset["id"], "spec": TINY_SPEC}).json()
    failed = on_postgres.service.wait_for(job["id"], {"failed", "succeeded"}, seconds=400)
    assert failed["state"] == "failed"
    shown = [failed["error"]["message"], *failed["error"]["log_tail"],
             *(line["message"] for line in client.get(f"/v1/jobs/{job['id']}/logs").json()["items"])]
    root = str(on_postgres.root.resolve())
    assert not [line for line in shown if root in line or "/site-packages/" in line], shown
