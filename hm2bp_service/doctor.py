"""``hm2bp doctor``: the checks that tell whether this machine can serve or train.

Each check returns ``(name, ok, detail)``; ``run`` performs them in order and never raises, so a
health check or an image build gets every problem at once, each with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .settings import get_settings

Check = tuple[str, bool, str]


def _torch() -> str:
    import torch

    cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no GPU"
    return f"{torch.__version__} ({cuda})"


def _kernels() -> str:
    from hm2bp_core.kernels import build_cpu_kernels

    return f"CPU kernels loaded from {build_cpu_kernels().__file__}"


def _database() -> str:
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from .store.database import MIGRATIONS

    url = get_settings().sqlalchemy_url
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    if current != head:
        raise RuntimeError(f"schema revision {current} is not the newest ({head}): run `hm2bp migrate`")
    return f"{url.split('@')[-1]} at schema revision {current}"


def _redis() -> str:
    import redis

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_client_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    finally:
        client.close()
    return settings.redis_url.split("@")[-1]


def _worker(name: str) -> Callable[[], str]:
    def check() -> str:
        from .workers import WorkerRegistry

        settings = get_settings()
        registry = WorkerRegistry(settings.redis_client_url, settings.redis_prefix)
        try:
            live = {info.get("name"): info for info in registry.live()}
        finally:
            registry.close()
        if name not in live:
            raise RuntimeError(f"no live heartbeat of {name} (live: {', '.join(sorted(map(str, live))) or 'none'})")
        return f"{name} last seen {live[name].get('last_seen')}"

    return check


def run(worker_name: str | None = None) -> Iterator[Check]:
    checks: list[tuple[str, Callable[[], str]]] = [("torch", _torch), ("kernels", _kernels),
                                                    ("database", _database), ("redis", _redis)]
    if worker_name:
        checks.append(("worker", _worker(worker_name)))
    for name, check in checks:
        try:
            yield name, True, check()
        except Exception as exc:  # every failure is reported, with its reason, and the next check runs
            yield name, False, f"{type(exc).__name__}: {exc}"
