"""Webhook delivery under bad receivers (not a test): one worker's sender, two figures.

    .venv/bin/python benchmarks/webhook_receivers.py                        # this checkout
    .venv/bin/python benchmarks/webhook_receivers.py --repo /path/to/other  # another checkout, same venv

It starts a redis-server of its own, the API (``uvicorn api.app:create_app --factory``) and one
Celery worker from ``--repo`` (SQLite in a temporary folder; the worker consumes a queue nobody
sends to, so nothing trains: deliveries come from jobs cancelled while queued), and receivers on
loopback (allowed with ``HM2BP_WEBHOOK_ALLOWED_DESTINATIONS``; a checkout without that setting
ignores it). Then:

1. **isolation**: ``--drips`` deliveries to a receiver that answers one byte per second for
   ``--drip-seconds``, and once one of them is open, one delivery to a good receiver (another
   port): the good one's latency, from its job's cancel to its arrival;
2. **a huge reply**: one delivery to a receiver that answers 500 with a ``--reply-mb`` body: the
   worker's main process RSS before, at its peak while the attempt runs, and after (psutil,
   sampled every 50 ms), and how many bytes the receiver got to send.

The worker runs with the default deadline (``HM2BP_WEBHOOK_TIMEOUT_SECONDS`` 10) and one attempt
per delivery. Everything it made is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
SPEC = {"network": {"layers": [{"type": "dense", "units": 10, "threshold": 5},
                               {"type": "dense", "units": 10, "threshold": 5}]},
        "training": {"epochs": 1, "device": "cpu"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receivers:
    """``/drip``: a byte a second; ``/good``: 200 at once; ``/big``: a 500 with a huge body."""

    def __init__(self, drip_seconds: int, reply_bytes: int):
        self.arrivals: dict[str, float] = {}
        self.open_drips = 0
        self.big_sent = 0
        self.lock = threading.Lock()
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receivers.lock:
                    receivers.arrivals.setdefault(self.path, time.monotonic())
                try:
                    if self.path == "/drip":
                        self.drip()
                    elif self.path == "/big":
                        head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % reply_bytes
                        self.wfile.write(head)
                        chunk = b"x" * (1 << 20)
                        while receivers.big_sent < reply_bytes:
                            self.wfile.write(chunk)
                            receivers.big_sent += len(chunk)
                    else:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                except OSError:
                    pass
                self.close_connection = True

            def drip(self):
                with receivers.lock:
                    receivers.open_drips += 1
                try:
                    reply = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * drip_seconds
                    for index in range(drip_seconds):
                        self.wfile.write(reply[index:index + 1])
                        self.wfile.flush()
                        readable, _, _ = select.select([self.connection], [], [], 1.0)
                        if readable and not self.connection.recv(1):
                            return
                    self.wfile.write(reply[drip_seconds:] + b"\r\nContent-Length: 0\r\n\r\n")
                finally:
                    with receivers.lock:
                        receivers.open_drips -= 1

            def log_message(self, *args):
                pass

        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
        for server in self.servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.bad, self.good = (f"http://127.0.0.1:{s.server_address[1]}" for s in self.servers)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def wait(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not (result := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {seconds} s")
        time.sleep(0.02)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose worker is measured")
    parser.add_argument("--drips", type=int, default=2)
    parser.add_argument("--drip-seconds", type=int, default=30)
    parser.add_argument("--reply-mb", type=int, default=300)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hm2bp-webhook-bench-"))
    receivers = Receivers(args.drip_seconds, args.reply_mb << 20)
    redis_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
    env.update(HM2BP_DATA_DIR=str(folder / "data"), HM2BP_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               HM2BP_WEBHOOK_ALLOWED_DESTINATIONS="127.0.0.0/8", HM2BP_WEBHOOK_MAX_ATTEMPTS="1",
               HM2BP_WEBHOOK_POLL_SECONDS="0.2", OMP_NUM_THREADS="1", PYTHONPATH=str(args.repo))
    processes = [subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL,
                                  start_new_session=True)]
    try:
        token = subprocess.run([sys.executable, "-c", "from api.cli import app; app()", "token", "create", "--user",
                                "bench"], env=env, cwd=args.repo, capture_output=True, text=True,
                               check=True).stdout.strip().splitlines()[-1]
        log = open(folder / "service.log", "a")
        processes.append(subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host",
                                           "127.0.0.1", "--port", str(api_port)], env=env, cwd=args.repo,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        worker_log = folder / "worker.log"
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "idle",
                                   "-c", "1", "--without-gossip", "--without-mingle", "-l", "INFO"], env=env,
                                  cwd=args.repo, stdout=open(worker_log, "a"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        processes.append(worker)
        client = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {token}"},
                              timeout=30)

        def ready() -> bool:
            try:
                return client.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait(ready, 60, "the API")
        wait(lambda: "ready." in worker_log.read_text(), 90, "the worker")  # its sender starts then

        def ended(url: str) -> tuple[str, float]:
            made = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": SPEC, "webhook_url": url})
            made.raise_for_status()
            client.post(f"/v1/jobs/{made.json()['id']}/cancel").raise_for_status()
            return made.json()["id"], time.monotonic()

        for _ in range(args.drips):
            ended(f"{receivers.bad}/drip")
        wait(lambda: receivers.open_drips > 0, 60, "a drip delivery")
        _, cancelled = ended(f"{receivers.good}/good")
        arrived = wait(lambda: receivers.arrivals.get("/good"), 4 * args.drips * args.drip_seconds, "the good one")
        latency, open_drips = arrived - cancelled, receivers.open_drips
        wait(lambda: receivers.open_drips == 0, 2 * args.drips * args.drip_seconds, "the drips' end")

        process = psutil.Process(worker.pid)
        before = process.memory_info().rss
        peak = before
        job_id, _ = ended(f"{receivers.bad}/big")

        def recorded() -> bool:
            nonlocal peak
            peak = max(peak, process.memory_info().rss)
            items = client.get(f"/v1/jobs/{job_id}/webhooks").json()["items"]
            return bool(items) and items[0]["state"] != "pending"

        wait(recorded, 180, "the big reply's attempt")
        time.sleep(1)
        after = process.memory_info().rss
        record = client.get(f"/v1/jobs/{job_id}/webhooks").json()["items"][0]
        mib = 1 << 20
        print(f"worker of {args.repo}")
        print("| figure | value |\n|---|---|")
        print(f"| good delivery latency with {args.drips} drips of {args.drip_seconds} s queued | {latency:.2f} s "
              f"({open_drips} drip(s) still open when it arrived) |")
        print(f"| worker RSS before / peak / after a {args.reply_mb} MB reply | {before / mib:.0f} / "
              f"{peak / mib:.0f} / {after / mib:.0f} MiB |")
        print(f"| bytes the receiver sent of the reply | {receivers.big_sent / mib:.0f} MiB |")
        print(f"| stored last_error | {str(record['last_error'])[:60]!r} |")
    finally:
        for process in reversed(processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
        receivers.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
