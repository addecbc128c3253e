"""The job store's promises, on SQLite and PostgreSQL: one lease at a time, terminal states
never change, events numbered without gaps, idempotent submission; the hot paths (Core
statements) read and write exactly what the mapped classes hold; every read is a frozen record
with one field per column of its table."""

from __future__ import annotations

import dataclasses
import time

import pytest

from api.auth import hash_token
from hm2bp_service.states import JobState
from hm2bp_service.store import IdempotencyConflict, NewJob, Store, migrate, new_id, records, schema

from .harness import postgres_schema

QUEUED, RUNNING, SUCCEEDED, CANCELLED = JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED, JobState.CANCELLED


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'jobs.db'}"
        migrate(url)
        store = Store.from_url(url)
        yield store
        store.close()
    else:
        with postgres_schema() as url:
            migrate(url)
            migrate(url)  # idempotent
            store = Store.from_url(url)
            yield store
            store.close()


def queued_job(store: Store, **fields) -> records.JobRecord:
    user = store.users.ensure("store-tests")
    job, created = store.jobs.create(NewJob(id=new_id("job"), user_id=user.id, name="j", dataset="builtin:digits",
                                            spec=fields.pop("spec", {}), queue="cpu", max_attempts=2, **fields))
    assert created
    return job


def test_records_mirror_their_tables():
    pairs = [(records.UserRecord, schema.User), (records.DatasetRecord, schema.DatasetRow),
             (records.JobRecord, schema.Job), (records.TransitionRecord, schema.JobTransition),
             (records.SweepRecord, schema.Sweep), (records.WebhookDeliveryRecord, schema.WebhookDelivery),
             (records.LeaseRecord, schema.JobLease)]
    for record, table in pairs:
        assert [f.name for f in dataclasses.fields(record)] == [c.key for c in table.__table__.columns], record


def test_one_lease_at_a_time(store):
    job = queued_job(store)
    first = store.jobs.acquire_lease(job.id, "worker-a", seconds=30)
    assert first.job is not None and first.job.state == RUNNING and first.job.attempts == 1
    duplicate = store.jobs.acquire_lease(job.id, "worker-b", seconds=30)  # a redelivered message
    assert duplicate.job is None and "leased by worker-a" in duplicate.reason
    assert store.jobs.renew_lease(job.id, "worker-b", 30) is None
    assert store.jobs.renew_lease(job.id, "worker-a", 30) is not None


def test_expired_lease_is_taken_over_and_counted(store):
    job = queued_job(store)
    assert store.jobs.acquire_lease(job.id, "worker-a", seconds=0.2).job is not None
    time.sleep(0.4)
    assert [j.id for j in store.jobs.expired_leases()].count(job.id) == 1
    taken = store.jobs.acquire_lease(job.id, "worker-b", seconds=30)
    assert taken.job is not None and taken.job.lease_owner == "worker-b" and taken.job.attempts == 2
    assert store.jobs.renew_lease(job.id, "worker-a", 30) is None  # the old owner learns it lost the job


def test_lease_history_has_one_lease_per_attempt_none_overlapping(store):
    job = queued_job(store)
    assert store.jobs.acquire_lease(job.id, "worker-a", seconds=0.2).job is not None
    time.sleep(0.4)
    assert store.jobs.acquire_lease(job.id, "worker-b", seconds=30).job is not None
    renewed = store.jobs.renew_lease(job.id, "worker-b", 60)
    assert renewed is not None
    store.jobs.transition(job.id, SUCCEEDED, "done", expect=(RUNNING,), owner="worker-b")
    first, second = store.jobs.leases(job.id)
    assert (first.owner, first.attempt, second.owner, second.attempt) == ("worker-a", 1, "worker-b", 2)
    assert first.released_at == first.until <= second.taken_at  # it ran out before the next was taken
    assert second.until == renewed.lease_until and second.taken_at < second.released_at < second.until


def test_no_attempt_past_the_limit(store):
    """A job that used its last attempt is not taken again when its lease expires (a redelivered
    message): the sweeper gives it up. Before, the redelivery counted attempt max + 1."""
    job = queued_job(store)  # max_attempts 2
    assert store.jobs.acquire_lease(job.id, "worker-a", seconds=0.2).job is not None
    time.sleep(0.4)
    assert store.jobs.acquire_lease(job.id, "worker-b", seconds=0.2).job is not None
    time.sleep(0.4)
    refused = store.jobs.acquire_lease(job.id, "worker-c", seconds=30)
    assert refused.job is None and "no attempt left (2 of 2)" in refused.reason
    assert store.jobs.by_id(job.id).attempts == 2 and len(store.jobs.leases(job.id)) == 2


def test_terminal_states_never_change(store):
    job = queued_job(store)
    store.jobs.acquire_lease(job.id, "worker-a", seconds=30)
    # not the owner
    assert store.jobs.transition(job.id, SUCCEEDED, "done", expect=(RUNNING,), owner="worker-b") is None
    assert store.jobs.transition(job.id, SUCCEEDED, "done", expect=(RUNNING,), owner="worker-a") is not None
    assert store.jobs.transition(job.id, CANCELLED, "late", expect=(QUEUED, RUNNING)) is None
    assert store.jobs.acquire_lease(job.id, "worker-c", seconds=30).job is None
    final = store.jobs.by_id(job.id)
    assert final.state == SUCCEEDED and final.state.is_terminal() and final.finished_at is not None
    assert final.lease_owner is None
    assert [t.to_state for t in store.jobs.transitions(job.id)] == [QUEUED, RUNNING, SUCCEEDED]
    with pytest.raises(dataclasses.FrozenInstanceError):
        final.state = RUNNING  # a record is a snapshot


def test_events_are_numbered_without_gaps(store):
    job = queued_job(store)
    for step in range(5):
        store.events.append(job.id, "progress", {"step": step})
    events = store.events.after(job.id, 0)
    assert [e.seq for e in events] == list(range(1, 7))
    assert [e.seq for e in store.events.after(job.id, 4)] == [5, 6]
    assert store.events.after(job.id, 0, types=("state",))[0].data["state"] == QUEUED


def test_idempotency_key(store):
    first = queued_job(store, idempotency_key="k-1", request_hash="h")
    user = store.users.ensure("store-tests")
    replay, created = store.jobs.create(NewJob(id=new_id("job"), user_id=user.id, name="j", dataset="x", spec={},
                                               queue="cpu", max_attempts=2, idempotency_key="k-1", request_hash="h"))
    assert not created and replay.id == first.id
    with pytest.raises(IdempotencyConflict):
        store.jobs.create(NewJob(id=new_id("job"), user_id=user.id, name="j", dataset="x", spec={}, queue="cpu",
                                 max_attempts=2, idempotency_key="k-1", request_hash="other"))


def test_hot_paths_match_the_mapped_classes(store):
    """create fills in what the database holds; get and page equal the ORM's objects column by
    column; other users, states and revoked tokens are filtered out."""
    job = queued_job(store, tags=["a"], spec={"training": {"epochs": 2}})
    with store.db.reading() as session:
        orm = records.JobRecord.of(session.get(schema.Job, job.id))  # the mapped class's read
    assert job == orm == store.jobs.by_id(job.id)
    assert orm.state == QUEUED and orm.event_seq == 1 and orm.attempts == 0 and orm.created_at.tzinfo
    assert [(e.seq, e.data["state"]) for e in store.events.after(job.id, 0)] == [(1, QUEUED)]
    assert [t.to_state for t in store.jobs.transitions(job.id)] == [QUEUED]
    store.jobs.mark_dispatched(job.id)
    assert store.jobs.by_id(job.id).dispatched_at is not None
    assert store.jobs.get(job.user_id, job.id) == store.jobs.by_id(job.id)
    other = store.users.ensure("someone-else")
    assert store.jobs.get(other.id, job.id) is None

    later = queued_job(store)
    store.jobs.transition(later.id, CANCELLED, "test", expect=(QUEUED,))
    page, total = store.jobs.page(job.user_id, None, 2, 0)
    assert [r.id for r in page] == [later.id, job.id] and total >= 2  # newest first
    cancelled, cancelled_total = store.jobs.page(job.user_id, CANCELLED, 500, 0)
    assert later.id in [r.id for r in cancelled] and job.id not in [r.id for r in cancelled]
    assert cancelled_total == len(cancelled) and store.jobs.page(other.id, None, 50, 0) == ([], 0)

    digest = hash_token("hm2bp_hot-path-test-" + new_id("t"))
    store.users.add_token(other.id, digest, "hm2bp_hot")
    found = store.users.by_token_hash(digest)
    assert (found.id, found.name) == (other.id, "someone-else")
    assert store.users.revoke_token(digest) and store.users.by_token_hash(digest) is None
