"""Sweeps: a base spec and a grid; their jobs carry ``sweep_id`` and their grid point."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select

from .database import Database
from .jobs import NewJob, insert_queued
from .records import JobRecord, SweepRecord
from .schema import Sweep, table_of, utcnow

_sweeps = table_of(Sweep)


class Sweeps:
    def __init__(self, db: Database):
        self.db = db

    def create(self, sweep_id: str, user_id: int, name: str, dataset: str, spec: dict[str, Any],
               grid: dict[str, Any], jobs: list[NewJob]) -> tuple[SweepRecord, list[JobRecord]]:
        """Insert the sweep and its queued jobs (``sweep_id`` set on each) in one transaction."""
        values: dict[str, Any] = {"id": sweep_id, "user_id": user_id, "name": name, "dataset": dataset,
                                  "spec": spec, "grid": grid, "created_at": utcnow()}
        with self.db.write_connection() as connection:
            connection.execute(insert(_sweeps), values)
            records = insert_queued(connection, jobs, f"submitted by sweep {sweep_id}")
        return SweepRecord(**values), records

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
