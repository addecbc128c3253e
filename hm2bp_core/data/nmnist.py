"""N-MNIST (Orchard et al. 2015): per-sample ``.bin`` event files, binned into spike rasters.

File format (Orchard's ``Read_Ndataset.m``, also tonic's ``read_mnist_file``): 5 bytes per event,

* byte 0: x address (0..33), byte 1: y address (0..33),
* byte 2: bit 7 = polarity (1 = ON, 0 = OFF), bits 6..0 = timestamp bits 22..16,
* bytes 3, 4: timestamp bits 15..8 and 7..0 (microseconds, 23 bits in all).

Layout: a folder or zip holding ``Train/<class>/*.bin`` and ``Test/<class>/*.bin`` (split names in
any case, optionally under one top-level folder; the official archives are ``Train.zip`` and
``Test.zip``, which may be given together). The class folder's name is the integer label.

Binning (algorithm section 8.2, the authors' ``NMNIST_Converter.m``): events outside 34 x 34 are dropped (this
also drops tonic's timestamp-overflow records, y = 240, whose time increment ``Read_Ndataset.m``
ignores as well); step = ceil(ts / bin_us) + 1, so no event lands at step 0; events at step
>= ``time_steps`` are dropped; several events of one step and cell are one spike. The raster of a
sample is ``T x 2 x 34 x 34`` indexed ``[step, channel, x, y]`` with channel 0 = ON and 1 = OFF, so
that its flat order is the authors' 2312 input channels ((x-1)·34 + y, OFF events + 1156).
Orchard's saccade stabilisation (``stabilize.m``) is not applied.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from .dataset import Dataset, DatasetError
from .events import SpikeRaster

SENSOR = 34  # pixels per side
BIN_US = 600  # bin width of the authors' N-MNIST runs (data path 2312_600_stable)
TIME_STEPS = 540  # END_TIME of the authors' NMnistConfig.txt
SPLITS = ("train", "test")


def parse_events(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode one ``.bin`` file into ``x, y, polarity, timestamp_us`` (int64 arrays)."""
    if len(data) % 5:
        offset = len(data) - len(data) % 5
        raise DatasetError(
            f"{source}: truncated event at offset {offset} (file length {len(data)} is not a multiple of 5)"
        )
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    polarity = raw[:, 2] >> 7
    timestamp = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return raw[:, 0], raw[:, 1], polarity, timestamp


def encode_events(x, y, polarity, timestamp_us) -> bytes:
    """The inverse of :func:`parse_events` (for writing test files and converters)."""
    x, y, p, ts = (np.asarray(a, dtype=np.int64) for a in (x, y, polarity, timestamp_us))
    if x.min(initial=0) < 0 or x.max(initial=0) > 255 or y.min(initial=0) < 0 or y.max(initial=0) > 255:
        raise ValueError("x and y must fit in one byte")
    if ts.min(initial=0) < 0 or ts.max(initial=0) >= 1 << 23:
        raise ValueError("timestamps must fit in 23 bits")
    raw = np.stack([x, y, (p.astype(bool) << 7) | (ts >> 16), (ts >> 8) & 0xFF, ts & 0xFF], axis=1)
    return raw.astype(np.uint8).tobytes()


def bin_events(x, y, polarity, timestamp_us, *, bin_us: int = BIN_US, time_steps: int = TIME_STEPS) -> np.ndarray:
    """Flat indices into one ``time_steps x 2 x 34 x 34`` raster of the spikes of these events."""
    x, y, p, ts = (np.asarray(a, dtype=np.int64) for a in (x, y, polarity, timestamp_us))
    step = -(-ts // bin_us) + 1  # ceil(ts / bin_us), shifted by one step
    keep = (x >= 0) & (x < SENSOR) & (y >= 0) & (y < SENSOR) & (step < time_steps)
    channel = np.where(p[keep] > 0, 0, 1)  # ON -> 0, OFF -> 1 (OFF events + 1156 in the authors' order)
    return ((step[keep] * 2 + channel) * SENSOR + x[keep]) * SENSOR + y[keep]


def _unsafe(member: str) -> bool:
    path = PurePosixPath(member.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (len(member) > 1 and member[1] == ":")


def _sample_key(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """``(split, class folder)`` of a path ``[top/]Split/class/name.bin``, or None for other files."""
    if not parts or not parts[-1].lower().endswith(".bin") or parts[-1].startswith("._") or "__MACOSX" in parts:
        return None
    if len(parts) in (3, 4) and parts[-3].lower() in SPLITS:
        return parts[-3].lower(), parts[-2]
    return None


def _class_folder(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """``(split, class folder)`` of a folder path ``[top/]Split/class``, or None."""
    if len(parts) in (2, 3) and parts[-2].lower() in SPLITS and "__MACOSX" not in parts:
        return parts[-2].lower(), parts[-1]
    return None


class _Source:
    """The sample files and class folders of one folder or zip (names relative to its root)."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            entries = sorted(path.rglob("*"))
            self.files = [str(p.relative_to(path).as_posix()) for p in entries if p.is_file()]
            self.folders = [str(p.relative_to(path).as_posix()) for p in entries if p.is_dir()]
            self.read: Callable[[str], bytes] = lambda member: (path / member).read_bytes()
            self.where = lambda member: str(path / member)
            self.archive = None
            return
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetError(f"{path}: not a readable zip archive ({exc})") from None
        self.archive = archive
        infos = archive.infolist()
        for info in infos:  # every name is checked before any member is read
            if _unsafe(info.filename):
                archive.close()
                raise DatasetError(f"{path}:{info.filename}: unsafe member path (absolute or with '..'); not read")
        self.files = [i.filename for i in infos if not i.is_dir()]
        names = {str(PurePosixPath(n).parent) for n in self.files}
        names |= {i.filename.rstrip("/") for i in infos if i.is_dir()}
        self.folders = sorted(names)
        self.where = lambda member: f"{path}:{member}"

        def read(member: str) -> bytes:
            try:
                return archive.read(member)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise DatasetError(f"{path}:{member}: unreadable zip member ({exc})") from None

        self.read = read

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def _read_split(sources: list[_Source], split: str, bin_us: int, time_steps: int) -> tuple[SpikeRaster, np.ndarray]:
    samples: list[tuple[int, str, _Source]] = []
    classes: dict[str, int] = {}
    for source in sources:
        for folder in source.folders:
            key = _class_folder(PurePosixPath(folder).parts)
            if key and key[0] == split:
                classes.setdefault(source.where(folder), 0)
        for member in source.files:
            key = _sample_key(PurePosixPath(member).parts)
            if key is None or key[0] != split:
                continue
            if not key[1].isdigit():
                raise DatasetError(f"{source.where(member)}: class folder {key[1]!r} is not an integer label")
            classes[source.where(str(PurePosixPath(member).parent))] = 1
            samples.append((int(key[1]), member, source))
    empty = sorted(folder for folder, used in classes.items() if not used)
    if empty:
        raise DatasetError(f"{empty[0]}: class folder holds no .bin samples")
    if not samples:
        raise DatasetError(
            f"{', '.join(str(s.path) for s in sources)}: no {split.capitalize()}/<class>/*.bin samples found"
        )
    samples.sort(key=lambda item: (item[0], item[1]))
    cells = []
    for _, member, source in samples:
        events = parse_events(source.read(member), source.where(member))
        cells.append(bin_events(*events, bin_us=bin_us, time_steps=time_steps))
    labels = np.array([label for label, _, _ in samples], dtype=np.int64)
    return SpikeRaster.from_samples(cells, (time_steps, 2, SENSOR, SENSOR)), labels


def read_nmnist(
    paths: str | Path | Iterable[str | Path],
    *,
    bin_us: int = BIN_US,
    time_steps: int = TIME_STEPS,
    name: str | None = None,
) -> Dataset:
    """N-MNIST from one folder or zip holding both splits, or several (e.g. ``Train.zip, Test.zip``).

    Returns a ``kind="spikes"`` :class:`Dataset` whose ``x_*`` are sparse ``N x T x 2 x 34 x 34``
    :class:`SpikeRaster` s; samples are ordered by label, then file name.
    """
    if bin_us < 1 or time_steps < 2:
        raise ValueError("bin_us must be >= 1 and time_steps >= 2")
    roots = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    for path in roots:
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder")
    sources = []
    try:
        for path in roots:
            sources.append(_Source(path))
        x_train, y_train = _read_split(sources, "train", bin_us, time_steps)
        x_test, y_test = _read_split(sources, "test", bin_us, time_steps)
    finally:
        for source in sources:
            source.close()
    return Dataset(
        name=name or (roots[0].stem if len(roots) == 1 else "nmnist"),
        x_train=x_train,  # type: ignore[arg-type]
        y_train=y_train,
        x_test=x_test,  # type: ignore[arg-type]
        y_test=y_test,
        kind="spikes",
        source=", ".join(str(p) for p in roots),
    )


def looks_like_nmnist(path: Path) -> bool:
    """Whether a folder or zip holds ``Split/<class>/*.bin`` files (used by ``load_dataset``)."""
    if path.is_dir():
        names: Iterable[str] = (p.relative_to(path).as_posix() for p in path.rglob("*.bin"))
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    else:
        return False
    return any(_sample_key(PurePosixPath(n).parts) for n in names)
