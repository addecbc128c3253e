"""Dataset readers on small files written here in the real formats, including broken ones."""

import gzip
import struct
import zipfile

import numpy as np
import pytest

from hm2bp_core.data import DatasetError, load_dataset, read_idx, read_idx_dataset, read_npz
from hm2bp_core.data.builtin import MNIST_FILES, download, sha256_of

from conftest import MNIST_NPZ


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx_set(folder, n_train=12, n_test=6, gz=False):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in files.items():
        data = idx_bytes(array)
        (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return files


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    files = write_idx_set(tmp_path / "mnist", gz=gz)
    ds = read_idx_dataset(tmp_path / "mnist")
    assert np.array_equal(ds.x_train, files["train-images-idx3-ubyte"])
    assert np.array_equal(ds.y_test, files["t10k-labels-idx1-ubyte"])
    assert ds.input_shape == (28, 28) and ds.num_classes == 10 and ds.scale == 255.0


def test_idx_zip_and_float_types(tmp_path):
    write_idx_set(tmp_path / "src")
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as archive:
        for path in (tmp_path / "src").iterdir():
            archive.write(path, f"mnist/{path.name}")
    assert len(load_dataset(tmp_path / "set.zip").x_train) == 12
    values = np.linspace(0, 1, 12, dtype=">f4").reshape(3, 4)
    (tmp_path / "f.idx").write_bytes(idx_bytes(values, 0x0D))
    assert np.allclose(read_idx(tmp_path / "f.idx"), values)


def test_truncated_idx_names_file_and_offset(tmp_path):
    data = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))
    (tmp_path / "cut").write_bytes(data[:1000])
    with pytest.raises(DatasetError, match=r"cut: truncated at offset 1000"):
        read_idx(tmp_path / "cut")
    (tmp_path / "header").write_bytes(data[:9])
    with pytest.raises(DatasetError, match=r"header: truncated at offset 9 inside the dimension sizes"):
        read_idx(tmp_path / "header")


def test_bad_magic_and_trailing_bytes(tmp_path):
    (tmp_path / "magic").write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match=r"magic: bad magic number 12340801 at offset 0"):
        read_idx(tmp_path / "magic")
    (tmp_path / "long").write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"xx")
    with pytest.raises(DatasetError, match=r"long: 2 unexpected bytes after offset 12"):
        read_idx(tmp_path / "long")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(b"abc")[:-6])
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "bad.gz")


def test_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, dtype=np.uint8)))
    with pytest.raises(DatasetError, match="6 test images but 5 labels"):
        read_idx_dataset(tmp_path / "m")


def write_npz(path, **overrides):
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.integers(0, 256, (20, 4, 4), dtype=np.uint8), "y_train": np.arange(20) % 3,
              "x_test": rng.integers(0, 256, (6, 4, 4), dtype=np.uint8), "y_test": np.arange(6) % 3}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_reader_and_validation(tmp_path):
    ds = read_npz(write_npz(tmp_path / "ok.npz"))
    assert ds.num_classes == 3 and ds.input_shape == (4, 4)
    cases = {
        "missing arrays \\['y_test'\\]": {"y_test": None},
        "NaN or infinite": {"x_train": np.full((20, 4, 4), np.nan, dtype=np.float32)},
        "values must lie in \\[0, 1\\]": {"x_train": np.full((20, 4, 4), 3.0, dtype=np.float32)},
        "one label per sample": {"y_train": np.arange(19) % 3},
        "holds 0 samples": {"x_test": np.zeros((0, 4, 4), dtype=np.uint8), "y_test": np.zeros(0, dtype=np.int64)},
        "integer class labels": {"y_train": np.linspace(0, 1, 20)},
        "differ in shape": {"x_test": np.zeros((6, 5, 4), dtype=np.uint8)},
    }
    for i, (message, override) in enumerate(cases.items()):
        path = write_npz(tmp_path / f"bad{i}.npz", **override)
        with pytest.raises(DatasetError, match=message):
            read_npz(path)
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:300])
    with pytest.raises(DatasetError, match="trunc.npz"):
        read_npz(tmp_path / "trunc.npz")


def test_builtin_digits_and_unknown_builtin():
    ds = load_dataset("builtin:digits")
    assert (len(ds.x_train), len(ds.x_test), ds.num_classes, ds.scale) == (1437, 360, 10, 16.0)
    assert float(ds.inputs("train", np.arange(5)).max()) <= 1.0
    with pytest.raises(DatasetError, match="unknown built-in"):
        load_dataset("builtin:nope")


def test_mnist_download_checks_digests(tmp_path):
    """The download code on a local file:// mirror: a good file is accepted, a tampered one rejected."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.bin").write_bytes(b"hello")
    good = {"a.bin": sha256_of(mirror / "a.bin")}
    download(good, (mirror.as_uri() + "/",), tmp_path / "cache")
    assert (tmp_path / "cache" / "a.bin").read_bytes() == b"hello"
    (mirror / "b.bin").write_bytes(b"x")
    with pytest.raises(DatasetError, match="sha256"):
        download({"b.bin": "0" * 64}, (mirror.as_uri() + "/",), tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "b.bin").exists()
    assert len(MNIST_FILES) == 4 and all(len(v) == 64 for v in MNIST_FILES.values())


@pytest.mark.skipif(not MNIST_NPZ.exists(), reason="../shared/data/mnist.npz is not on this machine")
def test_real_mnist_copy():
    ds = load_dataset(MNIST_NPZ)
    assert (len(ds.x_train), len(ds.x_test), ds.input_shape, ds.num_classes) == (60000, 10000, (28, 28), 10)
