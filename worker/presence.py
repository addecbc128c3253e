"""Live workers: each worker's main process keeps a Redis key ``PREFIX worker:NAME`` (JSON: name,
host, pid, queues, concurrency, device, started_at, last_seen) with a TTL of three heartbeats, so
a worker that dies drops out of ``GET /v1/workers`` within that time. The jobs a worker runs are
read from the job store (their lease owners start with the worker's name).

The device is probed in a separate interpreter: importing torch and asking for CUDA properties in
the worker's main process would initialise CUDA in the parent of forked pool processes.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from typing import Any

import redis

log = logging.getLogger(__name__)
MISSED_BEATS = 3
PROBE = """
import json, os, torch
if torch.cuda.is_available():
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    print(json.dumps({"kind": "cuda", "name": props[0].name, "memory_bytes": props[0].total_memory,
                      "count": len(props), "names": [p.name for p in props]}))
else:
    print(json.dumps({"kind": "cpu"}))
"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_device(timeout: float = 120) -> dict[str, Any]:
    """``{"kind": "cuda", "name", "memory_bytes", "count", "names"}`` for the GPUs this worker sees
    (``CUDA_VISIBLE_DEVICES``), else ``{"kind": "cpu", "name": CPU model, "cores"}``."""
    found: dict[str, Any] = {"kind": "cpu"}
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=timeout)
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except Exception as exc:  # no torch, a broken driver: report the CPU
        log.warning("device probe failed (%s); reporting the CPU", exc)
    if found.get("kind") != "cuda":
        found = {"kind": "cpu", "name": cpu_model(), "cores": os.cpu_count()}
    return found


def worker_key(prefix: str, name: str) -> str:
    return f"{prefix}worker:{name}"


class WorkerRegistry:
    """Reads and writes the live-worker keys."""

    def __init__(self, redis_url: str, prefix: str):
        self.prefix = prefix
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def announce(self, info: dict[str, Any], ttl_seconds: float) -> None:
        self._redis.set(worker_key(self.prefix, info["name"]), json.dumps(info), px=int(ttl_seconds * 1000))

    def withdraw(self, name: str) -> None:
        self._redis.delete(worker_key(self.prefix, name))

    def live(self) -> list[dict[str, Any]]:
        keys = sorted(self._redis.scan_iter(match=worker_key(self.prefix, "*"), count=500))
        found = []
        for value in self._redis.mget(keys) if keys else []:
            try:
                found.append(json.loads(value))
            except (TypeError, ValueError):  # expired between SCAN and MGET, or not ours
                continue
        return found

    def close(self) -> None:
        self._redis.close()


class Heartbeat(threading.Thread):
    """Announces this worker every ``worker_heartbeat_seconds`` until stopped; withdraws it then."""

    def __init__(self, registry: WorkerRegistry, name: str, queues: list[str], concurrency: int, interval: float):
        super().__init__(name="hm2bp-heartbeat", daemon=True)
        self.registry, self.interval = registry, interval
        self.stopped = threading.Event()
        self.info: dict[str, Any] = {
            "name": name, "host": socket.gethostname(), "pid": os.getpid(), "queues": queues,
            "concurrency": concurrency, "device": None, "started_at": now_iso(),
        }

    def run(self) -> None:
        self.beat()  # visible at once; the device follows when probed
        self.info["device"] = probe_device()
        while True:
            self.beat()
            if self.stopped.wait(self.interval):
                break
        try:
            self.registry.withdraw(self.info["name"])
        except redis.RedisError:
            pass

    def beat(self) -> None:
        try:
            self.registry.announce({**self.info, "last_seen": now_iso()}, self.interval * MISSED_BEATS)
        except redis.RedisError as exc:
            log.warning("worker heartbeat not sent: %s", exc)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


_running: Heartbeat | None = None


def start_heartbeat(redis_url: str, prefix: str, name: str, queues: list[str], concurrency: int,
                    interval: float) -> None:
    global _running
    if _running is None:
        _running = Heartbeat(WorkerRegistry(redis_url, prefix), name, queues, concurrency, interval)
        _running.start()


def stop_heartbeat() -> None:
    global _running
    if _running is not None:
        _running.stopped.set()
        _running.join(1)  # a beat in flight; not the device probe, which may take a while
        try:  # at once, even when the thread is still probing the device
            _running.registry.withdraw(_running.info["name"])
        except redis.RedisError:
            pass
        _running = None
