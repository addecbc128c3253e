"""``/v1/workers``: the live workers (their heartbeats in Redis) and what each runs now."""

from __future__ import annotations

import asyncio

import redis
from fastapi import APIRouter, HTTPException, status
from pydantic import ValidationError

from hm2bp_service.errors import without_paths

from .. import schemas
from ..deps import ServicesDep, UserDep

router = APIRouter(prefix="/v1/workers", tags=["workers"])


@router.get("", response_model=schemas.WorkerList,
            responses={code: {"model": schemas.ErrorBody} for code in (401, 503)})
async def list_workers(user: UserDep, services: ServicesDep) -> schemas.WorkerList:
    """Every worker that sent a heartbeat within its last three intervals: queues, concurrency,
    device (kind, GPU memory and count, or CPU cores) and the jobs it runs. Workers are shared, so
    the jobs of other users are listed without their ids, and only an admin (``HM2BP_ADMIN_USERS``;
    ``hm2bp serve``'s own user) sees each worker's node name, host, pid and GPU or CPU model: the
    others get ``worker N`` and nulls."""
    try:
        live = await asyncio.to_thread(services.workers.live)
    except redis.RedisError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the worker registry (Redis) is unreachable: {without_paths(str(exc))}") from exc
    admin = user.name in services.settings.admins
    live = [info for info in live if isinstance(info, dict) and isinstance(info.get("name"), str)]
    running = await asyncio.to_thread(services.store.jobs.run_by, [info["name"] for info in live])
    items = []
    for info in live:
        jobs = [schemas.WorkerJob(id=job.id if job.user_id == user.id else None, state=job.state)
                for job in running.get(info["name"], [])]
        try:
            fields = {k: v for k, v in info.items() if k in schemas.Worker.model_fields and k != "jobs"}
            worker = schemas.Worker(**fields, jobs=jobs)
            items.append(worker if admin else anonymous(worker, len(items) + 1))
        except (ValidationError, TypeError):  # an entry of another version's shape: not listed
            continue
    return schemas.WorkerList(items=items)


def anonymous(worker: schemas.Worker, number: int) -> schemas.Worker:
    """What a user who is not an admin sees of a worker: nothing that names its machine."""
    device = worker.device.model_copy(update={"name": None}) if worker.device is not None else None
    return worker.model_copy(update={"name": f"worker {number}", "host": None, "pid": None, "device": device})
