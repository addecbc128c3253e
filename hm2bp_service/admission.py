"""Admission by cost: what a job needs (device, memory, work) against what the live workers offer
and what the service allows, checked at submit so that nothing is queued that cannot run.

- **device**: ``training.device`` ``cuda`` needs a live GPU worker (a worker still probing its
  device counts as one); ``auto`` and ``cpu`` run anywhere.
- **memory**: the core's estimate of the run's peak (``hm2bp_core.footprint``) must fit the
  memory limit of some live worker that could take the job (each worker advertises the limit
  its training children run under, ``Settings.job_memory_bytes``); with no live worker it is
  not checked (the job waits for one, and its child's limit still holds).
- **work**: epochs x samples x time steps at most ``max_sample_steps``.
- **quota**: at most ``max_queued_jobs`` queued jobs per user (429 with ``Retry-After``; the
  store counts again in the insert's transaction, ``Jobs.create``).

Refusals are ``Refused`` naming the spec field at fault, with the estimate and the limit.
``capabilities`` is the same knowledge as ``GET /v1/capabilities`` shows it.
"""

from __future__ import annotations

from typing import Any

import redis

from hm2bp_core.data import DatasetFacts
from hm2bp_core.footprint import Footprint, footprint
from hm2bp_core.spec import TrainingSpec

from .dispatch import queue_for
from .errors import Refused
from .services import Services

GIB = 1 << 30
MIB = 1 << 20
FIELDS_OF_PART = {  # which spec fields make each part of the peak large
    "weights": ["spec.network.layers"],
    "rasters": ["spec.training.batch_size", "spec.encoding.time_steps", "spec.network.layers"],
    "chunks": ["spec.network.layers", "spec.training.precision"],
    "dataset": ["dataset"],
}


class QueueFull(Refused):
    """The user's queue is full: a 429 whose ``Retry-After`` says when to try again."""

    def __init__(self, queued: int, limit: int, retry_after: int):
        super().__init__(f"you have {queued} queued jobs, the limit (max_queued_jobs) is {limit}: wait for some "
                         "to start, or cancel some", "max_queued_jobs", status=429)
        self.headers = {"Retry-After": str(retry_after)}


def live_workers(services: Services) -> list[dict[str, Any]]:
    return [info for info in services.workers.live() if isinstance(info, dict)]


def is_gpu_worker(info: dict[str, Any]) -> bool:
    """A worker with a GPU, or one still probing its device (it may have one)."""
    device = info.get("device")
    return device is None or (isinstance(device, dict) and device.get("kind") == "cuda")


def takers(spec: dict[str, Any], workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live workers that could run a job of ``spec`` (its queue and device)."""
    queue = queue_for(spec)
    found = [info for info in workers if queue in (info.get("queues") or [queue])]
    if str(spec.get("training", {}).get("device", "auto")).startswith("cuda"):
        found = [info for info in found if is_gpu_worker(info)]
    return found


def worker_slots(queue: str, workers: list[dict[str, Any]]) -> int:
    """Training processes of the live workers that consume ``queue`` (at least 1: one may be starting)."""
    return max(1, sum(int(info.get("concurrency") or 1) for info in workers if queue in (info.get("queues") or [])))


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


def check_device(spec: TrainingSpec, workers: list[dict[str, Any]]) -> None:
    if spec.training.device.startswith("cuda") and not any(is_gpu_worker(info) for info in workers):
        raise Refused(f"training.device is {spec.training.device!r} but no worker with a GPU is registered "
                      f"({len(workers)} live worker(s), all CPU only): use 'auto' or 'cpu'", "spec.training.device")


def check_memory(estimate: Footprint, limit: int | None) -> None:
    if limit is None or estimate.peak_bytes <= limit:
        return
    fields = FIELDS_OF_PART[estimate.largest_part()]
    detail = (f"out of memory: this job needs about {gib(estimate.peak_bytes)} (estimate), the largest worker "
              f"allows {gib(limit)} per job; most of it is for its {estimate.largest_part()}: reduce "
              + " or ".join(fields))
    raise Refused(detail, fields[0], errors=[{"field": field, "message": detail} for field in fields])


def check_work(estimate: Footprint, limit: int) -> None:
    if estimate.sample_steps <= limit:
        return
    detail = (f"too much work: epochs x samples x time steps is {estimate.sample_steps:.3g}, the limit "
              f"(max_sample_steps) is {limit:.3g}: reduce training.epochs, encoding.time_steps or "
              "training.max_train_samples")
    fields = ["spec.training.epochs", "spec.encoding.time_steps", "spec.training.max_train_samples"]
    raise Refused(detail, fields[0], errors=[{"field": field, "message": detail} for field in fields])


def check_queue(services: Services, user_id: int, adding: int = 1) -> None:
    """QueueFull when ``adding`` more queued jobs would take the user past ``max_queued_jobs``."""
    settings = services.settings
    queued = services.store.jobs.count_queued(user_id)
    if queued + adding > settings.max_queued_jobs:
        raise QueueFull(queued, settings.max_queued_jobs, settings.quota_retry_seconds)


def admit(services: Services, user_id: int, spec: TrainingSpec, facts: DatasetFacts) -> Footprint:
    """Refuse the job when it cannot run or is over a limit (see the module docstring); its estimate."""
    check_queue(services, user_id)
    return admit_cost(services, spec, facts)


def admit_cost(services: Services, spec: TrainingSpec, facts: DatasetFacts) -> Footprint:
    """The device, memory and work checks of ``admit`` (a sweep checks its queue quota once for all
    its points, then each point's cost). While the registry (Redis) is unreachable, the checks
    against live workers are skipped: the job is queued and waits for the broker, as every job
    does then."""
    estimate = footprint(spec, facts)
    check_work(estimate, services.settings.max_sample_steps)
    try:
        workers = live_workers(services)
    except redis.RedisError:
        return estimate
    check_device(spec, workers)
    limits = [int(info["memory_limit_bytes"]) for info in takers(spec.to_dict(), workers)
              if isinstance(info.get("memory_limit_bytes"), int)]
    check_memory(estimate, max(limits) if limits else None)
    return estimate


def capabilities(services: Services) -> dict[str, Any]:
    """``GET /v1/capabilities``: the devices and per-job memory the live workers offer, and the quotas."""
    workers = live_workers(services)
    limits = [info["memory_limit_bytes"] for info in workers if isinstance(info.get("memory_limit_bytes"), int)]
    settings = services.settings
    return {
        "devices": ["cpu", "cuda"] if any(is_gpu_worker(info) for info in workers) else ["cpu"],
        "workers": len(workers),
        "max_job_memory_mib": max(limits) // MIB if limits else None,
        "quotas": {"max_queued_jobs": settings.max_queued_jobs, "max_running_jobs": settings.max_running_jobs,
                   "max_stored_bytes": settings.max_stored_bytes},
    }
