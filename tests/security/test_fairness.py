"""Fair dispatch (issue 20 item 4): jobs wait in the database and a worker's next job is the one
of the user with the fewest jobs running or dispatched, so one user's long queue does not starve
another's job. Two users, one real worker: alice queues 10 jobs, then bob 1; bob's job starts
before alice's third (first-in-first-out would start it eleventh)."""

from __future__ import annotations

import time

import pytest
from service.harness import TINY_SPEC, Cluster

SPEC = {**TINY_SPEC, "training": {**TINY_SPEC["training"], "epochs": 1}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("fairness"), sweep_seconds="1")
    try:
        cluster.start_api()
        cluster.add_worker("fair")
        yield cluster
    finally:
        cluster.close()


def test_a_second_users_job_does_not_wait_behind_the_first_users_queue(cluster):
    alice, bob = cluster.service.client("alice"), cluster.service.client("bob")
    queued = [alice.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": SPEC, "name": f"a{n}"})
              for n in range(10)]
    assert all(answer.status_code == 201 for answer in queued), [answer.text for answer in queued]
    alices = [answer.json()["id"] for answer in queued]
    answer = bob.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": SPEC, "name": "b"})
    assert answer.status_code == 201, answer.text
    bobs = answer.json()["id"]
    try:
        bob_started = cluster.service.wait_for(bobs, {"running", "succeeded", "failed"}, seconds=400,
                                               user="bob")["started_at"]
        started = sorted(job["started_at"] for job in (alice.get(f"/v1/jobs/{job_id}").json() for job_id in alices)
                         if job["started_at"] is not None)
        assert len(started) < 3 or bob_started < started[2], (bob_started, started)
        assert cluster.service.wait_for(bobs, {"succeeded", "failed"}, seconds=120, user="bob")["state"] == "succeeded"
    finally:
        for job_id in alices:
            alice.post(f"/v1/jobs/{job_id}/cancel")
    deadline = time.monotonic() + 60
    while any(alice.get(f"/v1/jobs/{job_id}").json()["state"] not in ("cancelled", "succeeded", "failed")
              for job_id in alices):
        assert time.monotonic() < deadline, "alice's jobs did not end after cancel"
        time.sleep(0.5)


def test_claim_fair_interleaves_users_and_caps_their_running_jobs(tmp_path):
    """The dispatch order itself (``Jobs.claim_fair``) on a real SQLite store."""
    from hm2bp_service.store import NewJob, Store, migrate, new_id

    url = f"sqlite:///{tmp_path / 'fair.db'}"
    migrate(url)
    store = Store.from_url(url)
    alice, bob = store.users.ensure("alice"), store.users.ensure("bob")

    def queue(user, count: int) -> list[str]:
        return [store.jobs.create(NewJob(id=new_id("job"), user_id=user.id, name="j", dataset="builtin:digits",
                                         spec={}, queue="cpu", max_attempts=1))[0].id for _ in range(count)]

    a = queue(alice, 4)
    b = queue(bob, 1)
    assert [job.id for job in store.jobs.claim_fair("cpu", slots=1, max_running=4)] == [a[0]]
    assert store.jobs.claim_fair("cpu", slots=1, max_running=4) == []  # its slot holds a dispatched job
    assert [job.id for job in store.jobs.claim_fair("cpu", slots=3, max_running=4)] == [b[0], a[1]]
    assert [job.id for job in store.jobs.claim_fair("cpu", slots=9, max_running=3)] == [a[2]]  # alice: 3 at most
    assert store.jobs.claim_fair("gpu", slots=9, max_running=9) == []  # another queue's jobs stay
    store.close()
