"""The worker's heartbeat: a thread in its main process that keeps its entry in the registry of
live workers (``hm2bp_service.workers``) fresh, with its queues and device.

The device is probed in a separate interpreter: importing torch and asking for CUDA properties in
the worker's main process would initialise CUDA in the parent of forked pool processes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import redis

from hm2bp_service.services import Services
from hm2bp_service.watchdog import child_of
from hm2bp_service.workers import MISSED_BEATS, WorkerRegistry

log = logging.getLogger(__name__)
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
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=timeout,
                              preexec_fn=functools.partial(child_of, os.getpid(), signal.SIGKILL))  # no orphan
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except Exception as exc:  # no torch, a broken driver: report the CPU
        log.warning("device probe failed (%s); reporting the CPU", exc)
    if found.get("kind") != "cuda":
        found = {"kind": "cpu", "name": cpu_model(), "cores": os.cpu_count()}
    return found


class Heartbeat(threading.Thread):
    """Announces this worker every ``worker_heartbeat_seconds`` until stopped; withdraws it then."""

    def __init__(self, registry: WorkerRegistry, name: str, queues: list[str], concurrency: int, interval: float,
                 memory_limit_bytes: int):
        super().__init__(name="hm2bp-heartbeat", daemon=True)
        self.registry, self.interval = registry, interval
        self.stopped = threading.Event()
        self.info: dict[str, Any] = {
            "name": name, "host": socket.gethostname(), "pid": os.getpid(), "queues": queues,
            "concurrency": concurrency, "device": None, "memory_limit_bytes": memory_limit_bytes,
            "started_at": now_iso(),
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
    return datetime.now(UTC).isoformat()


_running: Heartbeat | None = None


def start(services: Services, name: str, queues: list[str], concurrency: int) -> None:
    """Announce this worker every ``worker_heartbeat_seconds`` from a thread (its own registry client)."""
    global _running
    settings = services.settings
    if _running is None:
        _running = Heartbeat(WorkerRegistry(settings.redis_client_url, settings.redis_prefix), name, queues,
                             concurrency, settings.worker_heartbeat_seconds, settings.job_memory_bytes)
        _running.start()


def stop() -> None:
    global _running
    if _running is not None:
        _running.stopped.set()
        _running.join(1)  # a beat in flight; not the device probe, which may take a while
        try:  # at once, even when the thread is still probing the device
            _running.registry.withdraw(_running.info["name"])
        except redis.RedisError:
            pass
        _running = None
