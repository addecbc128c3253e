"""Where a job's dataset comes from: ``builtin:NAME`` or an uploaded dataset's stored file."""

from __future__ import annotations

from pathlib import Path

from hm2bp_core.data import Dataset, DatasetError, load_dataset

from .artifacts import ArtifactStore
from .settings import Settings
from .store import JobStore

BUILTIN_PREFIX = "builtin:"


def dataset_path(ref: str, store: JobStore, artifacts: ArtifactStore, settings: Settings) -> Path:
    """A local file holding the uploaded dataset ``ref`` (fetched when the store is remote)."""
    row = store.dataset_by_id(ref)
    if row is None:
        raise DatasetError(f"dataset {ref!r} no longer exists")
    return artifacts.fetch(row.storage_key, settings.work_dir / row.storage_key)


def open_dataset(ref: str, store: JobStore, artifacts: ArtifactStore, settings: Settings) -> Dataset:
    """Load the dataset a job names, through the core readers."""
    if ref.startswith(BUILTIN_PREFIX):
        return load_dataset(ref, data_dir=settings.builtin_data_dir)
    return load_dataset(dataset_path(ref, store, artifacts, settings))
