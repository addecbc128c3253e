"""Crafted dataset uploads: each is refused with a 4xx whose body names the problem, and nothing
is written anywhere but the staging folder (which is empty again afterwards)."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from service.harness import npz_bytes

from hm2bp_core.data.nmnist import encode_events

MARK = f"hm2bp-escape-{os.getpid()}"
RNG = np.random.default_rng(0)


def zip_of(*members: tuple[str | zipfile.ZipInfo, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def typed(name: str, kind: int) -> zipfile.ZipInfo:
    """A member whose Unix mode says symlink, FIFO, device ... (as `zip --symlinks` writes them)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o777) << 16
    return info


def idx(values: np.ndarray, code: int = 0x08, magic: bytes | None = None, cut: int = 0) -> bytes:
    header = (magic or bytes([0, 0, code, values.ndim])) + b"".join(struct.pack(">I", n) for n in values.shape)
    dtype = {0x08: ">u1", 0x0D: ">f4"}[code]
    data = header + values.astype(dtype).tobytes()
    return data[:len(data) - cut] if cut else data


def idx_zip(train_images=None, train_labels=None, test_images=None, test_labels=None) -> bytes:
    images = RNG.integers(0, 256, size=(12, 4, 4))
    labels = np.arange(12) % 3
    parts = {"train-images-idx3-ubyte": idx(images) if train_images is None else train_images,
             "train-labels-idx1-ubyte": idx(labels) if train_labels is None else train_labels,
             "t10k-images-idx3-ubyte": idx(images[:6]) if test_images is None else test_images,
             "t10k-labels-idx1-ubyte": idx(labels[:6]) if test_labels is None else test_labels}
    return zip_of(*parts.items())


def tar_with_hardlink() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("x_train.npy")
        link.type, link.linkname = tarfile.LNKTYPE, f"../../{MARK}"
        archive.addfile(link)
    return buffer.getvalue()


def nmnist_zip(classes=(0, 1), per_class: int = 2) -> bytes:
    members = []
    for split in ("Train", "Test"):
        for label in classes:
            for k in range(per_class):
                ts = np.sort(RNG.integers(0, 50_000, size=30))
                events = encode_events(RNG.integers(0, 34, 30), RNG.integers(0, 34, 30), RNG.integers(0, 2, 30), ts)
                members.append((f"{split}/{label}/{k:05d}.bin", events))
    return zip_of(*members)


def images(n=12, shape=(4, 4)) -> np.ndarray:
    return RNG.random((n, *shape)).astype(np.float32)


def with_pixel(value: float) -> bytes:
    x = images()
    x[3, 1, 1] = value
    return npz_bytes(x_train=x, y_train=np.arange(12) % 2, x_test=images(4), y_test=np.arange(4) % 2)


CASES = {
    # zip-slip and links
    "dotdot": (zip_of(("x_train.npy", b"x"), (f"../{MARK}.npy", b"x")), 400, "segments"),
    "deep-dotdot": (zip_of((f"a/../../{MARK}", b"x")), 400, "segments"),
    "absolute": (zip_of((f"/tmp/{MARK}.npy", b"x")), 400, "absolute"),
    "drive-letter": (zip_of((f"C:/{MARK}.npy", b"x")), 400, "absolute"),
    "backslashes": (zip_of((f"..\\..\\{MARK}.npy", b"x")), 400, "backslash"),
    "symlink": (zip_of((typed("x_train.npy", stat.S_IFLNK), b"/etc/passwd")), 400, "links are refused"),
    "fifo": (zip_of((typed("x_train.npy", stat.S_IFIFO), b"")), 400, "not a regular file"),
    "block-device": (zip_of((typed("x_train.npy", stat.S_IFBLK), b"")), 400, "not a regular file"),
    "tar-hardlink": (tar_with_hardlink(), 422, "unknown dataset format"),
    # bombs
    "ratio-bomb": (zip_of(("x_train.npy", b"\0" * 30_000_000)), 400, "expands more than"),
    "total-size": (zip_of(*[(f"m{i}.npy", b"\0" * 1_000_000) for i in range(25)]), 413, "expands to"),
    # IDX
    "idx-truncated": (idx_zip(train_images=idx(RNG.integers(0, 256, size=(12, 4, 4)), cut=7)), 422, "truncated"),
    "idx-header-only": (idx_zip(train_labels=b"\0\0\x08"), 422, "truncated"),
    "idx-wrong-magic": (idx_zip(train_images=idx(np.zeros((12, 4, 4)), magic=b"\x08\x03\0\0")), 422, "bad magic"),
    "idx-count-mismatch": (idx_zip(train_labels=idx(np.arange(11) % 3)), 422, "12 train images but 11 labels"),
    "idx-nan-pixels": (idx_zip(train_images=idx(np.full((12, 4, 4), np.nan), code=0x0D)), 422, "NaN"),
    "idx-0-samples": (idx_zip(train_images=idx(np.zeros((0, 4, 4))), train_labels=idx(np.zeros(0))), 422, "0 samples"),
    "idx-missing-file": (zip_of(("train-images-idx3-ubyte", idx(np.zeros((2, 4, 4))))), 422, "no train labels"),
    # npz contents
    "npz-nan": (with_pixel(np.nan), 422, "NaN"),
    "npz-inf": (with_pixel(np.inf), 422, "NaN or infinite"),
    "npz-count-mismatch": (npz_bytes(x_train=images(), y_train=np.arange(11) % 2, x_test=images(4),
                                     y_test=np.arange(4) % 2), 422, "one label per sample"),
    "npz-0-samples": (npz_bytes(x_train=images(0), y_train=np.zeros(0, np.int64), x_test=images(4),
                                y_test=np.arange(4) % 2), 422, "0 samples"),
    "npz-million-classes": (npz_bytes(x_train=images(), y_train=np.r_[np.arange(11) % 2, 999_999],
                                      x_test=images(4), y_test=np.arange(4) % 2), 422, "1000000 classes"),
    "npz-pickled-objects": (npz_bytes(x_train=np.array([None] * 12, dtype=object), y_train=np.arange(12) % 2,
                                      x_test=images(4), y_test=np.arange(4) % 2), 422, "pickle"),
    # N-MNIST
    "nmnist-million-classes": (nmnist_zip(classes=(0, 999_999)), 422, "classes"),
    "nmnist-truncated-event": (zip_of(("Train/0/a.bin", b"\0" * 7), ("Train/1/a.bin", b"\0" * 5),
                                      ("Test/0/a.bin", b"\0" * 5), ("Test/1/a.bin", b"\0" * 5)),
                               422, "truncated event"),
}


def files_under(root: Path) -> set[str]:
    """Every file under ``root`` but the service's own logs, database and Redis folder."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not p.name.startswith("hm2bp.db") and p.suffix != ".log" and "redis" not in p.parts}


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_upload_is_refused_and_writes_nothing(secured, case):
    payload, status, words = CASES[case]
    client = secured.service.client()
    root = secured.root
    before = files_under(root)
    response = client.post("/v1/datasets", files={"file": (f"{case}.zip", payload)}, data={"name": case})
    assert response.status_code == status, response.text
    body = response.json()
    assert words in body["detail"] and body["errors"] and body["errors"][0]["field"] == "file", body
    assert "/staging/" not in body["detail"]  # the server's own paths are not echoed
    assert files_under(root) == before
    assert not list((root / "staging").iterdir())
    for folder in (root, root.parent, Path("/tmp"), Path.cwd()):
        assert not list(folder.glob(f"{MARK}*")), folder
    assert case not in [d["name"] for d in client.get("/v1/datasets").json()["items"]]


def test_nmnist_zip_is_detected_and_accepted(secured):
    client = secured.service.client()
    response = client.post("/v1/datasets", files={"file": ("events.zip", nmnist_zip())})
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["format"], dataset["kind"], dataset["num_classes"], dataset["num_train"], dataset["num_test"]) == (
        "nmnist", "spikes", 2, 4, 4)
    assert dataset["input_shape"] == [2, 34, 34]
    assert not list((secured.root / "staging").iterdir())
