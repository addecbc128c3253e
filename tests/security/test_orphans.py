"""``kill -9`` of ``hm2bp serve`` (issue 20, item 9): its worker, the worker's pool process, the
training child and the embedded Redis all go within a bound; a restart on the same data folder
starts a Redis of its own (never the old one), reuses serve's token instead of minting another,
and still has the job. On main the worker trained on unsupervised, and Redis ran on and was adopted
by the next start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
from service.harness import HM2BP, REPO, free_port, stop

GONE_WITHIN = 20.0
START_SECONDS = 400.0
LONG_SPEC = {  # long enough to be still training when serve is killed
    "network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                           {"type": "dense", "units": 10, "threshold": 5}]},
    "encoding": {"time_steps": 40},
    "training": {"epochs": 50, "batch_size": 8, "device": "cpu"},
}


def start_serve(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
    env["OMP_NUM_THREADS"] = "1"
    port = free_port()
    serve = subprocess.Popen([HM2BP, "serve", "--port", str(port), "--data-dir", str(data_dir)], env=env, cwd=REPO,
                             stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    pattern = r"token \((?:new|reused)[^)]*\): (hm2bp_\S+)"
    while not re.search(pattern, log.read_text()):
        assert serve.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    output = log.read_text()
    url = re.search(r"hm2bp service: (http://\S+)", output).group(1)
    socket_path = re.search(r"redis redis\+socket://(\S+)\)", output).group(1)
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert serve.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    return serve, url, re.search(pattern, output).group(1), socket_path


def test_kill_9_of_serve_takes_everything_it_started_down(tmp_path):
    data_dir = tmp_path / "data"
    serve, url, token, socket_path = start_serve(data_dir, tmp_path / "serve-1.log")
    try:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": LONG_SPEC}).json()
        deadline = time.monotonic() + START_SECONDS  # the worker runs niced: slow to start on a busy machine
        while client.get(f"/v1/jobs/{job['id']}").json()["state"] != "running" or not any(
                "worker.child" in " ".join(p.cmdline()) for p in psutil.Process(serve.pid).children(recursive=True)):
            assert time.monotonic() < deadline, (tmp_path / "serve-1.log").read_text()[-3000:]
            time.sleep(0.3)
        client.close()
        descendants = psutil.Process(serve.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in descendants]
        assert any("worker.child" in c for c in commands) and any("redis-server" in c for c in commands)
        assert sum("celery" in c for c in commands) >= 2, commands  # the worker and its pool process
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait()
        _, alive = psutil.wait_procs(descendants, timeout=GONE_WITHIN)
        assert not alive, [p.cmdline() for p in alive]
        assert not Path(socket_path).exists() or not _answers(socket_path)

        # a restart: a Redis of its own, the same token, and the job resumes and ends
        again, url, token_again, socket_again = start_serve(data_dir, tmp_path / "serve-2.log")
        try:
            assert token_again == token and "reused" in (tmp_path / "serve-2.log").read_text()
            assert socket_again != socket_path
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
            client.post(f"/v1/jobs/{job['id']}/cancel")
            client.close()
        finally:
            stop(again, 30)
    finally:
        stop(serve)


def _answers(socket_path: str) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=socket_path, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False
