"""Webhook delivery that nobody can hold, flood or read through (issue 20, items 2 and 3), with
two real worker processes and real receivers on loopback (allowed for this package's cluster by
``HM2BP_WEBHOOK_ALLOWED_DESTINATIONS``; test_webhook_egress.py shows the default refuses them).

Deliveries come from jobs cancelled while queued (the workers consume a queue nobody sends to, so
nothing trains). Each fails on main's sender, one thread per worker with a per-read timeout:
- a receiver that drips its reply holds it (main: for the drip's whole length), so the good
  receiver's delivery waited behind it; here it arrives while the drips are still open;
- the same drip, on two workers: main's claim (timeout + 30 s) expired under the drip and the other
  worker sent the same attempt again, so connections of one delivery overlapped; here each attempt
  ends at its deadline, inside its claim, and the receiver sees one connection per attempt;
- a 300 MB reply was read whole; here the receiver can send only a little before it is cut off;
- ``last_error`` held 200 characters of the receiver's body; here it is ``HTTP 500``.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from service.harness import REPO, TINY_SPEC, Cluster, wait_worker

DEADLINE_SECONDS = 3
MAX_ATTEMPTS = 3
BIG_REPLY_BYTES = 300 << 20
SECRET_WORDS = b"redis_version:7.2.4 internal-secret-text"
ONE_EPOCH = {**TINY_SPEC, "training": {**TINY_SPEC["training"], "epochs": 1}}


def eventually(check, seconds: float = 60, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {seconds} s")
        time.sleep(0.1)


@dataclass
class Connection:
    path: str
    delivery: str
    opened: float
    closed: float | None = None
    sent: int = 0


@dataclass
class Receiver:
    """``/good`` answers 200 at once, ``/slow`` after 1.5 s, ``/drip`` a byte every 0.4 s for up to
    60 s, ``/big`` a 500 with a 300 MB body, ``/leaky`` a 500 whose body holds ``SECRET_WORDS``."""

    url: str = ""
    connections: list[Connection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    other_url: str = ""  # the same receiver on a second port: another receiver to the sender

    def to(self, path: str) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections if c.path == path]

    def starting(self, prefix: str) -> list[Connection]:
        with self.lock:
            return [c for c in self.connections if c.path.startswith(prefix)]


@pytest.fixture(scope="module")
def receiver():
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            connection = Connection(self.path, self.headers.get("X-HM2BP-Delivery", ""), time.monotonic())
            with got.lock:
                got.connections.append(connection)
            try:
                self.answer(connection)
            except OSError:  # the sender hung up: what these tests expect of the bad receivers
                pass
            finally:
                connection.closed = time.monotonic()
                self.close_connection = True

        def answer(self, connection: Connection) -> None:
            path = self.path.split("?")[0]
            if path in ("/good", "/slow"):
                if path == "/slow":
                    time.sleep(1.5)
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            elif path.startswith("/drip"):
                reply = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 200
                for index in range(150):
                    self.wfile.write(reply[index:index + 1])
                    self.wfile.flush()
                    connection.sent += 1
                    readable, _, _ = select.select([self.connection], [], [], 0.4)
                    if readable and not self.connection.recv(1):  # the sender hung up: note when, at once
                        return
            elif path == "/big":
                self.wfile.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % BIG_REPLY_BYTES)
                chunk = b"x" * (1 << 20)
                while connection.sent < BIG_REPLY_BYTES:
                    self.wfile.write(chunk)
                    connection.sent += len(chunk)
            elif path == "/leaky":
                body = SECRET_WORDS * 4
                self.wfile.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

        def log_message(self, *args):
            pass

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    got.url, got.other_url = (f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield got
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    """An API and two workers that send webhooks but train nothing (they consume ``idle`` only)."""
    cluster = Cluster(tmp_path_factory.mktemp("hooks"), webhook_allowed_destinations="127.0.0.0/8",
                      webhook_timeout_seconds=str(DEADLINE_SECONDS), webhook_backoff_seconds="0.5",
                      webhook_poll_seconds="0.2", webhook_max_attempts=str(MAX_ATTEMPTS),
                      webhook_receiver_concurrency="2")
    try:
        cluster.start_api()
        for name in ("one", "two"):
            log = cluster.logs.setdefault(f"worker-{name}", cluster.root / f"worker-{name}.log")
            cluster.workers[name] = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "idle", "-c", "1",
                 "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
                env=cluster.env, cwd=REPO, stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
        for name, worker in cluster.workers.items():
            wait_worker(worker, cluster.logs[f"worker-{name}"])
        yield cluster
    finally:
        cluster.close()


def ended_job(hooks: Cluster, url: str) -> str:
    """A job with webhook ``url``, cancelled while queued: its delivery is due at once."""
    alice = hooks.service.client("alice")
    made = alice.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": ONE_EPOCH, "webhook_url": url})
    assert made.status_code == 201, made.text
    assert alice.post(f"/v1/jobs/{made.json()['id']}/cancel").json()["state"] == "cancelled"
    return made.json()["id"]


def deliveries(hooks: Cluster, job_id: str) -> list[dict]:
    return hooks.service.client("alice").get(f"/v1/jobs/{job_id}/webhooks").json()["items"]


def settled(hooks: Cluster, job_id: str) -> dict | None:
    items = deliveries(hooks, job_id)
    return items[0] if items and items[0]["state"] != "pending" else None


def test_a_dripping_receiver_delays_only_itself(hooks, receiver):
    drips = [ended_job(hooks, f"{receiver.url}/drip?n={n}") for n in range(8)]
    eventually(lambda: sum(c.closed is None for c in receiver.starting("/drip?n=")) >= 2, what="the drips sent")
    started = time.monotonic()
    good = ended_job(hooks, f"{receiver.other_url}/good")
    arrived = eventually(lambda: receiver.to("/good"), what="the good delivery")[0]
    open_then = sum(1 for c in receiver.starting("/drip?n=") if c.opened <= arrived.opened and
                    (c.closed is None or c.closed > arrived.opened))
    print(f"good delivery {arrived.opened - started:.2f} s after its job ended, {open_then} drips open")
    assert open_then >= 1  # it did not wait for them
    assert eventually(lambda: settled(hooks, good), what="the good delivery recorded")["state"] == "delivered"
    for job_id in drips:  # each drip attempt is cut at the deadline: given up after MAX_ATTEMPTS timeouts
        record = eventually(lambda job_id=job_id: settled(hooks, job_id), seconds=120, what="the drips given up")
        assert (record["state"], record["attempts"], record["last_status"], record["last_error"]) == \
            ("failed", MAX_ATTEMPTS, None, "timeout")
    cut = receiver.starting("/drip?n=")
    assert len(cut) == len(drips) * MAX_ATTEMPTS
    eventually(lambda: all(c.closed is not None for c in cut), seconds=10, what="the receiver seeing them closed")
    assert max(c.sent for c in cut) < 100  # cut long before its 150 bytes


def test_one_connection_per_attempt_across_two_workers(hooks, receiver):
    """Two workers poll the same outbox: a slow good receiver gets each delivery exactly once,
    and a dripping one exactly MAX_ATTEMPTS connections per delivery, never two at a time."""
    slow = [ended_job(hooks, f"{receiver.url}/slow") for _ in range(4)]
    drip = ended_job(hooks, f"{receiver.url}/drip?two-workers")
    for job_id in slow:
        assert eventually(lambda job_id=job_id: settled(hooks, job_id), what="slow delivered")["state"] == "delivered"
    record = eventually(lambda: settled(hooks, drip), seconds=120, what="the drip given up")
    time.sleep(2 * 0.2 + 1)  # a few sender rounds of both workers: nothing more may arrive
    ids = [d["id"] for job_id in slow for d in deliveries(hooks, job_id)]
    assert sorted(c.delivery for c in receiver.to("/slow")) == sorted(ids)  # once each
    attempts = sorted((c.opened, c.closed) for c in receiver.to("/drip?two-workers"))
    assert len(attempts) == record["attempts"] == MAX_ATTEMPTS
    for (_, closed), (opened, _) in zip(attempts, attempts[1:], strict=False):
        assert closed is not None and closed <= opened  # never two at once


def test_a_huge_reply_is_not_read(hooks, receiver):
    job_id = ended_job(hooks, f"{receiver.url}/big")
    record = eventually(lambda: settled(hooks, job_id), seconds=120, what="the big reply given up")
    assert (record["attempts"], record["last_status"], record["last_error"]) == (MAX_ATTEMPTS, 500, "HTTP 500")
    sent = [c.sent for c in receiver.to("/big")]
    assert len(sent) == MAX_ATTEMPTS and max(sent) < 64 << 20, sent  # socket buffers, never the 300 MB


def test_last_error_is_a_short_status_never_the_reply(hooks, receiver):
    leaky = ended_job(hooks, f"{receiver.url}/leaky")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    dead = ended_job(hooks, f"http://127.0.0.1:{closed}/nobody")
    record = eventually(lambda: settled(hooks, leaky), seconds=60, what="the leaky delivery given up")
    assert (record["last_status"], record["last_error"]) == (500, "HTTP 500")
    record = eventually(lambda: settled(hooks, dead), seconds=60, what="the dead delivery given up")
    assert (record["last_status"], record["last_error"]) == (None, "connection failed")
    listing = hooks.service.client("alice").get(f"/v1/jobs/{leaky}/webhooks").text
    assert "redis_version" not in listing and "internal-secret" not in listing
