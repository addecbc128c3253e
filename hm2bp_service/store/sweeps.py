"""Sweeps: a base spec and a grid or a search; their jobs carry ``sweep_id`` and their point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, insert, select, update

from .database import Database
from .jobs import NewJob, insert_queued
from .records import JobRecord, SweepRecord
from .schema import Job, Sweep, table_of, utcnow

_sweeps = table_of(Sweep)
_jobs = table_of(Job)


class Sweeps:
    def __init__(self, db: Database):
        self.db = db

    def create(self, sweep_id: str, user_id: int, name: str, dataset: str, spec: dict[str, Any],
               grid: dict[str, Any], jobs: list[NewJob],
               search: dict[str, Any] | None = None) -> tuple[SweepRecord, list[JobRecord]]:
        """Insert the sweep and its queued jobs (``sweep_id`` set on each) in one transaction."""
        values: dict[str, Any] = {"id": sweep_id, "user_id": user_id, "name": name, "dataset": dataset,
                                  "spec": spec, "grid": grid, "created_at": utcnow(), "search": search,
                                  "cancelled_at": None, "done_at": None}
        with self.db.write_connection() as connection:
            connection.execute(insert(_sweeps), values)
            records = insert_queued(connection, jobs, f"submitted by sweep {sweep_id}")
        return SweepRecord(**values), records

    def add_trials(self, sweep_id: str,
                   make: Callable[[SweepRecord, list[JobRecord]], list[NewJob]]) -> list[JobRecord]:
        """Queue the jobs ``make(sweep, its jobs so far)`` returns, in one transaction that holds the
        sweep's row (``FOR UPDATE``; SQLite's write transactions are exclusive), so that racing
        callers never make the same trial twice. A cancelled or done sweep gets none."""
        with self.db.write_connection() as connection:
            row = connection.execute(select(_sweeps).where(_sweeps.c.id == sweep_id).with_for_update()).first()
            if row is None or row.cancelled_at is not None or row.done_at is not None:
                return []
            sweep = SweepRecord.of(row)
            jobs = [JobRecord.of(job) for job in connection.execute(
                select(_jobs).where(_jobs.c.sweep_id == sweep_id).order_by(_jobs.c.created_at, _jobs.c.id))]
            new = make(sweep, jobs)
            return insert_queued(connection, new, f"trial of sweep {sweep_id}") if new else []

    def mark(self, sweep_id: str, field: str) -> None:
        """Set ``cancelled_at`` or ``done_at`` (once)."""
        column = {"cancelled_at": _sweeps.c.cancelled_at, "done_at": _sweeps.c.done_at}[field]
        with self.db.write_connection() as connection:
            connection.execute(update(_sweeps).where(_sweeps.c.id == sweep_id, column.is_(None))
                               .values({field: utcnow()}))

    def open_searches(self) -> list[SweepRecord]:
        """Searches that may still make trials: neither cancelled nor done."""
        with self.db.connect() as connection:
            rows = connection.execute(select(_sweeps).where(_sweeps.c.search.is_not(None),
                                                            _sweeps.c.cancelled_at.is_(None),
                                                            _sweeps.c.done_at.is_(None)))
            return [SweepRecord.of(row) for row in rows if (row.search or {}).get("method", "grid") != "grid"]

    def by_id(self, sweep_id: str) -> SweepRecord | None:
        with self.db.connect() as connection:
            row = connection.execute(select(_sweeps).where(_sweeps.c.id == sweep_id)).first()
        return SweepRecord.of(row) if row is not None else None

    def get(self, user_id: int, sweep_id: str) -> SweepRecord | None:
        with self.db.connect() as connection:
            row = connection.execute(
                select(_sweeps).where(_sweeps.c.user_id == user_id, _sweeps.c.id == sweep_id)).first()
        return SweepRecord.of(row) if row is not None else None

    def page(self, user_id: int, limit: int, offset: int) -> tuple[list[SweepRecord], int]:
        """A page of the user's sweeps, newest first, and their total count."""
        with self.db.connect() as connection, connection.begin():
            total = connection.execute(
                select(func.count()).select_from(_sweeps).where(_sweeps.c.user_id == user_id)).scalar()
            rows = connection.execute(select(_sweeps).where(_sweeps.c.user_id == user_id)
                                      .order_by(_sweeps.c.created_at.desc(), _sweeps.c.id).limit(limit).offset(offset))
            return [SweepRecord.of(row) for row in rows], int(total or 0)
