"""Live job events: ``GET /v1/jobs/{id}/events`` (SSE) and ``WS /v1/jobs/{id}/stream``.

Both send the history after the cursor (``?after=EVENT_ID``; for SSE also ``Last-Event-ID``),
then live events, and end after the job's final ``state`` event. Each event is an
``EventEnvelope`` ``{"id", "type", "at", "data"}``; its ``id`` is the next cursor. Clients
authenticate with ``Authorization: Bearer`` on the request or the websocket handshake, or
(browsers) with the session cookie of ``POST /v1/session`` from an allowed origin; a refused
handshake is answered with the HTTP status (401, 404) and a JSON body.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.status import WS_1008_POLICY_VIOLATION

from .. import schemas
from ..auth import authenticate
from ..blocking import store_read
from ..deps import JobDep, ServicesDep
from ..errors import error_response

MAX_CURSOR = 2**31 - 1

router = APIRouter(prefix="/v1/jobs", tags=["streams"])
ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 422)}


def cursor(after: int | None, last_event_id: str | None) -> int:
    """The later of ``?after=`` and a numeric ``Last-Event-ID``."""
    values = [after or 0]
    if last_event_id and last_event_id.strip().isdigit():
        values.append(min(int(last_event_id.strip()), MAX_CURSOR))
    return max(values)


@router.get("/{job_id}/events", response_class=EventSourceResponse, responses=ERRORS)
async def job_events(job: JobDep, services: ServicesDep,
                     after: Annotated[int | None, Query(ge=0, le=MAX_CURSOR)] = None,
                     last_event_id: Annotated[str | None, Header(max_length=64)] = None
                     ) -> AsyncIterable[schemas.EventEnvelope]:
    """Server-sent events: ``id`` is the event id, ``event`` its type, ``data`` the envelope."""
    async for envelope in services.bus.follow(job.id, cursor(after, last_event_id)):
        yield ServerSentEvent(data=envelope, event=envelope["type"], id=str(envelope["id"]))


@router.websocket("/{job_id}/stream")
async def job_stream(websocket: WebSocket, job_id: str,
                     after: Annotated[int, Query(ge=0, le=MAX_CURSOR)] = 0) -> None:
    """Websocket: one JSON ``EventEnvelope`` per message; closed (1000) after the final state."""
    services = websocket.app.state.services
    user = await store_read(websocket, authenticate, websocket)
    if user is None:
        return await _refuse(websocket, 401, "missing, invalid or revoked API token")
    job = await store_read(websocket, services.store.jobs.get, user.id, job_id)
    if job is None:
        return await _refuse(websocket, 404, f"job {job_id!r} not found")
    await websocket.accept()
    try:
        async for envelope in services.bus.follow(job.id, after):
            await websocket.send_json(envelope)
        await websocket.close(1000)
    except (WebSocketDisconnect, RuntimeError):  # the client left
        return


async def _refuse(websocket: WebSocket, status_code: int, detail: str) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
        await websocket.send_denial_response(error_response(status_code, detail, headers=headers))
    else:
        await websocket.close(WS_1008_POLICY_VIOLATION, detail)
