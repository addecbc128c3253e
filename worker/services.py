"""The service objects one process needs, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .artifacts import ArtifactStore
from .events import EventBus
from .presence import WorkerRegistry
from .settings import Settings, get_settings
from .store import JobStore


@dataclass
class Services:
    settings: Settings
    store: JobStore
    bus: EventBus
    artifacts: ArtifactStore
    workers: WorkerRegistry

    @classmethod
    def from_settings(cls, settings: Settings) -> "Services":
        store = JobStore.from_url(settings.sqlalchemy_url)
        bus = EventBus(store, settings.redis_client_url, settings.redis_prefix, settings.stream_maxlen)
        return cls(settings, store, bus, ArtifactStore(settings.artifacts_root),
                   WorkerRegistry(settings.redis_client_url, settings.redis_prefix))

    def close(self) -> None:
        self.bus.close()
        self.workers.close()
        self.store.engine.dispose()


@lru_cache(maxsize=1)
def get_services() -> Services:
    """This process's services (worker processes and the training child build their own)."""
    return Services.from_settings(get_settings())


def job_key(job_id: str) -> str:
    """The artifact folder of a job: model, spec, metrics and checkpoint/."""
    return f"jobs/{job_id}"
