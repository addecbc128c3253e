"""Dependencies injected into routes: the process's services, the caller, the caller's job; and
the two thread pools that routes run blocking database work in.

Reads (token checks, job lookups, lists) use Starlette's threadpool. Routes that write run in
``writer_thread``, a separate, small pool: SQLite admits one writer at a time (the others wait
for its lock holding a thread and a pooled connection), so a burst of submits must not take every
thread and connection and leave status reads queueing behind them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, HTTPException, Path, Request, status
from starlette.concurrency import run_in_threadpool

from worker.services import Services
from worker.store import Job, User

from .auth import current_user

T = TypeVar("T")


def writer_limiter(database_url: str) -> CapacityLimiter:
    """How many writing requests run at once: two on SQLite (one writes while the other does its
    checks; more would only wait for its write lock), eight on a server database (whose
    connection pool holds fifteen)."""
    return CapacityLimiter(2 if database_url.startswith("sqlite") else 8)


async def writer_thread(request: Request, function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in the writers' pool (see the module docstring)."""
    return await anyio.to_thread.run_sync(function, *args, limiter=request.app.state.writer_limiter)


async def get_services(request: Request) -> Services:
    return request.app.state.services  # async: a sync dependency runs in the threadpool


ServicesDep = Annotated[Services, Depends(get_services)]
UserDep = Annotated[User, Depends(current_user)]


def not_found(what: str, ident: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {ident!r} not found")


async def owned_job(user: UserDep, services: ServicesDep, job_id: Annotated[str, Path(max_length=64)]) -> Job:
    """The caller's job; another user's job is a 404, exactly like a missing one."""
    job = await run_in_threadpool(services.store.get_job, user.id, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


JobDep = Annotated[Job, Depends(owned_job)]
