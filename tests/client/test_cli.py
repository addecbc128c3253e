"""The ``hm2bp`` client commands and ``hm2bp_client.Client`` against the real service: exit codes
of ``submit --wait`` (succeeded 0, failed 1, cancelled 2, client/network error 3), ``logs -f``,
``status``, ``download``, ``datasets upload``, the config file, and a job followed through
connections that really drop."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pytest
from service.harness import HM2BP, TINY_SPEC, free_port

from hm2bp_client import Client, ConfigError
from hm2bp_client.config import DEFAULT_URL, ClientConfig, resolve

# the job store backend is not what these tests are about: one (SQLite) is enough
ON_SQLITE = pytest.mark.parametrize("service", ["sqlite"], indirect=True)
LONG_SPEC = copy.deepcopy(TINY_SPEC)
LONG_SPEC["training"].update(epochs=200, max_train_samples=1400, batch_size=8)
NO_CONFIG = "/nonexistent/hm2bp-client-tests"  # XDG_CONFIG_HOME without a config file


def cli_env(url: str | None = None, token: str | None = None, config_home: str = NO_CONFIG) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HM2BP_URL", "HM2BP_TOKEN")}
    env["XDG_CONFIG_HOME"] = config_home
    env.update({name: value for name, value in (("HM2BP_URL", url), ("HM2BP_TOKEN", token)) if value})
    return env


def alice(service) -> dict[str, str]:
    return cli_env(service.url, service.tokens["alice"])


def hm2bp(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([HM2BP, *args], env=env, capture_output=True, text=True, timeout=timeout)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture
def spec_file(tmp_path):
    def write(spec: dict):
        path = tmp_path / f"spec-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(spec))
        return str(path)
    return write


@ON_SQLITE
def test_submit_wait_succeeds_then_status_logs_download(service, digits_npz, spec_file, tmp_path):
    env = alice(service)
    done = hm2bp(env, "submit", spec_file(TINY_SPEC), "--data", str(digits_npz), "--wait", "--name", "cli tiny")
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert set(summary) == {"id", "state", "best_test_accuracy"} and summary["state"] == "succeeded"
    assert 0 <= summary["best_test_accuracy"] <= 1
    assert "uploaded" in done.stderr and "epoch 1/2 step" in done.stderr and "state: succeeded" in done.stderr
    job_id = summary["id"]

    record = json.loads(hm2bp(env, "status", job_id).stdout)
    assert (record["name"], record["state"]) == ("cli tiny", "succeeded")
    assert record["metrics"]["best_test_accuracy"] == summary["best_test_accuracy"]
    uploaded = hm2bp(env, "datasets", "upload", str(digits_npz))
    assert uploaded.returncode == 0 and json.loads(uploaded.stdout)["id"] == record["dataset"]  # same file, same id
    listed = hm2bp(env, "datasets", "list").stdout.splitlines()  # every built-in of the core, then the upload
    from hm2bp_core.data import BUILTINS

    assert [line.split("\t")[0] for line in listed] == [f"builtin:{name}" for name in BUILTINS] + [record["dataset"]]
    assert "2x34x34 x 540 steps" in listed[list(BUILTINS).index("nmnist")] and "Train.zip" in listed[-2]

    followed = hm2bp(env, "logs", job_id, "-f")  # an ended job: its whole history, then the exit code of its state
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert lines[0].startswith("state: queued") and lines[-1].startswith("state: succeeded")
    assert any(line.startswith("epoch 2/2 step") for line in lines)
    assert "epoch 2/2: loss" in hm2bp(env, "logs", job_id).stdout

    out = tmp_path / "artifacts"
    fetched = hm2bp(env, "download", job_id, "--out", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert {"model.safetensors", "spec.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.part"))
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["best_test_accuracy"] == summary["best_test_accuracy"]


@ON_SQLITE
def test_submit_wait_exits_1_when_training_diverges(service, spec_file):
    spec = copy.deepcopy(TINY_SPEC)
    spec["network"]["layers"][0]["init_range"] = 1e38
    failed = hm2bp(alice(service), "submit", spec_file(spec), "--data", "builtin:digits", "--wait")
    assert failed.returncode == 1, failed.stderr
    assert last_json(failed.stdout)["state"] == "failed"
    assert "state: failed" in failed.stderr and "diverged" in failed.stderr


@ON_SQLITE
def test_cancel_while_waiting_exits_2_and_logs_follow_ends_there(service, spec_file):
    env = alice(service)
    waiting = subprocess.Popen([HM2BP, "submit", spec_file(LONG_SPEC), "--data", "builtin:digits", "--wait"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    follower = None
    try:
        job_id = next(line.split()[1] for line in waiting.stderr if line.startswith("submitted "))
        follower = subprocess.Popen([HM2BP, "logs", job_id, "-f"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        next(line for line in waiting.stderr if line.startswith("epoch 1/200 step"))  # training is under way
        cancelled = hm2bp(env, "cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["state"] in ("cancelling", "cancelled")

        out, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 2, err
        summary = last_json(out)
        assert (summary["id"], summary["state"]) == (job_id, "cancelled") and "best_test_accuracy" in summary
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 2, err
        lines = out.splitlines()
        assert lines[0].startswith("state: queued") and lines[-1].startswith("state: cancelled")
        assert any(line.startswith("epoch 1/200 step") for line in lines)
    finally:
        for process in (waiting, follower):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()


def test_unreachable_service_exits_3(spec_file):
    result = hm2bp(cli_env(f"http://127.0.0.1:{free_port()}", "hm2bp_unused"),
                   "submit", spec_file(TINY_SPEC), "--data", "builtin:digits", "--wait")
    assert result.returncode == 3
    assert "cannot reach the hm2bp service" in result.stderr
    summary = last_json(result.stdout)
    assert (summary["id"], summary["state"], summary["best_test_accuracy"]) == (None, None, None) and summary["error"]


@ON_SQLITE
def test_server_errors_exit_3_with_the_servers_sentence_and_config_file_is_read(service, spec_file, tmp_path):
    refused = hm2bp(cli_env(service.url, "hm2bp_not-a-token"), "status", "job_x")
    assert refused.returncode == 3 and "invalid or revoked API token" in refused.stderr and "401" in refused.stderr
    invalid = hm2bp(alice(service), "submit", spec_file({"training": {"epochs": 0}}), "--data", "builtin:digits")
    assert invalid.returncode == 3 and "spec.training.epochs" in invalid.stderr

    (tmp_path / "hm2bp").mkdir()
    (tmp_path / "hm2bp" / "config.toml").write_text(f'url = "{service.url}"\ntoken = "{service.tokens["alice"]}"\n')
    missing = hm2bp(cli_env(config_home=str(tmp_path)), "status", "job_missing")
    assert missing.returncode == 3 and "not found" in missing.stderr and "404" in missing.stderr  # token accepted


def test_url_and_token_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("HM2BP_URL", raising=False)
    monkeypatch.delenv("HM2BP_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="HM2BP_TOKEN"):
        resolve()
    (tmp_path / "hm2bp").mkdir()
    (tmp_path / "hm2bp" / "config.toml").write_text('token = "from-file"\n')
    assert resolve() == ClientConfig(DEFAULT_URL, "from-file")
    (tmp_path / "hm2bp" / "config.toml").write_text('url = "http://file.example:1/"\ntoken = "from-file"\n')
    assert resolve() == ClientConfig("http://file.example:1", "from-file")
    monkeypatch.setenv("HM2BP_URL", "http://env.example:2")
    assert resolve() == ClientConfig("http://env.example:2", "from-file")
    assert resolve("http://arg.example:3", "from-arg") == ClientConfig("http://arg.example:3", "from-arg")
    (tmp_path / "hm2bp" / "config.toml").write_text("token = \n")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve()


class DroppingProxy:
    """A TCP proxy in front of the API that cuts each of the first ``cuts`` connections carrying
    an event-stream request after ``answer_bytes`` bytes of the answer: a real dropped link."""

    def __init__(self, target: tuple[str, int], cuts: int, answer_bytes: int) -> None:
        self.target, self.cuts_left, self.answer_bytes, self.cut = target, cuts, answer_bytes, 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _serve(self, downstream: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        budget: list[int | None] = [None]  # answer bytes this connection may still carry; None: no limit

        def requests() -> None:
            try:
                while data := downstream.recv(65536):
                    with self.lock:
                        if budget[0] is None and b"/events" in data and self.cuts_left:
                            self.cuts_left -= 1
                            budget[0] = self.answer_bytes
                    upstream.sendall(data)
                upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=requests, daemon=True).start()
        try:
            while data := upstream.recv(65536):
                if budget[0] is not None:
                    data = data[:budget[0]]
                    budget[0] -= len(data)
                downstream.sendall(data)
                if budget[0] == 0:
                    with self.lock:
                        self.cut += 1
                    break
        except OSError:
            pass
        finally:
            for end in (downstream, upstream):  # shutdown sends the FIN at once and wakes the other thread
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()


@ON_SQLITE
def test_wait_follows_a_job_through_dropped_connections(service):
    address = urlsplit(service.url)
    proxy = DroppingProxy((address.hostname, address.port), cuts=3, answer_bytes=600)
    token = service.tokens["alice"]
    try:
        with Client(proxy.url, token) as flaky, Client(service.url, token) as direct:
            key = f"dropped-{time.time_ns()}"
            job = flaky.submit(TINY_SPEC, "builtin:digits", name="through a flaky link", idempotency_key=key)
            assert flaky.submit(TINY_SPEC, "builtin:digits", name="through a flaky link",
                                idempotency_key=key)["id"] == job["id"]
            seen: list[dict] = []
            final = flaky.wait(job["id"], timeout=120, on_event=seen.append)
            assert final["state"] == "succeeded"
            assert proxy.cut == 3  # the stream really dropped, three times
            assert [event["id"] for event in seen] == list(range(1, len(seen) + 1))  # no gap, no repeat
            assert seen == list(direct.events(job["id"]))
            assert list(direct.events(job["id"], after=seen[-1]["id"])) == []  # nothing after the final state
    finally:
        proxy.close()
