"""Searches with Optuna: what the next trials try, and whether a running trial is pruned.

The service's database is the study's storage: a search keeps no Optuna state of its own. Each
call rebuilds an in-memory Optuna study from the sweep's jobs (their parameters, their state and
their per-epoch objective, the *intermediate values*), then asks the sampler or the pruner. So a
search survives any restart of the API or the workers, and two workers asking at once see the
same history (the store serializes who makes trials, ``Sweeps.add_trials``).

* Samplers: ``random`` (``RandomSampler``) and ``tpe`` (``TPESampler`` with the constant liar,
  so trials still running count as tried); seeded by the sweep's seed plus the trials made so
  far, so every call draws anew and a replay draws the same.
* Pruners, fed by each trial's epoch events (step = epoch, value = the objective metric at that
  epoch): ``median`` (``MedianPruner``: stop a trial whose best value so far is below the median
  of the finished trials at the same epoch) and ``halving`` (``SuccessiveHalvingPruner``, rungs
  at epochs 1, 3, 9, ...: a trial reaching a rung goes on only in the top third of the trials
  that reached it). Their rung records (trial system attributes) are derived from the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from .states import JobState

optuna.logging.set_verbosity(optuna.logging.WARNING)

OBJECTIVES = ("test_accuracy", "val_accuracy")  # epoch metrics a search may maximize
METHODS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving")
HALVING_RATE = 3  # successive halving keeps the top 1/3 at each rung; rungs at epochs 1, 3, 9, ...
_STATES = {JobState.SUCCEEDED: TrialState.COMPLETE, JobState.PRUNED: TrialState.PRUNED,
           JobState.FAILED: TrialState.FAIL, JobState.CANCELLED: TrialState.FAIL}


@dataclass
class Trial:
    """One job of a sweep as the search sees it: its point, state and objective per epoch."""

    params: dict[str, Any]
    state: JobState
    values: dict[int, float] = field(default_factory=dict)  # epoch -> objective metric


def trial_of(params: dict[str, Any] | None, state: JobState, epochs: list[dict[str, Any]], objective: str) -> Trial:
    values = {int(row["epoch"]): float(row[objective]) for row in epochs
              if isinstance(row.get(objective), (int, float)) and math.isfinite(row[objective])}
    return Trial(params or {}, state, values)


def distribution(bounds: dict[str, Any]) -> BaseDistribution:
    """``{"low", "high", "log", "integer"}`` or ``{"choices"}`` as an Optuna distribution."""
    if "choices" in bounds:
        return CategoricalDistribution(list(bounds["choices"]))
    if bounds.get("integer"):
        return IntDistribution(int(bounds["low"]), int(bounds["high"]), log=bool(bounds.get("log")))
    return FloatDistribution(float(bounds["low"]), float(bounds["high"]), log=bool(bounds.get("log")))


def _pruner(search: dict[str, Any]) -> optuna.pruners.BasePruner:
    kind = search.get("pruner", "none")
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=search.get("prune_startup_trials", 2), n_warmup_steps=0)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=HALVING_RATE,
                                                      min_early_stopping_rate=0)
    return optuna.pruners.NopPruner()


def _sampler(search: dict[str, Any], made: int) -> optuna.samplers.BaseSampler:
    seed = int(search.get("seed", 0)) + made
    if search["method"] == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                          n_startup_trials=search.get("startup_trials", 4))
    return optuna.samplers.RandomSampler(seed=seed)


def _rungs(values: dict[int, float], until: int) -> dict[str, float]:
    """The rung records successive halving leaves on a trial that reported up to epoch ``until``."""
    attrs, rung = {}, 0
    while HALVING_RATE ** rung <= until and HALVING_RATE ** rung in values:
        attrs[f"completed_rung_{rung}"] = values[HALVING_RATE ** rung]
        rung += 1
    return attrs


def _frozen(trial: Trial, distributions: dict[str, BaseDistribution], *, running: bool = False,
            until: int | None = None) -> FrozenTrial:
    state = TrialState.RUNNING if running or not trial.state.is_terminal() else _STATES[trial.state]
    values = {step: v for step, v in trial.values.items() if until is None or step <= until}
    params = {k: v for k, v in trial.params.items() if k in distributions}
    value = max(values.values()) if state == TrialState.COMPLETE and values else None
    if state == TrialState.COMPLETE and value is None:
        state = TrialState.FAIL  # succeeded without the objective (no validation split): no information
    last = max(values) if values else 0
    return create_trial(state=state, value=value, params=params,
                        distributions={k: distributions[k] for k in params}, intermediate_values=values,
                        system_attrs=_rungs(values, until - 1 if running and until is not None else last))


def _study(search: dict[str, Any], history: list[Trial], made: int) -> optuna.Study:
    distributions = {key: distribution(bounds) for key, bounds in (search.get("space") or {}).items()}
    study = optuna.create_study(direction="maximize", sampler=_sampler(search, made), pruner=_pruner(search))
    for trial in history:
        study.add_trial(_frozen(trial, distributions))
    return study


def suggest(search: dict[str, Any], history: list[Trial], count: int) -> list[dict[str, Any]]:
    """The points of the next ``count`` trials, given the sweep's trials so far."""
    distributions = {key: distribution(bounds) for key, bounds in search["space"].items()}
    study = _study(search, history, len(history))
    points = []
    for _ in range(count):
        asked = study.ask(distributions)
        points.append({key: asked.params[key] for key in search["space"]})
    return points


def prune_reason(search: dict[str, Any], others: list[Trial], current: Trial, epoch: int) -> str | None:
    """Why the ``current`` trial, which just finished ``epoch``, should stop; None to go on."""
    if search.get("pruner", "none") == "none" or epoch not in current.values:
        return None
    distributions = {key: distribution(bounds) for key, bounds in (search.get("space") or {}).items()}
    study = _study(search, others, len(others))
    study.add_trial(_frozen(current, distributions, running=True, until=epoch))
    judged = study.get_trials(deepcopy=False)[-1]
    if not study.pruner.prune(study, judged):
        return None
    metric, value = search.get("objective", "test_accuracy"), current.values[epoch]
    if search["pruner"] == "median":
        peers = [t.values[epoch] for t in others if t.state == JobState.SUCCEEDED and epoch in t.values]
        return (f"{metric} {max(v for s, v in current.values.items() if s <= epoch):.4f} after epoch {epoch} is below "
                f"the median {median(peers):.4f} of the {len(peers)} finished trials at that epoch")
    peers = [t.values[epoch] for t in others if epoch in t.values]
    return (f"{metric} {value:.4f} at epoch {epoch} is not in the top 1/{HALVING_RATE} of the "
            f"{len(peers) + 1} trials that reached that epoch")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
