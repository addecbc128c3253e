"""The job states, one enum for the store, the API's schemas, the workers and the client.

``queued -> running -> succeeded | failed | cancelled | pruned``, with ``cancelling`` between a
cancel request and the run's stop, and ``running -> queued`` only when a platform fault is retried.
``pruned``: a trial of a search stopped after an epoch because it fell behind the other trials
(``hm2bp_service.search``; the reason is in its transition and its ``error``).
Terminal states never change (every transition is a conditional UPDATE on the current state).
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"

    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PRUNED})
ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING)
LEASED = (JobState.RUNNING, JobState.CANCELLING)  # a worker holds the job's lease
