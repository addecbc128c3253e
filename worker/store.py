"""The job store: the system of record for users, tokens, datasets, jobs, their events and metrics.

SQLAlchemy 2 models plus ``JobStore``, whose methods are the only writers. Every state change is a
conditional UPDATE (``WHERE state IN (...)``), so a late writer can never overwrite a terminal
state, and it is stored with a transition row and a ``state`` event in the same transaction.
Events get a per-job sequence number (``jobs.event_seq``) that clients use as their resume cursor.
The schema is created by the Alembic migrations in ``worker/migrations`` (``migrate()``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE = (QUEUED, RUNNING, CANCELLING)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


WEBHOOK_SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # signs the user's webhook deliveries (HMAC-SHA256); kept in clear because signing needs it
    webhook_secret: Mapped[str | None] = mapped_column(String(64), nullable=True, default=new_webhook_secret)


class Token(Base):
    """An API token, stored as the sha256 of its text; ``prefix`` is the shown part for listing."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DatasetRow(Base):
    """An uploaded dataset of one user; the file is the artifact ``storage_key`` (shared by content)."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("user_id", "sha256", name="uq_datasets_user_sha256"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    format: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    num_train: Mapped[int] = mapped_column(Integer)
    num_test: Mapped[int] = mapped_column(Integer)
    num_classes: Mapped[int] = mapped_column(Integer)
    input_shape: Mapped[list[int]] = mapped_column(JSON)
    storage_key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_idempotency_key"),
                      Index("ix_jobs_user_created", "user_id", "created_at"))  # GET /v1/jobs: newest first
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    dataset: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    queue: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(256), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    sweep_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    sweep_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    event_seq: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobTransition(Base):
    __tablename__ = "job_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobEvent(Base):
    """One event of a job's stream (state, progress, epoch, log); ``seq`` is the client's cursor."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobEpoch(Base):
    """The metrics row of one finished epoch; a resumed run overwrites, never duplicates."""

    __tablename__ = "job_epochs"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class Sweep(Base):
    """A grid sweep: one job per point of ``grid`` over the base ``spec`` (jobs.sweep_id)."""

    __tablename__ = "sweeps"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    dataset: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    grid: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


PENDING, DELIVERED = "pending", "delivered"


class WebhookDelivery(Base):
    """One webhook notification of a job's terminal state (an outbox row written in the same
    transaction as the state): ``body`` is the exact JSON sent on every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("job_id", "event", name="uq_webhook_deliveries_job_event"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# The API's hot paths (token check, job status and list, submit) run these Core statements, built
# once, on a pooled connection. The ORM's per-call statement building, unit of work and object
# loading cost 3-6x the query itself there (~1 ms a statement on a 2-core machine, which made them
# most of a request's CPU time in benchmarks/load.py). Their reads return Rows of the table:
# read-only, with attribute access by column name like the mapped class.
JobRow = Row[Any]
_jobs, _tokens, _users = Job.__table__, Token.__table__, User.__table__
_USER_BY_TOKEN = (select(_users).join(_tokens, _tokens.c.user_id == _users.c.id)
                  .where(_tokens.c.token_hash == bindparam("token_hash"), _tokens.c.revoked_at.is_(None)))
_OWNED_JOB = select(_jobs).where(_jobs.c.user_id == bindparam("user_id"), _jobs.c.id == bindparam("job_id"))
_JOB_BY_IDEMPOTENCY_KEY = select(_jobs).where(_jobs.c.user_id == bindparam("user_id"),
                                              _jobs.c.idempotency_key == bindparam("key"))
_MARK_DISPATCHED = update(_jobs).where(_jobs.c.id == bindparam("job_id")).values(dispatched_at=bindparam("at"))
_INSERT_JOB = insert(_jobs)
_INSERT_TRANSITION = insert(JobTransition.__table__)
_INSERT_EVENT = insert(JobEvent.__table__)


def _jobs_page(state: bool) -> tuple[Any, Any]:
    """The caller's jobs (of one state), newest first: the count and the page."""
    where = [_jobs.c.user_id == bindparam("user_id")] + ([_jobs.c.state == bindparam("state")] if state else [])
    return (select(func.count()).select_from(_jobs).where(*where),
            select(_jobs).where(*where).order_by(_jobs.c.created_at.desc(), _jobs.c.id)
            .limit(bindparam("limit")).offset(bindparam("offset")))


_JOBS_PAGE = {state: _jobs_page(state) for state in (False, True)}


def _filled(row: Base) -> dict[str, Any]:
    """The column values of a new ``row``, with its columns' Python-side defaults filled in
    (on ``row`` too, which then reads like the inserted row)."""
    values = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if value is None and column.default is not None:
            value = column.default.arg if column.default.is_scalar else column.default.arg(None)
            setattr(row, column.key, value)
        values[column.key] = value
    return values


@dataclass(frozen=True)
class Event:
    """An event as clients see it: ``{"id": seq, "type", "at", "data"}``."""

    job_id: str
    seq: int
    type: str
    data: dict[str, Any]
    at: datetime

    def envelope(self) -> dict[str, Any]:
        return {"id": self.seq, "type": self.type, "at": self.at.isoformat(), "data": self.data}


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class Lease:
    """The outcome of ``JobStore.acquire_lease``: ``job`` when taken, else why not."""

    job: Job | None
    reason: str


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout, foreign keys, and write transactions that
    start with BEGIN IMMEDIATE (``JobStore`` asks for them), so concurrent writers queue
    instead of failing with "database is locked". ``synchronous=NORMAL`` (SQLite's advice for WAL)
    syncs at checkpoints instead of at every commit: no corruption on a crash of the process or
    the machine, only the last commits may be lost on power loss; a commit then costs ~0.01 ms
    instead of a disk flush (~6 ms here), which bounded submits to ~45/s."""
    if not url.startswith("sqlite"):
        # a pool as large as the API's concurrent database users (threadpool reads, writers): a
        # connection beyond pool_size is closed when returned, and every new PostgreSQL
        # connection forks a server process (under benchmarks/load.py the default 5 meant a new
        # connection for most requests). It only grows as far as it is used.
        return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=10)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get("write") else "BEGIN")

    return engine


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


class JobStore:
    """All reads and writes of the service's database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._writer = engine.execution_options(write=True)  # BEGIN IMMEDIATE on SQLite (make_engine)
        self._write = sessionmaker(self._writer, expire_on_commit=False)

    @property
    def local(self) -> bool:
        """A SQLite file: reads are local and never wait for a writer (WAL)."""
        return self.engine.dialect.name == "sqlite"

    @classmethod
    def from_url(cls, url: str) -> "JobStore":
        return cls(make_engine(url))

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        with self._write() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(select(1))

    # ------------------------------------------------------------------ users and tokens
    def ensure_user(self, name: str) -> User:
        with self.writing() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                user = User(name=name)
                session.add(user)
                session.flush()
            return user

    def add_token(self, user_id: int, token_hash: str, prefix: str) -> None:
        with self.writing() as session:
            session.add(Token(user_id=user_id, token_hash=token_hash, prefix=prefix))

    def user_for_token_hash(self, token_hash: str) -> User | None:
        """The user of a live (not revoked) token with this hash (checked on every request)."""
        with self.engine.connect() as connection:
            row = connection.execute(_USER_BY_TOKEN, {"token_hash": token_hash}).first()
        return User(**row._mapping) if row is not None else None

    def revoke_token(self, token_hash: str) -> bool:
        with self.writing() as session:
            result = session.execute(
                update(Token).where(Token.token_hash == token_hash, Token.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            return result.rowcount > 0

    # ------------------------------------------------------------------ datasets
    def add_dataset(self, row: DatasetRow) -> tuple[DatasetRow, bool]:
        """Insert ``row``; when the user already has a dataset with its sha256, that one (created False)."""
        try:
            with self.writing() as session:
                session.add(row)
            return row, True
        except IntegrityError:
            existing = self.dataset_by_sha256(row.user_id, row.sha256)
            if existing is None:
                raise
            return existing, False

    def dataset_by_sha256(self, user_id: int, sha256: str) -> DatasetRow | None:
        with self.reading() as session:
            return session.scalar(select(DatasetRow).where(DatasetRow.user_id == user_id, DatasetRow.sha256 == sha256))

    def get_dataset(self, user_id: int, dataset_id: str) -> DatasetRow | None:
        with self.reading() as session:
            return session.scalar(select(DatasetRow).where(DatasetRow.user_id == user_id, DatasetRow.id == dataset_id))

    def dataset_by_id(self, dataset_id: str) -> DatasetRow | None:
        with self.reading() as session:
            return session.get(DatasetRow, dataset_id)

    def list_datasets(self, user_id: int) -> list[DatasetRow]:
        with self.reading() as session:
            return list(session.scalars(
                select(DatasetRow).where(DatasetRow.user_id == user_id).order_by(DatasetRow.created_at.desc())
            ))

    def dataset_in_use(self, dataset_id: str) -> bool:
        """Whether a job that has not ended refers to the dataset."""
        with self.reading() as session:
            return session.scalar(
                select(func.count()).select_from(Job).where(Job.dataset == dataset_id, Job.state.in_(ACTIVE))
            ) > 0

    def delete_dataset(self, dataset_id: str) -> bool:
        """Delete the record; True when no other record still refers to its stored file."""
        with self.writing() as session:
            row = session.get(DatasetRow, dataset_id)
            if row is None:
                return False
            key = row.storage_key
            session.delete(row)
            session.flush()
            return session.scalar(select(func.count()).select_from(DatasetRow).where(DatasetRow.storage_key == key)) == 0

    # ------------------------------------------------------------------ jobs
    def create_job(self, job: Job) -> tuple[Job | JobRow, bool]:
        """Insert ``job`` queued, with its first transition and state event (seq 1), and return
        it (its defaults filled in); with an Idempotency-Key already used by this user, the
        earlier job (created False), or IdempotencyConflict when the earlier request differed."""
        if job.idempotency_key is not None:
            earlier = self._job_by_idempotency_key(job.user_id, job.idempotency_key)
            if earlier is not None:
                return self._idempotent_replay(earlier, job)
        job.state, job.event_seq = QUEUED, 1
        values = _filled(job)
        try:
            with self._writer.begin() as connection:
                connection.execute(_INSERT_JOB, values)
                connection.execute(_INSERT_TRANSITION, {"job_id": job.id, "from_state": None, "to_state": QUEUED,
                                                        "reason": "submitted", "at": job.created_at})
                connection.execute(_INSERT_EVENT, {"job_id": job.id, "seq": 1, "type": "state", "at": job.created_at,
                                                   "data": {"state": QUEUED, "reason": "submitted"}})
        except IntegrityError:
            earlier = self._job_by_idempotency_key(job.user_id, job.idempotency_key) if job.idempotency_key else None
            if earlier is None:
                raise
            return self._idempotent_replay(earlier, job)
        return job, True

    @staticmethod
    def _idempotent_replay(earlier: JobRow, job: Job) -> tuple[JobRow, bool]:
        if earlier.request_hash != job.request_hash:
            raise IdempotencyConflict(job.idempotency_key)
        return earlier, False

    def _job_by_idempotency_key(self, user_id: int, key: str) -> JobRow | None:
        with self.engine.connect() as connection:
            return connection.execute(_JOB_BY_IDEMPOTENCY_KEY, {"user_id": user_id, "key": key}).first()

    def job_by_id(self, job_id: str) -> Job | None:
        with self.reading() as session:
            return session.get(Job, job_id)

    def get_job(self, user_id: int, job_id: str) -> JobRow | None:
        """The user's job (None for another user's)."""
        with self.engine.connect() as connection:
            return connection.execute(_OWNED_JOB, {"user_id": user_id, "job_id": job_id}).first()

    def list_jobs(self, user_id: int, state: str | None, limit: int, offset: int) -> tuple[list[JobRow], int]:
        """A page of the user's jobs (of one state), newest first, and their total count."""
        count, page = _JOBS_PAGE[state is not None]
        params = {"user_id": user_id, "state": state, "limit": limit, "offset": offset}
        with self.engine.connect() as connection, connection.begin():  # one snapshot for both
            total = connection.execute(count, params).scalar()
            return connection.execute(page, params).all(), int(total or 0)

    def mark_dispatched(self, job_id: str) -> None:
        with self._writer.begin() as connection:
            connection.execute(_MARK_DISPATCHED, {"job_id": job_id, "at": utcnow()})

    def undispatched(self, older_than: float) -> list[Job]:
        """Queued jobs whose Celery message was never sent (the broker was down at submission)."""
        cutoff = utcnow() - timedelta(seconds=older_than)
        with self.reading() as session:
            return list(session.scalars(
                select(Job).where(Job.state == QUEUED, Job.dispatched_at.is_(None), Job.created_at < cutoff)
            ))

    def request_cancel(self, user_id: int, job_id: str) -> Job | None:
        """Cancel: a queued job is cancelled at once, a running one becomes ``cancelling`` (its
        supervisor stops the run); a job that has ended is left as it is."""
        for _ in range(3):  # the state may move under us (a worker starts the job): look again
            job = self.get_job(user_id, job_id)
            if job is None or job.state not in (QUEUED, RUNNING):
                return job
            if job.state == QUEUED:
                changed = self.transition(job_id, CANCELLED, "cancelled by the user before it started", expect=(QUEUED,))
            else:
                changed = self.transition(job_id, CANCELLING, "cancel requested by the user", expect=(RUNNING,),
                                          values={"cancel_requested": True})
            if changed is not None:
                break
        return self.job_by_id(job_id)

    def transition(self, job_id: str, to_state: str, reason: str, *, expect: tuple[str, ...],
                   owner: str | None = None, lease_expired: bool = False,
                   values: dict[str, Any] | None = None) -> Event | None:
        """Move the job to ``to_state`` if it is in one of ``expect`` (and, with ``owner``, still
        leased by it; with ``lease_expired``, only while its lease is expired); store the
        transition and a ``state`` event. None when nothing changed."""
        fields: dict[str, Any] = {"state": to_state, **(values or {})}
        if to_state in TERMINAL:
            fields.update(finished_at=utcnow(), lease_owner=None, lease_until=None)
        with self.writing() as session:
            current = session.scalar(select(Job.state).where(Job.id == job_id))
            query = update(Job).where(Job.id == job_id, Job.state.in_(expect))
            if owner is not None:
                query = query.where(Job.lease_owner == owner)
            if lease_expired:
                query = query.where(Job.lease_until < utcnow())
            if session.execute(query.values(**fields)).rowcount == 0:
                return None
            session.add(JobTransition(job_id=job_id, from_state=current, to_state=to_state, reason=reason))
            data = {"state": to_state, "reason": reason}
            if "error" in fields:
                data["error"] = fields["error"]
            if to_state in TERMINAL:
                self._add_webhook(session, job_id)
            return self._append_event(session, job_id, "state", data)

    @staticmethod
    def _add_webhook(session: Session, job_id: str) -> None:
        """The outbox row of a job's terminal-state webhook, in the transaction that ends the job
        (so there is exactly one per terminal state, and none is lost if the process dies now)."""
        job = session.get(Job, job_id)
        if job is None or not job.webhook_url:
            return
        delivery_id, event = new_id("whd"), f"job.{job.state}"
        body = {"id": delivery_id, "type": event, "created_at": utcnow().isoformat(), "job": {
            "id": job.id, "name": job.name, "state": job.state, "dataset": job.dataset, "tags": job.tags,
            "sweep_id": job.sweep_id, "metrics": job.metrics, "error": job.error, "attempts": job.attempts,
            "created_at": job.created_at.isoformat() if job.created_at else None,
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None}}
        session.add(WebhookDelivery(id=delivery_id, job_id=job.id, url=job.webhook_url, event=event,
                                    body=json.dumps(body, separators=(",", ":")), state=PENDING))

    def acquire_lease(self, job_id: str, owner: str, seconds: float) -> Lease:
        """Take the job for ``owner``: a queued job, or a running one whose lease expired (its
        worker was lost and the broker redelivered it). Counts an attempt. A live lease held by
        someone else wins: the caller must not train (duplicate delivery)."""
        now = utcnow()
        with self.writing() as session:
            job = session.get(Job, job_id)
            if job is None:
                return Lease(None, "no such job")
            if job.state not in (QUEUED, RUNNING):
                return Lease(None, f"job is {job.state}")
            if job.state == RUNNING and job.lease_until is not None and job.lease_until > now:
                return Lease(None, f"job is leased by {job.lease_owner} until {job.lease_until.isoformat()}")
            previous = job.state
            taken = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == previous,
                       or_(Job.lease_until.is_(None), Job.lease_until <= now, Job.state == QUEUED))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=seconds), attempts=Job.attempts + 1,
                        state=RUNNING if previous == QUEUED else previous, started_at=func.coalesce(Job.started_at, now))
            ).rowcount
            if not taken:
                return Lease(None, "another worker took the job first")
            if previous == QUEUED:
                reason = f"started by {owner}"
                session.add(JobTransition(job_id=job_id, from_state=QUEUED, to_state=RUNNING, reason=reason))
                self._append_event(session, job_id, "state", {"state": RUNNING, "reason": reason})
        return Lease(self.job_by_id(job_id), "taken")

    def renew_lease(self, job_id: str, owner: str, seconds: float) -> Job | None:
        """Extend the lease; None when ``owner`` lost it (the sweeper re-queued the job, or it ended)."""
        with self.writing() as session:
            renewed = session.execute(
                update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.state.in_((RUNNING, CANCELLING)))
                .values(lease_until=utcnow() + timedelta(seconds=seconds))
            ).rowcount
            return session.get(Job, job_id) if renewed else None

    def expired_leases(self) -> list[Job]:
        with self.reading() as session:
            return list(session.scalars(
                select(Job).where(Job.state.in_((RUNNING, CANCELLING)), Job.lease_until < utcnow())
            ))

    def record_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self.writing() as session:
            session.execute(update(Job).where(Job.id == job_id).values(progress=progress))

    def record_epoch(self, job_id: str, row: dict[str, Any]) -> None:
        """Store an epoch's metrics (overwriting a row of the same epoch) and the job's summary."""
        with self.writing() as session:
            session.merge(JobEpoch(job_id=job_id, epoch=int(row["epoch"]), data=row))
            best = session.scalar(select(Job.metrics).where(Job.id == job_id)) or {}
            best_test = max(row["test_accuracy"], best.get("best_test_accuracy") or 0.0)
            session.execute(update(Job).where(Job.id == job_id).values(metrics={
                "epochs": int(row["epoch"]), "train_accuracy": row["train_accuracy"],
                "test_accuracy": row["test_accuracy"], "best_test_accuracy": best_test, "loss": row["loss"],
            }))

    def record_final_metrics(self, job_id: str, epochs: list[dict[str, Any]], final: dict[str, Any]) -> None:
        """The run's own metrics.json replaces the per-epoch rows (a resumed run's history is whole)."""
        with self.writing() as session:
            for row in epochs:
                session.merge(JobEpoch(job_id=job_id, epoch=int(row["epoch"]), data=row))
            session.execute(update(Job).where(Job.id == job_id).values(metrics=final))

    def epochs(self, job_id: str) -> list[dict[str, Any]]:
        with self.reading() as session:
            return [row.data for row in session.scalars(
                select(JobEpoch).where(JobEpoch.job_id == job_id).order_by(JobEpoch.epoch)
            )]

    def transitions(self, job_id: str) -> list[JobTransition]:
        with self.reading() as session:
            return list(session.scalars(
                select(JobTransition).where(JobTransition.job_id == job_id).order_by(JobTransition.id)
            ))

    def count_by_state(self) -> dict[str, int]:
        with self.reading() as session:
            return {state: count for state, count in session.execute(select(Job.state, func.count()).group_by(Job.state))}

    # ------------------------------------------------------------------ events
    def append_event(self, job_id: str, type_: str, data: dict[str, Any]) -> Event:
        with self.writing() as session:
            return self._append_event(session, job_id, type_, data)

    @staticmethod
    def _append_event(session: Session, job_id: str, type_: str, data: dict[str, Any]) -> Event:
        seq = session.execute(
            update(Job).where(Job.id == job_id).values(event_seq=Job.event_seq + 1).returning(Job.event_seq)
        ).scalar_one()
        row = JobEvent(job_id=job_id, seq=seq, type=type_, data=data, at=utcnow())
        session.add(row)
        return Event(job_id, seq, type_, data, row.at)

    def events_after(self, job_id: str, after: int, *, types: tuple[str, ...] | None = None,
                     limit: int = 1000) -> list[Event]:
        query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after)
        if types:
            query = query.where(JobEvent.type.in_(types))
        with self.reading() as session:
            rows = session.scalars(query.order_by(JobEvent.seq).limit(limit))
            return [Event(job_id, row.seq, row.type, row.data, row.at) for row in rows]

    def last_logs(self, job_id: str, count: int) -> list[str]:
        with self.reading() as session:
            rows = session.scalars(
                select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "log")
                .order_by(JobEvent.seq.desc()).limit(count)
            )
            return [data.get("message", "") for data in reversed(list(rows))]


    # ------------------------------------------------------------------ webhooks
    def webhook_secret(self, user_id: int) -> str:
        """The user's webhook signing secret (made now if the user has none yet)."""
        with self.writing() as session:
            user = session.get(User, user_id)
            if user.webhook_secret is None:
                user.webhook_secret = new_webhook_secret()
            return user.webhook_secret

    def rotate_webhook_secret(self, user_id: int) -> str:
        """A new secret; deliveries from now on (retries included) are signed with it."""
        with self.writing() as session:
            user = session.get(User, user_id)
            user.webhook_secret = new_webhook_secret()
            return user.webhook_secret

    def due_webhooks(self, limit: int = 20) -> list[WebhookDelivery]:
        with self.reading() as session:
            return list(session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= utcnow())
                .order_by(WebhookDelivery.next_attempt_at).limit(limit)
            ))

    def claim_webhook(self, delivery_id: str, hold_seconds: float) -> tuple[WebhookDelivery, str] | None:
        """Take a due delivery for one attempt (counted now; not due again for ``hold_seconds``,
        so a sender that dies mid-attempt only delays it): the delivery and the secret that signs
        it, or None when another process took it first."""
        now = utcnow()
        with self.writing() as session:
            taken = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == PENDING,
                       WebhookDelivery.next_attempt_at <= now)
                .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + timedelta(seconds=hold_seconds))
            ).rowcount
            if not taken:
                return None
            delivery = session.get(WebhookDelivery, delivery_id)
            secret = session.scalar(select(User.webhook_secret).join(Job, Job.user_id == User.id)
                                    .where(Job.id == delivery.job_id))
            if secret is None:
                secret = new_webhook_secret()
                session.execute(update(User).where(User.id == select(Job.user_id).where(Job.id == delivery.job_id)
                                                   .scalar_subquery()).values(webhook_secret=secret))
            return delivery, secret

    def record_webhook_attempt(self, delivery_id: str, *, delivered: bool, status: int | None, error: str | None,
                               retry_in: float | None) -> None:
        """The outcome of an attempt: delivered; due again in ``retry_in`` seconds; or (None) failed for good."""
        values: dict[str, Any] = {"last_status": status, "last_error": error}
        if delivered:
            values.update(state=DELIVERED, delivered_at=utcnow())
        elif retry_in is None:
            values.update(state=FAILED)
        else:
            values.update(next_attempt_at=utcnow() + timedelta(seconds=retry_in))
        with self.writing() as session:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))

    def webhook_deliveries(self, job_id: str) -> list[WebhookDelivery]:
        with self.reading() as session:
            return list(session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.created_at)
            ))

    # ------------------------------------------------------------------ sweeps
    def create_sweep(self, sweep: Sweep, jobs: list[Job]) -> Sweep:
        """Insert the sweep and its queued jobs (with their first transitions and state events) at once."""
        with self.writing() as session:
            session.add(sweep)
            session.flush()
            now = utcnow()
            for index, job in enumerate(jobs):  # created_at keeps grid order among the sweep's jobs
                job.state, job.sweep_id, job.created_at = QUEUED, sweep.id, now + timedelta(microseconds=index)
                session.add(job)
            session.flush()
            for job in jobs:
                session.add(JobTransition(job_id=job.id, from_state=None, to_state=QUEUED, reason=f"submitted by sweep {sweep.id}"))
                self._append_event(session, job.id, "state", {"state": QUEUED, "reason": f"submitted by sweep {sweep.id}"})
        return sweep

    def get_sweep(self, user_id: int, sweep_id: str) -> Sweep | None:
        with self.reading() as session:
            return session.scalar(select(Sweep).where(Sweep.user_id == user_id, Sweep.id == sweep_id))

    def list_sweeps(self, user_id: int, limit: int, offset: int) -> tuple[list[Sweep], int]:
        with self.reading() as session:
            total = session.scalar(select(func.count()).select_from(Sweep).where(Sweep.user_id == user_id))
            rows = session.scalars(select(Sweep).where(Sweep.user_id == user_id)
                                   .order_by(Sweep.created_at.desc(), Sweep.id).limit(limit).offset(offset))
            return list(rows), int(total or 0)

    def sweep_jobs(self, sweep_ids: list[str]) -> dict[str, list[Job]]:
        """The jobs of each sweep, in the order they were made (grid order)."""
        found: dict[str, list[Job]] = {sweep_id: [] for sweep_id in sweep_ids}
        if not sweep_ids:
            return found
        with self.reading() as session:
            for job in session.scalars(select(Job).where(Job.sweep_id.in_(sweep_ids)).order_by(Job.created_at, Job.id)):
                found[job.sweep_id].append(job)
        return found

    # ------------------------------------------------------------------ workers
    def jobs_run_by(self, worker_names: list[str]) -> dict[str, list[Job]]:
        """The running (or cancelling) jobs leased by each Celery worker (lease owners are
        ``NAME:pid:task``)."""
        found: dict[str, list[Job]] = {name: [] for name in worker_names}
        if not worker_names:
            return found
        with self.reading() as session:
            jobs = session.scalars(select(Job).where(Job.state.in_((RUNNING, CANCELLING)), or_(
                *[Job.lease_owner.startswith(f"{name}:", autoescape=True) for name in worker_names])))
            for job in jobs:
                name = (job.lease_owner or "").rsplit(":", 2)[0]
                if name in found:
                    found[name].append(job)
        return found
