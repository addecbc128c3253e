"""Chaos soak of the service (not a timed test): random faults under a stream of small jobs, then an
audit of the stored history.

    .venv/bin/python benchmarks/chaos.py                                   # SQLite, 3 workers, 10 min
    .venv/bin/python benchmarks/chaos.py --db postgresql --duration 600 --fault-rate 6
    .venv/bin/python benchmarks/chaos.py --jobs 12 --workers 2 --duration 60 --seed 3 --out chaos.md

A whole service of its own (``tests/service/harness.py``'s ``Cluster``): its own redis-server and,
with ``--db postgresql``, its own PostgreSQL server (``initdb`` in a temporary folder, a free port),
one API process (uvicorn) and ``--workers`` Celery workers, each training in a child process. Both
users of the cluster submit ``--jobs`` small jobs (each with a seed of its own) spread over the
first 80 % of ``--duration``; ``--cancel-share`` of them are cancelled at a random time. Faults come
at random times (``--fault-rate`` a minute on average, exponential gaps) until ``--duration`` ends,
each drawn from:

=================  ===========================================================================
``kill_worker``    SIGKILL a worker with its pool process and training child; restarted 0-3 s later
``kill_child``     SIGKILL one training child (its worker stays)
``kill_api``       SIGKILL the API process; restarted at once (clients retry meanwhile)
``restart_redis``  SIGKILL redis-server (no persistence: it comes back empty) and restart it 0-3 s later
``restart_pg``     ``pg_ctl stop -m immediate`` and start again 0-3 s later (``--db postgresql`` only)
``sweeper_race``   freeze a worker that is training (SIGSTOP, its whole tree) past its lease, so a
                   sweeper re-queues its job and another worker may take it, then let it go on
                   (SIGCONT): the returning worker must not record anything or train on
=================  ===========================================================================

Clients retry transport errors (the API is restarting) and 503s. Then every part is brought up,
and the audit reads the database, the artifact folder and the processes of the machine:

- ``terminal``: every job is succeeded, failed or cancelled within ``--settle`` seconds after the faults stop;
- ``leases``: no two leases of one job overlap in time, and each attempt had one lease;
- ``one_trainer``: no job ever had two training processes running at once (the processes were
  sampled every 0.1 s during the whole run; a frozen one does not count);
- ``epochs_once``: a succeeded job has one metrics row per epoch, 1..E, equal to its metrics.json;
- ``artifacts``: a succeeded job has its model, metrics.json and summary metrics;
- ``weights``: for ``--sample`` succeeded jobs (interrupted ones first), the model equals,
  bit for bit, an uninterrupted ``hm2bp train`` run of the same spec and seed;
- ``attempts``: no job took more attempts than its limit;
- ``no_orphans``: no training process of the cluster and no ``*.tmp`` file remains;
- ``http``: no 5xx answer other than 503 with ``Retry-After`` while a dependency was down (or
  ``HTTP_GRACE`` seconds after it came back);
- ``starts``: every restart of the API came up (none died starting while a dependency was down).

It prints three tables (faults by kind, jobs by final state, audit checks) and exits 1 when any
check failed. ``run`` is what the test suite calls (tests/faults/test_chaos.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import heapq
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from service.harness import HM2BP, Cluster, PostgresServer, kill_tree, wait_worker  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled"}
DEPENDENCIES = {"kill_api", "restart_redis", "restart_pg"}  # faults during which a 503 is expected
HTTP_GRACE = 20.0  # seconds after a dependency is back during which a 503 is still fine
LEASE_SECONDS, SWEEP_SECONDS, REDISPATCH_SECONDS = 20.0, 1.0, 20.0
START_SECONDS = 300.0  # a start of the API or a worker on a loaded machine
# about 4 s a job on one busy core: three epochs, a checkpoint after each
JOB_SPEC = {
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 60},
    "training": {"epochs": 3, "batch_size": 16, "max_train_samples": 300, "max_test_samples": 100,
                 "device": "cpu"},
}


@dataclass
class Fault:
    kind: str
    start: float
    end: float
    note: str = ""


@dataclass
class Outcome:
    """One soak: what was done and what the audit found."""

    faults: list[Fault] = field(default_factory=list)
    states: Counter = field(default_factory=Counter)
    checks: dict[str, list[str]] = field(default_factory=dict)  # check -> failures (empty: passed)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(len(found) for found in self.checks.values())

    def tables(self) -> str:
        kinds = Counter(fault.kind for fault in self.faults)
        lines = ["| fault | injected |", "|---|---:|"]
        lines += [f"| {kind} | {count} |" for kind, count in sorted(kinds.items())]
        lines += [f"| **total** | **{sum(kinds.values())}** |", "", "| final state | jobs |", "|---|---:|"]
        lines += [f"| {state} | {count} |" for state, count in sorted(self.states.items())]
        lines += [f"| **total** | **{sum(self.states.values())}** |", "",
                  "| audit check | result | failures (first 3) |", "|---|---|---|"]
        for name, found in self.checks.items():
            shown = "; ".join(found[:3]).replace("|", "/")
            lines.append(f"| {name} | {'FAILED ' + str(len(found)) if found else 'passed'} | {shown} |")
        lines += ["", " ".join(f"{key}: {value}" for key, value in self.notes.items())]
        return "\n".join(lines)


class Calls:
    """Every HTTP answer the soak's clients got that was a 5xx, with when and whether it had Retry-After."""

    def __init__(self) -> None:
        self.server_errors: list[tuple[float, str, int, bool]] = []
        self.count = 0
        self.lock = threading.Lock()

    def request(self, client: httpx.Client, method: str, path: str, deadline: float, **kwargs: Any) -> httpx.Response:
        """The answer to the request, retried over transport errors and 5xx until ``deadline``."""
        while True:
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            with self.lock:
                self.count += 1
                if response.status_code >= 500:
                    self.server_errors.append((time.monotonic(), f"{method} {path}", response.status_code,
                                               "retry-after" in response.headers))
            if response.status_code < 500 or time.monotonic() > deadline:
                return response
            time.sleep(min(float(response.headers.get("retry-after", 1)), 1.0))


class Observer(threading.Thread):
    """Samples the machine's training processes of this cluster (``python -m worker.child JOB``
    with this cluster's data folder) every 0.1 s: jobs seen with two running at once."""

    def __init__(self, data_dir: Path):
        super().__init__(name="observer", daemon=True)
        self.data_dir = str(data_dir)
        self.stopped = threading.Event()
        self.overlaps: list[str] = []
        self.samples = 0

    def children(self, running_only: bool = True) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for process in psutil.process_iter(["pid", "cmdline", "status"]):
            cmdline = process.info["cmdline"] or []
            if "worker.child" not in cmdline:
                continue
            if running_only and process.info["status"] in (psutil.STATUS_ZOMBIE, psutil.STATUS_STOPPED):
                continue
            try:
                if process.environ().get("HM2BP_DATA_DIR") != self.data_dir:
                    continue
            except psutil.Error:
                continue
            found.setdefault(cmdline[cmdline.index("worker.child") + 1], set()).add(process.info["pid"])
        return found

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.samples += 1
            for job_id, pids in self.children().items():
                if len(pids) > 1:
                    self.overlaps.append(f"{job_id}: {sorted(pids)}")


class Soak:
    def __init__(self, root: Path, *, db: str, workers: int, seed: int):
        self.root, self.db = root, db
        # one generator per thread that draws (jobs and cancels, reads, faults): one seed, one run
        self.rng, self.read_rng, self.fault_rng = (random.Random(f"{seed}:{use}")
                                                   for use in ("jobs", "reads", "faults"))
        self.postgres = PostgresServer().start() if db == "postgresql" else None
        settings = {"lease_seconds": str(LEASE_SECONDS), "sweep_seconds": str(SWEEP_SECONDS),
                    "redispatch_seconds": str(REDISPATCH_SECONDS), "max_attempts": "5",
                    "max_queued_jobs": "1000", "max_running_jobs": "20", "cancel_grace_seconds": "1"}
        if self.postgres is not None:
            settings["database_url"] = self.postgres.url
        self.cluster = Cluster(root / "service", start_seconds=START_SECONDS, **settings)
        self.names = [f"w{index}" for index in range(workers)]
        self.lock = threading.Lock()  # around the cluster's processes: the injector and the end both change them
        self.calls = Calls()
        self.observer = Observer(self.cluster.root)
        self.faults: list[Fault] = []
        self.start_failures: list[str] = []
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> {"user", "submitted"}

    # ------------------------------------------------------------------ the run
    def start(self) -> None:
        self.cluster.start_api()
        for name in self.names:
            self.cluster.add_worker(name, wait=False)
        for name in self.names:
            wait_worker(self.cluster.workers[name], self.cluster.logs[f"worker-{name}"], START_SECONDS)
        self.observer.start()

    def clients(self) -> dict[str, httpx.Client]:
        return {user: self.cluster.service.client(user) for user in ("alice", "bob")}

    def submit_jobs(self, count: int, window: float, cancel_share: float, stop_at: float) -> None:
        """``count`` jobs at even gaps over ``window`` seconds; some cancelled at random times."""
        clients = self.clients()
        cancels: list[tuple[float, str, str]] = []
        begin = time.monotonic()
        for index in range(count):
            while cancels and cancels[0][0] <= time.monotonic():
                self._cancel(clients, *heapq.heappop(cancels)[1:], stop_at)
            time.sleep(max(0.0, begin + index * window / count - time.monotonic()))
            user = self.rng.choice(sorted(clients))
            spec = copy.deepcopy(JOB_SPEC)
            spec["training"]["seed"] = self.rng.randrange(1 << 16)
            response = self.calls.request(clients[user], "POST", "/v1/jobs", stop_at, headers={
                "Idempotency-Key": f"chaos-{index}"}, json={"dataset": "builtin:digits", "spec": spec,
                                                            "name": f"chaos {index}"})
            if response.status_code not in (200, 201):  # 200: a retry found the job its first try made
                raise RuntimeError(f"submit {index}: {response.status_code} {response.text[:300]}")
            job_id = response.json()["id"]
            self.jobs[job_id] = {"user": user, "index": index}
            if self.rng.random() < cancel_share:
                heapq.heappush(cancels, (time.monotonic() + self.rng.uniform(0, 20), job_id, user))
        for at, job_id, user in sorted(cancels):
            time.sleep(max(0.0, at - time.monotonic()))
            self._cancel(clients, job_id, user, stop_at)

    def _cancel(self, clients: dict[str, httpx.Client], job_id: str, user: str, stop_at: float) -> None:
        response = self.calls.request(clients[user], "POST", f"/v1/jobs/{job_id}/cancel", stop_at)
        self.jobs[job_id]["cancel"] = response.status_code

    def poll(self, stopped: threading.Event, stop_at: float) -> None:
        """A dashboard's worth of reads: the job list and one job's status, twice a second."""
        clients = self.clients()
        while not stopped.wait(0.5):
            user = self.read_rng.choice(sorted(clients))
            self.calls.request(clients[user], "GET", "/v1/jobs", stop_at)
            mine = [job_id for job_id, job in list(self.jobs.items()) if job["user"] == user]
            if mine:
                self.calls.request(clients[user], "GET", f"/v1/jobs/{self.read_rng.choice(mine)}", stop_at)

    def inject(self, until: float, rate_per_minute: float) -> None:
        """Faults at random times until ``until``, each in a thread of its own (a restart that takes
        a minute does not hold the next fault back; faults of one kind wait for each other)."""
        kinds = ["kill_worker", "kill_child", "kill_api", "restart_redis", "sweeper_race"]
        if self.postgres is not None:
            kinds.append("restart_pg")
        locks = {kind: threading.Lock() for kind in kinds}
        threads = []
        while True:
            gap = self.fault_rng.expovariate(rate_per_minute / 60)
            if time.monotonic() + gap >= until:
                break
            time.sleep(gap)
            kind = self.fault_rng.choice(kinds)
            draws = random.Random(self.fault_rng.random())
            thread = threading.Thread(target=self._fault, args=(kind, locks[kind], draws), name=kind, daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()

    def _fault(self, kind: str, lock: threading.Lock, rng: random.Random) -> None:
        with lock:
            start = time.monotonic()
            note = getattr(self, kind)(rng)
            if note is not None:  # None: nothing to do it to now (no training child)
                with self.lock:
                    self.faults.append(Fault(kind, start, time.monotonic(), note))

    # ------------------------------------------------------------------ faults
    def kill_worker(self, rng: random.Random) -> str:
        name = rng.choice(self.names)
        with self.lock:
            kill_tree(self.cluster.workers[name])
        time.sleep(rng.uniform(0, 3))
        with self.lock:
            self.cluster.add_worker(name, wait=False)
        return name

    def kill_child(self, rng: random.Random) -> str | None:
        children = self.observer.children()
        if not children:
            return None
        job_id = rng.choice(sorted(children))
        for pid in children[job_id]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return job_id

    def kill_api(self, rng: random.Random) -> str:
        self.cluster.kill_api()
        time.sleep(rng.uniform(0, 1))
        self.start_api()
        return ""

    def start_api(self) -> None:
        """Start the API; one that dies while starting is an audit failure (``starts``), and is started again."""
        while True:
            try:
                self.cluster.start_api()
                return
            except RuntimeError as exc:
                self.start_failures.append(f"the API did not start: {str(exc)[-300:]}")
                self.cluster.kill_api()

    def restart_redis(self, rng: random.Random) -> str:
        self.cluster.redis.kill()
        time.sleep(rng.uniform(0, 3))
        self.cluster.redis.start()
        return ""

    def restart_pg(self, rng: random.Random) -> str:
        assert self.postgres is not None
        self.postgres.restart(down_seconds=rng.uniform(0, 3))
        return ""

    def sweeper_race(self, rng: random.Random) -> str | None:
        """Freeze a training worker past its lease (and one sweep), then let it go on."""
        children = self.observer.children()
        with self.lock:
            training = []
            for name, worker in self.cluster.workers.items():
                with contextlib.suppress(psutil.Error):
                    tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
                    if any(child.pid in pids for child in tree for pids in children.values()):
                        training.append((name, tree))
            if not training:
                return None
            name, tree = rng.choice(training)
            for process in tree:
                with contextlib.suppress(psutil.Error):
                    process.suspend()
        time.sleep(LEASE_SECONDS + 2 * SWEEP_SECONDS + rng.uniform(0, 3))
        for process in tree:
            with contextlib.suppress(psutil.Error):
                process.resume()
        return name

    # ------------------------------------------------------------------ the end
    def heal(self) -> None:
        """Every part up again: Redis, PostgreSQL, the API, each worker."""
        with self.lock:
            if self.cluster.redis.process is None or self.cluster.redis.process.poll() is not None:
                self.cluster.redis.start()
            if self.cluster.api is None or self.cluster.api.poll() is not None:
                self.start_api()
            for name in self.names:
                if self.cluster.workers[name].poll() is not None:
                    self.cluster.add_worker(name, wait=False)

    def settle(self, seconds: float) -> tuple[dict[str, dict], float]:
        """Wait until every job is terminal (at most ``seconds``); the jobs and the time it took."""
        clients = self.clients()
        begin = time.monotonic()
        while True:
            found = {}
            for job_id, job in self.jobs.items():
                found[job_id] = self.calls.request(clients[job["user"]], "GET", f"/v1/jobs/{job_id}",
                                                   begin + seconds + 60).json()
            if all(job["state"] in TERMINAL for job in found.values()) or time.monotonic() - begin > seconds:
                return found, time.monotonic() - begin
            time.sleep(1)

    def close(self) -> None:
        self.observer.stopped.set()
        with self.lock:
            self.cluster.close()
        if self.postgres is not None:
            self.postgres.close()


# ---------------------------------------------------------------------- the audit
def audit(soak: Soak, jobs: dict[str, dict], settled: float, settle_seconds: float, sample: int) -> Outcome:
    from safetensors.torch import load_file

    from hm2bp_service.services import job_key
    from hm2bp_service.settings import Settings
    from hm2bp_service.store import Store

    settings = Settings(data_dir=soak.cluster.root, database_url=soak.postgres.url if soak.postgres else None)
    store = Store.from_url(settings.sqlalchemy_url)
    artifacts = Path(settings.artifacts_root)
    outcome = Outcome(faults=soak.faults, states=Counter(job["state"] for job in jobs.values()))
    checks = outcome.checks = {name: [] for name in (
        "terminal", "leases", "one_trainer", "epochs_once", "artifacts", "weights", "attempts", "no_orphans", "http",
        "starts")}
    try:
        for job_id, job in jobs.items():
            if job["state"] not in TERMINAL:
                checks["terminal"].append(f"{job_id} still {job['state']} {settle_seconds:.0f} s after the faults")
            record = store.jobs.by_id(job_id)
            assert record is not None
            leases = store.jobs.leases(job_id)
            if len(leases) != record.attempts:
                checks["leases"].append(f"{job_id}: {record.attempts} attempts, {len(leases)} leases")
            for before, after in zip(leases, leases[1:], strict=False):
                end = before.released_at or before.until
                if after.taken_at < end:
                    checks["leases"].append(f"{job_id}: lease of {after.owner} taken at {after.taken_at:%X.%f} while "
                                            f"{before.owner}'s ran to {end:%X.%f}")
            if record.attempts > record.max_attempts:
                checks["attempts"].append(f"{job_id}: {record.attempts} attempts of {record.max_attempts}")
            epochs = store.jobs.epochs(job_id)
            numbers = [int(row["epoch"]) for row in epochs]
            if len(set(numbers)) != len(numbers):
                checks["epochs_once"].append(f"{job_id}: epoch rows {numbers}")
            if job["state"] != "succeeded":
                continue
            folder = artifacts / job_key(job_id)
            want = list(range(1, int(record.spec["training"]["epochs"]) + 1))
            if numbers != want:
                checks["epochs_once"].append(f"{job_id}: epoch rows {numbers}, expected {want}")
            missing = [name for name in ("model.safetensors", "metrics.json") if not (folder / name).is_file()]
            if missing or not (record.metrics or {}).get("test_accuracy"):
                checks["artifacts"].append(f"{job_id}: missing {missing or 'summary metrics'}")
                continue
            stored = json.loads((folder / "metrics.json").read_text())
            if [row["test_accuracy"] for row in stored["epochs"]] != [row["test_accuracy"] for row in epochs]:
                checks["epochs_once"].append(f"{job_id}: metrics rows differ from its metrics.json")
        checks["one_trainer"] = list(soak.observer.overlaps)
        checks["starts"] = list(soak.start_failures)

        done = [job_id for job_id, job in jobs.items() if job["state"] == "succeeded"]
        done.sort(key=lambda job_id: -jobs[job_id]["attempts"])
        chosen = done[:sample]
        for job_id in chosen:
            record = store.jobs.by_id(job_id)
            assert record is not None
            reference = soak.root / "reference" / job_id
            reference.mkdir(parents=True)
            (reference / "spec.json").write_text(json.dumps(record.spec))
            subprocess.run([HM2BP, "train", str(reference / "spec.json"), "--data", "builtin:digits",
                            "--out", str(reference / "run")], cwd=REPO, check=True, capture_output=True,
                           env={**soak.cluster.env, "HM2BP_DATA_DIR": str(soak.root / "reference-data")})
            mine = load_file(str(artifacts / job_key(job_id) / "model.safetensors"))
            theirs = load_file(str(reference / "run" / "model.safetensors"))
            if mine.keys() != theirs.keys() or any(not (mine[k] == theirs[k]).all() for k in mine):
                checks["weights"].append(f"{job_id} (attempts {record.attempts}) differs from an uninterrupted run")
        outcome.notes["weights compared"] = f"{len(chosen)} jobs, attempts {[jobs[j]['attempts'] for j in chosen]}"
    finally:
        store.close()

    time.sleep(2)  # a run killed at the very end is still being reaped
    left = soak.observer.children(running_only=False)
    checks["no_orphans"] += [f"training process of {job_id} still there: {sorted(pids)}"
                             for job_id, pids in left.items()]
    checks["no_orphans"] += [f"temporary file {path.relative_to(soak.cluster.root)}"
                             for path in soak.cluster.root.rglob("*.tmp")]

    windows = [(fault.start, fault.end + HTTP_GRACE) for fault in soak.faults if fault.kind in DEPENDENCIES]
    for at, what, code, retry_after in soak.calls.server_errors:
        if code != 503 or not retry_after:
            checks["http"].append(f"{what}: {code}{'' if retry_after else ' without Retry-After'}")
        elif not any(start <= at <= end for start, end in windows):
            checks["http"].append(f"{what}: 503 while every dependency was up")
    outcome.notes.update({
        "settled in": f"{settled:.0f} s", "requests": soak.calls.count,
        "503s": sum(1 for _, _, code, _ in soak.calls.server_errors if code == 503),
        "attempts": dict(sorted(Counter(job["attempts"] for job in jobs.values()).items())),
        "process samples": soak.observer.samples,
    })
    return outcome


def run(*, jobs: int, workers: int, duration: float, fault_rate: float, seed: int, db: str,
        cancel_share: float = 0.15, settle_seconds: float = 240, sample: int = 3, root: Path | None = None) -> Outcome:
    """One soak; its outcome (``outcome.failures == 0`` when every audit check passed)."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hm2bp-chaos-")))
        soak = Soak(root, db=db, workers=workers, seed=seed)
        try:
            soak.start()
            begin = time.monotonic()
            until = begin + duration
            stopped = threading.Event()
            threads = [threading.Thread(target=soak.submit_jobs, args=(jobs, 0.8 * duration, cancel_share,
                                                                       until + settle_seconds), daemon=True),
                       threading.Thread(target=soak.poll, args=(stopped, until + settle_seconds), daemon=True)]
            for thread in threads:
                thread.start()
            soak.inject(until, fault_rate)
            threads[0].join()
            soak.heal()
            found, settled = soak.settle(settle_seconds)
            stopped.set()
            threads[1].join()
            outcome = audit(soak, found, settled, settle_seconds, sample)
            outcome.notes = {"db": db, "workers": workers, "duration": f"{duration:.0f} s", "seed": seed,
                             "load": " ".join(f"{n:.2f}" for n in os.getloadavg()), **outcome.notes}
            return outcome
        finally:
            soak.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=80)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--duration", type=float, default=600, help="seconds of faults")
    parser.add_argument("--fault-rate", type=float, default=6, help="faults a minute, on average")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--cancel-share", type=float, default=0.15)
    parser.add_argument("--settle", type=float, default=240, help="bound on the time to terminal after the faults")
    parser.add_argument("--sample", type=int, default=3, help="jobs whose weights are compared with a clean run")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (logs, database)")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped soak still stops its cluster
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    outcome = run(jobs=args.jobs, workers=args.workers, duration=args.duration, fault_rate=args.fault_rate,
                  seed=args.seed, db=args.db, cancel_share=args.cancel_share, settle_seconds=args.settle,
                  sample=args.sample, root=args.keep)
    command = "benchmarks/chaos.py " + " ".join(sys.argv[1:])
    text = f"# chaos soak ({args.db})\n\n`{command}`, started {started}\n\n{outcome.tables()}\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    sys.exit(1 if outcome.failures else 0)


if __name__ == "__main__":
    main()
