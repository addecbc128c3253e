"""``/v1/sweeps``: a grid over named spec fields, one job per point; each point's spec is
validated and fit-checked before anything is queued, and the sweep reports its best job."""

from __future__ import annotations

import copy
import itertools
import logging
import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import ValidationError

from hm2bp_core.data import DatasetError
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import check_fit
from worker.celery_app import dispatch, queue_for
from worker.store import ACTIVE, TERMINAL, Job, Sweep, new_id

from .. import schemas
from ..deps import ServicesDep, UserDep, not_found
from ..errors import error_response, field_path, unprocessable
from .jobs import FIELD_AT_START, dataset_for_fit

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])
ERRORS = {code: {"model": schemas.ErrorBody} for code in (401, 404, 422)}
PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]|(-?\d+)")


class BadPath(ValueError):
    pass


def parse_path(key: str) -> list[str | int]:
    """``"network.layers[0].units"`` (or ``network.layers.0.units``) -> ["network", "layers", 0, "units"]."""
    parts: list[str | int] = []
    for segment in key.split("."):
        position = 0
        if not segment:
            raise BadPath(f"{key!r} is not a field path (an empty part)")
        while position < len(segment):
            found = PATH_PART.match(segment, position)
            if found is None or (found.group(1) and position):
                raise BadPath(f"{key!r} is not a field path like training.lr or network.layers[0].units")
            name, index, bare = found.groups()
            parts.append(name if name else int(index if index is not None else bare))
            position = found.end()
    return parts


def set_path(spec: dict[str, Any], parts: list[str | int], value: Any, key: str) -> None:
    """Set ``value`` at ``parts`` inside the resolved spec; the field's parent must exist."""
    node: Any = spec
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, key, parts[:depth + 1])
    last = parts[-1]
    if isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and -len(node) <= last < len(node):
        node[last] = value
    else:
        raise BadPath(f"{key!r}: {_shown(parts)} is not a field of the spec")


def _child(node: Any, part: str | int, key: str, seen: list[str | int]) -> Any:
    if isinstance(node, dict) and isinstance(part, str) and isinstance(node.get(part), (dict, list)):
        return node[part]
    if isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
        return node[part]
    raise BadPath(f"{key!r}: {_shown(seen)} is not a section or list of the spec")


def _shown(parts: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(parts))


def normalized(parts: list[str | int], spec: dict[str, Any]) -> list[str | int]:
    """``parts`` with negative list indices counted from the front of the spec's lists."""
    out: list[str | int] = []
    node: Any = spec
    for part in parts:
        if isinstance(part, int) and isinstance(node, list) and part < 0:
            part += len(node)
        out.append(part)
        node = node.get(part) if isinstance(node, dict) and isinstance(part, str) else \
            node[part] if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node) else None
    return out


def _sets(loc: tuple | list, parts: list[str | int]) -> bool:
    """Whether a problem at ``loc`` (pydantic's, with a union tag after a list index) lies under ``parts``."""
    matched = 0
    for position, step in enumerate(loc):
        if matched == len(parts):
            break
        if step == parts[matched]:
            matched += 1
        elif not (isinstance(step, str) and position and isinstance(loc[position - 1], int)):
            return False
    return matched == len(parts)


def _field_for(loc: tuple | list, grid_parts: dict[str, list[str | int]]) -> str:
    """The request field to blame for a problem at spec ``loc``: the grid key that sets it, else spec.PATH."""
    for key, parts in grid_parts.items():
        if _sets(loc, parts):
            return f"grid.{key}"
    return f"spec.{field_path(loc)}"


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def sweep_record(sweep: Sweep, jobs: list[Job]) -> schemas.Sweep:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state] = counts.get(job.state, 0) + 1
    done = all(job.state in TERMINAL for job in jobs)
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
def create_sweep(body: schemas.SweepCreate, user: UserDep, services: ServicesDep):
    """Queue one job per point of ``grid`` (every combination of its values) over the base
    ``spec``. Every point's spec is validated and fit to the dataset first: a bad value is a 422
    naming its grid key (``grid.training.lr``), and nothing is queued."""
    settings = services.settings
    points = 1
    for values in body.grid.values():
        points *= len(values)
    if points > settings.max_sweep_points:
        return unprocessable(f"the grid has {points} points; at most {settings.max_sweep_points} are allowed", "grid")
    base = body.spec.to_dict()
    grid_parts: dict[str, list[str | int]] = {}
    for key, values in body.grid.items():
        if not all(_finite(value) for value in values):
            return unprocessable(f"{key!r}: the values must be finite (JSON has no NaN or infinity)", f"grid.{key}")
        try:
            grid_parts[key] = normalized(parse_path(key), base)
        except BadPath as exc:
            return unprocessable(str(exc), f"grid.{key}")
    try:
        dataset = dataset_for_fit(body.dataset, user.id, services)
    except DatasetError as exc:
        return unprocessable(f"dataset {body.dataset!r} cannot be loaded: {exc}", "dataset")
    specs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for number, point in enumerate(grid_points(body.grid), start=1):
        raw = copy.deepcopy(base)
        where = f"grid point {number} of {points} ({', '.join(f'{k}={v!r}' for k, v in point.items())})"
        try:
            for key, value in point.items():
                set_path(raw, grid_parts[key], copy.deepcopy(value), key)
            spec = TrainingSpec.model_validate(raw)
            check_fit(spec, dataset)
        except BadPath as exc:
            return unprocessable(str(exc), f"grid.{key}")
        except ValidationError as exc:
            problems = [(_field_for(err["loc"], grid_parts), err["msg"]) for err in exc.errors()]
            detail = f"invalid {where}: " + "; ".join(f"{field}: {message}" for field, message in problems[:5])
            return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, detail,
                                  [{"field": field, "message": f"{where}: {message}"} for field, message in problems])
        except ValueError as exc:
            found = FIELD_AT_START.match(str(exc))
            field = "spec"
            if found:
                try:
                    field = _field_for(normalized(parse_path(found.group(1)), raw), grid_parts)
                except BadPath:
                    pass
            return unprocessable(f"{where}: {exc}", field)
        specs.append((point, spec.to_dict()))
    name = body.name or f"sweep of {dataset.name} over {', '.join(body.grid)}"
    sweep = Sweep(id=new_id("swp"), user_id=user.id, name=name, dataset=body.dataset, spec=base,
                  grid={key: list(values) for key, values in body.grid.items()})
    webhook_url = str(body.webhook_url) if body.webhook_url else None
    jobs = [Job(id=new_id("job"), user_id=user.id, tags=body.tags, dataset=body.dataset, spec=resolved,
                name=f"{name} [{', '.join(f'{k}={v}' for k, v in point.items())}]"[:256], queue=queue_for(resolved),
                max_attempts=settings.max_attempts, webhook_url=webhook_url, sweep_params=point)
            for point, resolved in specs]
    services.store.create_sweep(sweep, jobs)
    for job in jobs:
        try:
            dispatch(services.store, job.id, job.queue)
        except Exception as exc:  # the broker is down: the sweeper sends it later
            log.warning("job %s of sweep %s queued but not dispatched yet: %s", job.id, sweep.id, exc)
    return sweep_record(sweep, services.store.sweep_jobs([sweep.id])[sweep.id])


@router.get("", response_model=schemas.SweepPage, responses=ERRORS)
def list_sweeps(user: UserDep, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> schemas.SweepPage:
    """The caller's sweeps, newest first."""
    sweeps, total = services.store.list_sweeps(user.id, limit, offset)
    jobs = services.store.sweep_jobs([s.id for s in sweeps])
    return schemas.SweepPage(items=[sweep_record(s, jobs[s.id]) for s in sweeps], total=total, limit=limit,
                             offset=offset)


def _owned_sweep(user_id: int, sweep_id: str, services) -> Sweep:
    sweep = services.store.get_sweep(user_id, sweep_id)
    if sweep is None:
        raise not_found("sweep", sweep_id)
    return sweep


@router.get("/{sweep_id}", response_model=schemas.Sweep, responses=ERRORS)
def get_sweep(user: UserDep, services: ServicesDep, sweep_id: Annotated[str, Path(max_length=64)]) -> schemas.Sweep:
    """The sweep's jobs with their states and accuracies; ``best`` once every job has ended."""
    sweep = _owned_sweep(user.id, sweep_id, services)
    return sweep_record(sweep, services.store.sweep_jobs([sweep.id])[sweep.id])


@router.post("/{sweep_id}/cancel", response_model=schemas.Sweep, responses=ERRORS)
def cancel_sweep(user: UserDep, services: ServicesDep, sweep_id: Annotated[str, Path(max_length=64)]) -> schemas.Sweep:
    """Cancel every job of the sweep that has not ended (as ``POST /v1/jobs/{id}/cancel`` does)."""
    sweep = _owned_sweep(user.id, sweep_id, services)
    for job in services.store.sweep_jobs([sweep.id])[sweep.id]:
        if job.state in ACTIVE:
            services.store.request_cancel(user.id, job.id)
    return sweep_record(sweep, services.store.sweep_jobs([sweep.id])[sweep.id])
