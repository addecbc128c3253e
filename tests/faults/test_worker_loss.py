"""A worker (and its training child) SIGKILLed in the middle of epoch 2 of a 4-epoch job: another
worker resumes the job from the epoch-1 checkpoint, and the run ends exactly as an uninterrupted
one with the same seed (same weights, bit for bit; CPU, deterministic)."""

from __future__ import annotations

import time

import torch
from safetensors.torch import load as load_safetensors
from service.harness import kill_tree
from service.test_training_jobs import stream_events

from .conftest import FAULT_SPEC, TERMINAL


def wait_for_progress(client, job_id: str, epoch: int, seconds: float = 90) -> dict:
    """The job once its progress reports a step of ``epoch`` (polled every 50 ms)."""
    deadline = time.monotonic() + seconds
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if (job["progress"] or {}).get("epoch") == epoch:
            return job
        assert job["state"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"job {job_id} never reached epoch {epoch}: {job}"
        time.sleep(0.05)


def weights(client, job_id: str) -> dict[str, torch.Tensor]:
    response = client.get(f"/v1/jobs/{job_id}/artifacts/model.safetensors")
    assert response.status_code == 200, response.text
    return load_safetensors(response.content)


def test_killed_worker_job_resumes_elsewhere_with_identical_weights(cluster):
    cluster.start_api()
    first = cluster.add_worker("first")
    client = cluster.service.client()
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": FAULT_SPEC, "name": "killed"}).json()

    running = wait_for_progress(client, job["id"], epoch=2)
    assert running["progress"]["step"] < running["progress"]["steps"]
    killed = kill_tree(first)  # kill -9: celery main process, its pool process, the training child
    assert len(killed) >= 3, killed
    assert [row["epoch"] for row in client.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"]] == [1]

    # two fresh workers: one resumes the lost job (once the sweeper sees its lease expire),
    # the other runs the same spec uninterrupted, for reference
    for name in ("second", "third"):
        cluster.add_worker(name, wait=False)
    reference = client.post("/v1/jobs",
                            json={"dataset": "builtin:digits", "spec": FAULT_SPEC, "name": "reference"}).json()
    done = cluster.service.wait_for(job["id"], TERMINAL, seconds=120)
    uninterrupted = cluster.service.wait_for(reference["id"], TERMINAL, seconds=120)
    assert done["state"] == "succeeded", (done, cluster.worker_logs())
    history = {j: [(t["to_state"], t["reason"]) for t in client.get(f"/v1/jobs/{j}/metrics").json()["transitions"]]
               for j in (job["id"], reference["id"])}
    assert uninterrupted["state"] == "succeeded" and uninterrupted["attempts"] == 1, history
    assert done["attempts"] == 2, history

    metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3, 4]
    assert [t["to_state"] for t in metrics["transitions"]] == ["queued", "running", "queued", "running", "succeeded"]
    assert "lease" in metrics["transitions"][2]["reason"]

    events = stream_events(cluster.service, job["id"])
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"]["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4]  # each epoch once
    resumed = [i for i, e in enumerate(events)
               if e["type"] == "log" and "resumed after epoch 1" in e["data"]["message"]]
    assert len(resumed) == 1
    after = [(e["data"]["epoch"], e["data"]["step"]) for e in events[resumed[0]:] if e["type"] == "progress"]
    assert after and after == sorted(after) and after[0][0] == 2  # continues in epoch 2, never goes back

    mine, theirs = weights(client, job["id"]), weights(client, reference["id"])
    assert mine.keys() == theirs.keys() and mine
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), name
    assert done["metrics"]["test_accuracy"] == uninterrupted["metrics"]["test_accuracy"]
