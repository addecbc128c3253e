"""Real processes for the service tests: uvicorn serving the API, a Celery worker, real Redis
(127.0.0.1:6379, a logical database claimed for this run) and each job store backend (SQLite
file; PostgreSQL at 127.0.0.1:5432 in a schema created for this run and dropped after).

Override the servers with HM2BP_TEST_REDIS (host:port) and HM2BP_TEST_POSTGRES (a SQLAlchemy
URL of a database where schemas may be created).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
import redis

from .harness import (
    CLAIM_KEY,
    REDIS_HOST,
    REDIS_PORT,
    Service,
    create_tokens,
    free_port,
    postgres_schema,
    service_env,
    start_api,
    start_worker,
    stop,
    wait_api,
    wait_worker,
)


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
    # the CLI tests' webhooks go to a loopback port nobody listens on (the default refuses loopback)
    env = service_env(data_dir, f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db()}",
                      webhook_allowed_destinations="127.0.0.1")
    database = contextlib.ExitStack()
    if backend == "postgresql":
        env["HM2BP_DATABASE_URL"] = database.enter_context(postgres_schema())
    tokens = create_tokens(env)
    port = free_port()
    logs = {"api": data_dir / "api.log", "worker": data_dir / "worker.log"}
    api = start_api(env, port, logs["api"])
    worker = start_worker(env, logs["worker"])
    svc = Service(f"http://127.0.0.1:{port}", data_dir, env, tokens, logs)
    try:
        wait_api(svc.url, api, logs["api"])
        wait_worker(worker, logs["worker"])
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


