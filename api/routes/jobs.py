"""``/v1/jobs``: submit (validated and fit-checked before queueing), list, read, cancel, resume,
metrics, logs and artifacts."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError

from hm2bp_core.reference import reference_for
from hm2bp_core.spec import TrainingSpec
from hm2bp_service import lifecycle
from hm2bp_service.artifacts import UnsafePath, safe_relative_path
from hm2bp_service.services import Services, job_key
from hm2bp_service.states import JobState
from hm2bp_service.store import JobRecord, UserRecord

from .. import schemas
from ..blocking import store_read, writer_thread
from ..deps import JobDep, ServicesDep, UserDep, not_found

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 422)}


def job_record(job: JobRecord) -> schemas.Job:
    return schemas.Job.model_validate(job)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.Job,
             responses={200: {"model": schemas.Job, "description": "replay of an earlier Idempotency-Key"}, **ERRORS})
async def submit_job(body: schemas.JobCreate, request: Request, response: Response, user: UserDep,
                     services: ServicesDep, idempotency_key: Annotated[str | None, Header(max_length=256)] = None):
    """Queue a training job. The spec is validated (422 naming the field), the dataset must exist
    (404) and fit the network (422) before anything is queued. A repeated ``Idempotency-Key``
    returns the first job (200); the same key with a different body is a 422."""
    job, created = await writer_thread(request, _submit, body, user, services, idempotency_key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return job_record(job)


def _submit(body: schemas.JobCreate, user: UserRecord, services: Services,
            idempotency_key: str | None) -> tuple[JobRecord, bool]:
    return lifecycle.submit(services, user.id, dataset=body.dataset, spec=body.spec, name=body.name, tags=body.tags,
                            webhook_url=str(body.webhook_url) if body.webhook_url else None,
                            idempotency_key=idempotency_key)


@router.get("", response_model=schemas.JobPage, responses=ERRORS)
async def list_jobs(request: Request, user: UserDep, services: ServicesDep,
                    state: JobState | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> schemas.JobPage:
    """The caller's jobs, newest first, optionally of one state."""
    jobs, total = await store_read(request, services.store.jobs.page, user.id, state, limit, offset)
    return schemas.JobPage(items=[job_record(j) for j in jobs], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=schemas.Job, responses=ERRORS)
async def get_job(job: JobDep) -> schemas.Job:
    return job_record(job)


@router.post("/{job_id}/cancel", response_model=schemas.Job, responses=ERRORS)
async def cancel_job(job: JobDep, user: UserDep, services: ServicesDep, request: Request) -> schemas.Job:
    """Cancel: a queued job ends at once; a running one becomes ``cancelling`` and stops within
    seconds; a job that has ended is returned unchanged."""
    return job_record(await writer_thread(request, lifecycle.cancel, services, user.id, job.id))


@router.post("/{job_id}/resume", response_model=schemas.Job,
             responses={**ERRORS, 409: {"model": schemas.ErrorBody}})
async def resume_job(job: JobDep, user: UserDep, services: ServicesDep, request: Request) -> schemas.Job:
    """Queue a cancelled or failed job again (same id); its run continues from its last
    checkpoint. 409 naming the state for a job in any other state."""
    return job_record(await writer_thread(request, lifecycle.resume, services, user.id, job.id))


@router.get("/{job_id}/metrics", response_model=schemas.Metrics, responses=ERRORS)
def job_metrics(job: JobDep, services: ServicesDep) -> schemas.Metrics:
    """Per-epoch metrics (online train accuracy, test accuracy, loss, firing rates, seconds), the
    state history, and the authors' logged curves when the job trains one of the paper's models."""
    transitions = [schemas.Transition.model_validate(t) for t in services.store.jobs.transitions(job.id)]
    return schemas.Metrics(epochs=services.store.jobs.epochs(job.id), final=job.metrics, transitions=transitions,
                           reference=paper_reference(job.spec))


def paper_reference(spec: dict) -> dict | None:
    """The authors' curves of the paper row of a stored spec (None when it is none, or when a spec
    stored by an older version no longer validates)."""
    try:
        return reference_for(TrainingSpec.model_validate(spec))
    except ValidationError:
        return None


@router.get("/{job_id}/logs", response_model=schemas.Logs, responses=ERRORS)
def job_logs(job: JobDep, services: ServicesDep, after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
             limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> schemas.Logs:
    """Log lines after event id ``after``."""
    events = services.store.events.after(job.id, after, types=("log",), limit=limit)
    return schemas.Logs(items=[schemas.LogLine(id=e.seq, at=e.at, message=e.data.get("message", "")) for e in events])


@router.get("/{job_id}/artifacts", response_model=schemas.ArtifactList, responses=ERRORS)
def list_artifacts(job: JobDep, services: ServicesDep) -> schemas.ArtifactList:
    """The job's files: model.safetensors, model.nir (docs/nir.md), spec.json, metrics.json,
    confusion.json and rasters.json (spike trains of a few test samples) once it succeeded;
    checkpoint files while it runs."""
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
