"""``hm2bp serve``: one command brings up API (one process or several), worker and an embedded
Redis, and stops them all; its worker and the runs it starts yield the CPU to the API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from .harness import HM2BP, REPO, TINY_SPEC, free_port, stop

AUTOGROUP = Path("/proc/self/autogroup").exists()


def autogroup_nice(pid: int) -> int:
    """The nice value of the process's scheduling group ("/autogroup-N nice K")."""
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


@pytest.mark.parametrize("api_workers", [1, 2])
def test_serve_runs_a_job_with_embedded_redis_and_cleans_up(tmp_path, api_workers):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
    env["OMP_NUM_THREADS"] = "1"
    port = free_port()
    log = tmp_path / "serve.log"
    serve = subprocess.Popen([HM2BP, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
                              "--workers", str(api_workers)],
                             env=env, cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # kernels checked and the worker up before the token is shown
        while not re.search(r"token \([^)]*\): (hm2bp_\S+)", log.read_text()):
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        output = log.read_text()
        token = re.search(r"token \([^)]*\): (hm2bp_\S+)", output).group(1)
        url = re.search(r"hm2bp service: (http://\S+)", output).group(1)
        socket_path = re.search(r"redis redis\+socket://(\S+)\)", output).group(1)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC}).json()
        while (state := client.get(f"/v1/jobs/{job['id']}").json()["state"]) not in ("succeeded", "failed",
                                                                                     "cancelled"):
            assert time.monotonic() < deadline + 60, log.read_text()
            time.sleep(0.3)
        assert state == "succeeded", log.read_text()
        assert (tmp_path / "data" / "hm2bp.db").exists()
        assert redis.Redis(unix_socket_path=socket_path).ping()
        client.close()

        descendants = psutil.Process(serve.pid).children(recursive=True)  # API processes, worker, pool, Redis
        assert len(descendants) >= 2
        celery = [p for p in descendants if "celery" in " ".join(p.cmdline())]
        assert celery and all(p.nice() == 10 for p in celery)
        if AUTOGROUP:  # the worker is its session's leader: its whole scheduling group is niced
            assert all(autogroup_nice(p.pid) == 10 for p in celery)
        api = [p for p in descendants if "spawn_main" in " ".join(p.cmdline())]  # uvicorn's worker processes
        assert len(api) == (api_workers if api_workers > 1 else 0)  # one process: serve itself
        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C
        serve.wait(30)
        assert serve.returncode == 0, log.read_text()
        try:
            redis.Redis(unix_socket_path=socket_path, socket_connect_timeout=1).ping()
            raise AssertionError("the embedded Redis outlived hm2bp serve")
        except (redis.ConnectionError, FileNotFoundError):
            pass
        # this serve's own processes only (other services may run on the machine)
        _, alive = psutil.wait_procs(descendants, timeout=15)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        stop(serve)


@pytest.mark.skipif(not AUTOGROUP, reason="this kernel has no autogroup scheduling")
def test_a_niced_process_in_a_new_session_carries_its_niceness_to_the_session():
    """What a training run does first (worker.child): with autogroup, its nice value alone would
    not rank it below the API, which is in another session."""
    probe = ("import os; os.nice(7); from hm2bp_service.niceness import carry_niceness_to_session as carry; "
             "before = open('/proc/self/autogroup').read(); carry(); print(before.split()[-1], "
             "open('/proc/self/autogroup').read().split()[-1])")
    before, after = subprocess.run([sys.executable, "-c", probe], cwd=REPO, start_new_session=True,
                                   capture_output=True, text=True, check=True).stdout.split()
    assert (before, after) == ("0", "7")
