"""Dataset uploads, the HTTP half: stream a multipart body to a staging file.

``receive_upload`` parses ``multipart/form-data`` as it arrives (python-multipart's streaming
parser; nothing is spooled elsewhere or held whole in memory), hashes the ``file`` part while
writing it under the staging folder, and stops with 413 as soon as it passes the size limit,
whatever the Content-Length says; on any error, the client's going away included, the staged
file is deleted. ``hm2bp_service.uploads.accept_upload`` then vets and records it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fastapi import Request, status
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException

from hm2bp_service.settings import Settings
from hm2bp_service.uploads import Upload, UploadRejected, staging_file

MULTIPART_OVERHEAD = 64 * 1024  # headers and the small fields besides the file
MAX_FIELD_BYTES = 1024


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
            if self.filename is not None and "\x00" in self.filename:
                raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                     "the file name must not contain a NUL character", "file")

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
                                     f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes",
                                     self._name or "body")

    def _part_end(self) -> None:
        if self._name and self._name != "file":
            value = self.fields[self._name] = self._buffer.decode("utf-8", "replace")
            if "\x00" in value:
                raise UploadRejected(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                     f"form field {self._name!r} must not contain a NUL character", self._name)


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
    target, lock_fd = staging_file(settings.staging_dir)
    collector = _PartCollector(target, limit)
    try:
        try:
            parser = MultipartParser(boundary, collector.callbacks())
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except (UploadRejected, HTTPException):  # ours, or the body limits' (api.limits: too slow)
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
        os.close(lock_fd)
        raise
    return Upload(target, collector.digest.hexdigest(), collector.size, collector.filename, collector.fields,
                  lock_fd=lock_fd)
