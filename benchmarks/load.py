"""Load benchmark of the service (not a test): concurrent API clients and websocket subscribers.

    .venv/bin/python benchmarks/load.py                      # starts `hm2bp serve` in a temp folder
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8000 --token hm2bp_...

For ``--duration`` seconds, ``--clients`` concurrent clients loop over submit (POST /v1/jobs),
list (GET /v1/jobs) and status (GET /v1/jobs/{id}), and ``--subscribers`` websockets follow one
running job's stream. It prints requests/s, p50/p99 latency and errors per operation, and the
event lag (receive time minus the event's ``at``; server and client share the clock on loopback).
Everything stops by itself at the deadline; the jobs it submitted are cancelled at the end.
Loopback only: the URL must be 127.0.0.1/localhost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

import httpx
import numpy as np
from websockets.asyncio.client import connect

HM2BP = str(Path(sys.executable).with_name("hm2bp"))
SUBMIT_SPEC = {  # small, valid, fit-checked on every submit; never trained here (the worker is busy)
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5}, {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 20},
    "training": {"epochs": 1, "batch_size": 32, "max_train_samples": 100, "device": "cpu"},
}
RUNNING_SPEC = {  # the job the subscribers follow: a progress event every second for as long as needed
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5}, {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 40},
    "training": {"epochs": 10_000, "batch_size": 8, "max_train_samples": 1400, "device": "cpu"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalService:
    """``hm2bp serve`` (API, one worker, SQLite, embedded Redis) in a temporary folder."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="hm2bp-load-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
        self.env.update(HM2BP_DATA_DIR=str(self.folder), OMP_NUM_THREADS="1")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "LocalService":
        self.process = subprocess.Popen([HM2BP, "serve", "--port", str(self.port), "--data-dir", str(self.folder)],
                                        env=self.env, stdout=open(self.folder / "serve.log", "w"),
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
        made = subprocess.run([HM2BP, "token", "create", "--user", "load", "--data-dir", str(self.folder)],
                              env=self.env, capture_output=True, text=True, check=True)
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


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_kinds: dict[str, int] = defaultdict(int)
        self.lags: list[float] = []
        self.events = 0
        self.subscriber_errors = 0

    def record(self, op: str, seconds: float, ok: bool, kind: str = "") -> None:
        self.latency[op].append(seconds)
        if not ok:
            self.errors[op] += 1
            self.error_kinds[f"{op}: {kind}"] += 1


async def client_loop(index: int, http: httpx.AsyncClient, deadline: float, stats: Stats, job_ids: list[str]) -> None:
    ops = ("submit", "list", "status")
    turn = index
    while time.monotonic() < deadline:
        op = ops[turn % 3]
        turn += 1
        started = time.perf_counter()
        try:
            if op == "submit":
                response = await http.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": SUBMIT_SPEC,
                                                              "name": f"load {index}"})
                if response.status_code == 201:
                    job_ids.append(response.json()["id"])
            elif op == "list":
                response = await http.get("/v1/jobs", params={"limit": 20})
            else:
                response = await http.get(f"/v1/jobs/{job_ids[index % len(job_ids)]}")
            stats.record(op, time.perf_counter() - started, response.status_code < 400, str(response.status_code))
        except httpx.HTTPError as exc:
            stats.record(op, time.perf_counter() - started, False, type(exc).__name__)


async def subscriber(ws_url: str, token: str, deadline: float, stats: Stats) -> None:
    try:
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30,
                           max_queue=None) as ws:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=left)
                except asyncio.TimeoutError:
                    break
                received = time.time()
                event = json.loads(message)
                stats.lags.append(received - datetime.fromisoformat(event["at"]).timestamp())
                stats.events += 1
    except Exception:  # noqa: BLE001 - counted, reported
        stats.subscriber_errors += 1


async def run(url: str, token: str, clients: int, subscribers: int, duration: float) -> Stats:
    stats = Stats()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as http:
        response = await http.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": RUNNING_SPEC,
                                                     "name": "followed by the subscribers"})
        if response.status_code != 201:
            raise SystemExit(f"submitting the followed job failed: {response.status_code} {response.text}")
        running = response.json()
        for _ in range(600):  # until it trains (up to 60 s)
            job = (await http.get(f"/v1/jobs/{running['id']}")).json()
            if job["progress"]:
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit(f"the followed job never started: {job}")
        cursor = max(0, job.get("event_seq", 0))
        last = (await http.get(f"/v1/jobs/{running['id']}/logs")).json()["items"]
        cursor = max([cursor] + [line["id"] for line in last])
        job_ids = [running["id"]]
        ws_url = "ws" + url[len("http"):] + f"/v1/jobs/{running['id']}/stream?after={cursor}"
        deadline = time.monotonic() + duration
        started = time.monotonic()
        tasks = [asyncio.create_task(subscriber(ws_url, token, deadline, stats)) for _ in range(subscribers)]
        tasks += [asyncio.create_task(client_loop(i, http, deadline, stats, job_ids)) for i in range(clients)]
        await asyncio.gather(*tasks)
        stats.elapsed = time.monotonic() - started
        for job_id in job_ids:  # leave nothing running or queued
            try:
                await http.post(f"/v1/jobs/{job_id}/cancel")
            except httpx.HTTPError:
                pass
    return stats


def report(stats: Stats, args: argparse.Namespace) -> None:
    elapsed = stats.elapsed
    print(f"\n{args.clients} clients, {args.subscribers} websocket subscribers, {elapsed:.0f} s on {args.url or 'a local hm2bp serve'}\n")
    print(f"| operation | requests | requests/s | p50 ms | p99 ms | errors |")
    print(f"|---|---:|---:|---:|---:|---:|")
    total = 0
    for op in ("submit", "list", "status"):
        values = np.array(stats.latency.get(op, [0.0])) * 1000
        count = len(stats.latency.get(op, []))
        total += count
        print(f"| {op} | {count} | {count / elapsed:.1f} | {np.percentile(values, 50):.1f} | "
              f"{np.percentile(values, 99):.1f} | {stats.errors.get(op, 0)} |")
    print(f"| all | {total} | {total / elapsed:.1f} | | | {sum(stats.errors.values())} |")
    lags = np.array(stats.lags or [float('nan')]) * 1000
    print(f"\nevents received: {stats.events} ({stats.events / max(args.subscribers, 1):.0f} per subscriber), "
          f"event lag p50 {np.percentile(lags, 50):.0f} ms, p99 {np.percentile(lags, 99):.0f} ms, "
          f"subscriber errors {stats.subscriber_errors}")
    if stats.error_kinds:
        print("errors:", dict(stats.error_kinds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running service on loopback (default: start one)")
    parser.add_argument("--token", help="API token for --url")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    args = parser.parse_args()
    if args.url:
        if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("--url must be a loopback address")
        if not args.token:
            raise SystemExit("--url needs --token")
        stats = asyncio.run(run(args.url, args.token, args.clients, args.subscribers, args.duration))
    else:
        with LocalService() as service:
            stats = asyncio.run(run(service.url, service.token, args.clients, args.subscribers, args.duration))
    report(stats, args)


if __name__ == "__main__":
    main()
