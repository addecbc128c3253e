"""Webhook delivery: a signed JSON POST to a job's ``webhook_url`` on its terminal state.

The row is written by ``Jobs.transition`` (``hm2bp_service.store.webhooks``) in the transaction that ends
the job (an outbox), so a job that ended has exactly one delivery, whichever process ended it. A ``WebhookSender``
thread in every worker's main process (beside the sweeper; never in the training pool, which may
be busy for days) sends due deliveries: each attempt is claimed by a conditional UPDATE, so any
number of workers may send without duplicates. A 2xx answer delivers; anything else (an error
status, a refused connection, a timeout) is retried after ``webhook_backoff_seconds * 2**(n-1)``
(at most an hour) until ``webhook_max_attempts``; then the delivery is marked failed. The job is
never touched: a receiver's failure cannot change it.

The request (``hm2bp_client.verify_webhook`` checks it)::

    POST <webhook_url>
    Content-Type: application/json
    X-HM2BP-Event: job.succeeded | job.failed | job.cancelled
    X-HM2BP-Delivery: whd_...          (the same on every retry: receivers de-duplicate by it)
    X-HM2BP-Timestamp: 1767225600      (unix seconds of this attempt)
    X-HM2BP-Signature: sha256=HEX      (HMAC-SHA256 with the user's secret of "TIMESTAMP.BODY")

    {"id": "whd_...", "type": "job.succeeded", "created_at": ..., "job": {"id", "name", "state",
     "dataset", "tags", "sweep_id", "metrics", "error", "attempts", "created_at", "started_at",
     "finished_at"}}

Each user has one secret (``GET /v1/webhook-secret``; ``POST /v1/webhook-secret/rotate`` replaces it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time

import httpx

from hm2bp_service.services import Services
from hm2bp_service.store import WebhookDeliveryRecord

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 3600.0
USER_AGENT = "hm2bp-webhooks/1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``TIMESTAMP.BODY`` under ``secret``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, delivery: WebhookDeliveryRecord, body: bytes,
                   timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-HM2BP-Event": delivery.event,
            "X-HM2BP-Delivery": delivery.id, "X-HM2BP-Timestamp": str(timestamp),
            "X-HM2BP-Signature": signature(secret, timestamp, body)}


def backoff(attempts: int, base: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: base, 2 base, 4 base, ..."""
    return min(base * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)


class WebhookSender(threading.Thread):
    def __init__(self, services: Services):
        super().__init__(name="hm2bp-webhooks", daemon=True)
        self.services = services
        self.stopped = threading.Event()
        settings = services.settings
        self.http = httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False,
                                 headers={"User-Agent": USER_AGENT})

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.services.settings.webhook_poll_seconds):
                try:
                    self.send_due()
                except Exception:  # the database is down: try again next round
                    log.exception("sending webhooks failed")
        finally:
            self.http.close()

    def send_due(self) -> int:
        """Attempt every due delivery once; how many were attempted."""
        store, settings = self.services.store, self.services.settings
        sent = 0
        for due in store.webhooks.due():
            claimed = store.webhooks.claim(due.id, hold_seconds=settings.webhook_timeout_seconds + 30)
            if claimed is None:
                continue
            delivery, secret = claimed
            status, error = self._post(delivery, secret)
            delivered = status is not None and 200 <= status < 300
            retry_in = None if delivered or delivery.attempts >= settings.webhook_max_attempts else \
                backoff(delivery.attempts, settings.webhook_backoff_seconds)
            store.webhooks.record_attempt(delivery.id, delivered=delivered, status=status, error=error,
                                          retry_in=retry_in)
            if not delivered:
                log.warning("webhook %s of job %s, attempt %d: %s%s", delivery.id, delivery.job_id, delivery.attempts,
                            error or f"HTTP {status}", "" if retry_in is None else f"; again in {retry_in:.0f} s")
            sent += 1
        return sent

    def _post(self, delivery: WebhookDeliveryRecord, secret: str) -> tuple[int | None, str | None]:
        body = delivery.body.encode()
        try:
            response = self.http.post(delivery.url, content=body, headers=signed_headers(secret, delivery, body))
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:1000]
        error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
        return response.status_code, error


_running: WebhookSender | None = None


def start(services: Services) -> None:
    global _running
    if _running is None:
        _running = WebhookSender(services)
        _running.start()


def stop() -> None:
    global _running
    if _running is not None:
        _running.stopped.set()
        _running = None
