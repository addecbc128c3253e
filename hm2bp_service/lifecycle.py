"""The lifecycle of a job, written once: submit, cancel, resume, requeue or give up, terminal transitions.

Routes, the sweeper and the supervisor call these; the store makes each step a conditional
transition, so racing callers (two sweepers, a sweeper and a returning worker, a cancel and a
start) settle on one outcome.

Attempts: taking a job's lease counts an attempt (``Jobs.acquire_lease``). A job may run at most
``max_attempts`` times; after a platform fault (its worker or training process was lost) it goes
back to ``queued`` while ``attempts_left``, else it fails with ``platform_fault``. Deterministic
failures (invalid input, divergence, out of memory) are never retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from hm2bp_core.data import DatasetError, DatasetFacts
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import check_fit

from .admission import QueueFull, admit, live_workers, worker_slots
from .datasets import UnknownDataset, facts_for
from .dispatch import queue_for
from .egress import refuse_unsafe_webhook
from .errors import Conflict, NotFound, Refused, without_paths
from .services import Services
from .states import JobState
from .store import Event, IdempotencyConflict, JobRecord, NewJob, QueueLimit, new_id, utcnow

log = logging.getLogger(__name__)
QUEUED, RUNNING, CANCELLING = JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING
SUCCEEDED, FAILED, CANCELLED = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED
LOG_TAIL = 20  # log lines kept in a failed job's error
LOG_LINE_CHARS = 2000  # of each of them (a traceback is one line): a job's record stays small
_FIELD_AT_START = re.compile(r"^([a-z_]+(?:\.[a-z_]+|\[-?\d+\])+)")


# ---------------------------------------------------------------------- submit
def dataset_facts(services: Services, user_id: int, ref: str) -> DatasetFacts:
    """The facts of the dataset a request names, or a refusal naming the ``dataset`` field."""
    try:
        return facts_for(ref, user_id, services.store, services.settings)
    except UnknownDataset:
        raise NotFound("dataset", ref, "dataset") from None
    except DatasetError as exc:
        raise Refused(str(exc), "dataset") from None


def misfit(spec: TrainingSpec, facts: DatasetFacts) -> tuple[str, str] | None:
    """Why ``spec`` cannot train on a dataset with ``facts``: (spec field path, sentence), or None."""
    try:
        check_fit(spec, facts)
    except ValueError as exc:
        found = _FIELD_AT_START.match(str(exc))
        return (found.group(1) if found else ""), str(exc)
    return None


def new_job(services: Services, user_id: int, *, dataset: str, spec: dict[str, Any], name: str,
            tags: list[str], webhook_url: str | None, **extra: Any) -> NewJob:
    """A job of ``user_id`` on ``dataset`` with the resolved ``spec``, to be queued."""
    return NewJob(id=new_id("job"), user_id=user_id, name=name, dataset=dataset, spec=spec, queue=queue_for(spec),
                  max_attempts=services.settings.max_attempts, tags=tags, webhook_url=webhook_url, **extra)


def auto_name(facts: DatasetFacts, spec: TrainingSpec) -> str:
    """The name of a job whose request gives none: its dataset, layer sizes and epochs, and a short
    random tag so that two such jobs are told apart, e.g. ``digits 100-10 4ep #3fa2``."""
    sizes = "-".join(str(layer.units) if layer.type == "dense" else f"c{layer.channels}" if layer.type == "conv"
                     else f"p{layer.size}" for layer in spec.network.layers)
    return f"{facts.name} {sizes} {spec.training.epochs}ep #{secrets.token_hex(2)}"


def submit(services: Services, user_id: int, *, dataset: str, spec: TrainingSpec, name: str | None,
           tags: list[str], webhook_url: str | None, idempotency_key: str | None) -> tuple[JobRecord, bool]:
    """Queue a job once its dataset exists and fits ``spec``; (its record, created). A repeated
    ``idempotency_key`` returns the first job (created False), or is refused when the request
    differs. Nothing is queued when anything is refused."""
    facts = dataset_facts(services, user_id, dataset)
    problem = misfit(spec, facts)
    if problem is not None:
        field, message = problem
        raise Refused(message, f"spec.{field}" if field else "spec")
    admit(services, user_id, spec, facts)
    refuse_unsafe_webhook(webhook_url, services.settings.webhook_allowed_destinations)
    resolved = spec.to_dict()
    request_hash = hashlib.sha256(json.dumps({"dataset": dataset, "spec": resolved, "name": name, "tags": tags,
                                              "webhook_url": webhook_url}, sort_keys=True).encode()).hexdigest()
    job = new_job(services, user_id, dataset=dataset, spec=resolved, tags=tags, webhook_url=webhook_url,
                  name=name or auto_name(facts, spec),
                  idempotency_key=idempotency_key, request_hash=request_hash)
    settings = services.settings
    try:
        record, created = services.store.jobs.create(job, max_queued=settings.max_queued_jobs)
    except IdempotencyConflict:
        raise Refused("this Idempotency-Key was used for a different request", "Idempotency-Key") from None
    except QueueLimit as full:
        raise QueueFull(full.queued, settings.max_queued_jobs, settings.quota_retry_seconds) from None
    if created:
        dispatch(services, record.id, record.queue)
    return record, created


def dispatch(services: Services, job_id: str | None, queue: str) -> bool:
    """``job_id`` (or nothing new) waits on ``queue``: send the fairest waiting jobs of ``queue``
    while its workers have room (``Jobs.claim_fair``: one dispatched, not yet started job per
    live worker slot, at least one; users interleaved by their running jobs, each user at most
    ``max_running_jobs``). Jobs wait in the database, not in the broker, so a later user's job
    does not wait behind every job queued before it. Called when a job is queued, starts or
    ends, and by every worker's sweeper; True when ``job_id`` was sent now. A job whose message
    cannot be sent (the broker is down) waits again, and a later call sends it."""
    try:
        slots = worker_slots(queue, live_workers(services))
    except Exception as exc:  # the registry (Redis) is down: so is the broker
        log.warning("jobs not dispatched now: %s", exc)
        return False
    claimed = services.store.jobs.claim_fair(queue, slots, services.settings.max_running_jobs)
    for index, job in enumerate(claimed):
        try:
            services.dispatcher.send(job.id, queue)
        except Exception as exc:  # kombu/redis raise many kinds; any of them means "not sent"
            log.warning("jobs queued but not dispatched yet: %s", exc)
            for unsent in claimed[index:]:
                services.store.jobs.unmark_dispatched(unsent.id)
            return False
    return any(job.id == job_id for job in claimed)


def redispatch_lost(services: Services, queue: str) -> int:
    """Make jobs whose message the broker lost wait again, so that ``dispatch`` sends them anew:
    sent more than ``redispatch_seconds`` ago and not taken although a worker of ``queue`` is
    idle (a Redis restart without persistence drops its messages; a worker that dies after taking
    a message and before taking the lease takes it along). As many as there are idle worker
    slots, oldest first; how many. A message that was not lost after all is a duplicate delivery,
    which the lease makes harmless (``Jobs.acquire_lease``)."""
    workers = [info for info in live_workers(services) if queue in (info.get("queues") or [])]
    running = services.store.jobs.run_by([info["name"] for info in workers])
    idle = sum(int(info.get("concurrency") or 1) for info in workers) - sum(len(jobs) for jobs in running.values())
    if idle <= 0:
        return 0
    before = utcnow() - timedelta(seconds=services.settings.redispatch_seconds)
    lost = services.store.jobs.stale_dispatched(queue, before)[:idle]
    for job in lost:
        log.warning("job %s was sent at %s and not taken by an idle worker: sending it again", job.id,
                    job.dispatched_at)
        services.store.jobs.unmark_dispatched(job.id)
    return len(lost)


# ---------------------------------------------------------------------- cancel
def cancel(services: Services, user_id: int, job_id: str) -> JobRecord | None:
    """A queued job is cancelled at once, a running one becomes ``cancelling`` (its supervisor
    stops the run within seconds); a job that has ended is left as it is. None: not the user's."""
    jobs = services.store.jobs
    for _ in range(3):  # the state may move under us (a worker starts the job): look again
        job = jobs.get(user_id, job_id)
        if job is None or job.state not in (QUEUED, RUNNING):
            return job
        if job.state == QUEUED:
            event = jobs.transition(job_id, CANCELLED, "cancelled by the user before it started", expect=(QUEUED,))
        else:
            event = jobs.transition(job_id, CANCELLING, "cancel requested by the user", expect=(RUNNING,),
                                    values={"cancel_requested": True})
        if event is not None:
            services.bus.push(event)
            break
    return jobs.by_id(job_id)


# ---------------------------------------------------------------------- resume
RESUMABLE = (CANCELLED, FAILED)


def resume(services: Services, user_id: int, job_id: str) -> JobRecord:
    """Queue a cancelled or failed job of ``user_id`` again, the same job (same id): its next run
    continues from its last checkpoint (the last finished epoch), with a fresh attempt budget.
    ``NotFound`` when it is not the user's, ``Conflict`` naming its state when it is not resumable,
    and the dataset must still exist. The job leaves its terminal state only here."""
    jobs = services.store.jobs
    job = jobs.get(user_id, job_id)
    if job is None:
        raise NotFound("job", job_id)
    if job.state not in RESUMABLE:
        raise Conflict(f"job {job_id} is {job.state}: only a cancelled or failed job can be resumed", "state")
    dataset_facts(services, user_id, job.dataset)
    values = {"error": None, "finished_at": None, "cancel_requested": False, "lease_owner": None,
              "lease_until": None, "dispatched_at": None, "max_attempts": job.attempts + services.settings.max_attempts}
    event = jobs.transition(job_id, QUEUED, f"resumed by the user after it was {job.state}; continues from its "
                            "last checkpoint", expect=(job.state,), values=values)
    if event is None:
        raise Conflict(f"job {job_id} changed state while it was being resumed; look again", "state")
    services.bus.push(event)
    dispatch(services, job_id, job.queue)
    record = jobs.by_id(job_id)
    assert record is not None
    return record


# ---------------------------------------------------------------------- the end of a run
def attempts_left(job: JobRecord) -> bool:
    """May the job be delivered once more after this attempt?"""
    return job.attempts < job.max_attempts


def transition(services: Services, job_id: str, state: JobState, reason: str, *, owner: str | None = None,
           values: dict[str, Any] | None = None, expect: tuple[JobState, ...] = (RUNNING, CANCELLING),
           lease_expired: bool = False) -> Event | None:
    """Move a running job to ``state`` (while ``owner`` holds its lease, when given) and stream the event."""
    event = services.store.jobs.transition(job_id, state, reason, expect=expect, owner=owner, values=values,
                                           lease_expired=lease_expired)
    if event is not None:
        services.bus.push(event)
    return event


def fail(services: Services, job_id: str, reason: str, message: str, **where: Any) -> Event | None:
    """End the job ``failed`` with ``error = {reason, message, log_tail}``."""
    message = without_paths(message)  # users see it; server folders are none of their business
    error = {"reason": reason, "message": message,
             "log_tail": [without_paths(line)[:LOG_LINE_CHARS] for line in services.store.events.last_logs(job_id,
                                                                                                         LOG_TAIL)]}
    return transition(services, job_id, FAILED, message, values={"error": error}, **where)


def requeue_or_give_up(services: Services, job: JobRecord, why: str, *, owner: str | None = None,
                       lease_expired: bool = False) -> Event | None:
    """After a platform fault (``why``): a job being cancelled becomes ``cancelled``; one with
    attempts left goes back to ``queued`` and is dispatched again (the next run resumes from its
    last checkpoint); the others fail. Only while ``owner`` holds the lease (the supervisor) or
    while the lease is expired (the sweeper): whoever loses that race changes nothing."""
    where: dict[str, Any] = {"owner": owner, "lease_expired": lease_expired}
    current = services.store.jobs.by_id(job.id)
    if current is None:
        return None
    if current.state == CANCELLING:
        return transition(services, job.id, CANCELLED, f"cancelled; {why}", expect=(CANCELLING,), **where)
    if not attempts_left(current):
        return fail(services, job.id, "platform_fault", f"The job was given up after {current.attempts} attempts; "
                    f"the last one ended because {why}.", expect=(RUNNING,), **where)
    event = transition(services, job.id, QUEUED, f"{why}; re-queued for attempt {current.attempts + 1}",
                   expect=(RUNNING,), values={"lease_owner": None, "lease_until": None, "dispatched_at": None}, **where)
    if event is not None:
        dispatch(services, job.id, current.queue)
    return event
