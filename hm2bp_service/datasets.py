"""The datasets a job may name: ``builtin:NAME`` (the core's registry) or an uploaded dataset's id.

Fit checks read facts only (``DatasetFacts``): a built-in's come from the core's registry, an
upload's were recorded on its row when it was accepted, so no request ever loads a dataset.
The worker loads it (``open_dataset``) when the job runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hm2bp_core.data import BUILTINS, Builtin, Dataset, DatasetError, DatasetFacts, load_dataset

from .artifacts import ArtifactStore
from .settings import Settings
from .store import DatasetRecord, Store

BUILTIN_PREFIX = "builtin:"


class UnknownDataset(LookupError):
    """No such dataset for this user (a 404: another user's is never confirmed to exist)."""


@dataclass(frozen=True)
class BuiltinStatus:
    """A built-in as this service sees it: its facts, and whether a job may use it now."""

    builtin: Builtin
    present: bool  # its files are in the service's data folder (or bundled)
    usable: bool  # present, or small enough for a worker to download on first use
    folder: Path

    @property
    def id(self) -> str:
        return BUILTIN_PREFIX + self.builtin.name

    @property
    def note(self) -> str | None:
        """Why a job cannot use it yet and how to fix that; or what its first use will do."""
        if self.present:
            return None
        size = f"{self.builtin.download_bytes / 1e6:,.0f} MB"
        if self.usable:
            return f"not on this service yet: the first job downloads it ({size})"
        return (f"{self.id} is not on this service and too large to download on first use ({size}): "
                f"{self.builtin.provide} {self.folder} on the service's machine, or upload the dataset "
                f"(POST /v1/datasets)")


def builtins(settings: Settings) -> list[BuiltinStatus]:
    """Every built-in of the core, in registry order, with its status on this service."""
    found = []
    for builtin in BUILTINS.values():
        present = builtin.present(settings.builtin_data_dir)
        usable = present or builtin.download_bytes <= settings.builtin_download_limit_bytes
        found.append(BuiltinStatus(builtin, present, usable, settings.builtin_data_dir / builtin.folder))
    return found


def builtin_status(ref: str, settings: Settings) -> BuiltinStatus | None:
    name = ref.removeprefix(BUILTIN_PREFIX)
    if not ref.startswith(BUILTIN_PREFIX) or name not in BUILTINS:
        return None
    return next(status for status in builtins(settings) if status.builtin.name == name)


def upload_facts(record: DatasetRecord) -> DatasetFacts:
    return DatasetFacts(record.name, record.kind, tuple(record.input_shape), record.num_classes,  # type: ignore[arg-type]
                        record.num_train, record.num_test, record.time_steps)


def facts_for(ref: str, user_id: int, store: Store, settings: Settings) -> DatasetFacts:
    """The facts of the dataset ``ref`` as ``user_id`` may use it: UnknownDataset when there is
    no such dataset for the user, DatasetError (with how to fix it) when a built-in is absent."""
    if ref.startswith(BUILTIN_PREFIX):
        status = builtin_status(ref, settings)
        if status is None:
            raise UnknownDataset(ref)
        if not status.usable:
            raise DatasetError(status.note)
        return status.builtin.facts
    record = store.datasets.get(user_id, ref)
    if record is None:
        raise UnknownDataset(ref)
    return upload_facts(record)


def dataset_path(ref: str, store: Store, artifacts: ArtifactStore, settings: Settings) -> Path:
    """A local file holding the uploaded dataset ``ref`` (fetched when the store is remote)."""
    record = store.datasets.by_id(ref)
    if record is None:
        raise DatasetError(f"dataset {ref!r} no longer exists")
    return artifacts.fetch(record.storage_key, settings.work_dir / record.storage_key)


def provenance(ref: str, dataset: Dataset, store: Store) -> dict[str, Any]:
    """What a job's model file records of its dataset: ``{"ref", "name", "sha256", "input_shape"}``
    (the id the job names, the dataset's name, and for an upload the sha256 recorded when it was accepted)."""
    record = None if ref.startswith(BUILTIN_PREFIX) else store.datasets.by_id(ref)
    return {"ref": ref, "name": record.name if record else dataset.name, "sha256": record.sha256 if record else None,
            "input_shape": list(dataset.input_shape)}


def open_dataset(ref: str, store: Store, artifacts: ArtifactStore, settings: Settings) -> Dataset:
    """Load the dataset a job names, through the core readers."""
    if ref.startswith(BUILTIN_PREFIX):
        return load_dataset(ref, data_dir=settings.builtin_data_dir)
    return load_dataset(dataset_path(ref, store, artifacts, settings))
