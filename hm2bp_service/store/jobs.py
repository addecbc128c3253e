"""Jobs and their leases, state transitions and per-epoch metrics.

Every state change is a conditional UPDATE (``WHERE state IN (...)``), so a late writer can never
overwrite a terminal state; it is stored with a transition row and a ``state`` event (and, for a
terminal state, the webhook outbox row) in the same transaction.

The API's hot paths (job status and list, submit) run Core statements built once, on a pooled
connection: the ORM's per-call statement building, unit of work and object loading cost 3-6x the
query itself there (~1 ms a statement on a 2-core machine; benchmarks/load.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..states import LEASED, TERMINAL, JobState
from .database import Database, rowcount
from .events import append_event
from .records import Event, JobRecord, Lease, LeaseRecord, TransitionRecord
from .schema import Job, JobEpoch, JobEvent, JobLease, JobTransition, User, table_of, utcnow
from .webhooks import add_delivery

QUEUED, RUNNING = JobState.QUEUED, JobState.RUNNING
_jobs = table_of(Job)
_users = table_of(User)
_WAITING = select(_jobs.c.id).where(_jobs.c.queue == bindparam("queue"), _jobs.c.state == QUEUED.value,
                                    _jobs.c.dispatched_at.is_(None))
_COUNT_QUEUED = select(func.count()).select_from(_jobs).where(_jobs.c.user_id == bindparam("user_id"),
                                                              _jobs.c.state == QUEUED.value)
_OWNED_JOB = select(_jobs).where(_jobs.c.user_id == bindparam("user_id"), _jobs.c.id == bindparam("job_id"))
_JOB_BY_IDEMPOTENCY_KEY = select(_jobs).where(_jobs.c.user_id == bindparam("user_id"),
                                              _jobs.c.idempotency_key == bindparam("key"))
_MARK_DISPATCHED = update(_jobs).where(_jobs.c.id == bindparam("job_id")).values(dispatched_at=bindparam("at"))
_INSERT_JOB = insert(_jobs)
_INSERT_TRANSITION = insert(table_of(JobTransition))
_INSERT_EVENT = insert(table_of(JobEvent))


def _jobs_page(state: bool) -> tuple[Any, Any]:
    """The caller's jobs (of one state), newest first: the count and the page."""
    where = [_jobs.c.user_id == bindparam("user_id")] + ([_jobs.c.state == bindparam("state")] if state else [])
    return (select(func.count()).select_from(_jobs).where(*where),
            select(_jobs).where(*where).order_by(_jobs.c.created_at.desc(), _jobs.c.id)
            .limit(bindparam("limit")).offset(bindparam("offset")))


_JOBS_PAGE = {state: _jobs_page(state) for state in (False, True)}


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


class QueueLimit(Exception):
    """The user already has ``queued`` queued jobs, as many as the limit."""

    def __init__(self, queued: int):
        super().__init__(queued)
        self.queued = queued


def lock_user(connection: Connection, user_id: int) -> None:
    """Serialise the write transactions of one user (SQLite's BEGIN IMMEDIATE already serialises all)."""
    if connection.dialect.name != "sqlite":
        connection.execute(select(_users.c.id).where(_users.c.id == user_id).with_for_update())


def lock_dispatch(connection: Connection) -> None:
    """Serialise dispatchers for the rest of the transaction (SQLite: BEGIN IMMEDIATE did)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(4242020)"))


@dataclass(frozen=True)
class NewJob:
    """A job about to be queued: what its submitter decided; the store adds state and times."""

    id: str
    user_id: int
    name: str
    dataset: str
    spec: dict[str, Any]
    queue: str
    max_attempts: int
    tags: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    request_hash: str | None = None
    webhook_url: str | None = None
    sweep_id: str | None = None
    sweep_params: dict[str, Any] | None = None


def insert_queued(connection: Connection, jobs: list[NewJob], reason: str) -> list[JobRecord]:
    """Insert ``jobs`` queued, each with its first transition and ``state`` event (seq 1), in the
    caller's transaction; their records. ``created_at`` keeps the list's order (a sweep's grid order)."""
    now, records = utcnow(), []
    for index, new in enumerate(jobs):
        at = now + timedelta(microseconds=index)
        values = {**asdict(new), "state": QUEUED.value, "event_seq": 1, "attempts": 0, "cancel_requested": False,
                  "progress": None, "resources": None, "metrics": None, "error": None, "lease_owner": None,
                  "lease_until": None,
                  "dispatched_at": None, "created_at": at, "started_at": None, "finished_at": None}
        connection.execute(_INSERT_JOB, values)
        connection.execute(_INSERT_TRANSITION, {"job_id": new.id, "from_state": None, "to_state": QUEUED.value,
                                                "reason": reason, "at": at})
        connection.execute(_INSERT_EVENT, {"job_id": new.id, "seq": 1, "type": "state", "at": at,
                                           "data": {"state": QUEUED.value, "reason": reason}})
        records.append(JobRecord(**values))
    return records


def _release_leases(session: Session, job_id: str) -> None:
    """The job's lease was cleared (or taken over once expired): its open lease rows end now, or
    at their expiry when that came first."""
    now = utcnow()
    for lease in session.scalars(select(JobLease).where(JobLease.job_id == job_id, JobLease.released_at.is_(None))):
        lease.released_at = min(now, lease.until)


class Jobs:
    def __init__(self, db: Database):
        self.db = db

    # ------------------------------------------------------------------ creation and reads
    def create(self, new: NewJob, max_queued: int | None = None) -> tuple[JobRecord, bool]:
        """Queue ``new`` and return its record; with an Idempotency-Key already used by this user,
        the earlier job (created False), or IdempotencyConflict when the earlier request differed.
        QueueLimit when the user has ``max_queued`` queued jobs already (counted in the insert's
        transaction, so parallel submits cannot pass the limit together)."""
        if new.idempotency_key is not None:
            earlier = self._by_idempotency_key(new.user_id, new.idempotency_key)
            if earlier is not None:
                return self._replay(earlier, new), False
        try:
            with self.db.write_connection() as connection:
                if max_queued is not None:
                    lock_user(connection, new.user_id)
                    queued = int(connection.execute(_COUNT_QUEUED, {"user_id": new.user_id}).scalar() or 0)
                    if queued >= max_queued:
                        raise QueueLimit(queued)
                return insert_queued(connection, [new], "submitted")[0], True
        except IntegrityError:
            earlier = self._by_idempotency_key(new.user_id, new.idempotency_key) if new.idempotency_key else None
            if earlier is None:
                raise
            return self._replay(earlier, new), False

    @staticmethod
    def _replay(earlier: JobRecord, new: NewJob) -> JobRecord:
        if earlier.request_hash != new.request_hash:
            raise IdempotencyConflict(new.idempotency_key)
        return earlier

    def _by_idempotency_key(self, user_id: int, key: str) -> JobRecord | None:
        with self.db.connect() as connection:
            row = connection.execute(_JOB_BY_IDEMPOTENCY_KEY, {"user_id": user_id, "key": key}).first()
        return JobRecord.of(row) if row is not None else None

    def by_id(self, job_id: str) -> JobRecord | None:
        with self.db.connect() as connection:
            row = connection.execute(select(_jobs).where(_jobs.c.id == job_id)).first()
        return JobRecord.of(row) if row is not None else None

    def get(self, user_id: int, job_id: str) -> JobRecord | None:
        """The user's job (None for another user's)."""
        with self.db.connect() as connection:
            row = connection.execute(_OWNED_JOB, {"user_id": user_id, "job_id": job_id}).first()
        return JobRecord.of(row) if row is not None else None

    def page(self, user_id: int, state: str | None, limit: int, offset: int) -> tuple[list[JobRecord], int]:
        """A page of the user's jobs (of one state), newest first, and their total count."""
        count, page = _JOBS_PAGE[state is not None]
        params = {"user_id": user_id, "state": state, "limit": limit, "offset": offset}
        with self.db.connect() as connection, connection.begin():  # one snapshot for both
            total = connection.execute(count, params).scalar()
            return [JobRecord.of(row) for row in connection.execute(page, params)], int(total or 0)

    def of_sweeps(self, sweep_ids: list[str]) -> dict[str, list[JobRecord]]:
        """The jobs of each sweep, in the order they were made (grid order)."""
        found: dict[str, list[JobRecord]] = {sweep_id: [] for sweep_id in sweep_ids}
        if sweep_ids:
            with self.db.connect() as connection:
                for row in connection.execute(select(_jobs).where(_jobs.c.sweep_id.in_(sweep_ids))
                                              .order_by(_jobs.c.created_at, _jobs.c.id)):
                    found[row.sweep_id].append(JobRecord.of(row))
        return found

    def run_by(self, worker_names: list[str]) -> dict[str, list[JobRecord]]:
        """The leased jobs of each Celery worker (lease owners are ``NAME:pid:task``)."""
        found: dict[str, list[JobRecord]] = {name: [] for name in worker_names}
        if not worker_names:
            return found
        with self.db.connect() as connection:
            rows = connection.execute(select(_jobs).where(_jobs.c.state.in_(LEASED), or_(
                *[_jobs.c.lease_owner.startswith(f"{name}:", autoescape=True) for name in worker_names])))
            for row in rows:
                name = (row.lease_owner or "").rsplit(":", 2)[0]
                if name in found:
                    found[name].append(JobRecord.of(row))
        return found

    def count_queued(self, user_id: int) -> int:
        with self.db.connect() as connection:
            return int(connection.execute(_COUNT_QUEUED, {"user_id": user_id}).scalar() or 0)

    def count_by_state(self) -> dict[str, int]:
        with self.db.reading() as session:
            return {state: count
                    for state, count in session.execute(select(Job.state, func.count()).group_by(Job.state))}

    # ------------------------------------------------------------------ dispatch
    def mark_dispatched(self, job_id: str) -> None:
        with self.db.write_connection() as connection:
            connection.execute(_MARK_DISPATCHED, {"job_id": job_id, "at": utcnow()})

    def stale_dispatched(self, queue: str, before: datetime) -> list[JobRecord]:
        """Queued jobs of ``queue`` sent to the broker before ``before`` and not taken since, oldest first."""
        with self.db.connect() as connection:
            return [JobRecord.of(row) for row in connection.execute(
                select(_jobs).where(_jobs.c.queue == queue, _jobs.c.state == QUEUED.value,
                                    _jobs.c.dispatched_at < before).order_by(_jobs.c.dispatched_at))]

    def unmark_dispatched(self, job_id: str) -> None:
        """The job's message could not be sent: it waits again (a later ``claim_fair`` picks it)."""
        with self.db.write_connection() as connection:
            connection.execute(update(_jobs).where(_jobs.c.id == job_id, _jobs.c.state == QUEUED.value)
                               .values(dispatched_at=None))

    def claim_fair(self, queue: str, slots: int, max_running: int) -> list[JobRecord]:
        """Mark waiting jobs of ``queue`` dispatched, fairest first, until ``slots`` of them are
        dispatched and not yet started; the jobs marked now, to be sent in this order.

        Waiting: queued and never sent. Fairest: the job of the user with the fewest jobs running
        or dispatched (any queue), then the user whose oldest waiting job is oldest; a user with
        ``max_running`` such jobs gets none. Dispatchers take turns (one transaction at a time)."""
        with self.db.connect() as connection:  # most calls find nothing waiting: no write lock for them
            if connection.execute(_WAITING.limit(1), {"queue": queue}).first() is None:
                return []
        with self.db.write_connection() as connection:
            lock_dispatch(connection)
            sent = _jobs.c.dispatched_at.is_not(None)
            pending = int(connection.execute(select(func.count()).select_from(_jobs).where(
                _jobs.c.queue == queue, _jobs.c.state == QUEUED.value, sent)).scalar() or 0)
            if pending >= slots:
                return []
            load: dict[int, int] = dict(connection.execute(
                select(_jobs.c.user_id, func.count()).where(or_(_jobs.c.state.in_([s.value for s in LEASED]),
                                                               (_jobs.c.state == QUEUED.value) & sent))
                .group_by(_jobs.c.user_id)).all())
            waiting: dict[int, list[str]] = {}
            for job_id, user_id in connection.execute(
                    select(_jobs.c.id, _jobs.c.user_id).where(_jobs.c.queue == queue, _jobs.c.state == QUEUED.value,
                                                              _jobs.c.dispatched_at.is_(None))
                    .order_by(_jobs.c.created_at, _jobs.c.id)):
                waiting.setdefault(user_id, []).append(job_id)
            order = list(waiting)  # users by their oldest waiting job
            chosen: list[str] = []
            while pending + len(chosen) < slots:
                ready = [user for user in order if waiting[user] and load.get(user, 0) < max_running]
                if not ready:
                    break
                user = min(ready, key=lambda u: load.get(u, 0))  # min keeps the first of equals: the oldest
                chosen.append(waiting[user].pop(0))
                load[user] = load.get(user, 0) + 1
            if chosen:
                connection.execute(update(_jobs).where(_jobs.c.id.in_(chosen)).values(dispatched_at=utcnow()))
                rows = {row.id: JobRecord.of(row) for row in connection.execute(
                    select(_jobs).where(_jobs.c.id.in_(chosen)))}
                return [rows[job_id] for job_id in chosen]
            return []

    # ------------------------------------------------------------------ state
    def transition(self, job_id: str, to_state: JobState, reason: str, *, expect: tuple[JobState, ...],
                   owner: str | None = None, lease_expired: bool = False,
                   values: dict[str, Any] | None = None) -> Event | None:
        """Move the job to ``to_state`` if it is in one of ``expect`` (and, with ``owner``, still
        leased by it; with ``lease_expired``, only while its lease is expired); store the
        transition and a ``state`` event. None when nothing changed."""
        fields: dict[str, Any] = {"state": to_state, **(values or {})}
        if to_state not in LEASED:
            fields["resources"] = None  # sampled from a run; there is none now
        if to_state in TERMINAL:
            fields.update(finished_at=utcnow(), lease_owner=None, lease_until=None)
        with self.db.writing() as session:
            current = session.scalar(select(Job.state).where(Job.id == job_id))
            query = update(Job).where(Job.id == job_id, Job.state.in_(expect))
            if owner is not None:
                query = query.where(Job.lease_owner == owner)
            if lease_expired:
                query = query.where(Job.lease_until < utcnow())
            if rowcount(session.execute(query.values(**fields))) == 0:
                return None
            if "lease_owner" in fields and fields["lease_owner"] is None:
                _release_leases(session, job_id)
            session.add(JobTransition(job_id=job_id, from_state=current, to_state=to_state, reason=reason))
            data: dict[str, Any] = {"state": to_state.value, "reason": reason}
            if "error" in fields:
                data["error"] = fields["error"]
            if to_state in TERMINAL:
                add_delivery(session, job_id)
            return append_event(session, job_id, "state", data)

    def transitions(self, job_id: str) -> list[TransitionRecord]:
        with self.db.reading() as session:
            return [TransitionRecord.of(row) for row in session.scalars(
                select(JobTransition).where(JobTransition.job_id == job_id).order_by(JobTransition.id))]

    # ------------------------------------------------------------------ leases
    def acquire_lease(self, job_id: str, owner: str, seconds: float) -> Lease:
        """Take the job for ``owner``: a queued job, or a running one whose lease expired (its
        worker was lost and the broker redelivered it). Counts an attempt; a job that has used
        ``max_attempts`` is not taken (the sweeper gives it up). A live lease held by someone else
        wins: the caller must not train (duplicate delivery)."""
        now = utcnow()
        with self.db.writing() as session:
            job = session.get(Job, job_id)
            if job is None:
                return Lease(None, "no such job")
            if job.state not in (QUEUED, RUNNING):
                return Lease(None, f"job is {job.state}")
            if job.state == RUNNING and job.lease_until is not None and job.lease_until > now:
                return Lease(None, f"job is leased by {job.lease_owner} until {job.lease_until.isoformat()}")
            if job.attempts >= job.max_attempts:
                return Lease(None, f"no attempt left ({job.attempts} of {job.max_attempts}); the sweeper gives it up")
            previous, attempt = job.state, job.attempts + 1
            taken = rowcount(session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == previous,
                       or_(Job.lease_until.is_(None), Job.lease_until <= now, Job.state == QUEUED))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds), attempts=Job.attempts + 1,
                        state=RUNNING if previous == QUEUED else previous,
                        started_at=func.coalesce(Job.started_at, now))
            ))
            if not taken:
                return Lease(None, "another worker took the job first")
            _release_leases(session, job_id)  # an expired one, whose holder was lost
            session.add(JobLease(job_id=job_id, owner=owner, attempt=attempt, taken_at=now,
                                 until=now + timedelta(seconds=seconds)))
            if previous == QUEUED:
                reason = f"started by {owner}"
                session.add(JobTransition(job_id=job_id, from_state=QUEUED, to_state=RUNNING, reason=reason))
                append_event(session, job_id, "state", {"state": RUNNING.value, "reason": reason})
        return Lease(self.by_id(job_id), "taken")

    def renew_lease(self, job_id: str, owner: str, seconds: float) -> JobRecord | None:
        """Extend the lease; None when ``owner`` lost it (the sweeper re-queued the job, or it ended)."""
        until = utcnow() + timedelta(seconds=seconds)
        with self.db.writing() as session:
            renewed = rowcount(session.execute(
                update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.state.in_(LEASED))
                .values(lease_until=until)
            ))
            if renewed:
                session.execute(update(JobLease).where(JobLease.job_id == job_id, JobLease.owner == owner,
                                                       JobLease.released_at.is_(None)).values(until=until))
            row = session.get(Job, job_id) if renewed else None
            return JobRecord.of(row) if row is not None else None

    def leases(self, job_id: str) -> list[LeaseRecord]:
        """Every lease the job was given, oldest first."""
        with self.db.reading() as session:
            return [LeaseRecord.of(row) for row in session.scalars(
                select(JobLease).where(JobLease.job_id == job_id).order_by(JobLease.id))]

    def expired_leases(self) -> list[JobRecord]:
        with self.db.connect() as connection:
            return [JobRecord.of(row) for row in connection.execute(
                select(_jobs).where(_jobs.c.state.in_(LEASED), _jobs.c.lease_until < utcnow()))]

    # ------------------------------------------------------------------ progress and metrics
    def record_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self.db.writing() as session:
            session.execute(update(Job).where(Job.id == job_id).values(progress=progress))

    def record_resources(self, job_id: str, owner: str, resources: dict[str, Any]) -> None:
        """The run's latest CPU/memory sample, kept only while ``owner`` holds the job's lease."""
        with self.db.writing() as session:
            session.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.state.in_(LEASED))
                            .values(resources=resources))

    def record_epoch(self, job_id: str, row: dict[str, Any]) -> None:
        """Store an epoch's metrics (overwriting a row of the same epoch) and the job's summary."""
        with self.db.writing() as session:
            session.merge(JobEpoch(job_id=job_id, epoch=int(row["epoch"]), data=row))
            best = session.scalar(select(Job.metrics).where(Job.id == job_id)) or {}
            best_test = max(row["test_accuracy"], best.get("best_test_accuracy") or 0.0)
            session.execute(update(Job).where(Job.id == job_id).values(metrics={
                "epochs": int(row["epoch"]), "train_accuracy": row["train_accuracy"],
                "test_accuracy": row["test_accuracy"], "best_test_accuracy": best_test, "loss": row["loss"],
            }))

    def record_final_metrics(self, job_id: str, epochs: list[dict[str, Any]], final: dict[str, Any]) -> None:
        """The run's own metrics.json replaces the per-epoch rows (a resumed run's history is whole)."""
        with self.db.writing() as session:
            for row in epochs:
                session.merge(JobEpoch(job_id=job_id, epoch=int(row["epoch"]), data=row))
            session.execute(update(Job).where(Job.id == job_id).values(metrics=final))

    def epochs_of(self, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The epoch rows of each of ``job_ids``, in epoch order."""
        found: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
        if job_ids:
            with self.db.reading() as session:
                for row in session.scalars(select(JobEpoch).where(JobEpoch.job_id.in_(job_ids))
                                           .order_by(JobEpoch.job_id, JobEpoch.epoch)):
                    found[row.job_id].append(row.data)
        return found

    def epochs(self, job_id: str) -> list[dict[str, Any]]:
        with self.db.reading() as session:
            return [row.data for row in session.scalars(
                select(JobEpoch).where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch))]
