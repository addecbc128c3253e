"""The same job message delivered twice (as Redis does after its visibility timeout, or a
producer retrying) with two workers running: the lease wins, the job trains in one process only."""

from __future__ import annotations

import copy
import threading
import time

import psutil
from service.harness import TINY_SPEC, wait_worker

from hm2bp_service.dispatch import Dispatcher
from hm2bp_service.settings import Settings

from .conftest import TERMINAL


def training_children(job_id: str) -> set[int]:
    """Pids of the live ``python -m worker.child JOB_ID`` processes."""
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "worker.child" in cmdline and job_id in cmdline:
            found.add(process.info["pid"])
    return found


def test_duplicate_message_never_trains_twice(cluster):
    cluster.start_api()
    for name in ("one", "two"):
        cluster.add_worker(name, wait=False)
    for name, worker in cluster.workers.items():
        wait_worker(worker, cluster.logs[f"worker-{name}"])
    client = cluster.service.client()
    spec = copy.deepcopy(TINY_SPEC)
    spec["encoding"]["time_steps"] = 100
    spec["training"].update(epochs=3, batch_size=8, max_train_samples=600)
    dispatcher = Dispatcher(Settings(redis_url=cluster.redis.url))

    seen: list[set[int]] = []
    stop = threading.Event()
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec}).json()
    dispatcher.send(job["id"], job["queue"])  # a duplicate, at once: the workers race

    def watch() -> None:
        while not stop.is_set():
            seen.append(training_children(job["id"]))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        deadline = time.monotonic() + 60
        while not client.get(f"/v1/jobs/{job['id']}").json()["progress"]:
            assert time.monotonic() < deadline, cluster.worker_logs()
            time.sleep(0.1)
        dispatcher.send(job["id"], job["queue"])  # a redelivery in the middle of the run
        done = cluster.service.wait_for(job["id"], TERMINAL, seconds=120)
    finally:
        stop.set()
        watcher.join()
        dispatcher.close()

    assert done["state"] == "succeeded" and done["attempts"] == 1, cluster.worker_logs()
    assert max(len(pids) for pids in seen) == 1  # never two trainers at once ...
    assert len(set().union(*seen)) == 1  # ... and only ever one
    transitions = [t["to_state"] for t in client.get(f"/v1/jobs/{job['id']}/metrics").json()["transitions"]]
    assert transitions == ["queued", "running", "succeeded"]
    logs = cluster.worker_logs(tail=10**7)
    assert logs.count(f"job {job['id']} not run by") == 2, logs  # both duplicates were turned away
