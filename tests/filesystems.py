"""A small filesystem of a test's own, to fill up: a tmpfs of a few MiB mounted on a folder
(root only; the test is skipped where mounting is not allowed)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_filesystem(folder: Path, mib: int) -> Iterator[Path]:
    """``folder`` as the mount point of a tmpfs of ``mib`` MiB, unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root and mount(8)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0755", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, name: str = "filler") -> Path:
    """Write a file in ``folder`` until its filesystem has no byte left; the file."""
    path = folder / name
    with open(path, "ab", buffering=0) as handle:
        for size in (1 << 16, 512, 1):  # big blocks, then what is left of the last one
            try:
                while handle.write(b"\0" * size):
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return path
