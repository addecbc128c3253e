"""Uploaded datasets: one row per user and content (sha256); the file is an artifact shared by content."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..states import ACTIVE
from .database import Database
from .records import DatasetRecord
from .schema import DatasetRow, Job


class Datasets:
    def __init__(self, db: Database):
        self.db = db

    def add(self, new: DatasetRecord) -> tuple[DatasetRecord, bool]:
        """Record ``new`` (the facts its upload's check found); when the user already has a dataset
        with its sha256, that one (created False)."""
        try:
            with self.db.writing() as session:
                row = DatasetRow(**asdict(new))
                session.add(row)
                session.flush()
                return DatasetRecord.of(row), True
        except IntegrityError:
            existing = self.by_sha256(new.user_id, new.sha256)
            if existing is None:
                raise
            return existing, False

    def by_sha256(self, user_id: int, sha256: str) -> DatasetRecord | None:
        with self.db.reading() as session:
            row = session.scalar(select(DatasetRow).where(DatasetRow.user_id == user_id, DatasetRow.sha256 == sha256))
            return DatasetRecord.of(row) if row is not None else None

    def get(self, user_id: int, dataset_id: str) -> DatasetRecord | None:
        """The user's dataset (None for another user's)."""
        with self.db.reading() as session:
            row = session.scalar(select(DatasetRow).where(DatasetRow.user_id == user_id, DatasetRow.id == dataset_id))
            return DatasetRecord.of(row) if row is not None else None

    def by_id(self, dataset_id: str) -> DatasetRecord | None:
        with self.db.reading() as session:
            row = session.get(DatasetRow, dataset_id)
            return DatasetRecord.of(row) if row is not None else None

    def of_user(self, user_id: int) -> list[DatasetRecord]:
        """The user's datasets, newest first."""
        with self.db.reading() as session:
            return [DatasetRecord.of(row) for row in session.scalars(
                select(DatasetRow).where(DatasetRow.user_id == user_id).order_by(DatasetRow.created_at.desc()))]

    def in_use(self, dataset_id: str) -> bool:
        """Whether a job that has not ended refers to the dataset."""
        with self.db.reading() as session:
            return session.execute(
                select(func.count()).select_from(Job).where(Job.dataset == dataset_id, Job.state.in_(ACTIVE))
            ).scalar_one() > 0

    def delete(self, dataset_id: str) -> bool:
        """Delete the record; True when no other record still refers to its stored file."""
        with self.db.writing() as session:
            row = session.get(DatasetRow, dataset_id)
            if row is None:
                return False
            key = row.storage_key
            session.delete(row)
            session.flush()
            return session.scalar(
                select(func.count()).select_from(DatasetRow).where(DatasetRow.storage_key == key)) == 0
