"""IDX files (the MNIST family): ``train-images-idx3-ubyte`` etc., plain or gzipped.

Format: 2 zero bytes, a type code, the number of dimensions n, then n big-endian uint32 sizes,
then the values in big-endian C order. Errors name the file and the byte offset of the fault.
"""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from .dataset import Dataset, DatasetError

TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# file stems of a split, as published for MNIST, Fashion-MNIST and EMNIST (emnist-<set>-train-images-idx3-ubyte)
STEMS = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte", "test-images-idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte", "test-labels-idx1-ubyte"),
}


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Decode the bytes of one (already decompressed) IDX file."""
    if len(data) < 4:
        raise DatasetError(f"{source}: truncated at offset {len(data)}: the 4-byte IDX header needs 4 bytes")
    if data[0] != 0 or data[1] != 0 or data[2] not in TYPES:
        raise DatasetError(
            f"{source}: bad magic number {data[:4].hex()} at offset 0 (expected 0000 + type code + dimensions)"
        )
    dtype, ndim = np.dtype(TYPES[data[2]]), data[3]
    if ndim == 0:
        raise DatasetError(f"{source}: 0 dimensions in the header at offset 3")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"{source}: truncated at offset {len(data)} inside the dimension sizes (need {header} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise DatasetError(
            f"{source}: truncated at offset {len(data)}: shape {shape} of {dtype.name} needs {expected} bytes"
        )
    if len(data) > expected:
        raise DatasetError(f"{source}: {len(data) - expected} unexpected bytes after offset {expected}")
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file; ``.gz`` files are decompressed (a corrupt gzip stream is reported as such)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    return parse_idx(_maybe_gunzip(raw, str(path)), str(path))


def _maybe_gunzip(raw: bytes, source: str) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{source}: corrupt or truncated gzip stream ({exc})") from None


def _find(names: list[str], split: str, part: str, prefix: str = "") -> str | None:
    for name in names:
        base = PurePosixPath(name).name.removesuffix(".gz")
        if base.startswith(prefix) and any(base == stem or base.endswith("-" + stem) for stem in STEMS[(split, part)]):
            return name
    return None


def _assemble(load, names: list[str], source: str, name: str, prefix: str) -> Dataset:
    arrays = {}
    for split in ("train", "test"):
        for part in ("images", "labels"):
            found = _find(names, split, part, prefix)
            if found is None:
                raise DatasetError(
                    f"{source}: no {split} {part} file (looked for {prefix}{STEMS[(split, part)][0]}[.gz])"
                )
            arrays[(split, part)] = load(found)
    for split in ("train", "test"):
        images, labels = arrays[(split, "images")], arrays[(split, "labels")]
        if labels.ndim != 1:
            raise DatasetError(f"{source}: {split} labels must be 1-dimensional, got shape {labels.shape}")
        if len(images) != len(labels):
            raise DatasetError(f"{source}: {len(images)} {split} images but {len(labels)} labels")
    x_train = arrays[("train", "images")]
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=arrays[("train", "labels")].astype(np.int64),
        x_test=arrays[("test", "images")],
        y_test=arrays[("test", "labels")].astype(np.int64),
        scale=255.0 if x_train.dtype == np.uint8 else 1.0,
        source=source,
    )


def idx_names(path: Path) -> list[str]:
    """The file names in a folder (relative, recursive) or the member names of a zip."""
    if path.is_dir():
        return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    with zipfile.ZipFile(path) as archive:
        return [info.filename for info in archive.infolist() if not info.is_dir()]


def read_idx_dataset(path: str | Path, name: str | None = None, *, prefix: str = "") -> Dataset:
    """The four IDX files of a dataset, from a folder or a zip archive (members by their MNIST names).

    ``prefix`` restricts the search to files whose name starts with it, e.g. ``"emnist-letters-"``
    in EMNIST's ``gzip.zip``, which holds six datasets.
    """
    path = Path(path)
    if path.is_dir():
        return _assemble(lambda member: read_idx(path / member), idx_names(path), str(path), name or path.name, prefix)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]

            def load(member: str) -> np.ndarray:
                where = f"{path}:{member}"
                try:
                    raw = archive.read(member)
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise DatasetError(f"{where}: unreadable zip member ({exc})") from None
                return parse_idx(_maybe_gunzip(raw, where), where)

            return _assemble(load, names, str(path), name or path.stem, prefix)
    raise DatasetError(f"{path}: not a folder or zip archive of IDX files")
