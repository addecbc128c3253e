"""Helpers of the service tests: constants, process control, the Service handle, a fresh
PostgreSQL schema. Fixtures are in conftest.py."""


from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 40},
    "training": {"epochs": 2, "batch_size": 32, "max_train_samples": 200, "max_test_samples": 100, "device": "cpu"},
}
MAX_UPLOAD_BYTES = 200_000
START_SECONDS = 240  # the API and worker import torch: a minute and more on a loaded 2-core machine
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


def service_env(data_dir: Path, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of the service's processes: HM2BP_* settings (``lease_seconds="3"`` ->
    HM2BP_LEASE_SECONDS=3) over the defaults of the service tests."""
    env = {
        **os.environ,
        "HM2BP_DATA_DIR": str(data_dir),
        "HM2BP_REDIS_URL": redis_url,
        "HM2BP_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "HM2BP_LEASE_SECONDS": "10",
        "HM2BP_SWEEP_SECONDS": "2",
        "HM2BP_CANCEL_GRACE_SECONDS": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HM2BP_DATABASE_URL", None)
    env.update({f"HM2BP_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def create_tokens(env: dict[str, str], users: tuple[str, ...] = ("alice", "bob")) -> dict[str, str]:
    tokens = {}
    for user in users:
        made = subprocess.run([HM2BP, "token", "create", "--user", user], env=env, cwd=REPO,
                              capture_output=True, text=True, check=True)
        tokens[user] = made.stdout.strip().splitlines()[-1]
    return tokens


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    """uvicorn serving the API on 127.0.0.1:port (as the API image runs it), in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--http", "api.slow_clients:HeaderDeadlineProtocol"],
        env=env, cwd=REPO, stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)


def start_worker(env: dict[str, str], log: Path, name: str = "worker", cgroup: Path | None = None) -> subprocess.Popen:
    """A Celery worker (one pool process) named ``name@host``, in its own process group; in the
    control group ``cgroup`` (a folder made by ``memory_cgroup``) from its first instruction on,
    with everything it starts."""
    command = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "gpu,cpu", "-c", "1",
               "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"]
    if cgroup is not None:
        command = ["sh", "-c", f'echo $$ > {cgroup / "cgroup.procs"} && exec "$@"', "sh", *command]
    return subprocess.Popen(command, env=env, cwd=REPO, stdout=open(log, "a"), stderr=subprocess.STDOUT,
                            start_new_session=True)


@contextlib.contextmanager
def memory_cgroup(mib: int):
    """A memory control group of the test's own under this process's, limited to ``mib`` MiB (the
    kernel's OOM killer takes a process of it that goes past); yields its folder, removed afterwards
    (once its processes are gone). Skips the test where no writable memory cgroup is found (cgroup
    v1 here; v2 needs the memory controller delegated to this process's group)."""
    import pytest

    own = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            own = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        elif controllers == "" and own is None and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            own = Path("/sys/fs/cgroup") / path.lstrip("/")
    if own is None or os.geteuid() != 0:
        pytest.skip("no memory cgroup to make a group in (needs root)")
    folder = own / f"hm2bp-test-{secrets.token_hex(4)}"
    try:
        folder.mkdir()
        limit = "memory.max" if (folder / "memory.max").exists() else "memory.limit_in_bytes"
        (folder / limit).write_text(str(mib << 20))
    except OSError as exc:
        with contextlib.suppress(OSError):
            folder.rmdir()
        pytest.skip(f"cannot make a memory cgroup: {exc}")
    try:
        yield folder
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                folder.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def wait_api(url: str, process: subprocess.Popen, log: Path, seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"the API did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def wait_worker(process: subprocess.Popen, log: Path, seconds: float = START_SECONDS, start: int = 0) -> None:
    """Until the worker logs "ready." (after byte ``start`` of its log)."""
    deadline = time.monotonic() + seconds
    while "ready." not in log.read_text()[start:]:
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


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
                raise AssertionError(f"job {job_id} still {job['state']} after {seconds} s; worker logs:\n" + "\n".join(
                    path.read_text()[-3000:] for name, path in self.logs.items() if "worker" in name and path.exists()))
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


class RedisServer:
    """A redis-server of the test's own on a free loopback port (never the machine's), without
    persistence: a restart loses everything in it, as a crash of an unconfigured Redis does."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder, self.port = folder, port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class PostgresServer:
    """A PostgreSQL server of the test's own (``initdb`` into a fresh folder under the system's
    temporary folder, ``pg_ctl`` on a free loopback port, trust authentication), never the
    machine's: a test may stop, kill and restart it; ``close`` stops it and removes its folder.
    PostgreSQL refuses to run as root, so under root it runs as the ``postgres`` user (which
    could not enter a root-only test folder: hence a folder of its own)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="hm2bp-postgres-"))
        self.data = self.folder / "data"
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = bins[-1].parent
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as, *args], capture_output=True, text=True, check=True, cwd=self.folder)

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-w",
                  "-t", "60", "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
                  "-c max_connections=200", "start")
        return self

    def stop(self, mode: str = "immediate") -> None:
        """``pg_ctl stop -m immediate``: every connection is cut at once, as in a crash."""
        subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                       capture_output=True, cwd=self.folder)

    def restart(self, down_seconds: float = 0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def kill_tree(process: subprocess.Popen) -> list[int]:
    """SIGKILL a process and all its descendants at once (a worker and its training child, which
    runs in a session of its own, so the process group alone would miss it); their pids."""
    import psutil

    try:
        root = psutil.Process(process.pid)
        victims = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        victims = []
    for victim in victims:
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait()
    psutil.wait_procs(victims, timeout=5)
    return [victim.pid for victim in victims]


class Cluster:
    """A whole service of the test's own, each part started and stopped at will: its own Redis,
    one API (restartable on the same port), any number of Celery workers; SQLite under ``root``
    (or the database of a ``database_url`` setting, e.g. a ``PostgresServer``'s). ``service`` is
    the ``Service`` handle the service tests use (tokens of alice and bob); ``start_seconds`` bounds
    each start of the API or a worker."""

    def __init__(self, root: Path, start_seconds: float = START_SECONDS, **settings: str):
        self.root, self.start_seconds = root, start_seconds
        self.redis = RedisServer(root / "redis").start()
        self.env = service_env(root, self.redis.url, **settings)
        self.port = free_port()
        self.api: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.logs = {"api": root / "api.log", "worker": root / "worker.log"}
        self.service = Service(f"http://127.0.0.1:{self.port}", root, self.env, create_tokens(self.env), self.logs)

    def start_api(self) -> None:
        self.api = start_api(self.env, self.port, self.logs["api"])
        wait_api(self.service.url, self.api, self.logs["api"], self.start_seconds)

    def kill_api(self) -> None:
        if self.api is not None:
            kill_tree(self.api)
            self.api = None

    def add_worker(self, name: str, wait: bool = True, cgroup: Path | None = None) -> subprocess.Popen:
        log = self.logs.setdefault(f"worker-{name}", self.root / f"worker-{name}.log")
        start = log.stat().st_size if log.exists() else 0
        worker = self.workers[name] = start_worker(self.env, log, name, cgroup)
        if wait:
            wait_worker(worker, log, self.start_seconds, start=start)
        return worker

    def worker_logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {name}\n{path.read_text()[-tail:]}" for name, path in self.logs.items()
                         if name.startswith("worker-") and path.exists())

    def close(self) -> None:
        for client in self.service.clients:
            client.close()
        for worker in self.workers.values():
            if worker.poll() is None:
                kill_tree(worker)  # with its training child, which a graceful stop could leave behind
        if self.api is not None:
            stop(self.api)
        self.redis.kill()
