"""Dispatch: which queue a job goes to, and sending its id there.

A message carries only the job id (the database holds the job). ``celery_config`` is the one
Celery configuration, used by the workers' app (``worker.celery_app``) and by the ``Dispatcher``
that the API and the workers' sweepers send with; the dispatcher builds its Celery client at its
first send, so importing the API (or this module) neither imports Celery nor builds an app.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from celery import Celery

TRAIN_TASK = "hm2bp.train"
QUEUES = ("gpu", "cpu")  # gpu: device auto or cuda; cpu: jobs whose spec asks for the CPU


def queue_for(spec: dict[str, Any]) -> str:
    """CPU jobs go to the ``cpu`` queue, everything else (``auto``, ``cuda``) to ``gpu``."""
    return "cpu" if spec.get("training", {}).get("device") == "cpu" else "gpu"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long training jobs (see ``worker.celery_app`` for why each holds)."""
    from kombu import Queue

    visibility = settings.max_job_seconds + 600
    return dict(
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # bounded by the attempt count in the job row
        worker_prefetch_multiplier=1,
        worker_concurrency=1,  # one training process per worker (per GPU)
        # a broker restart must not end the runs in progress (their job rows and leases are in the
        # database); Celery's default would terminate them, costing every running job an attempt.
        # Their message is redelivered at most (after the visibility timeout), and the lease makes that void
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_ignore_result=True,  # job state lives in the database
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="gpu",
        broker_transport_options={"visibility_timeout": visibility},
        visibility_timeout=visibility,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
        worker_hijack_root_logger=False,
    )


class Dispatcher:
    """Sends training messages to the broker of ``settings``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client: Celery | None = None
        self._lock = threading.Lock()

    def send(self, job_id: str, queue: str) -> None:
        """Publish the training message of ``job_id`` on ``queue`` (raises when the broker is down)."""
        self.client().send_task(TRAIN_TASK, args=[job_id], queue=queue)

    def client(self) -> Celery:
        with self._lock:
            if self._client is None:
                from celery import Celery  # deferred: see the module docstring

                self._client = Celery("hm2bp", broker=self.settings.celery_broker_url, set_as_current=False)
                self._client.conf.update(celery_config(self.settings))
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
