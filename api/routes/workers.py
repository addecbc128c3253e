"""``/v1/workers``: the live workers (their heartbeats in Redis) and what each runs now."""

from __future__ import annotations

import asyncio

import redis
from fastapi import APIRouter, HTTPException, status
from pydantic import ValidationError

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
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the worker registry (Redis) is unreachable: {exc}") from exc
    live = [info for info in live if isinstance(info, dict) and isinstance(info.get("name"), str)]
    running = await asyncio.to_thread(services.store.jobs.run_by, [info["name"] for info in live])
    items = []
    for info in live:
        jobs = [schemas.WorkerJob(id=job.id if job.user_id == user.id else None, state=job.state)
                for job in running.get(info["name"], [])]
        try:
            fields = {k: v for k, v in info.items() if k in schemas.Worker.model_fields and k != "jobs"}
            items.append(schemas.Worker(**fields, jobs=jobs))
        except (ValidationError, TypeError):  # an entry of another version's shape: not listed
            continue
    return schemas.WorkerList(items=items)
