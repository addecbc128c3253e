"""The workers' Celery app: Redis broker, one training task, settings for long GPU jobs.

The job row in the database is the truth; a message carries only the job id. ``acks_late`` +
``reject_on_worker_lost`` + prefetch 1 make delivery at-least-once with one job per worker
process; the lease in the job row (``worker.supervisor``) makes a duplicate delivery harmless,
and the sweeper (``worker.sweeper``, started with the worker) re-queues jobs whose worker was
lost, so the broker's visibility timeout is set above the longest job and never relied on.
The configuration is ``hm2bp_service.dispatch.celery_config``, shared with the senders.

Start a worker: ``hm2bp worker --queue gpu`` (or ``celery -A worker.celery_app worker -Q gpu,cpu -c 1``),
one per GPU.
"""

from __future__ import annotations

import logging
import os

from celery import Celery, signals

from hm2bp_service.dispatch import QUEUES, celery_config
from hm2bp_service.files import owner_only_files
from hm2bp_service.kernels import prepare_cpu_kernels
from hm2bp_service.services import get_services
from hm2bp_service.settings import get_settings

from . import heartbeat, sweeper, webhooks

owner_only_files(get_settings())  # checkpoints, models and the work folder: the owner's only
app = Celery("hm2bp", broker=get_settings().celery_broker_url, include=["worker.tasks"])
app.conf.update(celery_config(get_settings()))


@signals.worker_init.connect
def _prepare_kernels(**_: object) -> None:
    """Before the worker consumes (and says "ready."): the CPU kernels built or found, logged."""
    prepare_cpu_kernels(logging.getLogger("hm2bp.worker").warning)


@signals.worker_process_init.connect
def _fresh_services(**_: object) -> None:
    """A forked pool process builds its own database engine and Redis client."""
    get_services.cache_clear()


@signals.worker_ready.connect
def _start_threads(sender: object = None, **_: object) -> None:
    """The worker's main process also sweeps expired leases, sends due webhooks and announces
    itself (``GET /v1/workers``), each in a thread of its own."""
    services = get_services()
    sweeper.start(services)
    webhooks.start(services)
    try:
        queues = sorted(queue.name for queue in sender.task_consumer.queues)  # type: ignore[attr-defined]
        concurrency = sender.controller.concurrency  # type: ignore[attr-defined]
        name = sender.hostname  # type: ignore[attr-defined]
    except AttributeError:
        queues, concurrency, name = sorted(QUEUES), 1, f"celery@{os.uname().nodename}"
    heartbeat.start(services, name, queues, concurrency)


@signals.worker_shutdown.connect
def _stop_threads(**_: object) -> None:
    sweeper.stop()
    webhooks.stop()
    heartbeat.stop()
