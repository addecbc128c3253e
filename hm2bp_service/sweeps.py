"""Sweeps: a grid over named spec fields, one job per point.

Every point's spec is validated and fit to the dataset before anything is queued: a bad value is
refused naming its grid key (``grid.training.lr``), and then no job of the sweep exists.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from typing import Any

from pydantic import ValidationError

from hm2bp_core.spec import TrainingSpec

from .egress import refuse_unsafe_webhook
from .errors import Refused, field_path
from .lifecycle import cancel, dataset_facts, dispatch, misfit, new_job
from .services import Services
from .states import ACTIVE
from .store import JobRecord, SweepRecord, new_id

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
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def create_sweep(services: Services, user_id: int, *, dataset: str, spec: TrainingSpec,
                 grid: dict[str, list[Any]], name: str | None, tags: list[str],
                 webhook_url: str | None) -> tuple[SweepRecord, list[JobRecord]]:
    """Queue one job per point of ``grid`` (every combination of its values) over the base ``spec``."""
    limit = services.settings.max_sweep_points
    points = math.prod(len(values) for values in grid.values())
    if points > limit:
        raise Refused(f"the grid has {points} points; at most {limit} are allowed", "grid")
    base = spec.to_dict()
    grid_parts: dict[str, list[str | int]] = {}
    for key, values in grid.items():
        if not all(_finite(value) for value in values):
            raise Refused(f"{key!r}: the values must be finite (JSON has no NaN or infinity)", f"grid.{key}")
        try:
            grid_parts[key] = normalized(parse_path(key), base)
        except BadPath as exc:
            raise Refused(str(exc), f"grid.{key}") from None
    facts = dataset_facts(services, user_id, dataset)
    specs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for number, point in enumerate(grid_points(grid), start=1):
        raw = copy.deepcopy(base)
        where = f"grid point {number} of {points} ({', '.join(f'{k}={v!r}' for k, v in point.items())})"
        for key, value in point.items():
            try:
                set_path(raw, grid_parts[key], copy.deepcopy(value), key)
            except BadPath as exc:
                raise Refused(str(exc), f"grid.{key}") from None
        try:
            point_spec = TrainingSpec.model_validate(raw)
        except ValidationError as exc:
            problems = [(_field_for(err["loc"], grid_parts), err["msg"]) for err in exc.errors()]
            detail = f"invalid {where}: " + "; ".join(f"{field}: {message}" for field, message in problems[:5])
            raise Refused(detail, problems[0][0], errors=[{"field": field, "message": f"{where}: {message}"}
                                                          for field, message in problems]) from None
        problem = misfit(point_spec, facts)
        if problem is not None:
            path, message = problem
            field = "spec"
            if path:
                try:
                    field = _field_for(normalized(parse_path(path), raw), grid_parts)
                except BadPath:
                    pass
            raise Refused(f"{where}: {message}", field)
        specs.append((point, point_spec.to_dict()))
    refuse_unsafe_webhook(webhook_url, services.settings.webhook_allowed_destinations)
    name = name or f"sweep of {facts.name} over {', '.join(grid)}"
    sweep_id = new_id("swp")
    jobs = [new_job(services, user_id, dataset=dataset, spec=resolved, tags=tags, webhook_url=webhook_url,
                    name=f"{name} [{', '.join(f'{k}={v}' for k, v in point.items())}]"[:256], sweep_id=sweep_id,
                    sweep_params=point)
            for point, resolved in specs]
    sweep, records = services.store.sweeps.create(sweep_id, user_id, name, dataset, base,
                                                  {key: list(values) for key, values in grid.items()}, jobs)
    for job in records:
        dispatch(services, job.id, job.queue)
    return sweep, records


def cancel_sweep(services: Services, user_id: int, sweep: SweepRecord) -> None:
    """Cancel every job of the sweep that has not ended (as cancelling each job does)."""
    for job in services.store.jobs.of_sweeps([sweep.id])[sweep.id]:
        if job.state in ACTIVE:
            cancel(services, user_id, job.id)
