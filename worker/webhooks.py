"""Webhook delivery: a signed JSON POST to a job's ``webhook_url`` on its terminal state.

The row is written by ``Jobs.transition`` (``hm2bp_service.store.webhooks``) in the transaction that ends
the job (an outbox), so a job that ended has exactly one delivery, whichever process ended it. A ``WebhookSender``
thread in every worker's main process (beside the sweeper; never in the training pool, which may
be busy for days) runs an event loop with one task per attempt in flight:

- **Isolated per receiver**: at most ``webhook_receiver_concurrency`` attempts to one receiver
  (scheme, host, port) and ``webhook_concurrency`` in all; a delivery is claimed only when a slot
  is free for it, so a slow receiver holds its own slots and delays nobody else's deliveries.
- **Bounded**: each attempt has one total deadline, ``webhook_timeout_seconds``, for the lookup,
  connect, request and reply however slowly they come (a receiver dripping a byte every few
  seconds is cut at it); at most ``webhook_max_reply_bytes`` of the reply are read, then the
  connection is closed; redirects are not followed; proxies from the environment are not used.
- **Only to public addresses** (``hm2bp_service.egress``): the host is resolved and checked again
  before every attempt (a name may have been re-pointed since submit) and the connection goes to
  the address that was checked, with the name kept in ``Host`` and TLS SNI.
- **Once across workers**: an attempt is claimed by a conditional UPDATE that holds the row for the
  deadline plus ``webhook_claim_margin_seconds``, longer than the attempt can last, so no other
  worker sends it meanwhile; only the claim's holder records its outcome.

A 2xx answer delivers; anything else is retried after ``webhook_backoff_seconds * 2**(n-1)`` (at
most an hour) until ``webhook_max_attempts``; then the delivery is marked failed. What is stored
of an attempt is a short status (``STATUSES``: ``HTTP 500``, ``timeout``, ``refused: private
address``...), never the receiver's reply or the text of a connection error, since the user who
reads it (``GET /v1/jobs/{id}/webhooks``) must not learn what answers inside. The job is never
touched: a receiver's failure cannot change it.

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

import asyncio
import hashlib
import hmac
import logging
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx

from hm2bp_service import egress
from hm2bp_service.services import Services
from hm2bp_service.store import WebhookDeliveryRecord

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 3600.0
USER_AGENT = "hm2bp-webhooks/1"
# every status an attempt may store besides "HTTP <code>" and "refused: <egress reason>"
TIMEOUT, CONNECTION_FAILED, TLS_FAILED, BAD_REPLY = "timeout", "connection failed", "TLS failed", "bad reply"
NOT_FOUND, NO_SECRET = "host not found", "signing secret unavailable"
STATUSES = (TIMEOUT, CONNECTION_FAILED, TLS_FAILED, BAD_REPLY, NOT_FOUND, NO_SECRET)


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


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the receiver's status (None: no answer) and the short status stored."""

    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _failure(exc: httpx.HTTPError) -> str:
    """The short status of a failed request (the exception's text is never kept: it may quote the receiver)."""
    if isinstance(exc, httpx.TimeoutException):
        return TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, ssl.SSLError):
            cause = cause.__cause__ or cause.__context__
        return CONNECTION_FAILED if cause is None else TLS_FAILED
    return BAD_REPLY


async def post(client: httpx.AsyncClient, delivery: WebhookDeliveryRecord, secret: str,
               allow: egress.AllowList, deadline: float, max_reply_bytes: int) -> Outcome:
    """One attempt within ``deadline`` seconds in all, to the address ``egress`` checked."""
    body = delivery.body.encode()
    status: int | None = None
    try:
        async with asyncio.timeout(deadline):
            destination = await egress.resolve_async(delivery.url, allow)
            url = httpx.URL(delivery.url)
            request = client.build_request(
                "POST", url.copy_with(host=destination.address), content=body,
                headers={**signed_headers(secret, delivery, body), "Host": url.netloc.decode("ascii")},
                extensions={"sni_hostname": destination.host})
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                read = 0
                async for chunk in response.aiter_raw():  # only this much is read, then the connection closes
                    read += len(chunk)
                    if read >= max_reply_bytes:
                        break
            finally:
                await response.aclose()
    except egress.Blocked as exc:
        return Outcome(None, f"refused: {exc.reason}")
    except egress.Unresolvable:
        return Outcome(None, NOT_FOUND)
    except TimeoutError:  # the deadline; once the status is in, it counts however the reply ends
        if status is None:
            return Outcome(None, TIMEOUT)
    except httpx.HTTPError as exc:
        if status is None:
            return Outcome(None, _failure(exc))
    except (httpx.InvalidURL, ValueError):
        return Outcome(None, "refused: bad URL")
    if status is None:
        return Outcome(None, BAD_REPLY)
    return Outcome(status, None if 200 <= status < 300 else f"HTTP {status}")


class WebhookSender(threading.Thread):
    """The worker's sender: polls the outbox and runs each claimed attempt as a task of its loop."""

    def __init__(self, services: Services):
        super().__init__(name="hm2bp-webhooks", daemon=True)
        self.services = services
        self.stopped = threading.Event()
        self.in_flight: Counter[str] = Counter()  # receiver -> attempts running (touched by the loop only)
        self.tasks: set[asyncio.Task[None]] = set()
        self.allow = egress.AllowList.parse(services.settings.webhook_allowed_destinations)

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        settings = self.services.settings
        client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=settings.webhook_timeout_seconds,
            # no connection outlives its attempt: one to an address is never reused for another name
            limits=httpx.Limits(max_connections=settings.webhook_concurrency, max_keepalive_connections=0))
        try:
            while not self.stopped.is_set():
                try:
                    await self.start_due(client)
                except Exception:  # the database is down: try again next round
                    log.exception("sending webhooks failed")
                await asyncio.sleep(settings.webhook_poll_seconds)
        finally:
            for task in self.tasks:
                task.cancel()  # its claim expires and another round (or worker) sends it again
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await client.aclose()

    def busy_receivers(self) -> frozenset[str]:
        cap = self.services.settings.webhook_receiver_concurrency
        return frozenset(receiver for receiver, running in self.in_flight.items() if running >= cap)

    async def start_due(self, client: httpx.AsyncClient) -> int:
        """Claim and start the due deliveries there is room for; how many were started."""
        store, settings = self.services.store, self.services.settings
        room = settings.webhook_concurrency - len(self.tasks)
        if room <= 0:
            return 0
        due = await asyncio.to_thread(store.webhooks.due, max(room, 20), self.busy_receivers())
        started = 0
        for delivery in due:
            if started == room or self.in_flight[delivery.receiver] >= settings.webhook_receiver_concurrency:
                continue
            claimed = await asyncio.to_thread(store.webhooks.claim, delivery.id, settings.webhook_claim_seconds)
            if claimed is None:
                continue
            self.in_flight[delivery.receiver] += 1
            task = asyncio.create_task(self._attempt(client, *claimed))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            started += 1
        return started

    async def _attempt(self, client: httpx.AsyncClient, delivery: WebhookDeliveryRecord, secret: str | None) -> None:
        settings = self.services.settings
        try:
            if secret is None:
                log.error("webhook %s: the user's signing secret cannot be opened: HM2BP_WEBHOOK_SECRETS_KEY "
                          "(or DATA_DIR/webhook-secrets.key) differs from the API's", delivery.id)
                outcome = Outcome(None, NO_SECRET)
            else:
                outcome = await post(client, delivery, secret, self.allow, settings.webhook_timeout_seconds,
                                     settings.webhook_max_reply_bytes)
            retry_in = None if outcome.delivered or delivery.attempts >= settings.webhook_max_attempts else \
                backoff(delivery.attempts, settings.webhook_backoff_seconds)
            await asyncio.to_thread(self.services.store.webhooks.record_attempt, delivery.id, delivery.attempts,
                                    delivered=outcome.delivered, status=outcome.status, error=outcome.error,
                                    retry_in=retry_in)
            if not outcome.delivered:
                log.warning("webhook %s of job %s, attempt %d: %s%s", delivery.id, delivery.job_id, delivery.attempts,
                            outcome.error, "" if retry_in is None else f"; again in {retry_in:.0f} s")
        except Exception:
            log.exception("webhook %s: the attempt could not be recorded", delivery.id)
        finally:
            self.in_flight[delivery.receiver] -= 1
            if self.in_flight[delivery.receiver] <= 0:
                del self.in_flight[delivery.receiver]


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
