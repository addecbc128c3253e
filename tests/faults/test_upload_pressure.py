"""Uploads under pressure (issue 17 item 4): four large uploads at once keep the API process's
memory near what one costs (uploads are read and checked one at a time, ``upload_readers``) while
other requests are answered; an upload cut off mid-stream, by its client or by a kill -9 of the
API process, leaves nothing behind (no staged file, no dataset row, no stored file).

The sizes are small (tens of MB) to keep this quick; benchmarks/upload_pressure.py measures four
500 MB uploads."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from service.harness import TINY_SPEC, Cluster

from .conftest import LEASE_SECONDS, SWEEP_SECONDS

UPLOAD_MB = 40
UPLOADS = 4
BOUNDARY = "hm2bp-cut-upload"


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path, lease_seconds=LEASE_SECONDS, sweep_seconds=SWEEP_SECONDS,
                   max_upload_bytes=str((UPLOAD_MB + 8) << 20), body_timeout_seconds="300")
    try:
        made.start_api()
        yield made
    finally:
        made.close()


def dataset_file(path: Path, size_mb: int, seed: int) -> Path:
    """An .npz of random 28 x 28 images (incompressible), different for each seed."""
    samples = (size_mb << 20) // 784
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(samples, 28, 28), dtype=np.uint8)
    y = (np.arange(samples) % 10).astype(np.int64)
    np.savez(path, x_train=x, y_train=y, x_test=x[:500], y_test=y[:500])
    return path


def peak_rss_since_reset(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM")


def staged(cluster: Cluster) -> list[str]:
    folder = Path(cluster.env["HM2BP_DATA_DIR"]) / "staging"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def stored(cluster: Cluster) -> list[str]:
    folder = Path(cluster.env["HM2BP_DATA_DIR"]) / "artifacts" / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def uploads_of(client) -> list[dict]:
    return [d for d in client.get("/v1/datasets").json()["items"] if d["format"] != "builtin"]


def test_concurrent_large_uploads_keep_memory_bounded_and_reads_answered(cluster, tmp_path):
    files = [dataset_file(tmp_path / f"upload-{i}.npz", UPLOAD_MB, seed=i) for i in range(UPLOADS)]
    client = cluster.service.client()
    job_id = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC}).json()["id"]
    assert cluster.api is not None
    pid = cluster.api.pid
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
    except OSError:
        pytest.skip("resetting a process's peak RSS needs root")
    start_rss = peak_rss_since_reset(pid)

    answers: list[int] = []
    done = threading.Event()
    reads: list[object] = []

    def upload(path: Path) -> None:
        with httpx.Client(base_url=cluster.service.url, headers=client.headers, timeout=300) as own:
            with open(path, "rb") as handle:
                answers.append(own.post("/v1/datasets", files={"file": (path.name, handle)}).status_code)

    def read() -> None:
        with httpx.Client(base_url=cluster.service.url, headers=client.headers, timeout=30) as own:
            while not done.is_set():
                try:
                    reads.append(own.get(f"/v1/jobs/{job_id}").status_code)
                except httpx.HTTPError as exc:
                    reads.append(repr(exc))
                time.sleep(0.05)

    reader = threading.Thread(target=read)
    reader.start()
    uploaders = [threading.Thread(target=upload, args=(path,)) for path in files]
    for thread in uploaders:
        thread.start()
    for thread in uploaders:
        thread.join(600)
    done.set()
    reader.join(60)

    assert answers == [201] * UPLOADS, answers
    assert reads and all(status == 200 for status in reads), [r for r in reads if r != 200][:5]
    assert len(uploads_of(client)) == UPLOADS and staged(cluster) == []
    grown = peak_rss_since_reset(pid) - start_rss
    # one upload read at a time: well under what reading all four at once takes (4 x the file)
    assert grown < 2.5 * (UPLOAD_MB << 20), f"the API's peak RSS grew by {grown >> 20} MiB"


def send_part_of_an_upload(cluster: Cluster, sent_mb: int, declared_mb: int) -> socket.socket:
    """A raw POST /v1/datasets whose body stops after ``sent_mb`` of the ``declared_mb`` it declares."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.npz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    length = len(head) + (declared_mb << 20)
    sock = socket.create_connection(("127.0.0.1", cluster.port))
    sock.sendall((f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Authorization: Bearer {cluster.service.tokens['alice']}\r\n"
                  f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\r\n"
                  ).encode() + head)
    block = b"\x93NUMPY" + bytes((1 << 20) - 6)
    for _ in range(sent_mb):
        sock.sendall(block)
    return sock


def wait_until(predicate, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_an_upload_cut_off_by_its_client_leaves_nothing(cluster):
    sock = send_part_of_an_upload(cluster, sent_mb=8, declared_mb=30)
    assert wait_until(lambda: bool(staged(cluster))), "the upload never reached the staging folder"
    sock.close()
    assert wait_until(lambda: not staged(cluster)), staged(cluster)
    client = cluster.service.client()
    assert uploads_of(client) == [] and stored(cluster) == []
    assert client.get("/healthz").status_code == 200


def test_an_api_killed_mid_upload_leaves_nothing_once_restarted(cluster):
    sock = send_part_of_an_upload(cluster, sent_mb=8, declared_mb=30)
    assert wait_until(lambda: bool(staged(cluster))), "the upload never reached the staging folder"
    cluster.kill_api()  # kill -9: no cleanup of its own
    sock.close()
    left = staged(cluster)
    assert left, "the killed API's staged file is the fault under test"
    time.sleep(1.5)
    cluster.start_api()
    assert staged(cluster) == [], f"left behind: {left}"
    client = cluster.service.client()
    assert uploads_of(client) == [] and stored(cluster) == []
