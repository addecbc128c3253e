"""Checkpoints under faults (issue 17 item 3): a full disk while one is written leaves the
previous one whole and nothing half-written; a truncated or corrupt one is found by the digest
its JSON records, and the run resumes from the previous one instead, saying so, and ends as an
uninterrupted run does (same weights, bit for bit)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hm2bp_core.checkpoint import CHECKPOINT_DIR, KEEP, checkpoint_folders, load_checkpoint, read_checkpoint
from hm2bp_core.data import load_dataset
from hm2bp_core.spec import TrainingSpec
from hm2bp_core.train import Trainer

from filesystems import fill, small_filesystem

SPEC = {
    "network": {"layers": [{"type": "dense", "units": 30, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 60},
    "training": {"epochs": 3, "batch_size": 16, "lr": 0.01, "max_train_samples": 96, "max_test_samples": 32,
                 "seed": 3, "device": "cpu"},
}


class Stop(Exception):
    """Raised from the callback: the run ends right after an epoch's checkpoint (as a kill would)."""


@pytest.fixture(scope="module")
def digits():
    return load_dataset("builtin:digits")


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
    """The weights of the whole run, for reference."""
    out = tmp_path_factory.mktemp("uninterrupted")
    Trainer(TrainingSpec.model_validate(SPEC), digits, out).run()
    return load_file(str(out / "model.safetensors"))


def run_until(digits, out: Path, epoch: int, on_epoch=None) -> list[str]:
    """Train in ``out`` (resuming) and stop after ``epoch``'s checkpoint; the log lines."""
    logs: list[str] = []

    def callback(event):
        if event["type"] == "log":
            logs.append(event["message"])
        if event["type"] == "epoch":
            if on_epoch is not None:
                on_epoch(event["epoch"])
            if event["epoch"] == epoch:
                raise Stop

    with pytest.raises(Stop):
        Trainer(TrainingSpec.model_validate(SPEC), digits, out, callback=callback).run(resume=True)
    return logs


def resume_to_the_end(digits, out: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    logs: list[str] = []
    Trainer(TrainingSpec.model_validate(SPEC), digits, out,
            callback=lambda e: logs.append(e["message"]) if e["type"] == "log" else None).run(resume=True)
    return load_file(str(out / "model.safetensors")), logs


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


def newest_tensors(out: Path) -> Path:
    return checkpoint_folders(out)[0] / "state.safetensors"


def test_the_newest_checkpoints_are_kept_with_their_digests(digits, tmp_path):
    run_until(digits, tmp_path, 3)
    folders = checkpoint_folders(tmp_path)
    assert [f.name for f in folders] == ["epoch-000003", "epoch-000002"][:KEEP]
    assert sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()) == sorted(f.name for f in folders)
    recorded = json.loads((folders[0] / "state.json").read_text())["tensors"]
    assert recorded["bytes"] == (folders[0] / "state.safetensors").stat().st_size and len(recorded["sha256"]) == 64
    _, info = read_checkpoint(folders[0])
    assert info["epoch"] == 3 and "tensors" not in info


def flip_a_weight_byte(path: Path) -> None:
    """Change one byte of tensor data (past the safetensors header): the file still parses."""
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + 100] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def cut_json(path: Path) -> None:
    path.write_text(path.read_text()[:40])


@pytest.mark.parametrize("damage, file, says", [
    (flip_a_weight_byte, "state.safetensors", "does not match the SHA-256"),
    (truncate, "state.safetensors", "(truncated)"),
    (cut_json, "state.json", "not valid JSON"),
], ids=["bit-flip", "truncated-tensors", "truncated-json"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(digits, uninterrupted, tmp_path, damage, file, says):
    run_until(digits, tmp_path, 2)
    damage(checkpoint_folders(tmp_path)[0] / file)
    weights, logs = resume_to_the_end(digits, tmp_path)
    warned = [line for line in logs if "unreadable" in line]
    assert len(warned) == 1 and "epoch 2" in warned[0] and says in warned[0], logs
    assert "falling back to the previous one" in warned[0]
    assert any("resumed after epoch 1" in line for line in logs), logs
    assert_same(weights, uninterrupted)


def test_no_readable_checkpoint_says_so_and_starts_over(digits, tmp_path):
    run_until(digits, tmp_path, 2)
    for folder in checkpoint_folders(tmp_path):
        truncate(folder / "state.safetensors")
    warned: list[str] = []
    assert load_checkpoint(tmp_path, warn=warned.append) is None
    assert len(warned) == 3 and "starts from the first epoch" in warned[-1], warned


def test_a_full_disk_keeps_the_previous_checkpoint_and_the_run_resumes_from_it(digits, uninterrupted, tmp_path):
    with small_filesystem(tmp_path / "small", mib=4) as disk:
        out = disk / "run"
        filled: list[Path] = []

        def fill_after_the_first(epoch):
            if epoch == 1:
                filled.append(fill(disk))

        with pytest.raises(OSError) as raised:
            Trainer(TrainingSpec.model_validate(SPEC), digits, out,
                    callback=lambda e: fill_after_the_first(e["epoch"]) if e["type"] == "epoch" else None).run()
        assert raised.value.errno == errno.ENOSPC and filled
        assert sorted(p.name for p in (out / CHECKPOINT_DIR).iterdir()) == ["epoch-000001"]  # nothing half-written
        tensors, info = read_checkpoint(checkpoint_folders(out)[0])
        assert info["epoch"] == 1 and tensors

        filled[0].unlink()  # space again: the run resumes from epoch 1 and ends as if never stopped
        weights, logs = resume_to_the_end(digits, out)
        assert any("resumed after epoch 1" in line for line in logs), logs
        assert_same(weights, uninterrupted)
