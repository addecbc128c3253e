"""The supervisor of one delivery of a training job (runs inside the Celery task).

1. Take the job's lease (``JobStore.acquire_lease``); a delivery that cannot take it (the job
   ended, is cancelling, or another worker's lease is alive) does nothing.
2. Spawn the training child (``python -m worker.child``) and watch it: renew the lease every
   ``lease_seconds / 6``, each renewal moving the child's fence (the time by which the kernel ends
   it: ``worker.child.arm_fence``) to ``LEASE_SHARE`` of a lease after the renewal began; when the
   job turns ``cancelling``, set the child's cancel flag, then SIGTERM after ``cancel_grace_seconds``
   and SIGKILL one grace later (to its process group).
   Every ``RESOURCE_SECONDS`` it samples the child's CPU and memory into the job row (``resources``).
3. Record the outcome: succeeded, cancelled, pruned (a search's trial that fell behind), failed
   (deterministic faults, with the reason and the last log lines), or — when the child died
   without an outcome, a platform fault — ``lifecycle.requeue_or_give_up``. A trial of a search
   then lets its search make the next trials (``sweeps.advance``).

If the lease is lost meanwhile (the sweeper gave the job to another worker), the child is
killed and nothing is recorded: the new owner is in charge.

The child runs under a memory limit (``Settings.job_memory_bytes``, set by ``worker.child``);
running out is the child's ``out_of_memory`` outcome, and a child that the kernel's OOM killer
took (a SIGKILL that this supervisor did not send, while the worker's memory cgroup counted an
OOM kill, or with a peak RSS near the limit where no cgroup tells) is classified the same way
(``oom_outcome``), never retried as a platform fault. After each delivery the next
waiting jobs are dispatched (``lifecycle.dispatch``: a worker that starts or ends a job frees room).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from hm2bp_service import lifecycle, sweeps
from hm2bp_service.admission import gib
from hm2bp_service.dispatch import QUEUES
from hm2bp_service.memory import cgroup_limit, oom_kills, out_of_memory_message
from hm2bp_service.outages import is_outage, through_outages
from hm2bp_service.services import Services
from hm2bp_service.states import JobState
from hm2bp_service.store import JobRecord, Lease

log = logging.getLogger(__name__)
WATCH_SECONDS = 0.25
EXIT_SECONDS = 30.0  # how long a child that closed its outcome channel may take to exit before a SIGKILL
RESOURCE_SECONDS = 5.0  # how often a run's CPU and memory are sampled into its job row
OOM_KILL_SHARE = 0.8  # a SIGKILL from outside at this share of the memory limit is taken as the OOM killer's
LEASE_SHARE = 0.9  # of the lease after its last renewal began, by which the run must be over (its fence)


def oom_outcome(exitcode: int | None, peak_rss: int | None, limit: int, killed_here: bool,
                oom_killed: bool = False) -> dict[str, Any] | None:
    """The ``out_of_memory`` outcome of a child that died of a SIGKILL not sent by its supervisor,
    when the kernel's OOM killer took a process of the worker's control group meanwhile
    (``oom_killed``: ``memory.oom_kills`` grew; the limit named is the group's when it is the lower)
    or, where that is not known, when its peak RSS reached ``OOM_KILL_SHARE`` of ``limit``; None otherwise."""
    if exitcode != -signal.SIGKILL or killed_here:
        return None
    if oom_killed:
        limit = min(limit, cgroup_limit() or limit)
    elif peak_rss is None or peak_rss < OOM_KILL_SHARE * limit:
        return None
    killed = "the kernel killed it" + (f" at {gib(peak_rss)}" if peak_rss is not None else "")
    return {"status": "failed", "reason": "out_of_memory", "message": out_of_memory_message(limit, killed)}


def fence_reason(exitcode: int | None, fence_after: float) -> str | None:
    """Why a child that died of its fence's SIGALRM (``worker.child.arm_fence``) died, for the job's
    history: its supervisor stopped moving the fence on (frozen, or its database out), or the run
    could not hear it for that long (a process stalled for most of a lease); None for other deaths."""
    if exitcode != -signal.SIGALRM:
        return None
    return (f"its fence ended it: no lease renewal reached it for {fence_after:.0f} s "
            "(a worker frozen or stalled for most of its lease)")


class ResourceSampler:
    """CPU (percent of one core, since the last sample) and resident memory of a training child
    and the processes it started, with psutil."""

    def __init__(self, pid: int):
        self._processes: dict[int, psutil.Process] = {}
        try:
            self._root: psutil.Process | None = psutil.Process(pid)
            self._root.cpu_percent(None)  # primes the counter: the first sample measures from here
        except psutil.Error:
            self._root = None

    def sample(self) -> dict[str, Any] | None:
        if self._root is None:
            return None
        try:
            members = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return None
        cpu = rss = 0.0
        for member in members:
            process = self._processes.setdefault(member.pid, member)
            try:
                cpu += process.cpu_percent(None)
                rss += process.memory_info().rss
            except psutil.Error:  # it ended between the listing and the reading
                continue
        return {"cpu_percent": round(cpu, 1), "rss_mib": round(rss / 2**20, 1),
                "sampled_at": datetime.now(UTC).isoformat()}


class Supervisor:
    def __init__(self, job_id: str, owner: str, services: Services):
        self.job_id, self.owner, self.services = job_id, owner, services
        self.store, self.bus, self.settings = services.store, services.bus, services.settings
        self._killed_here = False  # this supervisor sent the child SIGKILL (cancel, lost lease)
        self._taken = 0.0  # time.monotonic() when the call that took the lease began

    def run(self) -> None:
        try:
            self._deliver()
        finally:
            self._dispatch_waiting()

    def _dispatch_waiting(self) -> None:
        """A job started or ended here (or this delivery was void): send the next waiting ones."""
        for queue in QUEUES:
            try:
                lifecycle.dispatch(self.services, None, queue)
            except Exception:  # the database is down: the sweepers dispatch later
                log.exception("dispatch after job %s failed", self.job_id)

    def _deliver(self) -> None:
        lease = through_outages(self._acquire, f"job {self.job_id}: taking its lease")
        if lease.job is None:
            log.info("job %s not run by %s: %s", self.job_id, self.owner, lease.reason)
            return
        job = lease.job
        self._dispatch_waiting()  # this job left the waiting ones
        if job.attempts > 1:
            through_outages(lambda: self.bus.publish(self.job_id, "log", {
                "message": f"attempt {job.attempts}: resuming from the last checkpoint"}), f"job {self.job_id}: log")
        try:
            outcome = self._run_child(self._taken)
        except Exception as exc:  # could not start or watch the child: a platform fault
            log.exception("job %s: supervising the run failed", self.job_id)
            outcome = {"status": "lost", "exitcode": None, "why": f"{type(exc).__name__}: {exc}"}
        if outcome is not None:
            through_outages(lambda: self._record(job, outcome), f"job {self.job_id}: recording its outcome")
            self._advance_sweep(job)

    def _acquire(self) -> Lease:
        self._taken = time.monotonic()  # the lease runs from (a little after) this moment
        return self.store.jobs.acquire_lease(self.job_id, self.owner, self.settings.lease_seconds)

    def _run_child(self, taken: float) -> dict[str, Any] | None:
        """Run the child to its end (the lease was taken at ``time.monotonic()`` ``taken``); its
        outcome, ``{"status": "lost"}`` when it died without one, or None when this supervisor lost the lease."""
        read_fd, write_fd = os.pipe()
        kills_before = oom_kills()
        fence_after = self.settings.lease_seconds * LEASE_SHARE
        child = subprocess.Popen(
            [sys.executable, "-m", "worker.child", self.job_id, str(write_fd), repr(taken + fence_after)],
            stdin=subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True, text=True,
        )
        os.close(write_fd)
        received = b""
        renew_every = self.settings.lease_seconds / 6
        renewed = held = taken  # held: when the last renewal that landed began
        sampling = self._sample_resources(child.pid)
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
                    renewal = self._renew()
                    if renewal is False:
                        log.warning("job %s: lease lost by %s; stopping its run", self.job_id, self.owner)
                        self._signal(child, signal.SIGKILL)
                        return None
                    if renewal:
                        held = now
                        self._tell(child, f"fence {now + fence_after!r}")
                    elif now - held >= fence_after:
                        # the database was out for most of the lease: it expires soon (by this
                        # machine's clock, which set it), and the sweeper may give the job to
                        # another worker; stop this run before anyone else can start one (its
                        # fence ends it too: worker.child.arm_fence)
                        log.warning("job %s: lease of %s not renewed for %.0f s; stopping its run", self.job_id,
                                    self.owner, now - held)
                        self._signal(child, signal.SIGKILL)
                        return None
                if cancelled_at is None:
                    job = self._current()
                    if job is not None and job.state == JobState.CANCELLING:
                        self._tell(child, "cancel")
                        cancelled_at = now
                elif now - cancelled_at > 2 * grace + 1:
                    self._signal(child, signal.SIGKILL)
                elif now - cancelled_at > grace:
                    self._signal(child, signal.SIGTERM)
        finally:
            sampling.set()
            os.close(read_fd)
            try:
                peak_rss = self._reap(child, EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal(child, signal.SIGKILL)
                peak_rss = self._reap(child, None)
            if child.stdin is not None:
                try:
                    child.stdin.close()
                except OSError:  # a line the child, now gone, never read (BrokenPipeError) is no matter
                    pass
        if received:
            return json.loads(received)
        if cancelled_at is not None:
            return {"status": "cancelled", "exitcode": child.returncode}
        kills_after = oom_kills()
        oom_killed = kills_before is not None and kills_after is not None and kills_after > kills_before
        return (oom_outcome(child.returncode, peak_rss, self.settings.job_memory_bytes, self._killed_here, oom_killed)
                or {"status": "lost", "exitcode": child.returncode, "why": fence_reason(child.returncode, fence_after)})

    def _reap(self, child: subprocess.Popen, seconds: float | None) -> int | None:
        """Wait for ``child`` to exit (TimeoutExpired after ``seconds``), renewing the lease meanwhile
        (its interpreter may take seconds to tear down), and set its return code; its peak RSS in
        bytes (``wait4``), None when something else reaped it."""
        deadline = None if seconds is None else time.monotonic() + seconds
        renewed = time.monotonic()
        while True:
            try:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            except ChildProcessError:
                child.wait()
                return None
            if pid:
                child.returncode = os.waitstatus_to_exitcode(status)
                return usage.ru_maxrss * 1024  # KiB on Linux
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise subprocess.TimeoutExpired(child.args, seconds or 0)
            if now - renewed >= self.settings.lease_seconds / 6:
                renewed = now
                self._renew()
            time.sleep(0.05)

    def _renew(self) -> bool | None:
        """Renew the lease: True when renewed, False when lost, None when the database is out."""
        try:
            return self.store.jobs.renew_lease(self.job_id, self.owner, self.settings.lease_seconds) is not None
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("job %s: lease not renewed, the database is unavailable", self.job_id)
            return None

    def _current(self) -> JobRecord | None:
        """The job's row, None while the database is out."""
        try:
            return self.store.jobs.by_id(self.job_id)
        except Exception as exc:
            if not is_outage(exc):
                raise
            return None

    def _sample_resources(self, pid: int) -> threading.Event:
        """From a thread of its own (so that it never delays the lease's renewal): every
        RESOURCE_SECONDS the run's CPU and memory into the job row (``resources``), until the
        returned event is set."""
        done = threading.Event()
        sampler = ResourceSampler(pid)

        def sample() -> None:
            while not done.wait(RESOURCE_SECONDS):
                found = sampler.sample()
                if found is None:
                    return
                try:
                    self.store.jobs.record_resources(self.job_id, self.owner, found)
                except Exception:  # a lost sample is no reason to stop sampling
                    log.warning("job %s: could not record its resources", self.job_id, exc_info=True)

        threading.Thread(target=sample, name=f"resources-{self.job_id}", daemon=True).start()
        return done

    @staticmethod
    def _tell(child: subprocess.Popen, line: str) -> None:
        try:
            child.stdin.write(line + "\n")
            child.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it is already gone

    def _signal(self, child: subprocess.Popen, signum: int) -> None:
        """Signal the child's whole process group (it may have started helpers of its own)."""
        self._killed_here = self._killed_here or signum == signal.SIGKILL
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
