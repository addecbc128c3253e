"""The Celery task: a thin shell around ``Supervisor`` (the message carries only the job id)."""

from __future__ import annotations

import os

from .celery_app import TRAIN_TASK, app
from .services import get_services
from .supervisor import Supervisor


@app.task(name=TRAIN_TASK, bind=True)
def train_job(self, job_id: str) -> None:
    owner = f"{self.request.hostname}:{os.getpid()}:{self.request.id}"
    Supervisor(job_id, owner, get_services()).run()
