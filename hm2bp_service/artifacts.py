"""The artifact store: dataset files, checkpoints and models under one root, through fsspec.

The root is a local folder by default, or any fsspec URL (``s3://bucket/prefix`` with s3fs
installed). Keys are relative POSIX paths; every key that comes from a request goes through
``safe_relative_path`` (also used for archive members), which rejects absolute paths, ``..``,
backslashes and empty or odd segments, so nothing can be read or written outside the root.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem


class UnsafePath(ValueError):
    """A path from outside (a request, an archive member) would leave its root."""


def safe_relative_path(name: str) -> PurePosixPath:
    """``name`` as a relative path that stays under any root, or UnsafePath saying why."""
    if not name or "\x00" in name:
        raise UnsafePath(f"{name!r}: empty or contains a NUL byte")
    if "\\" in name:
        raise UnsafePath(f"{name!r}: backslashes are not allowed in paths")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafePath(f"{name!r}: absolute paths are not allowed")
    parts = [part for part in name.split("/")]
    if parts and parts[-1] == "":
        parts = parts[:-1]  # a trailing slash marks a folder
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePath(f"{name!r}: '{part or '//'}' segments are not allowed (the path must stay inside)")
    return PurePosixPath(*parts)


class ArtifactStore:
    """Files under ``root`` (a folder or an fsspec URL)."""

    def __init__(self, root: str):
        self.fs, path = fsspec.core.url_to_fs(root)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.root = str(Path(path).resolve()) if self.is_local else path.rstrip("/")
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> str:
        """The store path of ``key``, checked to lie under the root (links included, when local)."""
        relative = safe_relative_path(key)
        full = f"{self.root}/{relative}"
        if self.is_local:
            resolved = os.path.realpath(full)
            if resolved != self.root and not resolved.startswith(self.root + os.sep):
                raise UnsafePath(f"{key!r}: resolves outside the artifact root")
        return full

    def local_path(self, key: str) -> Path | None:
        """A filesystem path of ``key`` when the store is a local folder, else None."""
        return Path(self.path(key)) if self.is_local else None

    def put_file(self, local: Path, key: str) -> None:
        target = self.path(key)
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, target)  # staging lives on the same filesystem: a rename, no copy
        else:
            self.fs.put_file(str(local), target)
            local.unlink()

    def fetch(self, key: str, local: Path) -> Path:
        """A local copy of ``key`` (the file itself when the store is local)."""
        if self.is_local:
            return Path(self.path(key))
        local.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(self.path(key), str(local))
        return local

    def push_dir(self, local: Path, key: str, mirror: bool = False) -> None:
        """Copy the files of a local folder to ``key``/ (nothing to do when they are the same);
        with ``mirror``, then remove those under ``key``/ that the local folder no longer has
        (the checkpoints it pruned)."""
        if self.is_local and Path(self.path(key)) == local.resolve():
            return
        pushed = set()
        for file in sorted(local.rglob("*")):
            if file.is_file() and not file.name.endswith(".tmp"):
                target = self.path(f"{key}/{file.relative_to(local).as_posix()}")
                self.fs.put_file(str(file), target)
                pushed.add(self.fs._strip_protocol(target))
        if mirror and self.fs.exists(self.path(key)):
            for name in self.fs.find(self.path(key)):
                if self.fs._strip_protocol(name) not in pushed:
                    self.fs.rm(name)

    def pull_dir(self, key: str, local: Path) -> None:
        """Copy ``key``/ into a local folder (nothing to do when they are the same)."""
        if self.is_local and Path(self.path(key)) == local.resolve():
            return
        base = self.path(key)
        for name in self.fs.find(base):
            relative = safe_relative_path(name[len(base):].lstrip("/"))
            (local / relative).parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(name, str(local / relative))

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def open(self, key: str, mode: str = "rb") -> IO[bytes]:
        return self.fs.open(self.path(key), mode)

    def files(self, key: str) -> dict[str, int]:
        """Names and sizes of the files directly in folder ``key`` (none when it does not exist)."""
        base = self.path(key)
        if not self.fs.isdir(base):
            return {}
        return {
            entry["name"].rstrip("/").rsplit("/", 1)[-1]: int(entry.get("size") or 0)
            for entry in self.fs.ls(base, detail=True)
            if entry["type"] == "file" and not entry["name"].endswith(".tmp")
        }

    def remove(self, key: str) -> None:
        path = self.path(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
