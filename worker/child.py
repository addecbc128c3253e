"""The training child: ``python -m worker.child JOB_ID OUTCOME_FD FENCE``, one fresh interpreter per
run (spawned, never forked), so CUDA starts clean and GPU memory is returned when it exits.

It loads the job, trains with ``resume=True`` (a redelivered job continues from its last
checkpoint), writes events through the event bus (progress also to the job row, epochs also to
``job_epochs``, each epoch's checkpoint to the artifact store) and writes one JSON outcome to
file descriptor OUTCOME_FD: ``{"status": "succeeded", "metrics"}``, ``{"status": "cancelled"}``,
``{"status": "pruned", "message"}`` (a search's trial that fell behind after an epoch:
``sweeps.prune_reason``, asked after each epoch is recorded) or ``{"status": "failed", "reason", "message"}``.

It runs under a memory limit (``RLIMIT_DATA`` = ``Settings.job_memory_bytes``, set before torch is
imported): an allocation past it raises, and the run fails ``out_of_memory`` with the limit and
the core's estimate of its need (``hm2bp_core.footprint``), without a traceback; it is also the
kernel OOM killer's first choice (``oom_score_adj``), so that its worker survives to say why.
A full disk (ENOSPC, EDQUOT) while it writes a checkpoint or the model fails it ``disk_full``:
the earlier checkpoints are whole, and a resume continues from the last of them.

Its stdin is the control channel from the supervisor: a line ``cancel`` sets the flag the
trainer polls between batches; a line ``fence D`` (and, before any line, the command's third
argument) says that the run must be over by ``time.monotonic()`` D (one clock for all processes of
the machine), a little before its lease can expire and the job go to another worker: ``arm_fence``
has the kernel end it then, should its supervisor be frozen or stuck and stop moving D on. End of
file means the supervisor is gone, and the child exits (and it gets SIGKILL when its parent dies:
``hm2bp_service.watchdog``).
What it logs and reports names no absolute server path (``hm2bp_service.errors.without_paths``).

(A ``multiprocessing`` spawn context cannot be used here: Celery's prefork pool processes are
daemonic, and multiprocessing refuses to start children of daemonic processes.)
"""

from __future__ import annotations

import errno
import json
import math
import os
import resource
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

# light imports only up here: the watchdog must be on before the run's heavy imports (seconds on a
# busy machine), or a supervisor killed meanwhile would leave this run behind
from hm2bp_service.errors import without_paths
from hm2bp_service.niceness import carry_niceness_to_session
from hm2bp_service.watchdog import watch_parent

if TYPE_CHECKING:
    from hm2bp_service.services import Services

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left, or the user's quota of it


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON, and PostgreSQL's json, have no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def arm_fence(deadline: float) -> None:
    """End this process when ``time.monotonic()`` reaches ``deadline``, by the kernel's real-time
    interval timer (``ITIMER_REAL``, which runs on while the process is stopped): it raises SIGALRM,
    whose default action ends the process before one more instruction of it runs. No thread of its
    own has to be scheduled, nor the GIL won, so a run frozen past its lease (SIGSTOP) is gone the
    instant it is continued, before the job's next owner can see it train. A later call moves the
    deadline; one already past ends the process at once."""
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-6))


def listen_for_control(cancel: threading.Event) -> None:
    def listen() -> None:
        for line in sys.stdin:
            if line.strip() == "cancel":
                cancel.set()
            elif line.startswith("fence "):  # "fence D": the lease was renewed; the run may last until D
                arm_fence(float(line.split()[1]))
        os._exit(3)  # stdin closed: the supervisor died, and with it this run

    threading.Thread(target=listen, name="control", daemon=True).start()


def limit_memory(limit_bytes: int) -> None:
    """Cap this process's private writable memory (heap, anonymous maps, thread stacks) at
    ``limit_bytes``, and make it the OOM killer's first choice (``oom_score_adj`` 1000, which any
    process may raise for itself): when its container runs out, the run goes, not its worker,
    which then records why."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, hard))
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:  # not Linux
        pass


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failed: MemoryError (numpy), or torch's and the C++ kernels' RuntimeError."""
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(
        sign in str(exc) for sign in ("can't allocate memory", "Cannot allocate memory", "bad_alloc",
                                      "not enough memory")))


def out_of_memory(job_id: str, services: Services) -> dict[str, Any]:
    """The outcome of a run that ran out of memory: the limit, and what the core estimates it needs."""
    from hm2bp_core.footprint import footprint
    from hm2bp_core.spec import TrainingSpec
    from hm2bp_service.admission import gib
    from hm2bp_service.datasets import facts_for
    from hm2bp_service.memory import out_of_memory_message

    limit = services.settings.job_memory_bytes
    try:
        job = services.store.jobs.by_id(job_id)
        needs = footprint(TrainingSpec.model_validate(job.spec),
                          facts_for(job.dataset, job.user_id, services.store, services.settings)).peak_bytes
    except Exception:  # the estimate needs memory too, or the dataset is gone
        needs = None
    detail = f"it needs about {gib(needs)} by the estimate" if needs is not None and needs > limit else None
    return {"status": "failed", "reason": "out_of_memory", "message": out_of_memory_message(limit, detail)}


def disk_full(run_dir: Path, exc: OSError) -> dict[str, Any]:
    """The outcome of a run that found no space left for its files (a checkpoint, the model): the
    checkpoints written before are whole (``hm2bp_core.checkpoint``), and a resume continues from the last."""
    from hm2bp_core.checkpoint import latest_epoch

    kept = latest_epoch(run_dir)
    after = (f"its checkpoint of epoch {kept} is kept, and a resume continues from it" if kept else
             "it had no checkpoint yet")
    return {"status": "failed", "reason": "disk_full",
            "message": f"the server's disk is full ({os.strerror(exc.errno or errno.ENOSPC)} while writing this "
                       f"job's files); {after}: resume the job once space has been freed"}


def main(job_id: str, outcome_fd: int, fence: float) -> None:
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the fence's signal ends the process (an ignored one is inherited)
    arm_fence(fence)
    watch_parent(signal.SIGKILL)  # dies with its supervisor (a pool process), however that dies
    cancel = threading.Event()
    listen_for_control(cancel)  # and, should it have died before the line above, at end of file
    carry_niceness_to_session()  # the supervisor started this run in a session of its own
    from hm2bp_service.services import get_services

    services = get_services()
    limit_memory(services.settings.job_memory_bytes)
    ran_out = False
    try:
        outcome = run(job_id, services, cancel)
    except Exception as exc:
        ran_out = is_out_of_memory(exc)
        if not ran_out:  # a bug, not the user's fault: report it with its traceback
            services.bus.publish(job_id, "log", {"message": without_paths(traceback.format_exc())})
        outcome = {"status": "failed", "reason": "internal_error",
                   "message": f"The training process failed with an internal error: {type(exc).__name__}: {exc}"}
    if ran_out:  # after the except block: the failed run's frames (and their tensors) are released
        outcome = out_of_memory(job_id, services)
    with os.fdopen(outcome_fd, "w") as channel:
        json.dump(outcome, channel)
    sys.stdout.flush()
    sys.stderr.flush()
    # every write is committed and the outcome is out: skip the interpreter's teardown (torch's
    # takes seconds on a loaded machine, while the supervisor waits to record the outcome)
    os._exit(0)


def write_diagnostics(trainer: Any, run_dir: Path, raster_samples: int) -> None:
    """confusion.json (test set) and rasters.json (spike trains of ``raster_samples`` test samples)
    beside the model: the dashboard's confusion matrix and raster plot."""
    from hm2bp_core.diagnostics import confusion_matrix, spike_rasters

    (run_dir / "confusion.json").write_text(json.dumps(confusion_matrix(trainer)))
    if raster_samples:
        (run_dir / "rasters.json").write_text(json.dumps(spike_rasters(trainer, raster_samples)))


def run(job_id: str, services: Services, cancel: threading.Event) -> dict[str, Any]:
    import torch

    from hm2bp_core.data import DatasetError
    from hm2bp_core.nir_export import NirExportError, export_nir
    from hm2bp_core.spec import TrainingSpec
    from hm2bp_core.train import Trainer, TrainingCancelled, TrainingDiverged
    from hm2bp_service.datasets import open_dataset, provenance
    from hm2bp_service.outages import is_outage, through_outages
    from hm2bp_service.services import job_key

    store, bus, artifacts, settings = services.store, services.bus, services.artifacts, services.settings
    job = through_outages(lambda: store.jobs.by_id(job_id), f"job {job_id}: reading it")
    key = job_key(job_id)
    run_dir = artifacts.local_path(key) or settings.work_dir / job_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if not artifacts.is_local and artifacts.exists(f"{key}/checkpoint"):
        artifacts.pull_dir(f"{key}/checkpoint", run_dir / "checkpoint")

    pruned: list[str] = []  # why the run stops after this epoch, when its search prunes it
    if job.sweep_id is not None:  # Optuna is imported by the trials of sweeps only
        from hm2bp_service.sweeps import prune_reason

    def callback(event: dict[str, Any]) -> None:
        data = finite({k: v for k, v in event.items() if k != "type"})
        if event["type"] == "log" and isinstance(data.get("message"), str):
            data["message"] = without_paths(data["message"])
        if event["type"] == "progress":
            try:
                store.jobs.record_progress(job_id, data)
            except Exception as exc:  # the next one replaces it; training does not wait for the database
                if not is_outage(exc):
                    raise
                return  # nor is the event stored: the database is out
        elif event["type"] == "epoch":  # an outage shorter than the lease is waited out (worker.supervisor)
            through_outages(lambda: store.jobs.record_epoch(job_id, data), f"job {job_id}: epoch metrics")
            artifacts.push_dir(run_dir / "checkpoint", f"{key}/checkpoint", mirror=True)
        through_outages(lambda: bus.publish(job_id, event["type"], data), f"job {job_id}: {event['type']} event")
        if event["type"] == "epoch" and job.sweep_id is not None and not pruned:
            reason = prune_reason(services, job, int(data["epoch"]))
            if reason is not None:
                pruned.append(f"pruned after epoch {data['epoch']}: {reason}")
                bus.publish(job_id, "log", {"message": pruned[0]})

    try:
        spec = TrainingSpec.model_validate(job.spec)
        bus.publish(job_id, "log", {"message": f"attempt {job.attempts}: loading dataset {job.dataset}"})
        dataset = open_dataset(job.dataset, store, artifacts, settings)
        trainer = Trainer(spec, dataset, Path(run_dir), callback=callback,
                          should_stop=lambda: cancel.is_set() or bool(pruned),
                          dataset_record=provenance(job.dataset, dataset, store))
        metrics = trainer.run(resume=True)
        write_diagnostics(trainer, Path(run_dir), settings.raster_samples)
        try:  # model.nir: the network for other simulators and hardware (docs/nir.md)
            export_nir(trainer.net, Path(run_dir) / "model.nir")
        except NirExportError as exc:  # a network NIR cannot describe: the job has its other files
            bus.publish(job_id, "log", {"message": f"no model.nir: {exc}"})
    except TrainingCancelled as exc:
        if pruned and not cancel.is_set():
            return {"status": "pruned", "message": pruned[0]}
        bus.publish(job_id, "log", {"message": str(exc)})
        return {"status": "cancelled"}
    except TrainingDiverged as exc:
        return {"status": "failed", "reason": "diverged", "message": str(exc)}
    except torch.cuda.OutOfMemoryError:
        return {"status": "failed", "reason": "out_of_memory",
                "message": "The GPU ran out of memory; lower training.batch_size or the network's size."}
    except (DatasetError, ValueError) as exc:
        return {"status": "failed", "reason": "invalid_input", "message": f"The job cannot run: {exc}"}
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        return disk_full(Path(run_dir), exc)
    artifacts.push_dir(run_dir, key)
    return {"status": "succeeded", "metrics": finite(metrics)}


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
