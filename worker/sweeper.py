"""The sweeper: a thread in each worker's main process that repairs what crashes leave behind.

Every ``sweep_seconds`` it (1) takes jobs whose lease expired (their worker was lost): a
``cancelling`` one becomes ``cancelled``, one with attempts left goes back to ``queued`` and is
dispatched again (the next worker resumes it from its checkpoint), the others fail; and
(2) dispatches queued jobs whose message was never sent (the broker was down at submission).
Every change is a conditional update, so any number of workers may sweep at once.
"""

from __future__ import annotations

import logging
import threading

from .celery_app import dispatch
from .services import Services, get_services
from .store import CANCELLED, CANCELLING, FAILED, QUEUED, RUNNING

log = logging.getLogger(__name__)
_running: "Sweeper | None" = None


class Sweeper(threading.Thread):
    def __init__(self, services: Services):
        super().__init__(name="hm2bp-sweeper", daemon=True)
        self.services = services
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.services.settings.sweep_seconds):
            try:
                self.sweep()
            except Exception:  # the database or broker is down: try again next round
                log.exception("sweep failed")

    def sweep(self) -> None:
        store, bus = self.services.store, self.services.bus
        for job in store.expired_leases():
            lost = f"the lease of {job.lease_owner} expired (worker lost)"
            if job.state == CANCELLING:
                event = store.transition(job.id, CANCELLED, f"cancelled; {lost}", expect=(CANCELLING,),
                                         lease_expired=True)
            elif job.attempts >= job.max_attempts:
                message = f"The job was given up after {job.attempts} attempts: {lost} each time."
                event = store.transition(job.id, FAILED, message, expect=(RUNNING,), lease_expired=True, values={
                    "error": {"reason": "platform_fault", "message": message, "log_tail": store.last_logs(job.id, 20)}})
            else:
                event = store.transition(
                    job.id, QUEUED, f"{lost}; re-queued for attempt {job.attempts + 1}", expect=(RUNNING,),
                    lease_expired=True, values={"lease_owner": None, "lease_until": None, "dispatched_at": None})
            if event is not None:
                bus.push(event)
                if event.data["state"] == QUEUED:
                    dispatch(store, job.id, job.queue)
        for job in store.undispatched(older_than=self.services.settings.sweep_seconds):
            dispatch(store, job.id, job.queue)


def start_sweeper() -> None:
    global _running
    if _running is None:
        _running = Sweeper(get_services())
        _running.start()


def stop_sweeper() -> None:
    global _running
    if _running is not None:
        _running.stopped.set()
        _running = None
