"""Sweeps: a grid over named spec fields, one job per point; or a search (random or TPE, with
Optuna: ``search``) over ranges and choices of spec fields, whose trials are made as earlier ones
end, at most ``max_concurrent`` at once and ``budget`` in all, with bad trials pruned after an epoch.

Every grid point's spec is validated and fit to the dataset before anything is queued: a bad value
is refused naming its grid key (``grid.training.lr``), and then no job of the sweep exists. A
search checks each range's ends and each choice the same way (``space.training.lr``).

A search moves on (``advance``) when one of its trials ends (the worker's supervisor calls it),
and every worker's sweeper calls it too for every open search, so a search whose worker died or
whose API restarted carries on: its whole state is its jobs in the database.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from typing import Any

from pydantic import ValidationError

from hm2bp_core.data import DatasetFacts
from hm2bp_core.spec import TrainingSpec

from . import search as searching
from .admission import admit_cost, check_queue
from .egress import refuse_unsafe_webhook
from .errors import Refused, field_path
from .lifecycle import cancel, dataset_facts, dispatch, misfit, new_job
from .services import Services
from .states import ACTIVE
from .store import JobRecord, NewJob, SweepRecord, new_id

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


def _field_for(loc: tuple | list, grid_parts: dict[str, list[str | int]], section: str = "grid") -> str:
    """The request field to blame for a problem at spec ``loc``: the grid key that sets it, else spec.PATH."""
    for key, parts in grid_parts.items():
        if _sets(loc, parts):
            return f"{section}.{key}"
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


def _key_parts(keys: list[str], base: dict[str, Any], section: str) -> dict[str, list[str | int]]:
    parts: dict[str, list[str | int]] = {}
    for key in keys:
        try:
            parts[key] = normalized(parse_path(key), base)
        except BadPath as exc:
            raise Refused(str(exc), f"{section}.{key}") from None
    return parts


def point_spec(base: dict[str, Any], parts: dict[str, list[str | int]], point: dict[str, Any], where: str,
               facts: DatasetFacts, section: str = "grid") -> dict[str, Any]:
    """The resolved spec of ``point`` (field path -> value) over ``base``, or a refusal naming the
    ``section.KEY`` that set the bad value (``where`` says which point it was)."""
    raw = copy.deepcopy(base)
    for key, value in point.items():
        try:
            set_path(raw, parts[key], copy.deepcopy(value), key)
        except BadPath as exc:
            raise Refused(str(exc), f"{section}.{key}") from None
    try:
        spec = TrainingSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [(_field_for(err["loc"], parts, section), err["msg"]) for err in exc.errors()]
        detail = f"invalid {where}: " + "; ".join(f"{field}: {message}" for field, message in problems[:5])
        raise Refused(detail, problems[0][0], errors=[{"field": field, "message": f"{where}: {message}"}
                                                      for field, message in problems]) from None
    problem = misfit(spec, facts)
    if problem is not None:
        path, message = problem
        field = "spec"
        if path:
            try:
                field = _field_for(normalized(parse_path(path), raw), parts, section)
            except BadPath:
                pass
        raise Refused(f"{where}: {message}", field)
    return spec.to_dict()


def _shown_point(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def create_sweep(services: Services, user_id: int, *, dataset: str, spec: TrainingSpec,
                 grid: dict[str, list[Any]], name: str | None, tags: list[str],
                 webhook_url: str | None, pruning: dict[str, Any] | None = None) -> tuple[SweepRecord, list[JobRecord]]:
    """Queue one job per point of ``grid`` (every combination of its values) over the base ``spec``;
    with ``pruning`` (``{"pruner", "objective", ...}``) its jobs are pruned as a search's are."""
    limit = services.settings.max_sweep_points
    points = math.prod(len(values) for values in grid.values())
    if points > limit:
        raise Refused(f"the grid has {points} points; at most {limit} are allowed", "grid")
    base = spec.to_dict()
    for key, values in grid.items():
        if not all(_finite(value) for value in values):
            raise Refused(f"{key!r}: the values must be finite (JSON has no NaN or infinity)", f"grid.{key}")
    grid_parts = _key_parts(list(grid), base, "grid")
    facts = dataset_facts(services, user_id, dataset)
    specs = [(point, point_spec(base, grid_parts, point, f"grid point {number} of {points} "
                                f"({', '.join(f'{k}={v!r}' for k, v in point.items())})", facts))
             for number, point in enumerate(grid_points(grid), start=1)]
    refuse_unsafe_webhook(webhook_url, services.settings.webhook_allowed_destinations)
    check_queue(services, user_id, adding=len(specs))
    for _, resolved in specs:
        admit_cost(services, TrainingSpec.model_validate(resolved), facts)
    name = name or f"sweep of {facts.name} over {', '.join(grid)}"
    sweep_id = new_id("swp")
    jobs = [new_job(services, user_id, dataset=dataset, spec=resolved, tags=tags, webhook_url=webhook_url,
                    name=f"{name} [{', '.join(f'{k}={v}' for k, v in point.items())}]"[:256], sweep_id=sweep_id,
                    sweep_params=point)
            for point, resolved in specs]
    search = {"method": "grid", **pruning} if pruning else None
    sweep, records = services.store.sweeps.create(sweep_id, user_id, name, dataset, base,
                                                  {key: list(values) for key, values in grid.items()}, jobs,
                                                  search=search)
    for job in records:
        dispatch(services, job.id, job.queue)
    return sweep, records


def create_search(services: Services, user_id: int, *, dataset: str, spec: TrainingSpec, search: dict[str, Any],
                  name: str | None, tags: list[str], webhook_url: str | None) -> tuple[SweepRecord, list[JobRecord]]:
    """Make a search (``search``: method random or tpe, space, budget, max_concurrent, objective,
    pruner, seed) and queue its first ``max_concurrent`` trials. Each range's ends and each choice
    are checked on the base spec first; nothing is made when one is refused."""
    limit = services.settings.max_sweep_points
    if search["budget"] > limit:
        raise Refused(f"the budget is {search['budget']} trials; at most {limit} are allowed", "budget")
    if search["objective"] == "val_accuracy" and not spec.training.validation_split:
        raise Refused("the objective val_accuracy needs spec.training.validation_split above 0", "objective")
    base = spec.to_dict()
    space = search["space"]
    parts = _key_parts(list(space), base, "space")
    facts = dataset_facts(services, user_id, dataset)
    for key, bounds in space.items():
        ends = bounds["choices"] if "choices" in bounds else [bounds["low"], bounds["high"]]
        for value in ends:
            value = int(value) if bounds.get("integer") else value
            point_spec(base, parts, {key: value}, f"space {key}={value!r}", facts, "space")
    refuse_unsafe_webhook(webhook_url, services.settings.webhook_allowed_destinations)
    check_queue(services, user_id, adding=search["max_concurrent"])
    admit_cost(services, spec, facts)  # the base spec; the values a trial draws are not cost-checked
    name = name or f"{search['method']} search of {facts.name} over {', '.join(space)}"
    sweep_id = new_id("swp")
    sweep, _ = services.store.sweeps.create(sweep_id, user_id, name, dataset, base, {}, [], search=search)
    return sweep, advance(services, sweep.id, tags=tags, webhook_url=webhook_url)


def _history(services: Services, search: dict[str, Any], jobs: list[JobRecord]) -> list[searching.Trial]:
    epochs = services.store.jobs.epochs_of([job.id for job in jobs])
    return [searching.trial_of(job.sweep_params, job.state, epochs[job.id], search.get("objective", "test_accuracy"))
            for job in jobs]


def advance(services: Services, sweep_id: str, *, tags: list[str] | None = None,
            webhook_url: str | None = None) -> list[JobRecord]:
    """Make and queue the search's next trials while fewer than ``max_concurrent`` run and fewer
    than ``budget`` exist; mark it done once the last has ended. Any number of callers may race:
    the store makes each trial once. The trials made (none for a grid, a cancelled or done sweep)."""
    facts: list[DatasetFacts] = []

    def make(sweep: SweepRecord, jobs: list[JobRecord]) -> list[NewJob]:
        search = sweep.search or {}
        if search.get("method", "grid") == "grid":
            return []
        active = sum(job.state in ACTIVE for job in jobs)
        room = min(search["max_concurrent"] - active, search["budget"] - len(jobs))
        if room <= 0:
            return []
        if not facts:
            facts.append(dataset_facts(services, sweep.user_id, sweep.dataset))
        first = jobs[0] if jobs else None
        parts = _key_parts(list(search["space"]), sweep.spec, "space")
        made = []
        for number, point in enumerate(searching.suggest(search, _history(services, search, jobs), room),
                                       start=len(jobs) + 1):
            where = f"trial {number} ({_shown_point(point)})"
            resolved = point_spec(sweep.spec, parts, point, where, facts[0], "space")
            made.append(new_job(services, sweep.user_id, dataset=sweep.dataset, spec=resolved,
                                tags=tags if tags is not None else (first.tags if first else []),
                                webhook_url=webhook_url if first is None else first.webhook_url,
                                name=f"{sweep.name} [{where}]"[:256], sweep_id=sweep.id, sweep_params=point))
        return made

    records = services.store.sweeps.add_trials(sweep_id, make)
    for job in records:
        dispatch(services, job.id, job.queue)
    sweep = services.store.sweeps.by_id(sweep_id)
    if sweep is not None and sweep.search and sweep.search.get("method", "grid") != "grid" and not records:
        jobs = services.store.jobs.of_sweeps([sweep_id])[sweep_id]
        if len(jobs) >= sweep.search["budget"] and all(job.state.is_terminal() for job in jobs):
            services.store.sweeps.mark(sweep_id, "done_at")
    return records


def prune_reason(services: Services, job: JobRecord, epoch: int) -> str | None:
    """Why the sweep trial ``job``, which just finished ``epoch`` (recorded in the store), should be
    pruned, per its sweep's pruner; None to go on (and for a job of no pruned sweep, or its last epoch)."""
    if job.sweep_id is None or epoch >= int(job.spec["training"]["epochs"]):
        return None
    sweep = services.store.sweeps.by_id(job.sweep_id)
    if sweep is None or not sweep.search or sweep.search.get("pruner", "none") == "none":
        return None
    jobs = services.store.jobs.of_sweeps([sweep.id])[sweep.id]
    history = _history(services, sweep.search, jobs)
    mine = [k for k, other in enumerate(jobs) if other.id == job.id]
    if not mine:
        return None
    current = history.pop(mine[0])
    return searching.prune_reason(sweep.search, history, current, epoch)


def cancel_sweep(services: Services, user_id: int, sweep: SweepRecord) -> None:
    """Make no more trials, and cancel every job of the sweep that has not ended (as cancelling each job does)."""
    services.store.sweeps.mark(sweep.id, "cancelled_at")
    for job in services.store.jobs.of_sweeps([sweep.id])[sweep.id]:
        if job.state in ACTIVE:
            cancel(services, user_id, job.id)
