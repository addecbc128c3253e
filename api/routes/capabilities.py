"""``/v1/capabilities``: what a job can ask for now (devices and memory of the live workers) and the quotas."""

from __future__ import annotations

import asyncio

import redis
from fastapi import APIRouter, HTTPException, status

from hm2bp_service.admission import capabilities

from .. import schemas
from ..deps import ServicesDep, UserDep

router = APIRouter(prefix="/v1/capabilities", tags=["workers"])


@router.get("", response_model=schemas.Capabilities,
            responses={code: {"model": schemas.ErrorBody} for code in (401, 503)})
async def get_capabilities(_user: UserDep, services: ServicesDep) -> schemas.Capabilities:
    """The devices the live workers offer (``cuda`` only with a GPU worker), their largest
    per-job memory limit, and the per-user quotas: what the submit form may offer."""
    try:
        found = await asyncio.to_thread(capabilities, services)
    except redis.RedisError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the worker registry (Redis) is unreachable: {exc}") from exc
    return schemas.Capabilities.model_validate(found)
