"""Built-in datasets, addressed as ``builtin:NAME``.

``builtin:mnist`` reads the official IDX files from a local folder (``HM2BP_DATA_DIR``/mnist, or
a path given by the caller) and downloads them there, checking sha256, when they are missing.
A ``mnist.npz`` copy in that folder (``x_train, y_train, x_test, y_test``) is accepted as well.
``builtin:emnist-balanced`` (``-letters``, ``-digits``) reads ``HM2BP_DATA_DIR``/emnist: the four
IDX files of the split, or the official ``gzip.zip``, which is downloaded from NIST when neither is
there. ``builtin:nmnist`` reads ``HM2BP_DATA_DIR``/nmnist: ``Train/`` and ``Test/`` folders, or the
official ``Train.zip`` and ``Test.zip``, downloaded when missing (binned with the defaults of
:func:`hm2bp_core.data.nmnist.read_nmnist`). The EMNIST and N-MNIST archives are published with
md5 digests only, so those two are checked with md5.
``builtin:digits`` is scikit-learn's bundled 8x8 digits (1,797 images, 16 gray levels): it needs
no network, so a newcomer can train at once. The split is fixed: a permutation seeded with 0
puts 360 images (20 %) in the test set, as scikit-learn's ``train_test_split`` would.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import Dataset, DatasetError, DatasetFacts
from .emnist import emnist_splits, read_emnist
from .idx import read_idx_dataset
from .nmnist import TIME_STEPS as NMNIST_TIME_STEPS
from .nmnist import read_nmnist
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
# The official EMNIST archive (536 MB). NIST publishes no digest; this md5 is the one torchvision's
# EMNIST class pins for the same URL (no sha256 of the archive was found in a public source).
EMNIST_MIRRORS = ("https://biometrics.nist.gov/cs_links/EMNIST/",)
EMNIST_FILES = {"gzip.zip": "58c8d27c78d21e728a6bc7b3cc06412e"}
# The official N-MNIST archives on Mendeley Data (dataset 468j46mzdv, linked from Orchard's page),
# with the md5 digests that tonic's and SpikingJelly's NMNIST classes pin.
NMNIST_MIRRORS = ("https://data.mendeley.com/public-files/datasets/468j46mzdv/files/",)
NMNIST_FILES = {"Train.zip": "20959b8e626244a1b502305a9e6e2031", "Test.zip": "69ca8762b2fe404d9b9bad1103e97832"}
NMNIST_REMOTE = {
    "Train.zip": "39c25547-014b-4137-a934-9d29fa53c7a0/file_downloaded",
    "Test.zip": "05a4d654-7e03-4c15-bdfa-9bb2bcbea494/file_downloaded",
}
DIGITS_TEST_SIZE = 360


def default_data_dir() -> Path:
    return Path(os.environ.get("HM2BP_DATA_DIR", Path.home() / ".cache" / "hm2bp"))


def digest_of(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return digest_of(path, "sha256")


def download(
    files: dict[str, str],
    mirrors: tuple[str, ...],
    folder: Path,
    *,
    timeout: float = 60.0,
    algorithm: str = "sha256",
    remote: dict[str, str] | None = None,
) -> None:
    """Fetch every missing file of ``files`` (name -> hex digest) into ``folder``, checking each digest.

    ``algorithm`` names the digest (a ``hashlib`` name: sha256, or md5 where only that is published);
    ``remote`` maps a file name to its path under the mirror when that differs from the name.
    A file that exists with the wrong digest is an error (never silently replaced); a download is
    written to a temporary name and moved into place only after its digest matched.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in files.items():
        target = folder / name
        if target.exists():
            actual = digest_of(target, algorithm)
            if actual != expected.lower():
                raise DatasetError(f"{target}: {algorithm} {actual} does not match the published {expected}")
            continue
        errors = []
        for mirror in mirrors:
            url = mirror + (remote or {}).get(name, name)
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
            os.close(handle)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(temporary, "wb") as out:
                    while block := response.read(1 << 20):
                        out.write(block)
                actual = digest_of(Path(temporary), algorithm)
                if actual != expected.lower():
                    errors.append(f"{url}: {algorithm} {actual} != {expected}")
                    continue
                os.replace(temporary, target)
                break
            except OSError as exc:
                errors.append(f"{url}: {exc}")
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


def emnist(split: str, folder: Path | None = None, *, allow_download: bool = True) -> Dataset:
    """One EMNIST split from ``folder`` (default ``HM2BP_DATA_DIR``/emnist): its IDX files, else ``gzip.zip``."""
    folder = Path(folder) if folder else default_data_dir() / "emnist"
    if folder.is_dir() and split in emnist_splits(folder):
        return read_emnist(folder, split)
    if not (folder / "gzip.zip").exists() and not allow_download:
        raise DatasetError(
            f"{folder}: neither EMNIST {split} IDX files nor gzip.zip found, and downloading is disabled")
    download(EMNIST_FILES, EMNIST_MIRRORS, folder, algorithm="md5")
    return read_emnist(folder / "gzip.zip", split)


def nmnist(folder: Path | None = None, *, allow_download: bool = True) -> Dataset:
    """N-MNIST from ``folder`` (default ``HM2BP_DATA_DIR``/nmnist): ``Train/`` + ``Test/``, else the two zips."""
    folder = Path(folder) if folder else default_data_dir() / "nmnist"
    if (folder / "Train").is_dir() and (folder / "Test").is_dir():
        return read_nmnist(folder, name="nmnist")
    if not all((folder / name).exists() for name in NMNIST_FILES) and not allow_download:
        raise DatasetError(f"{folder}: N-MNIST Train/Test folders or zips not found, and downloading is disabled")
    download(NMNIST_FILES, NMNIST_MIRRORS, folder, algorithm="md5", remote=NMNIST_REMOTE)
    return read_nmnist([folder / name for name in NMNIST_FILES], name="nmnist")


def digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    x = bunch.images.astype(np.uint8)[order]  # values 0..16
    y = bunch.target.astype(np.int64)[order]
    cut = len(x) - DIGITS_TEST_SIZE
    return Dataset("digits", x[:cut], y[:cut], x[cut:], y[cut:], scale=16.0, source="builtin:digits")


@dataclass(frozen=True)
class Builtin:
    """One built-in dataset: how to load it, its facts (known without loading it), where its files
    live under a data folder, and how a user provides them when they cannot be downloaded."""

    name: str
    load: Callable[..., Dataset]  # (folder | None, allow_download=...) -> Dataset; digits takes nothing
    facts: DatasetFacts
    folder: str  # the sub-folder of a data folder that it reads
    download_bytes: int  # what a first use downloads (0: bundled with a package)
    provide: str  # how to put its files in place by hand

    def present(self, data_dir: Path | None = None) -> bool:
        """Whether its files are in ``data_dir``/``folder`` (or bundled), so no download is needed."""
        if self.download_bytes == 0:
            return True
        folder = (Path(data_dir) if data_dir else default_data_dir()) / self.folder
        if self.name == "mnist":
            return (folder / "mnist.npz").exists() or all((folder / n).exists() for n in MNIST_FILES) or \
                all((folder / n.removesuffix(".gz")).exists() for n in MNIST_FILES)
        if self.name.startswith("emnist-"):
            split = self.name.split("-", 1)[1]
            return (folder / "gzip.zip").exists() or (folder.is_dir() and split in emnist_splits(folder))
        return all((folder / n).exists() for n in NMNIST_FILES) or \
            ((folder / "Train").is_dir() and (folder / "Test").is_dir())


def _emnist(split: str, classes: int, train: int, test: int) -> Builtin:
    return Builtin(f"emnist-{split}", functools.partial(emnist, split),
                   DatasetFacts(f"emnist-{split}", "image", (28, 28), classes, train, test), "emnist", 561_753_746,
                   f"put NIST's gzip.zip, or the four emnist-{split}-*-idx?-ubyte files, into the folder")


BUILTINS: dict[str, Builtin] = {b.name: b for b in (
    Builtin("mnist", mnist, DatasetFacts("mnist", "image", (28, 28), 10, 60_000, 10_000), "mnist", 11_594_722,
            "put the four MNIST IDX files (train-images-idx3-ubyte.gz ...) or a mnist.npz into the folder"),
    Builtin("digits", digits, DatasetFacts("digits", "image", (8, 8), 10, 1797 - DIGITS_TEST_SIZE, DIGITS_TEST_SIZE),
            "digits", 0, "nothing to do: scikit-learn ships it"),
    _emnist("balanced", 47, 112_800, 18_800),
    _emnist("letters", 26, 124_800, 20_800),
    _emnist("digits", 10, 240_000, 40_000),
    Builtin("nmnist", nmnist, DatasetFacts("nmnist", "spikes", (2, 34, 34), 10, 60_000, 10_000, NMNIST_TIME_STEPS),
            "nmnist", 1_104_067_456,
            "put Train.zip and Test.zip of N-MNIST (Orchard et al., Mendeley Data 468j46mzdv), or their Train/ "
            "and Test/ folders, into the folder"),
)}
