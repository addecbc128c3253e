"""Uploads under pressure (not a test): the API process's peak memory, and the latency of
``GET /v1/jobs/{id}``, while ``--count`` uploads of ``--size-mb`` each stream in at once.

    .venv/bin/python benchmarks/upload_pressure.py                          # this checkout
    .venv/bin/python benchmarks/upload_pressure.py --repo /work/main --repo .  # a baseline beside it

For each ``--repo`` it starts a redis-server of its own on a free port and ``uvicorn
api.app:create_app --factory`` from that checkout (as the API image runs it; SQLite and artifacts
in a temporary folder, ``HM2BP_MAX_UPLOAD_BYTES`` raised to fit), submits one job (no worker: it
stays queued), then reads it every ``--interval`` seconds: first for ``--idle`` seconds alone,
then while the uploads (``.npz`` of random 28 x 28 uint8 images, each different) go in at once,
each from a thread of its own. The API's peak RSS (VmHWM) is reset (``/proc/PID/clear_refs``,
root only) before the uploads. It prints one row per checkout and phase: reads, their median,
p99 and max latency in ms, failed reads, the API's RSS before and its peak during the phase in
MiB, and how long the uploads took; then the ratios of the last checkout to the first.
Everything it made is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from api_memory import make_npz  # the same MNIST-shaped upload as the single-upload benchmark

REPO = Path(__file__).resolve().parents[1]
SPEC = {"network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                               {"type": "dense", "units": 10, "threshold": 5}]},
        "encoding": {"time_steps": 40}, "training": {"epochs": 1, "device": "cpu"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Reader(threading.Thread):
    """GET /v1/jobs/{id} every ``interval`` seconds until stopped: latencies (ms) and failures."""

    def __init__(self, client: httpx.Client, job_id: str, interval: float):
        super().__init__(daemon=True)
        self.client, self.job_id, self.interval = client, job_id, interval
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                ok = self.client.get(f"/v1/jobs/{self.job_id}").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                self.latencies.append((time.perf_counter() - started) * 1000)
            else:
                self.failures += 1
            self.stop.wait(self.interval)


def measure(repo: Path, files: list[Path], size_mb: int, idle: float, interval: float, folder: Path) -> list[dict]:
    port, redis_port = free_port(), free_port()
    data = folder / f"data-{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
    env.update(HM2BP_DATA_DIR=str(data), HM2BP_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", OMP_NUM_THREADS="1",
               HM2BP_MAX_UPLOAD_BYTES=str((size_mb + 64) << 20), HM2BP_MAX_STORED_BYTES=str(1 << 40),
               HM2BP_BODY_TIMEOUT_SECONDS="3600", PYTHONPATH=str(repo))
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT, start_new_session=True)
    api = None
    try:
        token = subprocess.run([sys.executable, "-c", "from api.cli import app; app()", "token", "create", "--user",
                                "bench"], env=env, cwd=repo, capture_output=True, text=True,
                               check=True).stdout.strip().splitlines()[-1]
        api = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port), "--http", "api.slow_clients:HeaderDeadlineProtocol"],
                               env=env, cwd=repo, stdout=open(folder / f"api-{port}.log", "w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
        url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        client = httpx.Client(base_url=url, headers=headers, timeout=600)
        for _ in range(600):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answer = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": SPEC})
        answer.raise_for_status()
        job_id = answer.json()["id"]
        rows = []

        Path(f"/proc/{api.pid}/clear_refs").write_text("5")
        before = status_kib(api.pid, "VmRSS")
        reader = Reader(httpx.Client(base_url=url, headers=headers, timeout=600), job_id, interval)
        reader.start()
        time.sleep(idle)
        reader.stop.set()
        reader.join()
        rows.append({"phase": "idle", "reader": reader, "rss": before, "peak": status_kib(api.pid, "VmHWM"),
                     "seconds": None, "answers": []})

        Path(f"/proc/{api.pid}/clear_refs").write_text("5")
        before = status_kib(api.pid, "VmRSS")
        answers: list[int] = []

        def upload(path: Path) -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=3600) as own, open(path, "rb") as handle:
                answers.append(own.post("/v1/datasets", files={"file": (path.name, handle)}).status_code)

        reader = Reader(httpx.Client(base_url=url, headers=headers, timeout=600), job_id, interval)
        reader.start()
        started = time.monotonic()
        uploaders = [threading.Thread(target=upload, args=(path,)) for path in files]
        for thread in uploaders:
            thread.start()
        for thread in uploaders:
            thread.join()
        seconds = time.monotonic() - started
        reader.stop.set()
        reader.join()
        rows.append({"phase": f"{len(files)} uploads of {size_mb} MB at once", "reader": reader, "rss": before,
                     "peak": status_kib(api.pid, "VmHWM"), "seconds": seconds, "answers": answers})
        return rows
    finally:
        if api is not None:
            os.killpg(api.pid, signal.SIGTERM)
            api.wait(60)
        redis.kill()
        redis.wait()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, action="append", help="checkout whose API is measured (repeatable; "
                        "the first is the baseline of the ratios)")
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of reads before the uploads")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between two reads")
    args = parser.parse_args()
    repos = [path.resolve() for path in (args.repo or [REPO])]
    folder = Path(tempfile.mkdtemp(prefix="hm2bp-uploads-"))
    try:
        files = [folder / f"upload-{index}.npz" for index in range(args.count)]
        for index, path in enumerate(files):
            make_npz(path, args.size_mb, seed=index)
        results = {repo: measure(repo, files, args.size_mb, args.idle, args.interval, folder) for repo in repos}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| checkout | phase | reads | median ms | p99 ms | max ms | failed | RSS before MiB | peak RSS MiB "
          "| uploads s | upload answers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for repo, rows in results.items():
        for row in rows:
            latencies = row["reader"].latencies or [float("nan")]
            took = f"{row['seconds']:.1f}" if row["seconds"] is not None else "-"
            print(f"| {repo} | {row['phase']} | {len(row['reader'].latencies)} | {statistics.median(latencies):.1f} "
                  f"| {percentile(latencies, 0.99):.1f} | {max(latencies):.1f} | {row['reader'].failures} "
                  f"| {row['rss'] / 1024:.0f} | {row['peak'] / 1024:.0f} | {took} "
                  f"| {','.join(map(str, sorted(row['answers']))) or '-'} |")
    if len(repos) > 1:
        first, last = results[repos[0]][-1], results[repos[-1]][-1]
        ratio = (percentile(last["reader"].latencies, 0.99) / percentile(first["reader"].latencies, 0.99)
                 if first["reader"].latencies and last["reader"].latencies else float("nan"))
        print(f"\nunder uploads, {repos[-1]} / {repos[0]}: peak RSS x{last['peak'] / first['peak']:.2f}, "
              f"p99 read latency x{ratio:.2f}, upload time x{last['seconds'] / first['seconds']:.2f}")


if __name__ == "__main__":
    main()
