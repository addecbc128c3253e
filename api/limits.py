"""Limits before work: every request body is bounded in size and in time while it is read.

``BodyLimits`` is pure ASGI middleware, so it runs before routing, before the body is parsed and
before the token is checked:

- **size**: a body larger than ``max_body_bytes`` (every route but the dataset upload, which has
  ``max_upload_bytes`` and streams to disk) is a 413. A ``Content-Length`` over the limit is
  answered at once, nothing read; a body without one (chunked) is counted as its
  ``http.request`` messages arrive and stopped at the first byte over the limit.
- **time**: a body may take ``body_timeout_seconds``; after that it must keep arriving at
  ``min_body_bytes_per_second`` on average, or it is a 408. (A slow client cannot hold a
  connection and its buffers open indefinitely; a large upload on a real network can.)

Both answers are the service's JSON error body with ``Connection: close``: the server does not
read the rest of a body it refused. Slow *headers* are below ASGI: ``api.slow_clients`` bounds them.
"""

from __future__ import annotations

import asyncio
import time

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hm2bp_service.settings import Settings

# routes whose bodies have limits of their own (method, path): the streamed dataset upload
OWN_LIMITS = frozenset({("POST", "/v1/datasets")})
CLOSE = {"Connection": "close"}


def too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"


def too_slow(seconds: float, rate: int) -> str:
    return (f"the request body did not arrive in time (a body may take {seconds:g} s, longer ones at least "
            f"{rate} bytes/s on average)")


class BodyLimits:
    """See the module docstring; ``settings`` gives the limits."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.max_bytes = settings.max_body_bytes
        self.grace = settings.body_timeout_seconds
        self.rate = settings.min_body_bytes_per_second

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = None if (scope["method"], scope["path"].rstrip("/")) in OWN_LIMITS else self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            response = JSONResponse({"detail": too_large(limit), "errors": [{"field": "body", "message":
                                     too_large(limit)}]}, status_code=413, headers=CLOSE)
            return await response(scope, receive, send)
        await self.app(scope, self._bounded(receive, limit), send)

    def _bounded(self, receive: Receive, limit: int | None) -> Receive:
        started = time.monotonic()
        received = 0
        complete = False

        async def bounded_receive() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what follows is the wait for a disconnect (streams), unbounded
                return await receive()
            # waiting past this point would put the average under the rate after the grace period
            deadline = started + max(self.grace, (received + 1) / self.rate)
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise HTTPException(408, too_slow(self.grace, self.rate), headers=CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if limit is not None and received > limit:
                    raise HTTPException(413, too_large(limit), headers=CLOSE)
            else:
                complete = True
            return message

        return bounded_receive
