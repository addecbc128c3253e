"""Job events in the database: every event of a job, numbered by the job's ``event_seq``.

``append_event`` runs inside the caller's transaction, so a state change and its ``state``
event are committed together; ``seq`` is the cursor clients resume from.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .database import Database
from .records import Event
from .schema import Job, JobEvent, utcnow


def append_event(session: Session, job_id: str, type_: str, data: dict[str, Any]) -> Event:
    """Number and add one event of ``job_id`` in ``session``'s transaction."""
    seq = session.execute(
        update(Job).where(Job.id == job_id).values(event_seq=Job.event_seq + 1).returning(Job.event_seq)
    ).scalar_one()
    row = JobEvent(job_id=job_id, seq=seq, type=type_, data=data, at=utcnow())
    session.add(row)
    return Event(job_id, seq, type_, data, row.at)


class Events:
    def __init__(self, db: Database):
        self.db = db

    def append(self, job_id: str, type_: str, data: dict[str, Any]) -> Event:
        with self.db.writing() as session:
            return append_event(session, job_id, type_, data)

    def after(self, job_id: str, after: int, *, types: tuple[str, ...] | None = None,
              limit: int = 1000) -> list[Event]:
        """Events of ``job_id`` with ``seq > after``, oldest first (of ``types`` only, when given)."""
        query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > after)
        if types:
            query = query.where(JobEvent.type.in_(types))
        with self.db.reading() as session:
            rows = session.scalars(query.order_by(JobEvent.seq).limit(limit))
            return [Event(job_id, row.seq, row.type, row.data, row.at) for row in rows]

    def last_logs(self, job_id: str, count: int) -> list[str]:
        """The messages of the job's last ``count`` log events, oldest first."""
        with self.db.reading() as session:
            rows = session.scalars(
                select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "log")
                .order_by(JobEvent.seq.desc()).limit(count)
            )
            return [data.get("message", "") for data in reversed(list(rows))]
