"""``hm2bp_service.outages``: which database errors are an outage (retried by workers, a 503 from
the API) and how ``through_outages`` retries them, with errors from real drivers: a PostgreSQL
port where nothing listens, and a bad statement on SQLite."""

from __future__ import annotations

import time

import pytest
import sqlalchemy
from sqlalchemy.exc import OperationalError

from hm2bp_service import outages
from hm2bp_service.outages import is_outage, through_outages

from .harness import free_port


def connect_error() -> Exception:
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres",
                                      connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            pass
    except Exception as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("connected to a port where nothing listens")


def statement_error() -> Exception:
    engine = sqlalchemy.create_engine("sqlite://")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELEC 1")
    except Exception as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("a bad statement ran")


def locked_error(folder) -> Exception:
    engine = sqlalchemy.create_engine(f"sqlite:///{folder / 'busy.db'}", connect_args={"timeout": 0})
    try:
        with engine.connect() as holder, engine.connect() as other:
            holder.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                other.exec_driver_sql("BEGIN IMMEDIATE")
            except Exception as exc:
                return exc
    finally:
        engine.dispose()
    raise AssertionError("two writers at once")


def test_unreachable_or_busy_database_is_an_outage_a_bad_statement_is_not(tmp_path):
    down, busy, bad = connect_error(), locked_error(tmp_path), statement_error()
    assert isinstance(down, OperationalError) and is_outage(down)
    assert "database is locked" in str(busy) and is_outage(busy)
    assert isinstance(bad, OperationalError) and "syntax error" in str(bad)  # SQLite's word for it
    assert not is_outage(bad) and not is_outage(ValueError("no"))


def test_through_outages_retries_until_the_call_lands_once(monkeypatch):
    monkeypatch.setattr(outages, "FIRST_WAIT", 0.01)
    down, calls = connect_error(), []

    def write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise down
        return "landed"

    assert through_outages(write, "test write", seconds=10) == "landed"
    assert len(calls) == 3


def test_through_outages_gives_up_after_its_time_and_never_retries_a_bug(monkeypatch):
    monkeypatch.setattr(outages, "FIRST_WAIT", 0.05)
    down, calls = connect_error(), []

    def always_down() -> None:
        calls.append(1)
        raise down

    begin = time.monotonic()
    with pytest.raises(OperationalError):
        through_outages(always_down, "test write", seconds=0.5)
    assert time.monotonic() - begin < 2 and len(calls) >= 2

    def bug() -> None:
        calls.append(2)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        through_outages(bug, "test write", seconds=10)
    assert calls.count(2) == 1
