"""The database connection: engine, sessions, migrations.

``Database`` hands out read sessions and write transactions to the repositories of this package.
On SQLite a write transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue
for the lock instead of failing half-way with "database is locked".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout, foreign keys, and write transactions that
    start with BEGIN IMMEDIATE (``Database.writing`` asks for them), so concurrent writers queue
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


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. ``Session.execute`` returns a ``CursorResult`` for
    DML but is typed as returning any ``Result``."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the result of an UPDATE or DELETE, got {type(result).__name__}")
    return result.rowcount


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic ``upgrade head``)."""
    from alembic import command  # Alembic is only needed by whoever migrates, not by every reader
    from alembic.config import Config

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


class Database:
    """Sessions and transactions on one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self.writer = engine.execution_options(write=True)  # BEGIN IMMEDIATE on SQLite (make_engine)
        self._write = sessionmaker(self.writer, expire_on_commit=False)

    @property
    def local(self) -> bool:
        """A SQLite file: reads are local and never wait for a writer (WAL)."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session in a write transaction, committed when the block ends without an error."""
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A pooled connection for the prebuilt Core statements of the hot paths."""
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        with self.writer.begin() as connection:
            yield connection

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def dispose(self) -> None:
        self.engine.dispose()


