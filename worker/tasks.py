"""The Celery task: a thin shell around ``Supervisor`` (the message carries only the job id)."""

from __future__ import annotations

import os

from hm2bp_service.dispatch import TRAIN_TASK
from hm2bp_service.services import get_services

from .celery_app import app
from .supervisor import Supervisor


@app.task(name=TRAIN_TASK, bind=True)
def train_job(self, job_id: str) -> None:
    owner = f"{self.request.hostname}:{os.getpid()}:{self.request.id}"
    Supervisor(job_id, owner, get_services()).run()
