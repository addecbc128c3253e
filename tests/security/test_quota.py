"""Per-user quotas (issue 20 item 4): queued jobs (429 with Retry-After, counted in the insert's
transaction so parallel submits cannot pass it together) and stored bytes (422 naming the limit).
Another user's quota is untouched. One API of the module's own, no worker: nothing trains."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from service.harness import TINY_SPEC, Cluster, npz_bytes

MAX_QUEUED = 4
MAX_STORED = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("quota"), max_queued_jobs=str(MAX_QUEUED),
                      max_stored_bytes=str(MAX_STORED), quota_retry_seconds="30")
    try:
        cluster.start_api()
        yield cluster
    finally:
        cluster.close()


def submit(client):
    return client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC})


def test_a_full_queue_is_a_429_with_retry_after(cluster):
    alice = cluster.service.client("alice")
    with ThreadPoolExecutor(8) as pool:  # parallel: the limit holds in the store's transaction
        answers = list(pool.map(lambda _: submit(alice), range(3 * MAX_QUEUED)))
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] * MAX_QUEUED + [429] * (2 * MAX_QUEUED), codes
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["Retry-After"] == "30"
    assert refused.json()["errors"][0]["field"] == "max_queued_jobs"
    assert f"the limit (max_queued_jobs) is {MAX_QUEUED}" in refused.json()["detail"]
    assert alice.get("/v1/jobs", params={"state": "queued"}).json()["total"] == MAX_QUEUED

    assert submit(cluster.service.client("bob")).status_code == 201  # bob's queue is his own

    job = next(answer.json()["id"] for answer in answers if answer.status_code == 201)
    assert alice.post(f"/v1/jobs/{job}/cancel").status_code == 200
    assert submit(alice).status_code == 201  # room again


def dataset(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return npz_bytes(x_train=rng.integers(0, 256, (20, 4, 4), dtype=np.uint8), y_train=np.arange(20) % 2,
                     x_test=rng.integers(0, 256, (10, 4, 4), dtype=np.uint8), y_test=np.arange(10) % 2)


def test_stored_bytes_are_bounded_per_user(cluster):
    first, second = dataset(1), dataset(2)
    assert len(first) + len(second) > MAX_STORED > len(first)
    alice, bob = cluster.service.client("alice"), cluster.service.client("bob")
    assert alice.post("/v1/datasets", files={"file": ("a.npz", first)}).status_code == 201
    refused = alice.post("/v1/datasets", files={"file": ("b.npz", second)})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "max_stored_bytes"
    assert f"(max_stored_bytes) of {MAX_STORED}" in refused.json()["detail"]
    assert bob.post("/v1/datasets", files={"file": ("b.npz", second)}).status_code == 201  # bob's own bytes

    for item in alice.get("/v1/datasets").json()["items"]:
        if item["format"] != "builtin":
            assert alice.delete(f"/v1/datasets/{item['id']}").status_code == 204
    assert alice.post("/v1/datasets", files={"file": ("b.npz", second)}).status_code == 201  # room again


def test_a_sweep_counts_all_its_points_against_the_queue(cluster):
    bob = cluster.service.client("bob")
    room = MAX_QUEUED - bob.get("/v1/jobs", params={"state": "queued"}).json()["total"]
    assert room >= 1

    def sweep(points: int):
        grid = {"training.lr": [1e-3 * (k + 1) for k in range(points)]}
        return bob.post("/v1/sweeps", json={"dataset": "builtin:digits", "spec": TINY_SPEC, "grid": grid})

    refused = sweep(room + 1)  # one point more than the queue has room for
    assert refused.status_code == 429, refused.text
    assert refused.json()["errors"][0]["field"] == "max_queued_jobs"
    assert bob.get("/v1/jobs", params={"state": "queued"}).json()["total"] == MAX_QUEUED - room  # nothing queued
    assert sweep(room).status_code == 201
    assert bob.get("/v1/jobs", params={"state": "queued"}).json()["total"] == MAX_QUEUED
