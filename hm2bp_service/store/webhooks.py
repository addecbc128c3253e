"""The webhook outbox: one delivery row per terminal state of a job that has a ``webhook_url``.

``add_delivery`` runs in the transaction that ends the job, so there is exactly one delivery per
terminal state and none is lost if the process dies right after. Senders claim an attempt with a
conditional UPDATE, so any number of them may send without sending one attempt twice.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .database import Database, rowcount
from .records import JobRecord, WebhookDeliveryRecord
from .schema import Job, User, WebhookDelivery, new_id, new_webhook_secret, utcnow

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
    session.add(WebhookDelivery(id=delivery_id, job_id=job.id, url=row.webhook_url, event=event,
                                body=json.dumps(body, separators=(",", ":")), state=PENDING))


class WebhookOutbox:
    def __init__(self, db: Database):
        self.db = db

    def due(self, limit: int = 20) -> list[WebhookDeliveryRecord]:
        with self.db.reading() as session:
            return [WebhookDeliveryRecord.of(row) for row in session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= utcnow())
                .order_by(WebhookDelivery.next_attempt_at).limit(limit))]

    def claim(self, delivery_id: str, hold_seconds: float) -> tuple[WebhookDeliveryRecord, str] | None:
        """Take a due delivery for one attempt (counted now; not due again for ``hold_seconds``,
        so a sender that dies mid-attempt only delays it): the delivery and the secret that signs
        it, or None when another process took it first."""
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
            secret = session.scalar(select(User.webhook_secret).join(Job, Job.user_id == User.id)
                                    .where(Job.id == delivery.job_id))
            if secret is None:
                secret = new_webhook_secret()
                session.execute(update(User).where(User.id == select(Job.user_id).where(Job.id == delivery.job_id)
                                                   .scalar_subquery()).values(webhook_secret=secret))
            return WebhookDeliveryRecord.of(delivery), secret

    def record_attempt(self, delivery_id: str, *, delivered: bool, status: int | None, error: str | None,
                       retry_in: float | None) -> None:
        """The outcome of an attempt: delivered; due again in ``retry_in`` seconds; or (None) failed for good."""
        values: dict[str, Any] = {"last_status": status, "last_error": error}
        if delivered:
            values.update(state=DELIVERED, delivered_at=utcnow())
        elif retry_in is None:
            values.update(state=GIVEN_UP)
        else:
            values.update(next_attempt_at=utcnow() + timedelta(seconds=retry_in))
        with self.db.writing() as session:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))

    def of_job(self, job_id: str) -> list[WebhookDeliveryRecord]:
        with self.db.reading() as session:
            return [WebhookDeliveryRecord.of(row) for row in session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.created_at))]
