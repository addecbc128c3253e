"""Load benchmark of the service (not a test): API clients polling like a lab, and websocket subscribers.

    .venv/bin/python benchmarks/load.py                      # starts `hm2bp serve` in a temp folder
    .venv/bin/python benchmarks/load.py --workers 1          # one API process (`make run`'s)
    .venv/bin/python benchmarks/load.py --database-url postgresql+psycopg://127.0.0.1/test
    .venv/bin/python benchmarks/load.py --think 0            # closed loop: every client back-to-back
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8000 --token hm2bp_...

The load model. For ``--duration`` seconds, ``--clients`` clients each loop over submit
(POST /v1/jobs), list (GET /v1/jobs) and status (GET /v1/jobs/{id}), and wait a think time
between two requests, drawn uniformly from 0.5x to 1.5x ``--think`` seconds (default 1 s), the
way a lab's scripts and dashboards poll (Locust's ``wait_time = between(0.5, 1.5)``). 200 such
clients offer about 200 requests/s; the table shows this offered rate next to the achieved one.
``--think 0`` is a closed loop (each client sends its next request as soon as the last one
returns): then the clients send as fast as the server answers, the achieved rate is the server's
throughput, and latency is mostly time spent queueing behind the other clients' requests (on
two cores shared by the clients, the API and the training run it measures little else).

Meanwhile ``--subscribers`` websockets follow one running job's stream (a progress event every
second or so). The event lag is the receive time minus the event's ``at`` (server and client share
the clock on loopback), for events stored in the measured window. The window opens once every
subscriber has connected, replayed the history after its cursor and received a live event (that
warm-up is not load); the HTTP clients start then. It prints requests/s, p50/p99 latency and
errors per operation, the event lag, and what the load generator itself cost: its CPU, and the
lag of its own event loop (every latency is measured on that loop; a lag near the latencies
would mean the generator, not the service, set them).
The clients use aiohttp (the ``bench`` extra, which ``make setup`` installs): on the 2-core test
machine an httpx request costs 2.5 ms of the generator's CPU and an aiohttp one 0.6 ms, and the
generator shares the CPU with the service it measures.
Everything stops by itself at the deadline; the jobs it submitted are cancelled at the end.
Loopback only: the URL must be 127.0.0.1/localhost.

The service it starts is ``hm2bp serve`` (embedded Redis, SQLite, one Celery worker, which
trains the followed job on the CPU at a lower priority than the API) with ``--workers`` API
processes (default 2, as deployed: docker-compose's ``HM2BP_API_WORKERS``); ``--database-url``
puts the job store in a PostgreSQL database instead of SQLite (the benchmark creates a schema of
its own there and drops it at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import httpx
import numpy as np
from websockets.asyncio.client import connect

HM2BP = str(Path(sys.executable).with_name("hm2bp"))
SUBMIT_SPEC = {  # small, valid, fit-checked on every submit; never trained here (the worker is busy)
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 20},
    "training": {"epochs": 1, "batch_size": 32, "max_train_samples": 100, "device": "cpu"},
}
RUNNING_SPEC = {  # the job the subscribers follow: a progress event every second for as long as needed
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 40},
    "training": {"epochs": 10_000, "batch_size": 8, "max_train_samples": 1400, "device": "cpu"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalService:
    """``hm2bp serve`` (``workers`` API processes, one Celery worker, embedded Redis, SQLite or a
    fresh schema in the PostgreSQL database ``database_url``) in a temporary folder."""

    def __init__(self, workers: int, database_url: str | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="hm2bp-load-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
        self.env.update(HM2BP_DATA_DIR=str(self.folder), OMP_NUM_THREADS="1")
        self.database_url, self.schema = database_url, None
        if database_url:
            if not database_url.startswith("postgresql"):
                raise SystemExit("--database-url must be a PostgreSQL URL (postgresql+psycopg://...)")
            self.schema = f"hm2bp_load_{os.getpid()}"
            self._admin(f"CREATE SCHEMA {self.schema}")
            separator = "&" if "?" in database_url else "?"
            self.env["HM2BP_DATABASE_URL"] = f"{database_url}{separator}options=-csearch_path%3D{self.schema}"
        self.process: subprocess.Popen | None = None

    def _admin(self, statement: str) -> None:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.database_url)
        with engine.begin() as connection:
            connection.exec_driver_sql(statement)
        engine.dispose()

    def __enter__(self) -> LocalService:
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> LocalService:
        command = [HM2BP, "serve", "--port", str(self.port), "--data-dir", str(self.folder),
                   "--workers", str(self.workers)]
        self.process = subprocess.Popen(command, env=self.env, stdout=open(self.folder / "serve.log", "w"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"the service did not start:\n{(self.folder / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.3)
        made = subprocess.run([HM2BP, "token", "create", "--user", "load", "--data-dir",
                               str(self.folder)], env=self.env, capture_output=True, text=True, check=True)
        self.token = made.stdout.strip().splitlines()[-1]
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.schema is not None:
            self._admin(f"DROP SCHEMA {self.schema} CASCADE")


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_kinds: dict[str, int] = defaultdict(int)
        self.lags: list[float] = []
        self.loop_lags: list[float] = []
        self.events = 0
        self.replayed = 0
        self.subscriber_errors = 0
        self.elapsed = 0.0

    def record(self, op: str, seconds: float, ok: bool, kind: str = "") -> None:
        self.latency[op].append(seconds)
        if not ok:
            self.errors[op] += 1
            self.error_kinds[f"{op}: {kind}"] += 1


def think_time(think: float) -> float:
    """Seconds a client waits before its next request: uniform in [0.5, 1.5] x ``think``."""
    return random.uniform(0.5 * think, 1.5 * think) if think > 0 else 0.0


def lab_client(url: str, token: str) -> aiohttp.ClientSession:
    """One lab client's own session and keep-alive connection (one pool shared by all clients
    would cost the load generator a scan of every connection per request)."""
    return aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"},
                                 connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30))


async def request(http: aiohttp.ClientSession, op: str, index: int, job_ids: list[str]) -> int:
    """One request of ``op``, its body read; its status."""
    if op == "submit":
        call = http.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": SUBMIT_SPEC, "name": f"load {index}"})
    elif op == "list":
        call = http.get("/v1/jobs", params={"limit": 20})
    else:
        call = http.get(f"/v1/jobs/{job_ids[index % len(job_ids)]}")
    async with call as response:
        body = await response.read()
        if op == "submit" and response.status == 201:
            job_ids.append(json.loads(body)["id"])
        return response.status


async def client_loop(index: int, http: aiohttp.ClientSession, deadline: float, stats: Stats, job_ids: list[str],
                      think: float) -> None:
    ops = ("submit", "list", "status")
    turn = index
    await asyncio.sleep(random.uniform(0, think))  # clients arrive spread over one think time, not at once
    while time.monotonic() < deadline:
        op = ops[turn % 3]
        turn += 1
        started = time.perf_counter()
        try:
            status = await request(http, op, index, job_ids)
            stats.record(op, time.perf_counter() - started, status < 400, str(status))
        except (TimeoutError, aiohttp.ClientError) as exc:
            stats.record(op, time.perf_counter() - started, False, type(exc).__name__)
        pause = min(think_time(think), deadline - time.monotonic())
        if pause > 0:
            await asyncio.sleep(pause)


async def loop_lag(deadline: float, stats: Stats, every: float = 0.005) -> None:
    """How late this process's event loop wakes a sleeper, sampled every ``every`` seconds."""
    while time.monotonic() < deadline:
        asked = time.perf_counter()
        await asyncio.sleep(every)
        stats.loop_lags.append(time.perf_counter() - asked - every)


class Window:
    """The measured window: it opens once every subscriber is live (connected, history replayed, a
    live event received), and closes ``duration`` seconds later."""

    def __init__(self, subscribers: int) -> None:
        self.waiting = subscribers
        self.opened = asyncio.Event()
        self.start = 0.0  # wall clock, for event timestamps
        self.deadline = 0.0  # monotonic

    def live(self) -> None:
        self.waiting -= 1


async def subscriber(ws_url: str, token: str, window: Window, stats: Stats) -> None:
    live = False
    try:
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30,
                           max_queue=None) as ws:
            connected, live = time.time(), False
            while True:
                left = window.deadline - time.monotonic() if window.opened.is_set() else 60.0
                if left <= 0:
                    break
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=left)
                except TimeoutError:
                    continue
                received = time.time()
                event = json.loads(message)
                at = datetime.fromisoformat(event["at"]).timestamp()
                if not live and at >= connected:
                    live = True
                    window.live()
                if window.opened.is_set() and at >= window.start:  # live, in the window
                    stats.lags.append(received - at)
                    stats.events += 1
                else:
                    stats.replayed += 1
    except Exception:  # noqa: BLE001 - counted, reported
        stats.subscriber_errors += 1
        if not live:
            window.live()


async def cancel_all(http: aiohttp.ClientSession, job_ids: list[str]) -> None:
    """Leave nothing running or queued (a few requests at a time)."""
    gate = asyncio.Semaphore(8)

    async def cancel(job_id: str) -> None:
        async with gate:
            try:
                async with http.post(f"/v1/jobs/{job_id}/cancel") as response:
                    await response.read()
            except (TimeoutError, aiohttp.ClientError):
                pass

    await asyncio.gather(*(cancel(job_id) for job_id in job_ids))


async def run(url: str, token: str, args: argparse.Namespace) -> Stats:
    stats = Stats()
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"},
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:  # set-up and clean-up
        async with http.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": RUNNING_SPEC,
                                               "name": "followed by the subscribers"}) as response:
            if response.status != 201:
                raise SystemExit(f"submitting the followed job failed: {response.status} {await response.text()}")
            running = await response.json()
        for _ in range(600):  # until it trains (up to 60 s)
            async with http.get(f"/v1/jobs/{running['id']}") as response:
                job = await response.json()
            if job["progress"]:
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit(f"the followed job never started: {job}")
        async with http.get(f"/v1/jobs/{running['id']}/logs") as response:
            last = (await response.json())["items"]
        cursor = max([0] + [line["id"] for line in last])
        job_ids = [running["id"]]
        ws_url = "ws" + url[len("http"):] + f"/v1/jobs/{running['id']}/stream?after={cursor}"
        lab_clients = [lab_client(url, token) for _ in range(args.clients)]  # made before the window opens
        window = Window(args.subscribers)
        tasks = [asyncio.create_task(subscriber(ws_url, token, window, stats)) for _ in range(args.subscribers)]
        for _ in range(600):  # warm-up: every subscriber connects, replays and goes live (up to 60 s)
            if window.waiting <= 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        window.start, started = time.time(), time.monotonic()
        window.deadline = deadline = started + args.duration
        window.opened.set()
        tasks += [asyncio.create_task(client_loop(i, lab_clients[i], deadline, stats, job_ids, args.think))
                  for i in range(args.clients)]
        tasks.append(asyncio.create_task(loop_lag(deadline, stats)))
        await asyncio.gather(*tasks)
        stats.elapsed = time.monotonic() - started
        for client in lab_clients:
            await client.close()
        await cancel_all(http, job_ids[1:])
        await cancel_all(http, job_ids[:1])
    return stats


def report(stats: Stats, args: argparse.Namespace, cpu_seconds: float) -> None:
    elapsed = stats.elapsed
    where = args.url or (f"a local hm2bp serve ({args.workers} API process{'es' if args.workers > 1 else ''}, "
                         f"{'PostgreSQL' if args.database_url else 'SQLite'}, embedded Redis)")
    if args.think > 0:
        model = (f"think time {0.5 * args.think:g}-{1.5 * args.think:g} s between requests (open load): offered "
                 f"~{args.clients / args.think:.0f} requests/s")
    else:
        model = "closed loop, no think time: offered = whatever the server answers"
    print(f"\n{args.clients} clients, {args.subscribers} websocket subscribers, {elapsed:.0f} s on {where}")
    print(f"load model: {model}\n")
    print("| operation | requests | requests/s | p50 ms | p99 ms | max ms | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    total = 0
    for op in ("submit", "list", "status"):
        values = np.array(stats.latency.get(op, [0.0])) * 1000
        count = len(stats.latency.get(op, []))
        total += count
        print(f"| {op} | {count} | {count / elapsed:.1f} | {np.percentile(values, 50):.1f} | "
              f"{np.percentile(values, 99):.1f} | {values.max():.1f} | {stats.errors.get(op, 0)} |")
    offered = f"{args.clients / args.think:.0f}" if args.think > 0 else "-"
    print(f"| all | {total} | {total / elapsed:.1f} (offered {offered}) | | | | {sum(stats.errors.values())} |")
    lags = np.array(stats.lags or [float('nan')]) * 1000
    print(f"\nlive events received: {stats.events} ({stats.events / max(args.subscribers, 1):.0f} per subscriber; "
          f"{stats.replayed} before the window), event lag p50 {np.percentile(lags, 50):.0f} ms, "
          f"p99 {np.percentile(lags, 99):.0f} ms, max {np.max(lags):.0f} ms, "
          f"subscriber errors {stats.subscriber_errors}")
    loop_lags = np.array(stats.loop_lags or [float("nan")]) * 1000
    print(f"load generator: CPU {cpu_seconds:.0f} s in {elapsed:.0f} s ({cpu_seconds / elapsed:.2f} cores; "
          f"{os.cpu_count()} in the machine), its event loop's lag p50 {np.percentile(loop_lags, 50):.1f} ms, "
          f"p99 {np.percentile(loop_lags, 99):.1f} ms")
    if stats.error_kinds:
        print("errors:", dict(stats.error_kinds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running service on loopback (default: start one)")
    parser.add_argument("--token", help="API token for --url")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean seconds a client waits between requests (uniform 0.5x-1.5x); 0: closed loop")
    parser.add_argument("--workers", type=int, default=2,
                        help="API processes of the started service (default 2, as docker-compose deploys it)")
    parser.add_argument("--database-url", help="PostgreSQL database for the started service's job store, in a "
                        "schema made for the run and dropped after (default: SQLite in the temp folder)")
    args = parser.parse_args()
    if args.think < 0:
        raise SystemExit("--think must be >= 0")
    cpu_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    if args.url:
        if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("--url must be a loopback address")
        if not args.token:
            raise SystemExit("--url needs --token")
        stats = asyncio.run(run(args.url, args.token, args))
    else:
        with LocalService(args.workers, args.database_url) as service:
            cpu_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
            stats = asyncio.run(run(service.url, service.token, args))
    report(stats, args, sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu_before)


if __name__ == "__main__":
    main()
