"""The webhook outbox: one delivery row per terminal state of a job that has a ``webhook_url``.

``add_delivery`` runs in the transaction that ends the job, so there is exactly one delivery per
terminal state and none is lost if the process dies right after. Senders claim an attempt with a
conditional UPDATE that holds the row for longer than an attempt may last (the deadline plus a
margin, ``Settings.webhook_claim_seconds``), so any number of them may send without sending one
attempt twice; the outcome is recorded only by the claim's holder (``record_attempt`` matches the
attempt number it claimed). The signing secret leaves the store in clear only through ``claim``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..egress import receiver_of
from ..sealing import InvalidToken, SecretBox
from .database import Database, rowcount
from .records import JobRecord, WebhookDeliveryRecord
from .schema import Job, WebhookDelivery, new_id, utcnow
from .users import webhook_secret_of

PENDING, DELIVERED, GIVEN_UP = "pending", "delivered", "failed"
# the job fields a delivery carries (a subset of GET /v1/jobs/{id}: no spec, no progress)
JOB_FIELDS = ("id", "name", "state", "dataset", "tags", "sweep_id", "metrics", "error", "attempts",
              "created_at", "started_at", "finished_at")


def job_payload(job: JobRecord) -> dict[str, Any]:
    """The ``job`` object of a delivery's body, from the job's record."""
    payload = {}
    for name in JOB_FIELDS:
        value = getattr(job, name)
        payload[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return payload


def add_delivery(session: Session, job_id: str) -> None:
    """The outbox row of the job's terminal-state webhook, in ``session``'s transaction."""
    row = session.get(Job, job_id)
    if row is None or not row.webhook_url:
        return
    job = JobRecord.of(row)
    delivery_id, event = new_id("whd"), f"job.{job.state}"
    body = {"id": delivery_id, "type": event, "created_at": utcnow().isoformat(), "job": job_payload(job)}
    session.add(WebhookDelivery(id=delivery_id, job_id=job.id, url=row.webhook_url,
                                receiver=receiver_of(row.webhook_url), event=event,
                                body=json.dumps(body, separators=(",", ":")), state=PENDING))


class WebhookOutbox:
    def __init__(self, db: Database, box: SecretBox | None = None):
        self.db, self.box = db, box

    def due(self, limit: int = 20, skip_receivers: frozenset[str] = frozenset()) -> list[WebhookDeliveryRecord]:
        """Pending deliveries whose next attempt is due, oldest first, none to ``skip_receivers``."""
        query = select(WebhookDelivery).where(WebhookDelivery.state == PENDING,
                                              WebhookDelivery.next_attempt_at <= utcnow())
        if skip_receivers:
            query = query.where(WebhookDelivery.receiver.not_in(sorted(skip_receivers)))
        with self.db.reading() as session:
            return [WebhookDeliveryRecord.of(row)
                    for row in session.scalars(query.order_by(WebhookDelivery.next_attempt_at).limit(limit))]

    def claim(self, delivery_id: str, hold_seconds: float) -> tuple[WebhookDeliveryRecord, str | None] | None:
        """Take a due delivery for one attempt (counted now; not due again for ``hold_seconds``,
        which must exceed the attempt's deadline, so a sender that dies mid-attempt only delays
        it): the delivery (``attempts`` is this attempt's number) and the secret that signs it
        (None when the service's key cannot open it), or None when another process took it first."""
        now = utcnow()
        with self.db.writing() as session:
            taken = rowcount(session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == PENDING,
                       WebhookDelivery.next_attempt_at <= now)
                .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + timedelta(seconds=hold_seconds))
            ))
            if not taken:
                return None
            delivery = session.get_one(WebhookDelivery, delivery_id)  # the UPDATE above matched it
            user_id = session.scalar(select(Job.user_id).where(Job.id == delivery.job_id))
            try:
                secret: str | None = webhook_secret_of(session, user_id, self.box) if user_id is not None else None
            except InvalidToken:
                secret = None
            return WebhookDeliveryRecord.of(delivery), secret

    def record_attempt(self, delivery_id: str, attempt: int, *, delivered: bool, status: int | None,
                       error: str | None, retry_in: float | None) -> bool:
        """The outcome of claimed attempt number ``attempt``: delivered; due again in ``retry_in``
        seconds; or (None) failed for good. False (nothing written) when that claim is no longer
        the delivery's latest: its outcome is not this sender's to record."""
        values: dict[str, Any] = {"last_status": status, "last_error": error}
        if delivered:
            values.update(state=DELIVERED, delivered_at=utcnow())
        elif retry_in is None:
            values.update(state=GIVEN_UP)
        else:
            values.update(next_attempt_at=utcnow() + timedelta(seconds=retry_in))
        with self.db.writing() as session:
            return rowcount(session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == attempt,
                       WebhookDelivery.state == PENDING)
                .values(**values))) > 0

    def of_job(self, job_id: str) -> list[WebhookDeliveryRecord]:
        with self.db.reading() as session:
            return [WebhookDeliveryRecord.of(row) for row in session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.created_at))]
