"""The job store's promises, on SQLite and PostgreSQL: one lease at a time, terminal states
never change, events numbered without gaps, idempotent submission; and the API's hot paths
(Core statements) read and write exactly what the mapped classes do."""

from __future__ import annotations

import time

import pytest

from .harness import postgres_schema
from api.auth import hash_token
from worker.store import (CANCELLED, QUEUED, RUNNING, SUCCEEDED, IdempotencyConflict, Job, JobStore, migrate,
                          new_id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'jobs.db'}"
        migrate(url)
        store = JobStore.from_url(url)
        yield store
        store.engine.dispose()
    else:
        with postgres_schema() as url:
            migrate(url)
            migrate(url)  # idempotent
            store = JobStore.from_url(url)
            yield store
            store.engine.dispose()


def queued_job(store: JobStore, **fields) -> Job:
    user = store.ensure_user("store-tests")
    fields = {"tags": [], "spec": {}, **fields}
    job, created = store.create_job(Job(id=new_id("job"), user_id=user.id, name="j", dataset="builtin:digits",
                                        queue="cpu", max_attempts=2, **fields))
    assert created
    return job


def test_one_lease_at_a_time(store):
    job = queued_job(store)
    first = store.acquire_lease(job.id, "worker-a", seconds=30)
    assert first.job is not None and first.job.state == RUNNING and first.job.attempts == 1
    duplicate = store.acquire_lease(job.id, "worker-b", seconds=30)  # a redelivered message
    assert duplicate.job is None and "leased by worker-a" in duplicate.reason
    assert store.renew_lease(job.id, "worker-b", 30) is None
    assert store.renew_lease(job.id, "worker-a", 30) is not None


def test_expired_lease_is_taken_over_and_counted(store):
    job = queued_job(store)
    assert store.acquire_lease(job.id, "worker-a", seconds=0.2).job is not None
    time.sleep(0.4)
    assert [j.id for j in store.expired_leases()].count(job.id) == 1
    taken = store.acquire_lease(job.id, "worker-b", seconds=30)
    assert taken.job is not None and taken.job.lease_owner == "worker-b" and taken.job.attempts == 2
    assert store.renew_lease(job.id, "worker-a", 30) is None  # the old owner learns it lost the job


def test_terminal_states_never_change(store):
    job = queued_job(store)
    store.acquire_lease(job.id, "worker-a", seconds=30)
    assert store.transition(job.id, SUCCEEDED, "done", expect=(RUNNING,), owner="worker-b") is None  # not the owner
    assert store.transition(job.id, SUCCEEDED, "done", expect=(RUNNING,), owner="worker-a") is not None
    assert store.transition(job.id, CANCELLED, "late", expect=(QUEUED, RUNNING)) is None
    assert store.acquire_lease(job.id, "worker-c", seconds=30).job is None
    final = store.job_by_id(job.id)
    assert final.state == SUCCEEDED and final.finished_at is not None and final.lease_owner is None
    assert [t.to_state for t in store.transitions(job.id)] == [QUEUED, RUNNING, SUCCEEDED]


def test_events_are_numbered_without_gaps(store):
    job = queued_job(store)
    for step in range(5):
        store.append_event(job.id, "progress", {"step": step})
    events = store.events_after(job.id, 0)
    assert [e.seq for e in events] == list(range(1, 7))
    assert [e.seq for e in store.events_after(job.id, 4)] == [5, 6]
    assert store.events_after(job.id, 0, types=("state",))[0].data["state"] == QUEUED


def test_idempotency_key(store):
    first = queued_job(store, idempotency_key="k-1", request_hash="h")
    user = store.ensure_user("store-tests")
    replay, created = store.create_job(Job(id=new_id("job"), user_id=user.id, name="j", tags=[], dataset="x", spec={},
                                           queue="cpu", max_attempts=2, idempotency_key="k-1", request_hash="h"))
    assert not created and replay.id == first.id
    with pytest.raises(IdempotencyConflict):
        store.create_job(Job(id=new_id("job"), user_id=user.id, name="j", tags=[], dataset="x", spec={}, queue="cpu",
                             max_attempts=2, idempotency_key="k-1", request_hash="other"))


def test_hot_paths_match_the_mapped_classes(store):
    """create_job fills in what the database holds; get_job and list_jobs rows equal the ORM's
    objects column by column; other users, states and revoked tokens are filtered out."""
    job = queued_job(store, tags=["a"], spec={"training": {"epochs": 2}})
    stored = store.job_by_id(job.id)  # the ORM's read
    columns = [column.key for column in Job.__table__.columns]
    assert {c: getattr(job, c) for c in columns} == {c: getattr(stored, c) for c in columns}
    assert stored.state == QUEUED and stored.event_seq == 1 and stored.attempts == 0 and stored.created_at.tzinfo
    assert [(e.seq, e.data["state"]) for e in store.events_after(job.id, 0)] == [(1, QUEUED)]
    assert [t.to_state for t in store.transitions(job.id)] == [QUEUED]
    store.mark_dispatched(job.id)
    assert store.job_by_id(job.id).dispatched_at is not None

    row = store.get_job(job.user_id, job.id)
    assert {c: getattr(row, c) for c in columns} == {c: getattr(store.job_by_id(job.id), c) for c in columns}
    other = store.ensure_user("someone-else")
    assert store.get_job(other.id, job.id) is None

    later = queued_job(store)
    store.transition(later.id, CANCELLED, "test", expect=(QUEUED,))
    page, total = store.list_jobs(job.user_id, None, 2, 0)
    assert [r.id for r in page] == [later.id, job.id] and total >= 2  # newest first
    cancelled, cancelled_total = store.list_jobs(job.user_id, CANCELLED, 500, 0)
    assert later.id in [r.id for r in cancelled] and job.id not in [r.id for r in cancelled]
    assert cancelled_total == len(cancelled) and store.list_jobs(other.id, None, 50, 0) == ([], 0)

    digest = hash_token("hm2bp_hot-path-test-" + new_id("t"))
    store.add_token(other.id, digest, "hm2bp_hot")
    found = store.user_for_token_hash(digest)
    assert (found.id, found.name) == (other.id, "someone-else")
    assert store.revoke_token(digest) and store.user_for_token_hash(digest) is None
