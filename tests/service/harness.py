"""Helpers of the service tests: constants, process control, the Service handle, a fresh
PostgreSQL schema. Fixtures are in conftest.py."""


from __future__ import annotations

import contextlib
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy

REPO = Path(__file__).resolve().parents[2]
REDIS_HOST, REDIS_PORT = os.environ.get("HM2BP_TEST_REDIS", "127.0.0.1:6379").split(":")
POSTGRES_URL = os.environ.get("HM2BP_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CLAIM_KEY = "hm2bp-service-tests:claim"
TINY_SPEC = {
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5}, {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 40},
    "training": {"epochs": 2, "batch_size": 32, "max_train_samples": 200, "max_test_samples": 100, "device": "cpu"},
}
MAX_UPLOAD_BYTES = 200_000
START_SECONDS = 60
HM2BP = str(Path(sys.executable).with_name("hm2bp"))  # the installed console script


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, seconds: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


@dataclass
class Service:
    """A running API + worker; ``client(user)`` is an httpx client with that user's token."""

    url: str
    data_dir: Path
    env: dict[str, str]
    tokens: dict[str, str]
    logs: dict[str, Path]
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http"):]

    def client(self, user: str | None = "alice") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def wait_for(self, job_id: str, states: set[str], seconds: float = 60, user: str = "alice") -> dict:
        client = self.client(user)
        deadline = time.monotonic() + seconds
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']} after {seconds} s; worker log:\n"
                                     + self.logs["worker"].read_text()[-3000:])
            time.sleep(0.2)


@contextlib.contextmanager
def postgres_schema():
    """A fresh PostgreSQL schema for one test session; yields a URL whose search_path is it."""
    schema = f"hm2bp_test_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
