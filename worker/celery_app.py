"""The Celery app: Redis broker, one training task, settings for long GPU jobs.

The job row in the database is the truth; a message carries only the job id. ``acks_late`` +
``reject_on_worker_lost`` + prefetch 1 make delivery at-least-once with one job per worker
process; the lease in the job row (``worker.supervisor``) makes a duplicate delivery harmless,
and the sweeper (``worker.sweeper``, started with the worker) re-queues jobs whose worker was
lost, so the broker's visibility timeout is set above the longest job and never relied on.

Start a worker: ``hm2bp worker --queue gpu`` (or ``celery -A worker.celery_app worker -Q gpu,cpu -c 1``),
one per GPU.
"""

from __future__ import annotations

import os

from celery import Celery, signals
from kombu import Queue

from .settings import Settings, get_settings
from .store import JobStore

TRAIN_TASK = "hm2bp.train"
QUEUES = ("gpu", "cpu")


def make_celery(settings: Settings) -> Celery:
    app = Celery("hm2bp", broker=settings.celery_broker_url, include=["worker.tasks"])
    visibility = settings.max_job_seconds + 600
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # bounded by the attempt count in the job row
        worker_prefetch_multiplier=1,
        worker_concurrency=1,  # one training process per worker (per GPU)
        worker_cancel_long_running_tasks_on_connection_loss=True,
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
    return app


app = make_celery(get_settings())


def queue_for(spec: dict) -> str:
    """CPU jobs go to the ``cpu`` queue, everything else (``auto``, ``cuda``) to ``gpu``."""
    return "cpu" if spec.get("training", {}).get("device") == "cpu" else "gpu"


def dispatch(store: JobStore, job_id: str, queue: str) -> None:
    """Send the training message for a queued job and note that it was sent."""
    app.send_task(TRAIN_TASK, args=[job_id], queue=queue)
    store.mark_dispatched(job_id)


@signals.worker_process_init.connect
def _fresh_services(**_: object) -> None:
    """A forked pool process builds its own database engine and Redis client."""
    from .services import get_services

    get_services.cache_clear()


@signals.worker_ready.connect
def _start_sweeper(sender: object = None, **_: object) -> None:
    """The worker's main process also sweeps expired leases, sends due webhooks and announces
    itself (``GET /v1/workers``), each in a thread of its own."""
    from .presence import start_heartbeat
    from .services import get_services
    from .sweeper import start_sweeper
    from .webhooks import start_webhook_sender

    start_sweeper()
    start_webhook_sender(get_services())
    settings = get_settings()
    try:
        queues = sorted(queue.name for queue in sender.task_consumer.queues)
        concurrency = sender.controller.concurrency
        name = sender.hostname
    except AttributeError:
        queues, concurrency, name = sorted(QUEUES), 1, f"celery@{os.uname().nodename}"
    start_heartbeat(settings.redis_client_url, settings.redis_prefix, name, queues, concurrency,
                    settings.worker_heartbeat_seconds)


@signals.worker_shutdown.connect
def _stop_sweeper(sender: object = None, **_: object) -> None:
    from .presence import stop_heartbeat
    from .sweeper import stop_sweeper
    from .webhooks import stop_webhook_sender

    stop_sweeper()
    stop_webhook_sender()
    stop_heartbeat()
