"""The supervisor of one delivery of a training job (runs inside the Celery task).

1. Take the job's lease (``JobStore.acquire_lease``); a delivery that cannot take it (the job
   ended, is cancelling, or another worker's lease is alive) does nothing.
2. Spawn the training child (``python -m worker.child``) and watch it: renew the lease every
   ``lease_seconds / 6``; when the job turns ``cancelling``, set the child's cancel flag, then
   SIGTERM after ``cancel_grace_seconds`` and SIGKILL one grace later (to its process group).
3. Record the outcome: succeeded, cancelled, pruned (a search's trial that fell behind), failed
   (deterministic faults, with the reason and the last log lines), or — when the child died
   without an outcome, a platform fault — ``lifecycle.requeue_or_give_up``. A trial of a search
   then lets its search make the next trials (``sweeps.advance``).

If the lease is lost meanwhile (the sweeper gave the job to another worker), the child is
killed and nothing is recorded: the new owner is in charge.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

from hm2bp_service import lifecycle, sweeps
from hm2bp_service.services import Services
from hm2bp_service.states import JobState
from hm2bp_service.store import JobRecord

log = logging.getLogger(__name__)
WATCH_SECONDS = 0.25


class Supervisor:
    def __init__(self, job_id: str, owner: str, services: Services):
        self.job_id, self.owner, self.services = job_id, owner, services
        self.store, self.bus, self.settings = services.store, services.bus, services.settings

    def run(self) -> None:
        lease = self.store.jobs.acquire_lease(self.job_id, self.owner, self.settings.lease_seconds)
        if lease.job is None:
            log.info("job %s not run by %s: %s", self.job_id, self.owner, lease.reason)
            return
        job = lease.job
        if lifecycle.over_attempts(job):
            self._fail("platform_fault", f"The job was given up after {job.max_attempts} attempts: its worker "
                       "was lost every time (killed, out of host memory, or the machine went away).")
            return
        if job.attempts > 1:
            self.bus.publish(self.job_id, "log",
                             {"message": f"attempt {job.attempts}: resuming from the last checkpoint"})
        try:
            outcome = self._run_child()
        except Exception as exc:  # could not start or watch the child: a platform fault
            log.exception("job %s: supervising the run failed", self.job_id)
            outcome = {"status": "lost", "exitcode": None, "why": f"{type(exc).__name__}: {exc}"}
        if outcome is not None:
            self._record(job, outcome)
            self._advance_sweep(job)

    def _run_child(self) -> dict[str, Any] | None:
        """Run the child to its end; its outcome, ``{"status": "lost"}`` when it died without
        one, or None when this supervisor lost the lease."""
        read_fd, write_fd = os.pipe()
        child = subprocess.Popen(
            [sys.executable, "-m", "worker.child", self.job_id, str(write_fd)],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True, text=True,
        )
        os.close(write_fd)
        received = b""
        renew_every = self.settings.lease_seconds / 6
        renewed = time.monotonic()
        cancelled_at: float | None = None
        grace = self.settings.cancel_grace_seconds
        try:
            while True:
                ready, _, _ = select.select([read_fd], [], [], WATCH_SECONDS)
                if ready:
                    block = os.read(read_fd, 1 << 16)
                    if not block:  # the child closed its end: it is done (or dead)
                        break
                    received += block
                    continue
                now = time.monotonic()
                if now - renewed >= renew_every:
                    renewed = now
                    if self.store.jobs.renew_lease(self.job_id, self.owner, self.settings.lease_seconds) is None:
                        log.warning("job %s: lease lost by %s; stopping its run", self.job_id, self.owner)
                        self._signal(child, signal.SIGKILL)
                        return None
                if cancelled_at is None:
                    job = self.store.jobs.by_id(self.job_id)
                    if job is not None and job.state == JobState.CANCELLING:
                        self._tell(child, "cancel")
                        cancelled_at = now
                elif now - cancelled_at > 2 * grace + 1:
                    self._signal(child, signal.SIGKILL)
                elif now - cancelled_at > grace:
                    self._signal(child, signal.SIGTERM)
        finally:
            os.close(read_fd)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                self._signal(child, signal.SIGKILL)
                child.wait()
            if child.stdin is not None:
                child.stdin.close()
        if received:
            return json.loads(received)
        return {"status": "cancelled" if cancelled_at is not None else "lost", "exitcode": child.returncode}

    @staticmethod
    def _tell(child: subprocess.Popen, line: str) -> None:
        try:
            child.stdin.write(line + "\n")
            child.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it is already gone

    @staticmethod
    def _signal(child: subprocess.Popen, signum: int) -> None:
        """Signal the child's whole process group (it may have started helpers of its own)."""
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    def _record(self, job: JobRecord, outcome: dict[str, Any]) -> None:
        status = outcome["status"]
        if status == "succeeded":
            metrics = outcome["metrics"]
            self.store.jobs.record_final_metrics(self.job_id, metrics["epochs"], metrics["final"])
            accuracy = metrics["final"].get("test_accuracy")
            reason = "training finished" + (f": test accuracy {accuracy:.4f}" if accuracy is not None else "")
            lifecycle.transition(self.services, self.job_id, JobState.SUCCEEDED, reason, owner=self.owner)
        elif status == "cancelled":
            lifecycle.transition(self.services, self.job_id, JobState.CANCELLED, "cancelled by the user",
                                 owner=self.owner)
        elif status == "pruned":
            lifecycle.transition(self.services, self.job_id, JobState.PRUNED, outcome["message"], owner=self.owner,
                                 values={"error": {"reason": "pruned", "message": outcome["message"], "log_tail": []}})
        elif status == "failed":
            self._fail(outcome["reason"], outcome["message"])
        else:
            why = outcome.get("why") or f"exit code {outcome.get('exitcode')}"
            lifecycle.requeue_or_give_up(self.services, job, f"the training process of attempt {job.attempts} died "
                                         f"({why})", owner=self.owner)

    def _advance_sweep(self, job: JobRecord) -> None:
        """A trial of a search ended: make the next ones now (the sweeper would, a little later)."""
        if job.sweep_id is None:
            return
        try:
            sweeps.advance(self.services, job.sweep_id)
        except Exception:  # the sweeper retries every round
            log.exception("job %s: advancing sweep %s failed", self.job_id, job.sweep_id)

    def _fail(self, reason: str, message: str) -> None:
        lifecycle.fail(self.services, self.job_id, reason, message, owner=self.owner)
