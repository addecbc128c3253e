"""The client's exceptions; all derive from ``HM2BPError``, and ``str()`` of each is a sentence
fit to show a user."""

from __future__ import annotations

from typing import Any


class HM2BPError(Exception):
    """Anything that kept the client from doing what was asked."""


class ConfigError(HM2BPError):
    """No token, or an unreadable config file."""


class ServiceUnreachable(HM2BPError):
    """The server could not be reached (refused, unknown host, timed out, connection lost)."""


class APIError(HM2BPError):
    """The server answered with an error status; ``detail`` and ``errors`` are its error body
    (``{"detail": sentence, "errors": [{"field", "message"}]}``)."""

    def __init__(self, status_code: int, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.errors = errors or []
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in self.errors
                           if e.get("message") and e.get("message") not in detail)
        super().__init__(f"{detail}{f' ({fields})' if fields else ''} [HTTP {status_code}]")


class StreamUnavailable(HM2BPError):
    """The job's event stream cannot be followed (not an event stream, or it kept dropping)."""


class WaitTimeout(HM2BPError):
    """The job did not reach a final state within the time allowed."""
