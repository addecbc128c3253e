"""Limits before work (issue 20, items 1, 7 and 8), against an API of the test's own with a small
body limit and short deadlines. Each test fails on the code before the limits (main at 98688d1):
there a 60 MB body was read and parsed before its 401, tags of any size were stored once per
sweep point, and a connection could hold the server with headers or a body sent a byte at a time."""

from __future__ import annotations

import json
import select
import socket
import time

import httpx
import numpy as np
import pytest
from service.harness import TINY_SPEC, Cluster, npz_bytes

MAX_BODY = 100_000
HEADER_SECONDS, BODY_SECONDS, MIN_RATE = 2.0, 3.0, 2_000
CLOSE_WITHIN = 20.0  # generous: the machine is shared


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("limits"), max_body_bytes=str(MAX_BODY),
                      header_timeout_seconds=str(HEADER_SECONDS), body_timeout_seconds=str(BODY_SECONDS),
                      min_body_bytes_per_second=str(MIN_RATE))
    try:
        cluster.start_api()
        yield cluster
    finally:
        cluster.close()


def address(cluster: Cluster) -> tuple[str, int]:
    return "127.0.0.1", cluster.port


def read_response(sock: socket.socket, seconds: float) -> bytes:
    """What the server sends until it closes the connection (or ``seconds`` pass)."""
    sock.settimeout(seconds)
    received = b""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            block = sock.recv(65536)
            if not block:
                break
            received += block
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def status_and_body(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def test_declared_oversized_body_is_413_before_it_is_sent(limited):
    """A 60 MB Content-Length without a token: 413 at once, nothing read, no 401, no parsing."""
    with socket.create_connection(address(limited)) as sock:
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 60000000\r\n\r\n" + b"[" * 1000)
        status, body = status_and_body(read_response(sock, 15))
    assert status == 413 and str(MAX_BODY) in body["detail"] and body["errors"][0]["field"] == "body"


def test_chunked_oversized_body_is_413_while_read(limited):
    """No Content-Length: the bytes are counted as they arrive and stopped past the limit."""
    def chunks():
        yield b'{"dataset": "builtin:digits", "name": "'
        for _ in range(MAX_BODY // 10_000 + 1):
            yield b"x" * 10_000
        yield b'"}'

    response = httpx.post(f"{limited.service.url}/v1/jobs", content=chunks(),
                          headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413, response.text
    assert "larger than the limit" in response.json()["detail"]
    anonymous = httpx.post(f"{limited.service.url}/v1/jobs", content=b"{" + b" " * MAX_BODY + b"}",
                           headers={"Content-Type": "application/json"}, timeout=30)
    assert anonymous.status_code == 413  # before the token is looked at


def test_uploads_keep_their_own_limit(limited):
    """The dataset upload is not under the body limit (it streams to disk under max_upload_bytes)."""
    rng = np.random.default_rng(0)
    data = npz_bytes(x_train=rng.integers(0, 256, (2000, 8, 8), dtype=np.uint8), y_train=np.arange(2000) % 10,
                     x_test=rng.integers(0, 256, (200, 8, 8), dtype=np.uint8), y_test=np.arange(200) % 10)
    assert MAX_BODY < len(data) < 200_000  # the harness's max_upload_bytes
    response = limited.service.client().post("/v1/datasets", files={"file": ("big.npz", data)})
    assert response.status_code == 201, response.text


def test_tags_are_bounded_in_count_and_length(limited):
    client = limited.service.client()
    for tags, field in ((["x" * 65], "tags[0]"), (["x"] * 33, "tags"), (["a\x00b"], "tags[0]")):
        response = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC, "tags": tags})
        assert response.status_code == 422, response.text
        assert field in [e["field"] for e in response.json()["errors"]], response.text


def largest_job() -> dict:
    return {"dataset": "builtin:digits", "spec": TINY_SPEC, "name": "n" * 256, "tags": [f"{i:02d}" + "t" * 62
                                                                                       for i in range(32)]}


def test_a_page_of_jobs_is_bounded_in_bytes(limited):
    """The largest jobs the request models allow, listed: a bounded size each (on main tags alone
    could make one job megabytes)."""
    client = limited.service.client("bob")
    for _ in range(10):
        response = client.post("/v1/jobs", json=largest_job())
        assert response.status_code == 201, response.text
    page = client.get("/v1/jobs", params={"limit": 10})
    assert len(page.json()["items"]) == 10
    assert len(page.content) < 10 * 16_000, len(page.content)
    for job in page.json()["items"]:
        client.post(f"/v1/jobs/{job['id']}/cancel")


def test_a_sweep_cannot_multiply_a_request_into_a_large_store(limited):
    """A sweep copies name, tags and spec into every point: with every field bounded, the 100
    points of the largest sweep stay small; large tags (a 33 KB request, 3.3 MB stored on main)
    are refused."""
    client = limited.service.client("alice")
    big_tags = {"dataset": "builtin:digits", "spec": TINY_SPEC, "grid": {"training.seed": list(range(100))},
                "tags": ["t" * 1000] * 32}
    assert client.post("/v1/sweeps", json=big_tags).status_code == 422
    largest = {**largest_job(), "grid": {"training.seed": list(range(100))}}
    response = client.post("/v1/sweeps", json=largest)
    assert response.status_code == 201, response.text
    jobs = client.get("/v1/jobs", params={"limit": 100})
    assert jobs.json()["total"] >= 100
    assert len(jobs.content) < 100 * 16_000, len(jobs.content)
    client.post(f"/v1/sweeps/{response.json()['id']}/cancel")


def closed_within(sockets: list[socket.socket], seconds: float, drip: bytes | None,
                  started: float | None = None, quiet: int = 0) -> list[float]:
    """Keep sending ``drip`` (a byte every 0.5 s) on each socket but the last ``quiet`` until the
    server closes it; the seconds from ``started`` (default: now) each took to be closed (inf:
    still open after ``seconds``)."""
    started = time.monotonic() if started is None else started
    closed: dict[int, float] = {}
    last_drip = 0.0
    while len(closed) < len(sockets) and time.monotonic() - started < seconds:
        readable, _, _ = select.select([s for s in sockets if s.fileno() not in closed], [], [], 0.1)
        for sock in readable:
            try:
                if not sock.recv(65536):
                    closed[sock.fileno()] = time.monotonic() - started
            except ConnectionResetError:
                closed[sock.fileno()] = time.monotonic() - started
        if drip is not None and time.monotonic() - last_drip > 0.5:
            last_drip = time.monotonic()
            for sock in sockets[:len(sockets) - quiet]:
                if sock.fileno() not in closed:
                    try:
                        sock.send(drip)
                    except OSError:
                        closed[sock.fileno()] = time.monotonic() - started
    return [closed.get(s.fileno(), float("inf")) for s in sockets]


def test_slow_headers_and_idle_connections_are_closed(limited):
    """30 connections drip their headers and 5 send nothing at all: each is closed after the
    header deadline, and meanwhile the API answers others."""
    opened = time.monotonic()
    dripping = [socket.create_connection(address(limited)) for _ in range(30)]
    idle = [socket.create_connection(address(limited)) for _ in range(5)]
    try:
        for sock in dripping:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert httpx.get(f"{limited.service.url}/healthz", timeout=10).status_code == 200
        times = closed_within(dripping + idle, CLOSE_WITHIN, drip=b"a", started=opened, quiet=len(idle))
        assert max(times) < CLOSE_WITHIN, times
        assert min(times) >= HEADER_SECONDS - 0.5, times  # a deadline, not a refusal
        assert httpx.get(f"{limited.service.url}/healthz", timeout=10).status_code == 200
    finally:
        for sock in dripping + idle:
            sock.close()


def test_slow_bodies_are_408_and_closed(limited):
    sockets = [socket.create_connection(address(limited)) for _ in range(10)]
    try:
        for sock in sockets:
            sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 50000\r\n\r\n{")
        times = closed_within(sockets, CLOSE_WITHIN, drip=b" ")
        assert max(times) < CLOSE_WITHIN, times
        with socket.create_connection(address(limited)) as sock:
            sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 50000\r\n\r\n{")
            status, body = status_and_body(read_response(sock, CLOSE_WITHIN))
        assert status == 408 and "did not arrive in time" in body["detail"]
    finally:
        for sock in sockets:
            sock.close()
