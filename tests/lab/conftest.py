"""One ``Cluster`` (tests/service/harness.py: its own redis-server, SQLite, the API) for the lab
tests, with one worker started the way labs start them, ``hm2bp worker``; webhook retries and
heartbeats are fast so the tests see them within seconds. A local HTTP receiver records what
the service POSTs (on 127.0.0.1, which the cluster's allow-list permits: by default webhooks go
to public addresses only, tests/security/test_webhook_egress.py)."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from service.harness import HM2BP, REPO, Cluster, wait_worker

WORKER_NAME = "lab-worker@%h"
WEBHOOK_MAX_ATTEMPTS = 3


@pytest.fixture(scope="package")
def lab(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("lab"), webhook_backoff_seconds="0.5", webhook_poll_seconds="0.2",
                      webhook_max_attempts=str(WEBHOOK_MAX_ATTEMPTS), webhook_timeout_seconds="5",
                      worker_heartbeat_seconds="1", lease_seconds="10", sweep_seconds="1", admin_users="alice",
                      webhook_allowed_destinations="127.0.0.1",  # the receivers below (the default refuses them)
                      no_extensions="1")  # the tensor loop: no C++ kernel build in the training children
    try:
        cluster.start_api()
        log = cluster.logs.setdefault("worker-lab", cluster.root / "worker-lab.log")
        worker = cluster.workers["lab"] = subprocess.Popen(
            [HM2BP, "worker", "--queue", "gpu", "--queue", "cpu", "--name", WORKER_NAME],
            env=cluster.env, cwd=REPO, stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_worker(worker, log)
        yield cluster
    finally:
        cluster.close()


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """Records every POST; ``fail_first[path] = n`` answers the first n POSTs to ``path`` with 500."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path]


@pytest.fixture
def receiver():
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got = state["receiver"]
            with got.lock:
                failing = got.fail_first.get(self.path, 0)
                if failing:
                    got.fail_first[self.path] = failing - 1
                status = 500 if failing else 200
                got.deliveries.append(Delivery(self.path, dict(self.headers.items()), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
