"""The registry of live workers: each worker's main process keeps a Redis key ``PREFIX worker:NAME``
(JSON: name, host, pid, queues, concurrency, device, memory_limit_bytes (of each training child),
started_at, last_seen) with a TTL of three
heartbeats (``worker.heartbeat`` writes it), so a worker that dies drops out of ``GET /v1/workers``
within that time. The jobs a worker runs are read from the job store (their lease owners start
with the worker's name).
"""

from __future__ import annotations

import json
from typing import Any

import redis

MISSED_BEATS = 3


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
            if value is None:  # expired between SCAN and MGET
                continue
            try:
                found.append(json.loads(value))
            except ValueError:  # not ours
                continue
        return found

    def close(self) -> None:
        self._redis.close()
