"""Uploaded datasets: one row per user and content (sha256); the file is an artifact shared by content.

A stored file is reference-counted (``dataset_files``) in the transactions that add and delete
its rows, and it is put in place and removed while that count's row is locked (PostgreSQL: FOR
UPDATE; SQLite: every write transaction holds the database's lock). So no interleaving of an
upload and a delete of the same content (by two users) leaves a record whose file is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..states import ACTIVE
from .database import Database
from .records import DatasetRecord
from .schema import DatasetFile, DatasetRow, Job, User

ADD_TRIES = 5  # two first uploads of one content race to insert its file row: the loser tries again


class StorageLimit(Exception):
    """The user's datasets would take more than the limit: ``stored`` bytes are taken already."""

    def __init__(self, stored: int):
        super().__init__(stored)
        self.stored = stored


def locked_file(session: Session, key: str) -> DatasetFile | None:
    return session.scalar(select(DatasetFile).where(DatasetFile.storage_key == key).with_for_update())


class Datasets:
    def __init__(self, db: Database):
        self.db = db

    def add(self, new: DatasetRecord, put_file: Callable[[], None],
            max_stored_bytes: int | None = None) -> tuple[DatasetRecord, bool]:
        """Record ``new`` (the facts its upload's check found) and count a reference to its file;
        ``put_file()`` stores the file and is called (with the count's row locked) when the file is
        not stored yet. When the user already has a dataset with its sha256, that one (created
        False). StorageLimit when the user's datasets would pass ``max_stored_bytes``."""
        for attempt in range(ADD_TRIES):
            try:
                with self.db.writing() as session:
                    if max_stored_bytes is not None:
                        self._check_storage(session, new, max_stored_bytes)
                    stored = locked_file(session, new.storage_key)
                    if stored is None:
                        stored = DatasetFile(storage_key=new.storage_key, refs=0)
                        session.add(stored)
                        session.flush()  # a racing first upload of this content fails here (and tries again)
                    if stored.refs == 0:
                        put_file()
                    row = DatasetRow(**asdict(new))
                    session.add(row)
                    session.flush()
                    stored.refs += 1
                    return DatasetRecord.of(row), True
            except IntegrityError:
                existing = self.by_sha256(new.user_id, new.sha256)
                if existing is not None:
                    return existing, False
                if attempt == ADD_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _check_storage(session: Session, new: DatasetRecord, limit: int) -> None:
        if session.get_bind().dialect.name != "sqlite":  # parallel uploads of one user count one by one
            session.execute(select(User.id).where(User.id == new.user_id).with_for_update())
        stored = int(session.scalar(select(func.coalesce(func.sum(DatasetRow.size_bytes), 0))
                                    .where(DatasetRow.user_id == new.user_id)) or 0)
        if stored + new.size_bytes > limit:
            raise StorageLimit(stored)

    def stored_bytes(self, user_id: int) -> int:
        """The total size of the user's uploaded datasets."""
        with self.db.reading() as session:
            return int(session.scalar(select(func.coalesce(func.sum(DatasetRow.size_bytes), 0))
                                      .where(DatasetRow.user_id == user_id)) or 0)

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

    def delete(self, dataset_id: str, remove_file: Callable[[str], None]) -> bool:
        """Delete the record and its reference to its file; ``remove_file(key)`` is called (with the
        count's row locked, before the commit) when no other record refers to the file. False when
        there was no such record."""
        with self.db.writing() as session:
            row = session.get(DatasetRow, dataset_id)
            if row is None:
                return False
            stored = locked_file(session, row.storage_key)
            session.delete(row)
            if stored is not None:
                stored.refs -= 1
                if stored.refs <= 0:
                    session.delete(stored)
                    session.flush()
                    remove_file(stored.storage_key)
            return True
