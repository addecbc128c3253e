"""Event and EMNIST readers on small files written here in the real formats, including broken ones.

N-MNIST ``.bin``: 5 bytes per event (x, y, polarity bit 7 + timestamp bits 22..16, timestamp bits
15..8, 7..0); EMNIST: IDX files named as in the official ``gzip.zip``.
"""

import gzip
import zipfile

import numpy as np
import pytest
from test_data import idx_bytes

from hm2bp_core.data import DatasetError, SpikeRaster, load_dataset, read_emnist, read_nmnist, read_npz
from hm2bp_core.data.builtin import EMNIST_FILES, NMNIST_FILES, NMNIST_REMOTE, digest_of, download, emnist, nmnist
from hm2bp_core.data.nmnist import bin_events, parse_events


def encode(events) -> bytes:
    """Events ``(x, y, polarity, timestamp_us)`` in the N-MNIST binary format, written byte by byte."""
    out = bytearray()
    for x, y, p, ts in events:
        out += bytes([x, y, (p << 7) | (ts >> 16), (ts >> 8) & 0xFF, ts & 0xFF])
    return bytes(out)


# (x, y, polarity, ts) -> expected (step, channel, x, y) or None when dropped; bin 600 us, T = 540
EVENTS = [
    ((0, 0, 1, 0), (1, 0, 0, 0)),  # ts 0 -> ceil(0) + 1 = step 1 (never step 0); ON -> channel 0
    ((5, 7, 0, 1), (2, 1, 5, 7)),  # ceil(1/600) = 1 -> step 2; OFF -> channel 1
    ((5, 7, 0, 600), (2, 1, 5, 7)),  # same bin and cell: collapses with the one above
    ((33, 2, 1, 601), (3, 0, 33, 2)),  # ceil(601/600) = 2 -> step 3
    ((3, 33, 1, 0x7FFFFF), None),  # 23-bit maximum timestamp: step >= 540, dropped
    ((9, 9, 1, 538 * 600), (539, 0, 9, 9)),  # last step kept: ceil = 538 -> 539
    ((9, 9, 1, 538 * 600 + 1), None),  # step 540 -> dropped
    ((34, 0, 1, 10), None),  # x outside 34 x 34 -> dropped
    ((0, 240, 1, 10), None),  # y = 240 (an overflow record elsewhere) -> dropped
    ((20, 21, 0, 70000), (118, 1, 20, 21)),  # timestamp bits above 16: ceil(70000/600) = 117 -> 118
]


def test_parse_events_decodes_the_bit_layout():
    data = encode([(3, 4, 1, 0x5A1B2C), (33, 0, 0, 0x000001)])
    assert data[:5] == bytes([3, 4, 0x80 | 0x5A, 0x1B, 0x2C])
    x, y, p, ts = parse_events(data, "f.bin")
    assert x.tolist() == [3, 33] and y.tolist() == [4, 0] and p.tolist() == [1, 0]
    assert ts.tolist() == [0x5A1B2C, 1]


def write_nmnist(root, samples, *, top=""):
    """``samples``: {(split folder, class): [events, ...]} written as ``[top/]Split/class/0000k.bin``."""
    for (split, label), files in samples.items():
        folder = root / top / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for k, events in enumerate(files):
            (folder / f"{k:05d}.bin").write_bytes(encode(events))


def zip_folder(folder, target):
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder).as_posix())
    return target


SAMPLES = {
    ("Train", 0): [[e for e, _ in EVENTS], [(1, 1, 1, 5)]],
    ("Train", 2): [[(2, 3, 0, 1200)]],
    ("Test", 1): [[(4, 4, 1, 0)], []],
}


def expected_raster(events, steps=540):
    raster = np.zeros((steps, 2, 34, 34), dtype=bool)
    for cell in events:
        if cell is not None:
            raster[cell] = True
    return raster


@pytest.mark.parametrize("layout", ["folder", "zip", "zip-top"])
def test_nmnist_layouts_and_raster_bit_by_bit(tmp_path, layout):
    write_nmnist(tmp_path / "src", SAMPLES, top="N-MNIST" if layout == "zip-top" else "")
    path = tmp_path / "src" if layout == "folder" else zip_folder(tmp_path / "src", tmp_path / "nmnist.zip")
    ds = load_dataset(path)
    assert ds.kind == "spikes" and isinstance(ds.x_train, SpikeRaster)
    assert ds.x_train.shape == (3, 540, 2, 34, 34) and ds.input_shape == (2, 34, 34) and ds.num_classes == 3
    assert ds.y_train.tolist() == [0, 0, 2] and ds.y_test.tolist() == [1, 1]
    first = ds.x_train[0]
    assert np.array_equal(first, expected_raster([cell for _, cell in EVENTS]))
    assert first.sum() == 5 and not first[0].any()  # 6 kept events, one duplicate pair; nothing at step 0
    assert np.array_equal(ds.x_train[2], expected_raster([(3, 1, 2, 3)]))
    assert not ds.x_test[1].any() and ds.x_test[0][1, 0, 4, 4]
    batch = ds.inputs("train", np.array([2, 0]))  # T x B x 2312, flat order (channel, x, y)
    assert batch.shape == (540, 2, 2312)
    assert batch[2, 1, 1156 + 5 * 34 + 7] == 1 and batch[3, 1, 33 * 34 + 2] == 1 and batch.sum() == 6


def test_nmnist_split_names_any_case_and_two_archives(tmp_path):
    write_nmnist(tmp_path / "a", {("train", 3): [[(1, 2, 1, 0)]], ("train", 0): [[(1, 2, 1, 0)]]})
    write_nmnist(tmp_path / "b", {("TEST", 3): [[(1, 2, 0, 0)]]})
    archives = [zip_folder(tmp_path / "a", tmp_path / "Train.zip"), zip_folder(tmp_path / "b", tmp_path / "Test.zip")]
    ds = read_nmnist(archives, bin_us=1000, time_steps=5)
    assert ds.x_train.shape == (2, 5, 2, 34, 34) and ds.y_test.tolist() == [3]
    assert ds.x_test[0][1, 1, 1, 2]


def test_nmnist_truncated_file_names_member_and_offset(tmp_path):
    write_nmnist(tmp_path / "src", SAMPLES)
    bad = tmp_path / "src" / "Train" / "0" / "00002.bin"
    bad.write_bytes(encode([(1, 1, 1, 1)] * 247) + b"\x01\x02")  # 1237 bytes
    message = r"Train/0/00002\.bin: truncated event at offset 1235 \(file length 1237 is not a multiple of 5\)"
    with pytest.raises(DatasetError, match=message):
        read_nmnist(tmp_path / "src")
    with pytest.raises(DatasetError, match=r"nmnist\.zip:Train/0/00002\.bin: truncated event at offset 1235"):
        read_nmnist(zip_folder(tmp_path / "src", tmp_path / "nmnist.zip"))


def test_nmnist_malformed_layouts(tmp_path):
    write_nmnist(tmp_path / "src", SAMPLES)
    (tmp_path / "src" / "Train" / "7").mkdir()
    with pytest.raises(DatasetError, match=r"Train/7: class folder holds no \.bin samples"):
        read_nmnist(tmp_path / "src")
    with pytest.raises(DatasetError, match=r"Train/7: class folder holds no \.bin samples"):
        read_nmnist(zip_folder(tmp_path / "src", tmp_path / "empty-class.zip"))
    write_nmnist(tmp_path / "notest", {("Train", 0): [[(1, 1, 1, 1)]]})
    with pytest.raises(DatasetError, match=r"no Test/<class>/\*\.bin samples found"):
        read_nmnist(tmp_path / "notest")
    write_nmnist(tmp_path / "label", {("Train", "zero"): [[(1, 1, 1, 1)]], ("Test", 0): [[]]})
    with pytest.raises(DatasetError, match=r"Train/zero/00000\.bin: class folder 'zero' is not an integer label"):
        read_nmnist(tmp_path / "label")
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="junk.zip"):
        read_nmnist(tmp_path / "junk.zip")


@pytest.mark.parametrize("member", ["../evil/Train/0/00000.bin", "/abs/Train/0/00000.bin", "Train/0/../../x.bin"])
def test_nmnist_zip_with_unsafe_member_is_rejected_before_reading(tmp_path, member):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("Train/0/00000.bin", encode([(1, 1, 1, 1)]) + b"x")  # would fail if it were read
        archive.writestr(zipfile.ZipInfo(member), encode([(1, 1, 1, 1)]))
        archive.writestr("Test/0/00000.bin", encode([(1, 1, 1, 1)]))
    with pytest.raises(DatasetError, match=r"unsafe member path .*not read") as error:
        read_nmnist(tmp_path / "evil.zip")
    assert member in str(error.value)


def test_bin_events_matches_the_formula():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 40, 500), rng.integers(0, 40, 500)
    p, ts = rng.integers(0, 2, 500), rng.integers(0, 40000, 500)
    cells = set(bin_events(x, y, p, ts, bin_us=600, time_steps=60).tolist())
    expected = set()
    for xi, yi, pi, ti in zip(x, y, p, ts, strict=True):
        step = int(np.ceil(ti / 600)) + 1
        if xi < 34 and yi < 34 and step < 60:
            expected.add(step * 2312 + (0 if pi else 1156) + xi * 34 + yi)
    assert cells == expected


def test_spike_raster_indexing_and_npz_event_lists(tmp_path):
    raster = SpikeRaster.from_samples([np.array([5, 1, 5]), np.array([], dtype=np.int64)], (2, 3))
    assert raster.shape == (2, 2, 3) and raster.counts().tolist() == [2, 0] and raster.max() and not raster.min()
    assert np.array_equal(np.asarray(raster), np.array([[[0, 1, 0], [0, 0, 1]], [[0] * 3] * 2], dtype=bool))
    assert np.array_equal(raster[-1], np.zeros((2, 3), dtype=bool)) and raster[1:].shape == (1, 2, 3)
    with pytest.raises(IndexError):
        raster[np.array([2])]
    # dense N x T x C x H x W spike tensors (uint8 0/1) and the same spikes as an event list
    dense = np.zeros((3, 4, 2, 3, 3), dtype=np.uint8)
    dense[0, 1, 0, 2, 1] = dense[2, 3, 1, 0, 0] = dense[1, 0, 1, 1, 1] = 1
    y = np.array([0, 1, 1])
    np.savez(tmp_path / "dense.npz", x_train=dense, y_train=y, x_test=dense[:2], y_test=y[:2], kind="spikes")
    ds = load_dataset(tmp_path / "dense.npz")
    assert ds.kind == "spikes" and ds.input_shape == (2, 3, 3) and ds.inputs("train", np.arange(3)).shape == (4, 3, 18)
    events = np.argwhere(dense)  # rows: sample, step, channel, row, col
    np.savez(tmp_path / "events.npz", x_train_events=np.vstack([events, events[:1]]), y_train=y,
             x_test_events=events[events[:, 0] < 2], y_test=y[:2], event_shape=np.array([4, 2, 3, 3]))
    listed = read_npz(tmp_path / "events.npz")
    assert listed.kind == "spikes" and np.array_equal(np.asarray(listed.x_train), dense.astype(bool))
    assert np.array_equal(listed.inputs("test", np.arange(2)), ds.inputs("test", np.arange(2)))
    np.savez(tmp_path / "bad.npz", x_train_events=np.array([[0, 4, 0, 0, 0]]), y_train=y,
             x_test_events=events, y_test=y, event_shape=np.array([4, 2, 3, 3]))
    with pytest.raises(DatasetError, match=r"x_train_events: event row 0 \[0, 4, 0, 0, 0\] lies outside"):
        read_npz(tmp_path / "bad.npz")


def write_emnist(folder, split, labels_train, labels_test, *, gz=True):
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    stored = {}
    for part, labels in (("train", labels_train), ("test", labels_test)):
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        stored[part] = images
        for kind, array, dim in (("images", images, 3), ("labels", np.asarray(labels, dtype=np.uint8), 1)):
            name = f"emnist-{split}-{part}-{kind}-idx{dim}-ubyte"
            data = idx_bytes(array)
            (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return stored


def test_emnist_transposes_images_and_shifts_letters(tmp_path):
    stored = write_emnist(tmp_path / "letters", "letters", [1, 26, 5, 2], [26, 1])
    ds = load_dataset(tmp_path / "letters")
    assert ds.name == "emnist-letters" and ds.num_classes == 26 and ds.y_train.tolist() == [0, 25, 4, 1]
    assert ds.x_train[1, 3, 17] == stored["train"][1, 17, 3]
    assert np.array_equal(ds.x_test, stored["test"].transpose(0, 2, 1))
    balanced = write_emnist(tmp_path / "balanced", "balanced", [0, 46, 3], [10, 0], gz=False)
    ds = read_emnist(tmp_path / "balanced", "balanced")
    assert ds.num_classes == 47 and ds.y_train.tolist() == [0, 46, 3]
    assert np.array_equal(ds.x_train[2], balanced["train"][2].T)
    write_emnist(tmp_path / "badletters", "letters", [0, 3], [1])
    with pytest.raises(DatasetError, match=r"letters train labels must lie in \[1, 26\], found 0\.\.3"):
        read_emnist(tmp_path / "badletters")


def test_emnist_builtin_from_the_official_zip_layout(tmp_path):
    write_emnist(tmp_path / "gzip", "letters", [1, 2, 3], [4, 5])
    write_emnist(tmp_path / "gzip", "digits", [0, 9, 3], [1, 2])
    with zipfile.ZipFile(tmp_path / "gzip.zip", "w") as archive:
        for path in sorted((tmp_path / "gzip").iterdir()):
            archive.write(path, f"gzip/{path.name}")
    with pytest.raises(DatasetError, match=r"holds EMNIST splits \['digits', 'letters'\]; name one"):
        load_dataset(tmp_path / "gzip.zip")
    assert read_emnist(tmp_path / "gzip.zip", "digits").y_train.tolist() == [0, 9, 3]
    cache = tmp_path / "cache" / "emnist"
    cache.mkdir(parents=True)
    (cache / "gzip.zip").write_bytes((tmp_path / "gzip.zip").read_bytes())
    with pytest.raises(DatasetError, match=r"gzip\.zip: md5 .* does not match the published 58c8d27c"):
        emnist("letters", cache)  # a local archive that is not NIST's is refused, never replaced
    ds = emnist("digits", tmp_path / "gzip")  # extracted IDX files need no archive
    assert ds.num_classes == 10 and ds.y_test.tolist() == [1, 2]


def test_nmnist_and_emnist_downloads_on_a_file_mirror(tmp_path, monkeypatch):
    """``download`` with md5 and mirror paths that differ from the file names, on a file:// mirror."""
    write_nmnist(tmp_path / "tr", {("Train", 0): [[(1, 1, 1, 1)]], ("Train", 1): [[(2, 2, 0, 2)]]})
    write_nmnist(tmp_path / "te", {("Test", 1): [[(3, 3, 1, 3)]]})
    mirror = tmp_path / "mirror"
    files, remote = {}, {}
    for name, folder in (("Train.zip", "tr"), ("Test.zip", "te")):
        (mirror / name).mkdir(parents=True)
        target = zip_folder(tmp_path / folder, mirror / name / "file_downloaded")
        files[name], remote[name] = digest_of(target, "md5"), f"{name}/file_downloaded"
    monkeypatch.setattr("hm2bp_core.data.builtin.NMNIST_FILES", files)
    monkeypatch.setattr("hm2bp_core.data.builtin.NMNIST_REMOTE", remote)
    monkeypatch.setattr("hm2bp_core.data.builtin.NMNIST_MIRRORS", ("file:///nonexistent/", mirror.as_uri() + "/"))
    monkeypatch.setenv("HM2BP_DATA_DIR", str(tmp_path / "data"))
    ds = load_dataset("builtin:nmnist")
    assert (len(ds.x_train), len(ds.x_test), ds.num_classes, ds.kind) == (2, 1, 2, "spikes")
    assert (tmp_path / "data" / "nmnist" / "Train.zip").exists()
    with pytest.raises(DatasetError, match=r"md5 [0-9a-f]{32} != 0{32}"):
        download({"Test.zip": "0" * 32}, (mirror.as_uri() + "/",), tmp_path / "other", algorithm="md5", remote=remote)
    assert not (tmp_path / "other" / "Test.zip").exists()
    monkeypatch.setattr("hm2bp_core.data.builtin.NMNIST_FILES", NMNIST_FILES)
    with pytest.raises(DatasetError, match="downloading is disabled"):
        nmnist(tmp_path / "none", allow_download=False)
    # the published digests and sources stay what the archives' publishers and loaders list
    assert NMNIST_FILES == {"Train.zip": "20959b8e626244a1b502305a9e6e2031",
                            "Test.zip": "69ca8762b2fe404d9b9bad1103e97832"}
    assert set(NMNIST_REMOTE) == set(NMNIST_FILES) and EMNIST_FILES == {"gzip.zip": "58c8d27c78d21e728a6bc7b3cc06412e"}
