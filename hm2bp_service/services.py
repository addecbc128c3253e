"""The service objects one process needs, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .artifacts import ArtifactStore
from .dispatch import Dispatcher
from .events import EventBus
from .sealing import SecretBox
from .settings import Settings, get_settings
from .store import Store
from .workers import WorkerRegistry


@dataclass
class Services:
    settings: Settings
    store: Store
    bus: EventBus
    artifacts: ArtifactStore
    workers: WorkerRegistry
    dispatcher: Dispatcher

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        store = Store.from_url(settings.sqlalchemy_url, SecretBox.from_settings(settings))
        bus = EventBus(store, settings.redis_client_url, settings.redis_prefix, settings.stream_maxlen)
        return cls(settings, store, bus, ArtifactStore(settings.artifacts_root),
                   WorkerRegistry(settings.redis_client_url, settings.redis_prefix), Dispatcher(settings))

    def close(self) -> None:
        self.bus.close()
        self.workers.close()
        self.dispatcher.close()
        self.store.close()


@lru_cache(maxsize=1)
def get_services() -> Services:
    """This process's services (worker processes and the training child build their own)."""
    return Services.from_settings(get_settings())


def job_key(job_id: str) -> str:
    """The artifact folder of a job: model, spec, metrics and checkpoint/."""
    return f"jobs/{job_id}"
