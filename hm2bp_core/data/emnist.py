"""EMNIST (Cohen et al. 2017) from its IDX files: ``emnist-<split>-{train,test}-{images,labels}-...``.

The files are those of the official ``gzip.zip`` (which holds six splits; the zip itself, its
``gzip/`` folder or a folder with one split's four files are all accepted). Two EMNIST specifics:

* images are stored transposed (column-major): each 28 x 28 image is transposed back, so that
  ``x[n, row, col]`` shows the character upright as in MNIST;
* ``letters`` labels run 1..26 (a..z, case merged): they are shifted to 0..25.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from .dataset import Dataset, DatasetError
from .idx import idx_names, read_idx_dataset

# split -> (number of classes, first label in the files)
SPLITS = {"balanced": (47, 0), "letters": (26, 1), "digits": (10, 0), "mnist": (10, 0), "byclass": (62, 0),
          "bymerge": (47, 0)}
NAME = re.compile(r"emnist-([a-z]+)-(?:train|test)-(?:images|labels)-idx[13]-ubyte(?:\.gz)?$")


def emnist_splits(path: Path) -> set[str]:
    """The EMNIST splits whose IDX files a folder or zip holds (empty for other IDX sets)."""
    found = set()
    for name in idx_names(path):
        match = NAME.match(PurePosixPath(name).name)
        if match:
            found.add(match.group(1))
    return found


def read_emnist(path: str | Path, split: str | None = None) -> Dataset:
    """One EMNIST split from a folder or zip; ``split`` may be omitted when only one is present."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if split is None:
        present = emnist_splits(path)
        if len(present) != 1:
            raise DatasetError(
                f"{path}: holds EMNIST splits {sorted(present)}; name one (builtin:emnist-<split> reads it "
                "from HM2BP_DATA_DIR/emnist)"
            )
        split = present.pop()
    if split not in SPLITS:
        raise DatasetError(f"unknown EMNIST split {split!r}; known: {sorted(SPLITS)}")
    num_classes, first = SPLITS[split]
    raw = read_idx_dataset(path, name=f"emnist-{split}", prefix=f"emnist-{split}-")
    arrays = {}
    for part in ("train", "test"):
        x, y = raw.split(part)
        if x.ndim != 3:
            raise DatasetError(f"{path}: EMNIST {split} {part} images must be N x 28 x 28, got shape {x.shape}")
        y = y - first
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DatasetError(
                f"{path}: EMNIST {split} {part} labels must lie in [{first}, {first + num_classes - 1}], "
                f"found {y.min() + first}..{y.max() + first}"
            )
        arrays[f"x_{part}"] = np.ascontiguousarray(x.transpose(0, 2, 1))
        arrays[f"y_{part}"] = y
    return Dataset(name=f"emnist-{split}", x_train=arrays["x_train"], y_train=arrays["y_train"],
                   x_test=arrays["x_test"], y_test=arrays["y_test"], scale=raw.scale, num_classes=num_classes,
                   source=str(path))
