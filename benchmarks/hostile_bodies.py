"""Hostile bodies (not a test): one API process while ``--clients`` clients each send a
``--size-mb`` JSON body (``--rounds`` times) to ``POST /v1/jobs`` without a token, and one more client polls
``/healthz`` meanwhile.

    .venv/bin/python benchmarks/hostile_bodies.py                        # this checkout
    .venv/bin/python benchmarks/hostile_bodies.py --repo /path/to/other  # another checkout, same venv

It starts ``uvicorn api.app:create_app --factory`` from ``--repo`` on a free loopback port (its own
redis-server on another, SQLite in a temporary folder; with ``--http
api.slow_clients:HeaderDeadlineProtocol`` where the checkout has it, as ``hm2bp serve`` runs it),
samples the API process's RSS every 20 ms and prints a table: the RSS before, its peak during the
attack, what the clients got back (status codes, or the connection closed under them), how long
the attack took, and the ``/healthz`` latency (median, p99, max, over every poll during it).
Everything it made is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
CHUNK = b"x" * (1 << 20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hostile_body(size: int):
    """``{"dataset": "builtin:digits", "name": "xxx...x"}``, ``size`` bytes, made as it is sent."""
    head, tail = b'{"dataset": "builtin:digits", "name": "', b'"}'
    yield head
    left = size - len(head) - len(tail)
    while left > 0:
        part = CHUNK[:left]
        left -= len(part)
        yield part
    yield tail


def attack(url: str, size: int, rounds: int, outcomes: Counter, lock: threading.Lock) -> None:
    for _ in range(rounds):
        try:
            response = httpx.post(f"{url}/v1/jobs", content=hostile_body(size), timeout=300,
                                  headers={"Content-Type": "application/json", "Content-Length": str(size)})
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            outcome = f"closed ({type(exc).__name__})"
        with lock:
            outcomes[outcome] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose API is measured")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size-mb", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=1, help="bodies each client sends, one after the other")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hm2bp-hostile-"))
    port, redis_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
    env.update(HM2BP_DATA_DIR=str(folder / "data"), HM2BP_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               OMP_NUM_THREADS="1", PYTHONPATH=str(args.repo))
    guarded = (args.repo / "api" / "slow_clients.py").exists()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, start_new_session=True)
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
                            "--port", str(port), *(["--http", "api.slow_clients:HeaderDeadlineProtocol"] if guarded
                                                   else [])],
                           env=env, cwd=args.repo, stdout=open(folder / "api.log", "w"), stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or api.poll() is not None:
                raise SystemExit(f"the API did not start:\n{(folder / 'api.log').read_text()[-3000:]}")
            time.sleep(0.2)
        process = psutil.Process(api.pid)
        before = process.memory_info().rss
        peak = [before]
        latencies: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.02)

        def poll() -> None:
            with httpx.Client(timeout=60) as client:
                while not done.is_set():
                    started = time.perf_counter()
                    client.get(f"{url}/healthz")
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.05)

        outcomes: Counter = Counter()
        lock = threading.Lock()
        watchers = [threading.Thread(target=sample), threading.Thread(target=poll)]
        attackers = [threading.Thread(target=attack, args=(url, args.size_mb * 1_000_000, args.rounds, outcomes, lock))
                     for _ in range(args.clients)]
        for thread in watchers:
            thread.start()
        started = time.perf_counter()
        for thread in attackers:
            thread.start()
        for thread in attackers:
            thread.join()
        seconds = time.perf_counter() - started
        time.sleep(0.5)
        done.set()
        for thread in watchers:
            thread.join()
        ordered = sorted(latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")
        mib = 1 << 20
        print(f"API of {args.repo} ({'with' if guarded else 'without'} the body limits), {args.clients} clients x "
              f"{args.rounds} x {args.size_mb} MB JSON without a token")
        print(f"{'RSS before':>12} {'peak RSS':>10} {'attack s':>9} {'healthz n':>10} {'median ms':>10} "
              f"{'p99 ms':>8} {'max ms':>8}  answers")
        print(f"{before / mib:>9.0f} MiB {peak[0] / mib:>6.0f} MiB {seconds:>9.1f} {len(ordered):>10} "
              f"{statistics.median(ordered) * 1000:>10.1f} {p99 * 1000:>8.1f} {ordered[-1] * 1000:>8.1f}  "
              f"{dict(outcomes)}")
    finally:
        for process_ in (api, redis):
            process_.terminate()
            try:
                process_.wait(10)
            except subprocess.TimeoutExpired:
                process_.kill()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
