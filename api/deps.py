"""Dependencies injected into routes: the process's services, the caller, the caller's job."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status

from hm2bp_service.services import Services
from hm2bp_service.store import JobRecord, UserRecord

from .auth import current_user
from .blocking import store_read


async def get_services(request: Request) -> Services:
    return request.app.state.services  # async: a sync dependency runs in the threadpool


ServicesDep = Annotated[Services, Depends(get_services)]
UserDep = Annotated[UserRecord, Depends(current_user)]


def not_found(what: str, ident: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {ident!r} not found")


async def owned_job(request: Request, user: UserDep, services: ServicesDep,
                    job_id: Annotated[str, Path(max_length=64)]) -> JobRecord:
    """The caller's job; another user's job is a 404, exactly like a missing one."""
    job = await store_read(request, services.store.jobs.get, user.id, job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


JobDep = Annotated[JobRecord, Depends(owned_job)]
