"""The deployment files: docker-compose.yml passes ``docker-compose config -q`` (when the binary is
installed; no Docker engine is needed) and keeps the promises of docs/deployment.md; the Slurm
batch script parses."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"


def test_compose_file_validates():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    env = {**os.environ, "HM2BP_POSTGRES_PASSWORD": "validation-only"}
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
    result = subprocess.run(["bash", "-n", str(REPO / "docker" / "slurm-worker.sbatch")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
