"""Dataset uploads: stream a multipart body to a staging file, then vet it before it is accepted.

``receive_upload`` parses ``multipart/form-data`` as it arrives (python-multipart's streaming
parser; nothing is spooled elsewhere or held whole in memory), hashes the ``file`` part while
writing it under the staging folder, and stops with 413 as soon as it passes the size limit,
whatever the Content-Length says. ``inspect_archive`` checks every archive member before
anything reads it (paths through ``safe_relative_path``, regular files and folders only, caps
on member count, total size and compression ratio) and names the format; the core readers
(``hm2bp_core.data.load_dataset``) then validate shapes, labels, dtypes and classes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request, status
from python_multipart.multipart import MultipartParser, parse_options_header

from worker.artifacts import UnsafePath, safe_relative_path
from worker.settings import Settings

FORMATS = ("npz", "idx", "nmnist")
SUFFIX = {"npz": ".npz", "idx": ".zip", "nmnist": ".zip"}
MULTIPART_OVERHEAD = 64 * 1024  # headers and the small fields besides the file
MAX_FIELD_BYTES = 1024


class UploadRejected(Exception):
    """The upload is refused; ``status_code``, a sentence, and the form field at fault."""

    def __init__(self, status_code: int, detail: str, field: str = "file"):
        super().__init__(detail)
        self.status_code, self.detail, self.field = status_code, detail, field


@dataclass
class Upload:
    path: Path
    sha256: str
    size_bytes: int
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)


class _PartCollector:
    """Callbacks for MultipartParser: the ``file`` part goes to disk, small fields to memory."""

    def __init__(self, target: Path, limit: int):
        self.target, self.limit = target, limit
        self.handle = open(target, "wb")
        self.digest = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.seen_file = False
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._buffer = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value_part, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._buffer = {}, None, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            if self.seen_file:
                raise UploadRejected(status.HTTP_400_BAD_REQUEST, "send exactly one 'file' part")
            self.seen_file = True
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace") or None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._name == "file":
            self.size += len(chunk)
            if self.size > self.limit:
                raise UploadRejected(status.HTTP_413_CONTENT_TOO_LARGE,
                                     f"the upload is larger than the limit of {self.limit} bytes")
            self.digest.update(chunk)
            self.handle.write(chunk)
        else:
            self._buffer += chunk
            if len(self._buffer) > MAX_FIELD_BYTES:
                raise UploadRejected(status.HTTP_400_BAD_REQUEST,
                                     f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes", self._name or "body")

    def _part_end(self) -> None:
        if self._name and self._name != "file":
            self.fields[self._name] = self._buffer.decode("utf-8", "replace")


async def receive_upload(request: Request, settings: Settings) -> Upload:
    """Stream the request's multipart body into a new staging file (deleted on any error)."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadRejected(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                             "send the dataset as multipart/form-data with a 'file' part", "body")
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise UploadRejected(status.HTTP_413_CONTENT_TOO_LARGE, f"the upload is larger than the limit of {limit} bytes")
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=settings.staging_dir)
    os.close(fd)
    target = Path(name)
    collector = _PartCollector(target, limit)
    try:
        try:
            parser = MultipartParser(boundary, collector.callbacks())
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except UploadRejected:
            raise
        except Exception as exc:  # malformed multipart, or the client went away
            raise UploadRejected(status.HTTP_400_BAD_REQUEST, f"malformed multipart body: {exc}", "body") from None
        finally:
            collector.handle.close()
        if not collector.seen_file:
            raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT, "the form has no 'file' part")
        if collector.size == 0:
            raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT, "the uploaded file is empty")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return Upload(target, collector.digest.hexdigest(), collector.size, collector.filename, collector.fields)


def inspect_archive(path: Path, settings: Settings, declared: str | None) -> str:
    """Vet the archive's members (nothing is extracted) and return its format: ``npz`` (only .npy
    members), ``nmnist`` (N-MNIST event files: .bin members) or ``idx`` (anything else)."""
    if declared is not None and declared not in FORMATS:
        raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT,
                             f"format must be one of {list(FORMATS)}, got {declared!r}", "format")
    if not zipfile.is_zipfile(path):
        raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT,
                             "unknown dataset format: expected an .npz file, or a zip of IDX or N-MNIST .bin files")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT, f"unreadable zip archive: {exc}") from None
    if len(members) > settings.max_archive_members:
        raise UploadRejected(status.HTTP_400_BAD_REQUEST,
                             f"the archive holds {len(members)} members, more than {settings.max_archive_members}")
    total = 0
    for member in members:
        try:
            safe_relative_path(member.filename)
        except UnsafePath as exc:
            raise UploadRejected(status.HTTP_400_BAD_REQUEST, f"unsafe archive member: {exc}") from None
        kind = stat.S_IFMT(member.external_attr >> 16)  # 0 when the writer stored no Unix mode (numpy)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UploadRejected(status.HTTP_400_BAD_REQUEST,
                                 f"archive member {member.filename!r} is not a regular file or folder (links are refused)")
        total += member.file_size
        if member.file_size > (1 << 20) and member.file_size > settings.max_compression_ratio * max(member.compress_size, 1):
            raise UploadRejected(status.HTTP_400_BAD_REQUEST,
                                 f"archive member {member.filename!r} expands more than {settings.max_compression_ratio:g}-fold")
    if total > settings.max_uncompressed_bytes:
        raise UploadRejected(status.HTTP_413_CONTENT_TOO_LARGE,
                             f"the archive expands to {total} bytes, more than {settings.max_uncompressed_bytes}")
    files = [m.filename for m in members if not m.is_dir()]
    if declared is not None:
        return declared
    if files and all(name.endswith(".npy") for name in files):
        return "npz"
    if any(name.lower().endswith(".bin") for name in files):
        return "nmnist"
    return "idx"
