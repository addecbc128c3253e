"""Refusals: what a service function raises when a request cannot be done as asked.

Each carries the HTTP status the API answers with, a sentence a user can act on, and the request
field at fault (a dotted path such as ``spec.training.epochs``); the API turns it into its one
error body (``api.errors``). Other callers (the CLI, tests) read the same three facts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# an absolute file path (two parts or more) not inside a URL: /srv/hm2bp/.hm2bp/datasets/ab.npz
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"():,;<>]+/)+([^\s/'\"():,;<>]*)")


class Refused(Exception):
    """The request is refused: ``status``, ``detail`` (a sentence) and ``field`` at fault."""

    status = 422
    headers: dict[str, str] | None = None  # extra response headers (a 429's Retry-After)

    def __init__(self, detail: str, field: str = "body", *, status: int | None = None,
                 errors: list[dict[str, str]] | None = None):
        super().__init__(detail)
        self.detail, self.field = detail, field
        if status is not None:
            self.status = status
        self.errors = errors if errors is not None else [{"field": field, "message": detail}]


class NotFound(Refused):
    """No such thing for this user (another user's is never confirmed to exist)."""

    status = 404

    def __init__(self, what: str, ident: str, field: str = "body"):
        super().__init__(f"{what} {ident!r} not found", field)


class Conflict(Refused):
    status = 409


def field_path(loc: Sequence[Any]) -> str:
    """("body", "spec", "network", "layers", 0, "units") -> "spec.network.layers[0].units"."""
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or (str(loc[0]) if loc else "body")


def without_paths(text: str) -> str:
    """``text`` with every absolute path cut to its last part (``/srv/x/.hm2bp/datasets/ab.npz`` ->
    ``ab.npz``): what users are shown of a failure names no folder of the server."""
    return ABSOLUTE_PATH.sub(lambda found: found.group(1) or "(a folder)", text)
