"""Unauthenticated probes: liveness, readiness (database and Redis), Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hm2bp_service.errors import without_paths

from .. import schemas
from ..auth import authenticate, bearer_token

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=schemas.Health)
def healthz() -> schemas.Health:
    """The process is up."""
    return schemas.Health(status="ok")


@router.get("/readyz", response_model=schemas.Health, responses={503: {"model": schemas.Health}})
async def readyz(request: Request):
    """The database and Redis answer (503 naming the one that does not)."""
    services = request.app.state.services
    checks = {}
    for name, probe in (("database", services.store.ping), ("redis", services.bus.ping)):
        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout=5)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}: {without_paths(str(exc))}"
    ready = all(value == "ok" for value in checks.values())
    body = schemas.Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus exposition format: request counts and latencies for anyone; the jobs in the store
    by state (``hm2bp_jobs``: other users' activity) only with an admin's bearer token."""
    body = generate_latest(request.app.state.registry)
    user = authenticate(request) if bearer_token(request) else None
    if user is not None and user.name in request.app.state.services.settings.admins:
        body += generate_latest(request.app.state.job_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
