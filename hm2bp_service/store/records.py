"""What the store's reads return: one frozen record type per aggregate, never an ORM object.

A record is a snapshot: it cannot be changed, and nothing about it touches the database again.
Each record has one field per column of its table (``tests/service/test_job_store.py`` checks
that they stay in step), so ``Record.of(row)`` builds one from an ORM object or a Core ``Row``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self

from ..states import JobState


class _Record:
    __slots__ = ()

    @classmethod
    def of(cls, row: Any) -> Self:
        """The record of an ORM object or a Core ``Row`` of the same table."""
        mapping = getattr(row, "_mapping", None)
        if mapping is not None:
            return cls(**mapping)
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class UserRecord(_Record):
    id: int
    name: str
    created_at: datetime
    webhook_secret_sealed: str | None


@dataclass(frozen=True, slots=True)
class DatasetRecord(_Record):
    """An uploaded dataset and the facts recorded at upload (fit checks read these, never the file)."""

    id: str
    user_id: int
    name: str
    format: str
    kind: str
    sha256: str
    size_bytes: int
    num_train: int
    num_test: int
    num_classes: int
    input_shape: list[int]
    time_steps: int | None
    storage_key: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JobRecord(_Record):
    id: str
    user_id: int
    name: str
    tags: list[str]
    dataset: str
    spec: dict[str, Any]
    queue: str
    state: JobState
    progress: dict[str, Any] | None
    resources: dict[str, Any] | None
    metrics: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_until: datetime | None
    cancel_requested: bool
    idempotency_key: str | None
    request_hash: str | None
    webhook_url: str | None
    sweep_id: str | None
    sweep_params: dict[str, Any] | None
    event_seq: int
    dispatched_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", JobState(self.state))


@dataclass(frozen=True, slots=True)
class TransitionRecord(_Record):
    id: int
    job_id: str
    from_state: str | None
    to_state: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LeaseRecord(_Record):
    id: int
    job_id: str
    owner: str
    attempt: int
    taken_at: datetime
    until: datetime
    released_at: datetime | None


@dataclass(frozen=True, slots=True)
class SweepRecord(_Record):
    id: str
    user_id: int
    name: str
    dataset: str
    spec: dict[str, Any]
    grid: dict[str, Any]
    created_at: datetime
    search: dict[str, Any] | None
    cancelled_at: datetime | None
    done_at: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookDeliveryRecord(_Record):
    id: str
    job_id: str
    url: str
    receiver: str
    event: str
    body: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class Event:
    """An event as clients see it: ``{"id": seq, "type", "at", "data"}``."""

    job_id: str
    seq: int
    type: str
    data: dict[str, Any]
    at: datetime

    def envelope(self) -> dict[str, Any]:
        return {"id": self.seq, "type": self.type, "at": self.at.isoformat(), "data": self.data}


@dataclass(frozen=True, slots=True)
class Lease:
    """The outcome of ``JobRepository.acquire_lease``: ``job`` when taken, else why not."""

    job: JobRecord | None
    reason: str
