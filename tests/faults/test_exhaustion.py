"""Resource exhaustion fails cleanly, with a reason the user can act on (issue 17 item 3):

- a training child that runs out of memory (its worker in a memory cgroup of the test's own:
  either its RLIMIT_DATA, sized from the cgroup, stops it, or the kernel's OOM killer takes it)
  fails ``out_of_memory`` at its first attempt, naming the limit and what to reduce; it is not
  retried as a lost worker until its attempts run out;
- a full disk (the artifact store on a small tmpfs, filled after epoch 1) fails the job
  ``disk_full`` with its last checkpoint whole; once space is freed, a resume continues from it;
- a truncated checkpoint is passed over on resume: the run continues from the one before, and
  its log says so.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from service.harness import TINY_SPEC, Cluster, memory_cgroup

from hm2bp_service.settings import Settings

from .conftest import FAULT_SPEC, LEASE_SECONDS, SWEEP_SECONDS, TERMINAL
from filesystems import fill, small_filesystem

DEFAULT_LEASE = str(Settings.model_fields["lease_seconds"].default)
CGROUP_MIB = 1500  # the worker, its pool process and its training child together
# rasters of 200 steps x 256 samples x 8000 neurons: about 2.6 GiB by the core's estimate
HUNGRY_SPEC = copy.deepcopy(TINY_SPEC)
HUNGRY_SPEC["network"]["layers"][0]["units"] = 8000
HUNGRY_SPEC["encoding"]["time_steps"] = 200
HUNGRY_SPEC["training"].update(epochs=1, batch_size=256, max_train_samples=512)


def logs(client, job_id: str) -> list[str]:
    return [line["message"] for line in client.get(f"/v1/jobs/{job_id}/logs").json()["items"]]


def transitions(client, job_id: str) -> list[str]:
    return [t["to_state"] for t in client.get(f"/v1/jobs/{job_id}/metrics").json()["transitions"]]


def wait_epochs(client, job_id: str, count: int, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while len(client.get(f"/v1/jobs/{job_id}/metrics").json()["epochs"]) < count:
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"job {job_id} never finished epoch {count}"
        time.sleep(0.1)


@pytest.mark.parametrize("job_memory_mib, limit_mib", [
    (None, int(0.8 * CGROUP_MIB)),  # the default: the child's limit stays under its container's
    ("8192", CGROUP_MIB),  # a limit set above the container's: the kernel's OOM killer acts first
], ids=["limit-from-the-cgroup", "kernel-oom-killer"])
def test_a_child_out_of_memory_fails_once_naming_the_limit(tmp_path, job_memory_mib, limit_mib):
    settings = {"job_memory_mib": job_memory_mib} if job_memory_mib else {}
    with memory_cgroup(CGROUP_MIB) as cgroup:
        # the service's default lease (30 s): a cgroup at its limit can stall every process in it for
        # seconds, the supervisor's renewals too, and this test is about memory, not a 5-s lease's margin
        cluster = Cluster(tmp_path, lease_seconds=DEFAULT_LEASE, sweep_seconds=SWEEP_SECONDS, **settings)
        try:
            cluster.start_api()
            client = cluster.service.client()
            # queued before the worker is live, so that admission does not refuse it at submit
            answer = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": HUNGRY_SPEC})
            assert answer.status_code == 201, answer.text
            job_id = answer.json()["id"]
            cluster.add_worker("small", cgroup=cgroup)
            job = cluster.service.wait_for(job_id, TERMINAL, seconds=300)
            assert job["state"] == "failed", (job, cluster.worker_logs())
            assert job["attempts"] == 1 and transitions(client, job_id) == ["queued", "running", "failed"], job
            error = job["error"]
            assert error["reason"] == "out_of_memory", error
            assert error["message"].startswith(f"ran out of memory (limit {limit_mib} MiB"), error
            assert "reduce training.batch_size or encoding.time_steps" in error["message"], error
            assert cluster.workers["small"].poll() is None, "the worker itself must survive"
            if job_memory_mib:
                assert "the kernel killed it" in error["message"], error
        finally:
            cluster.close()


def checkpoint_files(cluster: Cluster, job_id: str) -> list[Path]:
    folder = cluster.root / "disk" / "jobs" / job_id / "checkpoint"
    return sorted(p for p in folder.rglob("*"))


def test_a_full_disk_fails_the_job_with_its_checkpoint_whole_and_a_resume_continues(tmp_path):
    with small_filesystem(tmp_path / "disk", mib=16) as disk:
        cluster = Cluster(tmp_path, lease_seconds=LEASE_SECONDS, sweep_seconds=SWEEP_SECONDS,
                          artifacts_url=str(disk))
        try:
            cluster.start_api()
            cluster.add_worker("w")
            client = cluster.service.client()
            job_id = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": FAULT_SPEC}).json()["id"]
            wait_epochs(client, job_id, 1)
            filler = fill(disk)
            job = cluster.service.wait_for(job_id, TERMINAL, seconds=240)
            assert job["state"] == "failed" and job["attempts"] == 1, (job, cluster.worker_logs())
            error = job["error"]
            assert error["reason"] == "disk_full", error
            kept = len(client.get(f"/v1/jobs/{job_id}/metrics").json()["epochs"])
            assert 1 <= kept < 4
            assert f"checkpoint of epoch {kept} is kept" in error["message"] and "resume" in error["message"], error
            names = [p.relative_to(disk / "jobs" / job_id / "checkpoint").as_posix()
                     for p in checkpoint_files(cluster, job_id)]
            assert not [n for n in names if "writing" in n or n.endswith(".tmp")], names  # nothing half-written
            assert not any("Traceback" in line for line in error["log_tail"]), error["log_tail"]

            filler.unlink()
            assert client.post(f"/v1/jobs/{job_id}/resume").status_code == 200
            done = cluster.service.wait_for(job_id, TERMINAL, seconds=240)
            assert done["state"] == "succeeded", (done, cluster.worker_logs())
            assert [row["epoch"] for row in client.get(f"/v1/jobs/{job_id}/metrics").json()["epochs"]] == [1, 2, 3, 4]
            assert any(f"resumed after epoch {kept}" in line for line in logs(client, job_id)), logs(client, job_id)
        finally:
            cluster.close()


def test_a_truncated_checkpoint_is_passed_over_on_resume(tmp_path, cluster):
    cluster.start_api()
    cluster.add_worker("w")
    client = cluster.service.client()
    job_id = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": FAULT_SPEC}).json()["id"]
    wait_epochs(client, job_id, 2)
    client.post(f"/v1/jobs/{job_id}/cancel")
    assert cluster.service.wait_for(job_id, TERMINAL, seconds=120)["state"] == "cancelled"
    reached = len(client.get(f"/v1/jobs/{job_id}/metrics").json()["epochs"])
    assert 2 <= reached < 4
    folder = tmp_path / "artifacts" / "jobs" / job_id / "checkpoint"
    newest = sorted(folder.rglob("state.safetensors"))[-1]  # the newest epoch's
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2])

    assert client.post(f"/v1/jobs/{job_id}/resume").status_code == 200
    done = cluster.service.wait_for(job_id, TERMINAL, seconds=240)
    assert done["state"] == "succeeded", (done, cluster.worker_logs())
    lines = logs(client, job_id)
    warned = [line for line in lines if "unreadable" in line]
    assert len(warned) == 1 and f"epoch {reached}" in warned[0] and "falling back" in warned[0], lines
    assert any(f"resumed after epoch {reached - 1}" in line for line in lines), lines
    assert [row["epoch"] for row in client.get(f"/v1/jobs/{job_id}/metrics").json()["epochs"]] == [1, 2, 3, 4]
