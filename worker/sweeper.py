"""The sweeper: a thread in each worker's main process that repairs what crashes leave behind.

Every ``sweep_seconds`` it (1) takes jobs whose lease expired (their worker was lost) and applies
``lifecycle.requeue_or_give_up`` to each (a ``cancelling`` one becomes ``cancelled``, one with
attempts left goes back to ``queued`` and is dispatched again, the others fail);
(2) dispatches waiting jobs while workers have room (``lifecycle.dispatch``: jobs wait in the
database and are sent fairly; this also sends those whose message failed while the broker was down,
and, through ``lifecycle.redispatch_lost``, those whose message the broker lost);
and (3) advances every open search (``sweeps.advance``: its next trials, or done), so a search goes
on after its worker or the API restarted.
Every change is a conditional update, so any number of workers may sweep at once.
"""

from __future__ import annotations

import logging
import threading

from hm2bp_service import lifecycle, sweeps
from hm2bp_service.dispatch import QUEUES
from hm2bp_service.services import Services

log = logging.getLogger(__name__)
_running: Sweeper | None = None


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
        jobs = self.services.store.jobs
        for job in jobs.expired_leases():
            lifecycle.requeue_or_give_up(self.services, job, f"the lease of {job.lease_owner} expired (worker lost)",
                                         lease_expired=True)
        for queue in QUEUES:
            lifecycle.redispatch_lost(self.services, queue)
            lifecycle.dispatch(self.services, None, queue)
        for sweep in self.services.store.sweeps.open_searches():
            sweeps.advance(self.services, sweep.id)


def start(services: Services) -> None:
    global _running
    if _running is None:
        _running = Sweeper(services)
        _running.start()


def stop() -> None:
    global _running
    if _running is not None:
        _running.stopped.set()
        _running = None
