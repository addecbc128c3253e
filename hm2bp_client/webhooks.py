"""Checking the webhooks the hm2bp service sends (see ``GET /v1/webhook-secret``).

Each delivery is a POST whose body is JSON ``{"id", "type", "created_at", "job": {...}}`` with
the headers ``X-HM2BP-Timestamp`` (unix seconds) and ``X-HM2BP-Signature: sha256=HEX``, the
HMAC-SHA256 of ``TIMESTAMP + "." + body`` under your secret. A receiver::

    from hm2bp_client import WebhookVerificationError, verify_webhook

    try:
        event = verify_webhook(SECRET, request.headers, request.body())   # the raw bytes, not re-encoded JSON
    except WebhookVerificationError:
        return 400
    if seen(event["id"]): return 200                   # a retry of a delivery you already handled
    handle(event["type"], event["job"])                # job.succeeded | job.failed | job.cancelled
    return 200                                         # anything but 2xx is retried, with backoff

Answer quickly (2xx within 10 s); do the work afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from .errors import HM2BPError

TIMESTAMP_HEADER = "X-HM2BP-Timestamp"
SIGNATURE_HEADER = "X-HM2BP-Signature"


class WebhookVerificationError(HM2BPError):
    """The request is not an authentic, fresh delivery of the hm2bp service."""


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    raise WebhookVerificationError(f"the {name} header is missing")


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-HM2BP-Signature`` value for ``body`` sent at ``timestamp`` (for tests of receivers)."""
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes | str, tolerance_s: float = 300.0,
                   now: float | None = None) -> dict[str, Any]:
    """The delivery's JSON payload, once its signature is checked (in constant time) and its
    timestamp is within ``tolerance_s`` seconds of now (a replayed old delivery is refused);
    ``WebhookVerificationError`` otherwise. ``headers``: any mapping (case is ignored)."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    stamp = _header(headers, TIMESTAMP_HEADER).strip()
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is not unix seconds: {stamp[:40]!r}") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise WebhookVerificationError(f"the delivery's timestamp is {now - timestamp:.0f} s off (tolerance "
                                       f"{tolerance_s:.0f} s): a replay, or a clock that is wrong")
    expected = sign_webhook(secret, timestamp, raw)
    given = [part.strip() for part in _header(headers, SIGNATURE_HEADER).split(",")]  # room for several keys
    if not any(hmac.compare_digest(expected.encode(), part.encode()) for part in given):
        raise WebhookVerificationError("the signature does not match (wrong secret, or the body was changed)")
    try:
        return json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
