"""``/v1/sweeps``: a grid over named spec fields, one job per point, or a random or TPE search
with a trial budget and pruning (``hm2bp_service.sweeps``); each point's spec (each range's ends)
is validated and fit-checked before anything is queued, and the sweep reports its best job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from hm2bp_service import sweeps
from hm2bp_service.errors import Refused
from hm2bp_service.services import Services
from hm2bp_service.store import JobRecord, SweepRecord

from .. import schemas
from ..deps import ServicesDep, UserDep, not_found

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])
ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 422)}


def sweep_record(sweep: SweepRecord, jobs: list[JobRecord], epochs: dict[str, list[dict]]) -> schemas.Sweep:
    """The sweep's record; ``epochs`` (``Jobs.epochs_of``) give each job's objective so far."""
    objective = (sweep.search or {}).get("objective", "test_accuracy")
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state] = counts.get(job.state, 0) + 1
    done = all(job.state.is_terminal() for job in jobs)
    if sweep.search and sweep.search.get("method", "grid") != "grid":
        done = done and (sweep.cancelled_at is not None or len(jobs) >= sweep.search["budget"])
    rows = []
    for job in jobs:
        values = [row[objective] for row in epochs.get(job.id, []) if isinstance(row.get(objective), (int, float))]
        error = job.error or {}
        rows.append(schemas.SweepJob(id=job.id, name=job.name, state=job.state, params=job.sweep_params or {},
                                     best_test_accuracy=(job.metrics or {}).get("best_test_accuracy"),
                                     objective=max(values) if values else None, epochs=len(epochs.get(job.id, [])),
                                     progress=job.progress, reason=error.get("message")))

    def best_of(candidates: list[schemas.SweepJob]) -> schemas.SweepBest | None:
        scored = [row for row in candidates if row.objective is not None and row.best_test_accuracy is not None]
        if not scored:
            return None
        top = max(scored, key=lambda row: row.objective or 0.0)
        return schemas.SweepBest(job_id=top.id, params=top.params, best_test_accuracy=top.best_test_accuracy or 0.0,
                                 objective=top.objective)

    best = best_of([row for row in rows if row.state == "succeeded"]) if done else None
    return schemas.Sweep(id=sweep.id, name=sweep.name, dataset=sweep.dataset, spec=sweep.spec, grid=sweep.grid,
                         search=sweep.search, state="done" if done else "active", counts=counts, jobs=rows,
                         best=best, leader=best_of(rows), created_at=sweep.created_at)


def _record(services: Services, sweep: SweepRecord) -> schemas.Sweep:
    jobs = services.store.jobs.of_sweeps([sweep.id])[sweep.id]
    return sweep_record(sweep, jobs, services.store.jobs.epochs_of([job.id for job in jobs]))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.Sweep, responses=ERRORS)
def post_sweep(body: schemas.SweepCreate, user: UserDep, services: ServicesDep) -> schemas.Sweep:
    """``method`` grid: queue one job per point of ``grid`` (every combination of its values) over
    the base ``spec``; every point's spec is validated and fit to the dataset first (a bad value is
    a 422 naming its grid key, ``grid.training.lr``, and nothing is queued). ``random`` or ``tpe``:
    a search of ``budget`` trials over ``space`` (ranges and choices of spec fields), at most
    ``max_concurrent`` at once, each made when an earlier one ends; with a ``pruner`` a trial that
    falls behind after an epoch ends ``pruned``. The sweep's ``objective`` is an epoch metric."""
    webhook_url = str(body.webhook_url) if body.webhook_url else None
    search = body.search()
    if body.method == "grid":
        if body.grid is None:
            raise Refused("method grid needs grid: spec field path -> values", "grid")
        pruning = None if search["pruner"] == "none" else {k: search[k] for k in (
            "objective", "pruner", "prune_startup_trials")}
        sweep, _ = sweeps.create_sweep(services, user.id, dataset=body.dataset, spec=body.spec, grid=body.grid,
                                       name=body.name, tags=body.tags, webhook_url=webhook_url, pruning=pruning)
    else:
        for field, value in (("space", body.space), ("budget", body.budget)):
            if value is None:
                raise Refused(f"method {body.method} needs {field}", field)
        sweep, _ = sweeps.create_search(services, user.id, dataset=body.dataset, spec=body.spec, search=search,
                                        name=body.name, tags=body.tags, webhook_url=webhook_url)
    return _record(services, sweep)


@router.get("", response_model=schemas.SweepPage, responses=ERRORS)
def list_sweeps(user: UserDep, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> schemas.SweepPage:
    """The caller's sweeps, newest first."""
    page, total = services.store.sweeps.page(user.id, limit, offset)
    jobs = services.store.jobs.of_sweeps([s.id for s in page])
    epochs = services.store.jobs.epochs_of([job.id for s in page for job in jobs[s.id]])
    return schemas.SweepPage(items=[sweep_record(s, jobs[s.id], epochs) for s in page], total=total, limit=limit,
                             offset=offset)


def _owned_sweep(user_id: int, sweep_id: str, services: Services) -> SweepRecord:
    sweep = services.store.sweeps.get(user_id, sweep_id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep


@router.get("/{sweep_id}", response_model=schemas.Sweep, responses=ERRORS)
def get_sweep(user: UserDep, services: ServicesDep, sweep_id: Annotated[str, Path(max_length=64)]) -> schemas.Sweep:
    """The sweep's jobs with their states and accuracies; ``best`` once every job has ended."""
    return _record(services, _owned_sweep(user.id, sweep_id, services))


@router.post("/{sweep_id}/cancel", response_model=schemas.Sweep, responses=ERRORS)
def cancel_sweep(user: UserDep, services: ServicesDep, sweep_id: Annotated[str, Path(max_length=64)]) -> schemas.Sweep:
    """Make no more trials and cancel every job of the sweep that has not ended (as
    ``POST /v1/jobs/{id}/cancel`` does)."""
    sweep = _owned_sweep(user.id, sweep_id, services)
    sweeps.cancel_sweep(services, user.id, sweep)
    return _record(services, _owned_sweep(user.id, sweep_id, services))
