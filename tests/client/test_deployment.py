"""The deployment files: docker-compose.yml passes ``docker-compose config -q`` (when the binary is
installed; no Docker engine is needed) and keeps the promises of docs/deployment.md; the Slurm
batch script parses; and every command that the Dockerfiles, the compose file and the Slurm script
run with the installed package is run here, as written (no image can be built on this machine)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from service.harness import RedisServer, free_port, stop

from hm2bp_service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


def test_compose_file_validates():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    env = {**os.environ, "HM2BP_POSTGRES_PASSWORD": "validation-only",
           "HM2BP_WEBHOOK_SECRETS_KEY": "dmFsaWRhdGlvbi1vbmx5LXZhbGlkYXRpb24tb25seSE="}
    result = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_compose_services_scale_share_artifacts_and_reserve_a_gpu():
    services = yaml.safe_load(COMPOSE.read_text())["services"]  # PyYAML resolves the << merge keys
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    worker, api = services["worker"], services["api"]
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=N` needs both absent
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert all("healthcheck" in services[name] for name in ("postgres", "redis", "api", "worker"))
    assert "artifacts:/artifacts" in worker["volumes"] and "artifacts:/artifacts" in api["volumes"]
    for name in ("api", "worker"):
        names = {key[len("HM2BP_"):].lower() for key in services[name]["environment"] if key.startswith("HM2BP_")}
        assert names - set(Settings.model_fields) <= {"api_workers"}, f"{name}: unknown HM2BP_ settings"
    assert api["environment"]["HM2BP_DATABASE_URL"] == worker["environment"]["HM2BP_DATABASE_URL"]


def test_slurm_script_parses():
    result = subprocess.run(["bash", "-n", str(REPO / "docker" / "slurm-worker.sbatch")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------- every command the deployment files run
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
SLURM = REPO / "docker" / "slurm-worker.sbatch"
# what a command may start with: the project's own commands (run below) or a system tool that an image
# or a node brings (apt, useradd...), which no test here can or need run
PROJECT = ("hm2bp", "python", "uvicorn")
SYSTEM = ("apt-get", "rm", "useradd", "mkdir", "chown", "pip", "pg_isready", "redis-cli", "redis-server", "echo",
          "source", "set", "export", ":", "if", "fi", "ENV_FILE=", "[[", "exec")


def _dockerfile_commands(path: Path) -> list[str]:
    """The shell commands of a Dockerfile's RUN lines (split at &&) and its CMD."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "RUN":
            found += [part.strip() for part in rest.split("&&")]
        elif keyword == "CMD":
            argv = json.loads(rest)
            found.append(argv[2] if argv[:2] == ["sh", "-c"] else shlex.join(argv))
    return found


def _compose_commands() -> list[str]:
    """The ``command:`` and health checks of the compose file's own services (not postgres/redis)."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    found = []
    for name in ("migrate", "api", "worker"):
        service = services[name]
        if "command" in service:
            found.append(shlex.join(service["command"]))
        test = service.get("healthcheck", {}).get("test")
        if test:
            found.append(test[1].replace("$$", "$") if test[0] == "CMD-SHELL" else shlex.join(test[1:]))
    return found


def _first_word(command: str) -> str:
    words = shlex.split(command)
    return words[1] if words[:1] == ["exec"] and len(words) > 1 else words[0]


def test_every_deployment_command_is_known():
    """Each command of the Dockerfiles and the compose file is the project's (and run by the tests
    below) or a system tool; a new kind of command must be added to a test, not slip through."""
    commands = [c for path in DOCKERFILES for c in _dockerfile_commands(path)] + _compose_commands()
    assert commands
    for command in commands:
        assert _first_word(command) in PROJECT + SYSTEM, f"no test runs {command!r}"


def _venv_env(tmp: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HM2BP_DATA_DIR": str(tmp),
           "HM2BP_REDIS_URL": redis_url, "HM2BP_ARTIFACTS_URL": str(tmp / "artifacts"), "OMP_NUM_THREADS": "1",
           "HM2BP_WORKER_HEARTBEAT_SECONDS": "1", **extra}
    env.pop("HM2BP_DATABASE_URL", None)
    return env


def _run(command: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _serves_until(argv: list[str], env: dict[str, str], log: Path, check, seconds: float = 90, cwd: Path = REPO,
                  grace: float = 30) -> None:
    """Start ``argv`` (its own process group, output to ``log``), wait until ``check()`` holds, stop it."""
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        _until(check, process, log, seconds)
    finally:
        stop(process, grace)


def _until(check, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


def test_dockerfile_build_steps_run(tmp_path, own_redis):
    """Every RUN step of the images that uses the installed package runs here as written (the
    worker image's kernel build among them): a renamed function fails this test, not a build."""
    env = _venv_env(tmp_path, own_redis.url)
    ran = 0
    for path in DOCKERFILES:
        for command in _dockerfile_commands(path):
            if _first_word(command) in PROJECT and not command.startswith("exec"):
                done = _run(command, env, cwd=tmp_path)
                assert done.returncode == 0, f"{path.name}: {command}\n{done.stdout}\n{done.stderr}"
                ran += 1
    assert ran >= 2


def _worker_is_live(name: str, env: dict[str, str]) -> bool:
    return _run(f"hm2bp doctor --worker {shlex.quote(name)}", env).returncode == 0


def test_worker_image_command_and_compose_health_check(tmp_path, own_redis):
    """The compose file's migrate step, then the worker image's CMD; the worker service's health
    check passes once it is up (and failed before)."""
    env = _venv_env(tmp_path, own_redis.url, HM2BP_WORKER_QUEUES="gpu,cpu", HOSTNAME=socket.gethostname())
    migrate, api_health, worker_health = None, None, None
    for command in _compose_commands():
        if "migrate" in command:
            migrate = command
        elif "doctor --worker" in command:
            worker_health = command
        elif "readyz" in command:
            api_health = command
    assert migrate and worker_health and api_health
    assert _run(migrate, env).returncode == 0
    assert _run(worker_health, env).returncode != 0  # no worker yet
    cmd = next(c for c in _dockerfile_commands(REPO / "docker" / "worker.Dockerfile") if "hm2bp worker" in c)
    _serves_until(["sh", "-c", cmd], env, tmp_path / "worker.log", lambda: _run(worker_health, env).returncode == 0)


def test_api_image_command_and_compose_health_check(tmp_path, own_redis):
    """The API image's CMD (on a free loopback port instead of 0.0.0.0:8000) serves, and the api
    service's health check (GET /readyz) passes against it."""
    env = _venv_env(tmp_path, own_redis.url, HM2BP_API_WORKERS="1")
    assert _run("hm2bp migrate", env).returncode == 0
    cmd = next(c for c in _dockerfile_commands(REPO / "docker" / "api.Dockerfile") if "uvicorn" in c)
    port = free_port()
    assert "--host 0.0.0.0 --port 8000" in cmd
    cmd = cmd.replace("--host 0.0.0.0 --port 8000", f"--host 127.0.0.1 --port {port}")
    health = next(c for c in _compose_commands() if "readyz" in c).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    _serves_until(["sh", "-c", cmd], env, tmp_path / "api.log", lambda: _run(health, env).returncode == 0, grace=10)


def test_slurm_script_runs_a_worker(tmp_path, own_redis):
    """The batch script itself, as Slurm would start it: its checks pass and its worker comes up."""
    venv = Path(sys.executable).parents[1]
    env = _venv_env(tmp_path, own_redis.url, SLURM_JOB_ID="4242", HM2BP_VENV=str(venv),
                    HM2BP_DATABASE_URL=f"sqlite:///{tmp_path / 'slurm.db'}", HM2BP_ENV_FILE=str(tmp_path / "none.env"),
                    HM2BP_WORKER_QUEUES="cpu")
    assert _run("hm2bp migrate", env).returncode == 0
    log = tmp_path / "slurm.log"
    name = f"hm2bp-slurm-4242@{socket.gethostname()}"
    _serves_until(["bash", str(SLURM)], env, log, lambda: _worker_is_live(name, env), seconds=180, cwd=tmp_path)
    assert "ok   kernels" in log.read_text()  # the script's `hm2bp doctor` built and loaded them first
