"""Built-in datasets, addressed as ``builtin:NAME``.

``builtin:mnist`` reads the official IDX files from a local folder (``HM2BP_DATA_DIR``/mnist, or
a path given by the caller) and downloads them there, checking sha256, when they are missing.
A ``mnist.npz`` copy in that folder (``x_train, y_train, x_test, y_test``) is accepted as well.
``builtin:digits`` is scikit-learn's bundled 8x8 digits (1,797 images, 16 gray levels): it needs
no network, so a newcomer can train at once. The split is fixed: a permutation seeded with 0
puts 360 images (20 %) in the test set, as scikit-learn's ``train_test_split`` would.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from .dataset import Dataset, DatasetError
from .idx import read_idx_dataset
from .npz import read_npz

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
DIGITS_TEST_SIZE = 360


def default_data_dir() -> Path:
    return Path(os.environ.get("HM2BP_DATA_DIR", Path.home() / ".cache" / "hm2bp"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(files: dict[str, str], mirrors: tuple[str, ...], folder: Path, *, timeout: float = 60.0) -> None:
    """Fetch every missing file of ``files`` (name -> sha256) into ``folder``, checking each digest.

    A file that exists with the wrong digest is an error (never silently replaced); a download is
    written to a temporary name and moved into place only after its digest matched.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in files.items():
        target = folder / name
        if target.exists():
            actual = sha256_of(target)
            if actual != expected:
                raise DatasetError(f"{target}: sha256 {actual} does not match the published {expected}")
            continue
        errors = []
        for mirror in mirrors:
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
            os.close(handle)
            try:
                with urllib.request.urlopen(mirror + name, timeout=timeout) as response, open(temporary, "wb") as out:
                    while block := response.read(1 << 20):
                        out.write(block)
                actual = sha256_of(Path(temporary))
                if actual != expected:
                    errors.append(f"{mirror}{name}: sha256 {actual} != {expected}")
                    continue
                os.replace(temporary, target)
                break
            except OSError as exc:
                errors.append(f"{mirror}{name}: {exc}")
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)
        else:
            raise DatasetError(f"could not download {name} into {folder}: " + "; ".join(errors))


def mnist(folder: Path | None = None, *, allow_download: bool = True) -> Dataset:
    folder = Path(folder) if folder else default_data_dir() / "mnist"
    if (folder / "mnist.npz").exists():
        return read_npz(folder / "mnist.npz", name="mnist")
    if not all((folder / name).exists() for name in MNIST_FILES):
        if not allow_download:
            raise DatasetError(f"{folder}: MNIST IDX files not found and downloading is disabled")
        download(MNIST_FILES, MNIST_MIRRORS, folder)
    return read_idx_dataset(folder, name="mnist")


def digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    x = bunch.images.astype(np.uint8)[order]  # values 0..16
    y = bunch.target.astype(np.int64)[order]
    cut = len(x) - DIGITS_TEST_SIZE
    return Dataset("digits", x[:cut], y[:cut], x[cut:], y[cut:], scale=16.0, source="builtin:digits")


BUILTINS = {"mnist": mnist, "digits": digits}
