"""Riding out a database outage (PostgreSQL restarting, a connection cut, SQLite busy past its timeout).

``is_outage`` tells such an error (the database could not be reached or dropped the connection)
from a bug. The API answers it with 503 and ``Retry-After`` (``api.errors``); the workers and
training runs retry the write instead (``through_outages``), so a state transition, an epoch's
metrics row or a lease renewal that meets the outage lands once it is over.

Retrying is safe because every write retried this way lands at most once however often it runs:
state changes are conditional updates (a repeat of one that committed, whose reply was lost, finds
the state moved and changes nothing), epoch rows are keyed by (job, epoch) and merged, and a lease
renewal sets an expiry. The engine's ``pool_pre_ping`` replaces the connections the restart broke.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")
OUTAGE_SECONDS = 300.0  # how long a worker's write waits for the database before it gives up
FIRST_WAIT, MAX_WAIT = 0.2, 5.0
SQLITE_TRANSIENT = ("database is locked", "database table is locked", "unable to open database file",
                    "disk I/O error")


def is_outage(exc: BaseException) -> bool:
    """The database was unreachable, dropped the connection or was busy (transient), not a bad
    statement. PostgreSQL's drivers raise OperationalError for the first kind only; SQLite raises
    it for syntax errors too, so there only the messages of a busy or unreadable file count."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if isinstance(exc.orig, sqlite3.Error):
        return any(sign in str(exc.orig) for sign in SQLITE_TRANSIENT)
    return True


def through_outages(call: Callable[[], T], what: str, seconds: float = OUTAGE_SECONDS) -> T:
    """``call()``, repeated while it fails with a database outage, for up to ``seconds`` (waits
    grow from FIRST_WAIT to MAX_WAIT); the last error is raised after that, as is any other error."""
    deadline = time.monotonic() + seconds
    wait = FIRST_WAIT
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_outage(exc) or time.monotonic() + wait > deadline:
                raise
            log.warning("%s: the database is unavailable (%s); retrying in %.1f s", what,
                        str(exc).splitlines()[0][:200], wait)
        time.sleep(wait)
        wait = min(2 * wait, MAX_WAIT)
