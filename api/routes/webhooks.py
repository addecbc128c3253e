"""Webhooks: the caller's signing secret (``/v1/webhook-secret``) and a job's deliveries
(``/v1/jobs/{id}/webhooks``). Delivery itself is the workers' (``worker.webhooks``)."""

from __future__ import annotations

from fastapi import APIRouter

from .. import schemas
from ..deps import JobDep, ServicesDep, UserDep

router = APIRouter(prefix="/v1", tags=["webhooks"])
ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 422)}


@router.get("/webhook-secret", response_model=schemas.WebhookSecret, responses=ERRORS)
def webhook_secret(user: UserDep, services: ServicesDep) -> schemas.WebhookSecret:
    """The secret that signs your webhook deliveries: each POST carries ``X-HM2BP-Timestamp`` (unix
    seconds) and ``X-HM2BP-Signature: sha256=HEX``, the HMAC-SHA256 of ``TIMESTAMP + "." + body``
    under this secret. Check it with ``hm2bp_client.verify_webhook``."""
    return schemas.WebhookSecret(secret=services.store.users.webhook_secret(user.id))


@router.post("/webhook-secret/rotate", response_model=schemas.WebhookSecret, responses=ERRORS)
def rotate_webhook_secret(user: UserDep, services: ServicesDep) -> schemas.WebhookSecret:
    """Replace the secret; every delivery from now on, retries included, is signed with the new one."""
    return schemas.WebhookSecret(secret=services.store.users.rotate_webhook_secret(user.id))


@router.get("/jobs/{job_id}/webhooks", response_model=schemas.WebhookDeliveryList, responses=ERRORS)
def job_webhooks(job: JobDep, services: ServicesDep) -> schemas.WebhookDeliveryList:
    """The job's webhook deliveries (one per terminal state) with their attempts and last answers."""
    items = []
    for row in services.store.webhooks.of_job(job.id):
        item = schemas.WebhookDelivery.model_validate(row)
        if item.state != "pending":
            item.next_attempt_at = None
        items.append(item)
    return schemas.WebhookDeliveryList(items=items)
