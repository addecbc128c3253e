"""Slow clients: a deadline on each request's headers, which uvicorn does not have.

``HeaderDeadlineProtocol`` is uvicorn's httptools protocol with one timer: armed when a connection
opens and when a request's first byte arrives, cleared when its headers are complete. A
connection that sends nothing, or drips its request line and headers, is answered 408 and closed
after ``header_timeout_seconds``. Idle keep-alive connections are closed by uvicorn's own
keep-alive timer, set here from ``keep_alive_seconds``; slow bodies by ``api.limits.BodyLimits``.

Every way the API is served names it: ``hm2bp serve`` (``uvicorn.run(..., http=PROTOCOL)``), the
API image's command and the test harness (``uvicorn ... --http api.slow_clients:HeaderDeadlineProtocol``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hm2bp_service.settings import get_settings

PROTOCOL = "api.slow_clients:HeaderDeadlineProtocol"
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    b"content-length: %d\r\n\r\n%s")


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.header_timeout_seconds
        self.timeout_keep_alive = settings.keep_alive_seconds
        self.header_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self.header_deadline is None:
            self.header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self.header_deadline = None
        if self.transport.is_closing():
            return
        body = (b'{"detail": "the request headers did not arrive within %g s", "errors": []}'
                % self.header_timeout)
        self.transport.write(TIMEOUT_RESPONSE % (len(body), body))
        self.transport.close()
