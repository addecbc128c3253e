"""Real processes for the service tests: uvicorn serving the API, a Celery worker, real Redis
(127.0.0.1:6379, a logical database claimed for this run) and each job store backend (SQLite
file; PostgreSQL at 127.0.0.1:5432 in a schema created for this run and dropped after).

Override the servers with HM2BP_TEST_REDIS (host:port) and HM2BP_TEST_POSTGRES (a SQLAlchemy
URL of a database where schemas may be created).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from .harness import (CLAIM_KEY, HM2BP, MAX_UPLOAD_BYTES, REDIS_HOST, REDIS_PORT, REPO, START_SECONDS, Service,
                      free_port, postgres_schema, stop)


@pytest.fixture(scope="session")
def redis_db():
    """Claims free logical Redis databases (a key marks them) and flushes them at the end."""
    claimed: list[int] = []

    def claim() -> int:
        for number in range(15, 0, -1):
            client = redis.Redis(host=REDIS_HOST, port=int(REDIS_PORT), db=number)
            if client.dbsize() == 0 and client.set(CLAIM_KEY, str(os.getpid()), nx=True, ex=3600):
                claimed.append(number)
                return number
        raise RuntimeError("no free Redis database (1..15) for the service tests")

    yield claim
    for number in claimed:
        redis.Redis(host=REDIS_HOST, port=int(REDIS_PORT), db=number).flushdb()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def service(request, tmp_path_factory, redis_db):
    backend = request.param
    data_dir = tmp_path_factory.mktemp(f"service-{backend}")
    env = {
        **os.environ,
        "HM2BP_DATA_DIR": str(data_dir),
        "HM2BP_REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db()}",
        "HM2BP_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "HM2BP_LEASE_SECONDS": "10",
        "HM2BP_SWEEP_SECONDS": "2",
        "HM2BP_CANCEL_GRACE_SECONDS": "1",
        "OMP_NUM_THREADS": "1",
    }
    database = contextlib.ExitStack()
    if backend == "postgresql":
        env["HM2BP_DATABASE_URL"] = database.enter_context(postgres_schema())
    else:
        env.pop("HM2BP_DATABASE_URL", None)
    tokens = {}
    for user in ("alice", "bob"):
        made = subprocess.run([HM2BP, "token", "create", "--user", user], env=env, cwd=REPO,
                              capture_output=True, text=True, check=True)
        tokens[user] = made.stdout.strip().splitlines()[-1]
    port = free_port()
    logs = {"api": data_dir / "api.log", "worker": data_dir / "worker.log"}
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=REPO, stdout=open(logs["api"], "w"), stderr=subprocess.STDOUT, start_new_session=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "gpu,cpu", "-c", "1",
         "--without-gossip", "--without-mingle", "-l", "INFO"],
        env=env, cwd=REPO, stdout=open(logs["worker"], "w"), stderr=subprocess.STDOUT, start_new_session=True)
    svc = Service(f"http://127.0.0.1:{port}", data_dir, env, tokens, logs)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                if httpx.get(f"{svc.url}/readyz", timeout=2).status_code == 200 and "ready." in logs["worker"].read_text():
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or api.poll() is not None or worker.poll() is not None:
                raise RuntimeError(f"service did not start:\n{logs['api'].read_text()[-3000:]}\n"
                                   f"{logs['worker'].read_text()[-3000:]}")
            time.sleep(0.3)
        yield svc
    finally:
        for client in svc.clients:
            client.close()
        stop(api)
        stop(worker)
        database.close()


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> Path:
    """A small .npz dataset: 200 train and 100 test images of scikit-learn's digits, floats in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    path = tmp_path_factory.mktemp("data") / "digits-small.npz"
    np.savez_compressed(path, x_train=x[:200], y_train=y[:200], x_test=x[1000:1100], y_test=y[1000:1100])
    return path


