"""``/v1/jobs``: submit (validated and fit-checked before queueing), list, read, cancel,
metrics, logs and artifacts."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from functools import lru_cache
from pathlib import Path as FilePath
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse

from hm2bp_core.data import Dataset, DatasetError, load_dataset
from hm2bp_core.train import check_fit
from worker.artifacts import UnsafePath, safe_relative_path
from worker.celery_app import dispatch, queue_for
from worker.datasets import BUILTIN_PREFIX, dataset_path
from worker.services import Services, job_key
from worker.store import STATES, IdempotencyConflict, Job, JobRow, User, new_id

from .. import schemas
from ..blocking import store_read, writer_thread
from ..deps import JobDep, ServicesDep, UserDep, not_found
from ..errors import unprocessable
from .datasets import BUILTINS

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 422)}
FIELD_AT_START = re.compile(r"^([a-z_]+(?:\.[a-z_]+|\[-?\d+\])+)")


def job_record(job: Job | JobRow) -> schemas.Job:
    return schemas.Job.model_validate(job)


@lru_cache(maxsize=4)
def _load(path: str) -> Dataset:
    """Uploads loaded for fit checks; they are content-addressed, so the cache never goes stale."""
    return load_dataset(path)


def _builtin_stand_in(meta: schemas.Dataset) -> Dataset:
    """One sample of a built-in's shape and class count: enough for ``check_fit``, and no
    request ever downloads or loads MNIST (the worker does, when the job runs)."""
    sample = np.zeros((1, *meta.input_shape), dtype=np.uint8)
    labels = np.zeros(1, dtype=np.int64)
    return Dataset(meta.name, sample, labels, sample, labels, num_classes=meta.num_classes, scale=255.0,
                   source=meta.id)


def dataset_for_fit(ref: str, user_id: int, services: Services) -> Dataset:
    if ref.startswith(BUILTIN_PREFIX):
        if ref not in BUILTINS:
            raise not_found("dataset", ref)
        return _builtin_stand_in(BUILTINS[ref])
    if services.store.get_dataset(user_id, ref) is None:
        raise not_found("dataset", ref)
    return _load(str(dataset_path(ref, services.store, services.artifacts, services.settings)))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.Job,
             responses={200: {"model": schemas.Job, "description": "replay of an earlier Idempotency-Key"}, **ERRORS})
async def submit_job(body: schemas.JobCreate, request: Request, response: Response, user: UserDep,
                     services: ServicesDep, idempotency_key: Annotated[str | None, Header(max_length=256)] = None):
    """Queue a training job. The spec is validated (422 naming the field), the dataset must exist
    (404) and fit the network (422) before anything is queued. A repeated ``Idempotency-Key``
    returns the first job (200); the same key with a different body is a 422."""
    return await writer_thread(request, _submit, body, response, user, services, idempotency_key)


def _submit(body: schemas.JobCreate, response: Response, user: User, services: Services,
            idempotency_key: str | None):
    spec = body.spec
    try:
        dataset = dataset_for_fit(body.dataset, user.id, services)
    except DatasetError as exc:
        return unprocessable(f"dataset {body.dataset!r} cannot be loaded: {exc}", "dataset")
    try:
        check_fit(spec, dataset)
    except ValueError as exc:
        found = FIELD_AT_START.match(str(exc))
        return unprocessable(str(exc), f"spec.{found.group(1)}" if found else "spec")
    resolved = spec.to_dict()
    request_hash = hashlib.sha256(json.dumps(
        {"dataset": body.dataset, "spec": resolved, "name": body.name, "tags": body.tags,
         "webhook_url": str(body.webhook_url) if body.webhook_url else None}, sort_keys=True).encode()).hexdigest()
    job = Job(id=new_id("job"), user_id=user.id, name=body.name or f"{dataset.name} {spec.network.layers[-1].units}-class",
              tags=body.tags, dataset=body.dataset, spec=resolved, queue=queue_for(resolved),
              max_attempts=services.settings.max_attempts, idempotency_key=idempotency_key, request_hash=request_hash,
              webhook_url=str(body.webhook_url) if body.webhook_url else None)
    try:
        job, created = services.store.create_job(job)
    except IdempotencyConflict:
        return unprocessable("this Idempotency-Key was used for a different request", "Idempotency-Key")
    if not created:
        response.status_code = status.HTTP_200_OK
        return job_record(job)
    try:
        dispatch(services.store, job.id, job.queue)
    except Exception as exc:  # the broker is down: the job stays queued and the sweeper sends it later
        log.warning("job %s queued but not dispatched yet: %s", job.id, exc)
    return job_record(job)


@router.get("", response_model=schemas.JobPage, responses=ERRORS)
async def list_jobs(request: Request, user: UserDep, services: ServicesDep,
                    state: Annotated[str | None, Query(pattern="^(" + "|".join(STATES) + ")$")] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> schemas.JobPage:
    """The caller's jobs, newest first, optionally of one state."""
    jobs, total = await store_read(request, services.store.list_jobs, user.id, state, limit, offset)
    return schemas.JobPage(items=[job_record(j) for j in jobs], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=schemas.Job, responses=ERRORS)
async def get_job(job: JobDep) -> schemas.Job:
    return job_record(job)


@router.post("/{job_id}/cancel", response_model=schemas.Job, responses=ERRORS)
async def cancel_job(job: JobDep, user: UserDep, services: ServicesDep, request: Request) -> schemas.Job:
    """Cancel: a queued job ends at once; a running one becomes ``cancelling`` and stops within
    seconds; a job that has ended is returned unchanged."""
    return job_record(await writer_thread(request, services.store.request_cancel, user.id, job.id))


@router.get("/{job_id}/metrics", response_model=schemas.Metrics, responses=ERRORS)
def job_metrics(job: JobDep, services: ServicesDep) -> schemas.Metrics:
    """Per-epoch metrics (train/test accuracy, loss, firing rates, seconds) and the state history."""
    transitions = [schemas.Transition.model_validate(t) for t in services.store.transitions(job.id)]
    return schemas.Metrics(epochs=services.store.epochs(job.id), final=job.metrics, transitions=transitions)


@router.get("/{job_id}/logs", response_model=schemas.Logs, responses=ERRORS)
def job_logs(job: JobDep, services: ServicesDep, after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
             limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> schemas.Logs:
    """Log lines after event id ``after``."""
    events = services.store.events_after(job.id, after, types=("log",), limit=limit)
    return schemas.Logs(items=[schemas.LogLine(id=e.seq, at=e.at, message=e.data.get("message", "")) for e in events])


@router.get("/{job_id}/artifacts", response_model=schemas.ArtifactList, responses=ERRORS)
def list_artifacts(job: JobDep, services: ServicesDep) -> schemas.ArtifactList:
    """The job's files: model.safetensors, spec.json, metrics.json, confusion.json and rasters.json
    (spike trains of a few test samples) once it succeeded; checkpoint files while it runs."""
    files = services.artifacts.files(job_key(job.id))
    return schemas.ArtifactList(items=[schemas.Artifact(name=n, size_bytes=s) for n, s in sorted(files.items())])


@router.get("/{job_id}/artifacts/{name}", response_class=Response, responses={
    200: {"content": {"application/octet-stream": {}}, "description": "the file"}, **ERRORS})
def download_artifact(job: JobDep, services: ServicesDep, name: Annotated[str, Path(max_length=255)]) -> Response:
    try:
        relative = safe_relative_path(name)
    except UnsafePath:
        raise not_found("artifact", name) from None
    if len(relative.parts) != 1 or name not in services.artifacts.files(job_key(job.id)):
        raise not_found("artifact", name)
    key = f"{job_key(job.id)}/{relative}"
    local = services.artifacts.local_path(key)
    if local is not None:
        return FileResponse(local, filename=name, media_type="application/octet-stream")

    def chunks():
        with services.artifacts.open(key) as handle:
            while block := handle.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Disposition": f'attachment; filename="{FilePath(name).name}"'})
