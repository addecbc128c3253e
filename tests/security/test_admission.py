"""Admission by cost (issue 20 item 4, issue 16's device check): jobs that no live worker can run
are refused at submit with a 422 naming the field, the estimate and the limit; a training child
that runs out of its memory limit fails ``out_of_memory`` at once (never retried, no traceback);
``GET /v1/capabilities`` says what the live workers offer.

One service of the module's own (tests/service/harness.py ``Cluster``): first without a worker,
then with one CPU worker whose training children may use ``JOB_MEMORY_MIB``."""

from __future__ import annotations

import time

import pytest
from service.harness import TINY_SPEC, Cluster

JOB_MEMORY_MIB = 700


def dense(*units: int) -> dict:
    return {"layers": [{"type": "dense", "units": n, "threshold": 5} for n in (*units, 10)]}


def spec_with(**parts: dict) -> dict:
    spec = {key: dict(value) for key, value in TINY_SPEC.items()}
    for key, value in parts.items():
        spec[key] = {**spec.get(key, {}), **value} if key != "network" else value
    return spec


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("admission"), job_memory_mib=str(JOB_MEMORY_MIB), sweep_seconds="1",
                      worker_heartbeat_seconds="1")
    try:
        cluster.start_api()
        yield cluster
    finally:
        cluster.close()


def submit(client, spec: dict):
    return client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec})


def fields(response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


def wait_probed_worker(client, seconds: float = 90) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        items = client.get("/v1/workers").json()["items"]
        if items and items[0]["device"] is not None:
            return items[0]
        time.sleep(0.3)
    raise AssertionError("the worker never announced its device")


# ------------------------------------------------------------------ before any worker
def test_capabilities_without_a_worker(cluster):
    client = cluster.service.client()
    assert client.get("/v1/capabilities").json() == {
        "devices": ["cpu"], "workers": 0, "max_job_memory_mib": None,
        "quotas": {"max_queued_jobs": 100, "max_running_jobs": 4, "max_stored_bytes": 10 << 30}}
    assert cluster.service.client(None).get("/v1/capabilities").status_code == 401


def test_cuda_is_refused_without_a_gpu_worker(cluster):
    answer = submit(cluster.service.client(), spec_with(training={"device": "cuda"}))
    assert answer.status_code == 422, answer.text
    assert fields(answer) == ["spec.training.device"]
    assert "no worker with a GPU" in answer.json()["detail"]


@pytest.mark.parametrize("training, field", [
    ({"epochs": 100_000, "max_train_samples": None, "max_test_samples": None}, "spec.training.epochs"),
])
def test_absurd_work_is_refused(cluster, training, field):
    answer = submit(cluster.service.client(), spec_with(training=training, encoding={"time_steps": 4000}))
    assert answer.status_code == 422, answer.text
    assert fields(answer)[0] == field and "max_sample_steps" in answer.json()["detail"]


# ------------------------------------------------------------------ with one CPU worker
@pytest.fixture(scope="module")
def oom_job(cluster):
    """A job whose rasters (400 steps x 512 samples x 20,000 neurons) cannot fit the worker's limit,
    submitted while no worker is live (so the memory is not checked at submit): it reaches a child."""
    spec = spec_with(network=dense(20_000), encoding={"time_steps": 400},
                     training={"batch_size": 512, "epochs": 1})
    answer = submit(cluster.service.client(), spec)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


@pytest.fixture(scope="module")
def worker(cluster, oom_job):
    assert oom_job  # queued before the worker starts
    cluster.add_worker("admission")
    return wait_probed_worker(cluster.service.client())


@pytest.mark.usefixtures("worker")
def test_capabilities_with_a_cpu_worker(cluster):
    found = cluster.service.client().get("/v1/capabilities").json()
    assert found["devices"] == ["cpu"] and found["workers"] == 1
    assert found["max_job_memory_mib"] == JOB_MEMORY_MIB


@pytest.mark.usefixtures("worker")
def test_cuda_is_refused_with_only_cpu_workers(cluster):
    answer = submit(cluster.service.client(), spec_with(training={"device": "cuda"}))
    assert answer.status_code == 422 and fields(answer) == ["spec.training.device"], answer.text


@pytest.mark.parametrize("network, extra, field", [
    (dense(30_000, 30_000), {}, "spec.network.layers"),
    (dense(*[100_000] * 62), {}, "spec.network.layers"),
    (dense(40), {"encoding": {"time_steps": 100_000}, "training": {"batch_size": 65_536, "epochs": 1}},
     "spec.training.batch_size"),
], ids=["two-30k-layers", "63-layers-of-100k", "T-100k-batch-65k"])
@pytest.mark.usefixtures("worker")
def test_jobs_no_worker_can_hold_are_refused(cluster, network, extra, field):
    answer = submit(cluster.service.client(), spec_with(network=network, **extra))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert fields(answer)[0] == field
    assert "needs about" in detail and f"allows {JOB_MEMORY_MIB} MiB" in detail


@pytest.mark.usefixtures("worker")
def test_a_small_job_is_admitted_and_runs(cluster, oom_job):
    client = cluster.service.client()
    answer = submit(client, TINY_SPEC)
    assert answer.status_code == 201, answer.text
    cluster.service.wait_for(oom_job, {"failed", "succeeded"}, seconds=180)
    assert cluster.service.wait_for(answer.json()["id"], {"succeeded", "failed"}, seconds=180)["state"] == "succeeded"


@pytest.mark.usefixtures("worker")
def test_running_out_of_memory_fails_once_with_the_reason(cluster, oom_job):
    job = cluster.service.wait_for(oom_job, {"failed", "succeeded"}, seconds=180)
    assert job["state"] == "failed" and job["attempts"] == 1, job
    error = job["error"]
    assert error["reason"] == "out_of_memory", error
    assert error["message"].startswith(f"ran out of memory (limit {JOB_MEMORY_MIB} MiB; it needs about "), error
    assert "reduce training.batch_size or encoding.time_steps" in error["message"], error
    assert not any("Traceback" in line for line in error["log_tail"]), error["log_tail"]
