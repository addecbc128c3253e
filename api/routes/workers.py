"""``/v1/workers``: the live workers (their heartbeats in Redis) and what each runs now."""

from __future__ import annotations

import asyncio

import redis
from fastapi import APIRouter, HTTPException, status

from .. import schemas
from ..deps import ServicesDep, UserDep

router = APIRouter(prefix="/v1/workers", tags=["workers"])


@router.get("", response_model=schemas.WorkerList,
            responses={code: {"model": schemas.ErrorBody} for code in (401, 503)})
async def list_workers(user: UserDep, services: ServicesDep) -> schemas.WorkerList:
    """Every worker that sent a heartbeat within its last three intervals: name, host, queues,
    device (GPU name and memory, or CPU model and cores) and the jobs it runs. Workers are shared,
    so the jobs of other users are listed without their ids."""
    try:
        live = await asyncio.to_thread(services.workers.live)
    except redis.RedisError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"the worker registry (Redis) is unreachable: {exc}")
    running = await asyncio.to_thread(services.store.jobs_run_by, [w["name"] for w in live])
    items = []
    for info in live:
        jobs = [schemas.WorkerJob(id=job.id if job.user_id == user.id else None, state=job.state)
                for job in running.get(info["name"], [])]
        items.append(schemas.Worker(**{k: v for k, v in info.items() if k in schemas.Worker.model_fields}, jobs=jobs))
    return schemas.WorkerList(items=items)
