"""Accepting an uploaded dataset: vet the archive, read it once with the core readers, record its facts.

``inspect_archive`` checks every archive member before anything reads it (paths through
``safe_relative_path``, regular files and folders only, caps on member count, total size and
compression ratio) and names the format; the core readers (``hm2bp_core.data.load_dataset``) then
validate shapes, labels, dtypes and classes. The facts found (kind, input shape, classes, sample
and step counts) go on the dataset's row, so fit checks never load the file again. Files are
stored once per content (``datasets/SHA256.EXT``) and shared by the users who uploaded them,
reference-counted with their rows (``store.datasets``). A user's uploads are bounded in total
(``max_stored_bytes``, a 422 naming it).

A staged file is held under an exclusive ``flock`` by the process receiving it, from its creation
until it is stored or deleted; ``sweep_staging`` (run when an API process starts) deletes the
staged files no live process holds: those of an API process killed in the middle of an upload.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from hm2bp_core.data import DatasetError, load_dataset

from .artifacts import UnsafePath, safe_relative_path
from .errors import Refused
from .services import Services
from .settings import Settings
from .store import DatasetRecord, StorageLimit, new_id, utcnow

FORMATS = ("npz", "idx", "nmnist")
SUFFIX = {"npz": ".npz", "idx": ".zip", "nmnist": ".zip"}


class UploadRejected(Refused):
    """The upload is refused: ``status``, a sentence, and the form field at fault."""

    def __init__(self, status: int, detail: str, field: str = "file"):
        super().__init__(detail, field, status=status)


@dataclass
class Upload:
    """A received upload: the staged file, its digest and size, and the form's small fields."""

    path: Path
    sha256: str
    size_bytes: int
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)
    lock_fd: int | None = None  # the staged file's flock, held until it is stored or deleted

    def discard(self) -> None:
        """Delete the staged file (if it is still there) and release its lock."""
        self.path.unlink(missing_ok=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def staging_file(folder: Path) -> tuple[Path, int]:
    """A new staged file in ``folder`` and the descriptor of its exclusive flock (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=folder)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return Path(name), fd


SWEEP_MIN_AGE_SECONDS = 1.0  # younger files are left alone: one may be between its creation and its lock


def sweep_staging(folder: Path) -> list[str]:
    """Delete the staged files of ``folder`` that no process holds locked (left by an API process
    that died while receiving or checking them); their names."""
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        try:
            if not path.is_file() or time.time() - path.stat().st_mtime < SWEEP_MIN_AGE_SECONDS:
                continue
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # an upload in progress
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
        finally:
            os.close(fd)
    return removed


def accept_upload(services: Services, user_id: int, upload: Upload) -> tuple[DatasetRecord, bool]:
    """Vet, read and record ``upload`` for ``user_id``: (record, created); the earlier record of
    the same file (created False). The staged file is consumed either way."""
    settings, store = services.settings, services.store
    try:
        existing = store.datasets.by_sha256(user_id, upload.sha256)
        if existing is not None:
            return existing, False
        check_storage(store.datasets.stored_bytes(user_id), upload.size_bytes, settings)  # before reading it
        fmt = inspect_archive(upload.path, settings, upload.fields.get("format"))
        staged = upload.path.with_suffix(SUFFIX[fmt])
        upload.path.rename(staged)
        upload.path = staged
        try:
            dataset = load_dataset(staged)
        except DatasetError as exc:
            message = str(exc).replace(str(staged), upload.filename or "the upload")
            raise UploadRejected(422, f"invalid dataset: {message}") from None
        if dataset.num_classes > settings.max_classes:
            raise UploadRejected(422, f"invalid dataset: its labels make {dataset.num_classes} classes, more than "
                                 f"the limit of {settings.max_classes}")
        facts = dataset.facts()
        del dataset
        name = (upload.fields.get("name") or Path(upload.filename or "dataset").stem)[:256]
        key = f"datasets/{upload.sha256}{SUFFIX[fmt]}"
        try:
            return store.datasets.add(DatasetRecord(
                id=new_id("ds"), user_id=user_id, name=name, format=fmt, kind=facts.kind, sha256=upload.sha256,
                size_bytes=upload.size_bytes, num_train=facts.num_train, num_test=facts.num_test,
                num_classes=facts.num_classes, input_shape=list(facts.input_shape), time_steps=facts.time_steps,
                storage_key=key, created_at=utcnow()),
                lambda: services.artifacts.put_file(staged, key), settings.max_stored_bytes)
        except StorageLimit as full:
            check_storage(full.stored, upload.size_bytes, settings)
            raise
    finally:
        upload.discard()


def check_storage(stored: int, size: int, settings: Settings) -> None:
    """Refuse an upload of ``size`` bytes by a user whose datasets take ``stored`` bytes past the limit."""
    if stored + size > settings.max_stored_bytes:
        raise UploadRejected(422, f"your datasets take {stored} bytes; this upload of {size} bytes would pass the "
                             f"limit (max_stored_bytes) of {settings.max_stored_bytes}: delete some first",
                             "max_stored_bytes")


def inspect_archive(path: Path, settings: Settings, declared: str | None) -> str:
    """Vet the archive's members (nothing is extracted) and return its format: ``npz`` (only .npy
    members), ``nmnist`` (N-MNIST event files: .bin members) or ``idx`` (anything else)."""
    if declared is not None and declared not in FORMATS:
        raise UploadRejected(422,
                             f"format must be one of {list(FORMATS)}, got {declared!r}", "format")
    if not zipfile.is_zipfile(path):
        raise UploadRejected(422,
                             "unknown dataset format: expected an .npz file, or a zip of IDX or N-MNIST .bin files")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRejected(422, f"unreadable zip archive: {exc}") from None
    if len(members) > settings.max_archive_members:
        raise UploadRejected(400,
                             f"the archive holds {len(members)} members, more than {settings.max_archive_members}")
    total = 0
    for member in members:
        try:
            safe_relative_path(member.filename)
        except UnsafePath as exc:
            raise UploadRejected(400, f"unsafe archive member: {exc}") from None
        kind = stat.S_IFMT(member.external_attr >> 16)  # 0 when the writer stored no Unix mode (numpy)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UploadRejected(400, f"archive member {member.filename!r} is not a regular file or folder "
                                      "(links are refused)")
        total += member.file_size
        if (member.file_size > (1 << 20)
                and member.file_size > settings.max_compression_ratio * max(member.compress_size, 1)):
            raise UploadRejected(400, f"archive member {member.filename!r} expands more than "
                                      f"{settings.max_compression_ratio:g}-fold")
    if total > settings.max_uncompressed_bytes:
        raise UploadRejected(413,
                             f"the archive expands to {total} bytes, more than {settings.max_uncompressed_bytes}")
    files = [m.filename for m in members if not m.is_dir()]
    if declared is not None:
        return declared
    if files and all(name.endswith(".npy") for name in files):
        return "npz"
    if any(name.lower().endswith(".bin") for name in files):
        return "nmnist"
    return "idx"
