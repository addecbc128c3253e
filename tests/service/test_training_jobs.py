"""A job's life through the real service: upload, submit, stream, download, evaluate; cancel;
divergence; idempotent submission. Runs against SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import copy
import json
import subprocess
import time

import httpx_sse
from websockets.sync.client import connect

from .harness import HM2BP, TINY_SPEC


def stream_events(service, job_id: str, after: int = 0, user: str = "alice") -> list[dict]:
    """Every event of the job's websocket stream, until the server closes it."""
    url = f"{service.ws_url}/v1/jobs/{job_id}/stream?after={after}"
    events = []
    with connect(url, additional_headers={"Authorization": f"Bearer {service.tokens[user]}"}, open_timeout=10) as ws:
        for message in ws:
            events.append(json.loads(message))
    return events


def sse_events(client, job_id: str, **kwargs) -> list[dict]:
    with httpx_sse.connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", **kwargs) as source:
        return [{"sse_id": e.id, "sse_event": e.event, **e.json()} for e in source.iter_sse()]


def test_upload_train_stream_download_evaluate(service, digits_npz, tmp_path):
    client = service.client()
    uploaded = client.post("/v1/datasets", files={"file": (digits_npz.name, digits_npz.read_bytes())},
                           data={"name": "digits small"})
    assert uploaded.status_code == 201, uploaded.text
    dataset = uploaded.json()
    assert (dataset["format"], dataset["num_train"], dataset["num_test"], dataset["num_classes"],
            dataset["input_shape"]) == ("npz", 200, 100, 10, [8, 8])
    again = client.post("/v1/datasets", files={"file": ("other-name.npz", digits_npz.read_bytes())})
    assert again.status_code == 200 and again.json()["id"] == dataset["id"]  # de-duplicated by sha256
    assert dataset["id"] in [d["id"] for d in client.get("/v1/datasets").json()["items"]]

    submitted = client.post("/v1/jobs",
                            json={"dataset": dataset["id"], "spec": TINY_SPEC, "name": "tiny", "tags": ["t"]})
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()
    assert job["state"] == "queued" and job["spec"]["training"]["lr"] == 0.001  # stored with defaults resolved

    events = stream_events(service, job["id"])
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))  # history then live, no gap, no repeat
    assert events[0]["type"] == "state" and events[0]["data"]["state"] == "queued"
    assert events[-1]["type"] == "state" and events[-1]["data"]["state"] == "succeeded"
    states = [e["data"]["state"] for e in events if e["type"] == "state"]
    assert states == ["queued", "running", "succeeded"]
    epochs = [e["data"] for e in events if e["type"] == "epoch"]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert all(len(row["firing_rates"]) == 2 and 0 <= row["test_accuracy"] <= 1 for row in epochs)
    progress = [(e["data"]["epoch"], e["data"]["step"]) for e in events if e["type"] == "progress"]
    assert progress and progress == sorted(progress) and {p[0] for p in progress} == {1, 2}
    first_epoch_event = next(i for i, e in enumerate(events) if e["type"] == "epoch")
    assert any(e["type"] == "progress" for e in events[:first_epoch_event])

    # resume from the middle: the rest exactly, on both transports
    middle = events[len(events) // 2]["id"]
    assert stream_events(service, job["id"], after=middle) == events[middle:]
    sse = sse_events(client, job["id"], params={"after": middle})
    assert [e["id"] for e in sse] == [e["id"] for e in events[middle:]]
    assert all(e["sse_id"] == str(e["id"]) and e["sse_event"] == e["type"] for e in sse)
    by_header = sse_events(client, job["id"], headers={"Last-Event-ID": str(events[-2]["id"])})
    assert [e["id"] for e in by_header] == [events[-1]["id"]]

    done = client.get(f"/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded" and done["attempts"] == 1 and done["finished_at"]
    metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert [t["to_state"] for t in metrics["transitions"]] == ["queued", "running", "succeeded"]
    assert any("epoch 2/2" in line["message"] for line in client.get(f"/v1/jobs/{job['id']}/logs").json()["items"])

    names = {a["name"] for a in client.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]}
    assert {"model.safetensors", "model.nir", "spec.json", "metrics.json", "confusion.json", "rasters.json"} <= names
    model = client.get(f"/v1/jobs/{job['id']}/artifacts/model.safetensors")
    assert model.status_code == 200
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(model.content)
    evaluated = subprocess.run([HM2BP, "evaluate", str(tmp_path / "model"), "--data", str(digits_npz)],
                               capture_output=True, text=True, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr
    accuracy = json.loads(evaluated.stdout.strip().splitlines()[-1])["test_accuracy"]
    assert abs(accuracy - done["metrics"]["test_accuracy"]) < 1e-9  # same 100 test samples, same spike trains


def test_cancel_running_job_then_worker_takes_next(service):
    client = service.client()
    long_spec = copy.deepcopy(TINY_SPEC)
    long_spec["training"].update(epochs=200, max_train_samples=1400, batch_size=8)
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": long_spec}).json()
    deadline = time.monotonic() + 60
    while not client.get(f"/v1/jobs/{job['id']}").json()["progress"]:  # training is under way
        assert time.monotonic() < deadline, "the job never reported progress"
        time.sleep(0.2)
    asked = time.monotonic()
    cancelling = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelling.status_code == 200 and cancelling.json()["state"] in ("cancelling", "cancelled")
    ended = service.wait_for(job["id"], {"cancelled", "failed", "succeeded"}, seconds=5)
    assert ended["state"] == "cancelled" and time.monotonic() - asked < 5
    events = stream_events(service, job["id"])
    assert events[-1]["data"]["state"] == "cancelled"
    # cancelling an ended job changes nothing
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"

    following = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC}).json()
    assert service.wait_for(following["id"], {"succeeded", "failed", "cancelled"}, seconds=60)["state"] == "succeeded"


def test_diverging_job_fails_with_a_sentence(service):
    client = service.client()
    spec = copy.deepcopy(TINY_SPEC)
    spec["network"]["layers"][0]["init_range"] = 1e30
    spec["training"]["lr"] = 10.0
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec}).json()
    failed = service.wait_for(job["id"], {"succeeded", "failed", "cancelled"}, seconds=60)
    assert failed["state"] == "failed"
    assert failed["error"]["reason"] == "diverged"
    message = failed["error"]["message"]
    assert "diverged" in message and "NaN" in message and message.rstrip().endswith(".")
    assert failed["attempts"] == 1  # a deterministic fault is not retried
    assert stream_events(service, job["id"])[-1]["data"]["state"] == "failed"


def test_idempotency_key_returns_the_same_job(service):
    client = service.client()
    body = {"dataset": "builtin:digits", "spec": TINY_SPEC, "name": "idempotent"}
    key = {"Idempotency-Key": f"run-{time.time_ns()}"}
    first = client.post("/v1/jobs", json=body, headers=key)
    second = client.post("/v1/jobs", json=body, headers=key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    different = client.post("/v1/jobs", json={**body, "name": "another"}, headers=key)
    assert different.status_code == 422 and different.json()["errors"][0]["field"] == "Idempotency-Key"
    client.post(f"/v1/jobs/{first.json()['id']}/cancel")
    assert service.wait_for(first.json()["id"], {"succeeded", "failed", "cancelled"}, seconds=30)["state"] in (
        "cancelled", "succeeded")
