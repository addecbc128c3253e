"""``/v1/sweeps``: a grid over named spec fields, one job per point (``hm2bp_service.sweeps``);
each point's spec is validated and fit-checked before anything is queued, and the sweep reports
its best job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from hm2bp_service import sweeps
from hm2bp_service.services import Services
from hm2bp_service.store import JobRecord, SweepRecord

from .. import schemas
from ..deps import ServicesDep, UserDep, not_found

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])
ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 422)}


def sweep_record(sweep: SweepRecord, jobs: list[JobRecord]) -> schemas.Sweep:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state] = counts.get(job.state, 0) + 1
    done = all(job.state.is_terminal() for job in jobs)
    rows = [schemas.SweepJob(id=job.id, name=job.name, state=job.state, params=job.sweep_params or {},
                             best_test_accuracy=(job.metrics or {}).get("best_test_accuracy")) for job in jobs]
    finished = [row for row in rows if row.state == "succeeded" and row.best_test_accuracy is not None]
    best = None
    if done and finished:
        top = max(finished, key=lambda row: row.best_test_accuracy)
        best = schemas.SweepBest(job_id=top.id, params=top.params, best_test_accuracy=top.best_test_accuracy)
    return schemas.Sweep(id=sweep.id, name=sweep.name, dataset=sweep.dataset, spec=sweep.spec, grid=sweep.grid,
                         state="done" if done else "active", counts=counts, jobs=rows, best=best,
                         created_at=sweep.created_at)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.Sweep, responses=ERRORS)
def post_sweep(body: schemas.SweepCreate, user: UserDep, services: ServicesDep) -> schemas.Sweep:
    """Queue one job per point of ``grid`` (every combination of its values) over the base
    ``spec``. Every point's spec is validated and fit to the dataset first: a bad value is a 422
    naming its grid key (``grid.training.lr``), and nothing is queued."""
    sweep, jobs = sweeps.create_sweep(services, user.id, dataset=body.dataset, spec=body.spec, grid=body.grid,
                               name=body.name, tags=body.tags,
                               webhook_url=str(body.webhook_url) if body.webhook_url else None)
    return sweep_record(sweep, jobs)


@router.get("", response_model=schemas.SweepPage, responses=ERRORS)
def list_sweeps(user: UserDep, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> schemas.SweepPage:
    """The caller's sweeps, newest first."""
    page, total = services.store.sweeps.page(user.id, limit, offset)
    jobs = services.store.jobs.of_sweeps([s.id for s in page])
    return schemas.SweepPage(items=[sweep_record(s, jobs[s.id]) for s in page], total=total, limit=limit,
                             offset=offset)


def _owned_sweep(user_id: int, sweep_id: str, services: Services) -> SweepRecord:
    sweep = services.store.sweeps.get(user_id, sweep_id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep


@router.get("/{sweep_id}", response_model=schemas.Sweep, responses=ERRORS)
def get_sweep(user: UserDep, services: ServicesDep, sweep_id: Annotated[str, Path(max_length=64)]) -> schemas.Sweep:
    """The sweep's jobs with their states and accuracies; ``best`` once every job has ended."""
    sweep = _owned_sweep(user.id, sweep_id, services)
    return sweep_record(sweep, services.store.jobs.of_sweeps([sweep.id])[sweep.id])


@router.post("/{sweep_id}/cancel", response_model=schemas.Sweep, responses=ERRORS)
def cancel_sweep(user: UserDep, services: ServicesDep, sweep_id: Annotated[str, Path(max_length=64)]) -> schemas.Sweep:
    """Cancel every job of the sweep that has not ended (as ``POST /v1/jobs/{id}/cancel`` does)."""
    sweep = _owned_sweep(user.id, sweep_id, services)
    sweeps.cancel_sweep(services, user.id, sweep)
    return sweep_record(sweep, services.store.jobs.of_sweeps([sweep.id])[sweep.id])
