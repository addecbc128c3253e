"""Where routes run blocking database work.

Reads (token checks, job lookups, lists) go through ``store_read``. On SQLite they run right on
the event loop: a read of a local WAL database never waits for a writer and costs a fraction of a
millisecond, less than the hop to a thread and back, and under load that hop is what a request
waited for (benchmarks/load.py: a status read spent 0.6 ms in its queries and 50-300 ms getting
into a thread, behind every other thread wanting the GIL). A server database is read in
Starlette's threadpool: a network round trip must not hold up the loop.

Uploaded datasets are read and checked in ``upload_reader_thread``, a pool of
``Settings.upload_readers`` threads (one by default): each holds its dataset in memory while it
is checked, so many large uploads at once cost the memory of one, not of all.

Routes that write run in ``writer_thread``, a separate, small pool: SQLite admits one writer at a
time (the others wait for its lock holding a thread and a pooled connection), so a burst of
submits must not take every thread and connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request

from hm2bp_service.store import Store

T = TypeVar("T")


def writer_limiter(store: Store) -> CapacityLimiter:
    """How many writing requests run at once: two on SQLite (one writes while the other does its
    checks; more would only wait for its write lock), eight on a server database (whose
    connection pool keeps twenty, see ``hm2bp_service.store.database.make_engine``)."""
    return CapacityLimiter(2 if store.local else 8)


async def upload_reader_thread(request: Request, function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in the upload readers' pool (see the module docstring)."""
    return await anyio.to_thread.run_sync(function, *args, limiter=request.app.state.upload_limiter)


async def writer_thread(request: Request, function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in the writers' pool (see the module docstring)."""
    return await anyio.to_thread.run_sync(function, *args, limiter=request.app.state.writer_limiter)


async def store_read(connection: HTTPConnection, function: Callable[..., T], *args: object) -> T:
    """``function(*args)``, a read of the job store: inline on SQLite, else in the threadpool
    (see the module docstring)."""
    if connection.app.state.services.store.local:
        return function(*args)
    return await run_in_threadpool(function, *args)
