"""``hm2bp download JOB --nir`` against the real service: only model.nir is fetched, the file the
API serves (``GET /v1/jobs/{id}/artifacts/model.nir``) reads back with ``nir.read``, and a job
without it is a one-line error (exit 3) that names the artifact and lists what the job has.

The worker does not write model.nir yet (the lead adds the call after merging); until then this
test exports the job's downloaded model with ``export_nir`` into the job's artifact folder, which
is what the worker's call will do."""

from __future__ import annotations

import json

import nir
import pytest

from hm2bp_core.nir_export import export_nir
from service.harness import TINY_SPEC

from .test_cli import alice, hm2bp, last_json

ON_SQLITE = pytest.mark.parametrize("service", ["sqlite"], indirect=True)


@ON_SQLITE
def test_download_nir_fetches_model_nir_only(service, digits_npz, tmp_path):
    env = alice(service)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TINY_SPEC))
    done = hm2bp(env, "submit", str(spec), "--data", str(digits_npz), "--wait")
    assert done.returncode == 0, done.stderr
    job_id = last_json(done.stdout)["id"]

    job_folder = service.data_dir / "artifacts" / "jobs" / job_id
    if not (job_folder / "model.nir").exists():
        missing = hm2bp(env, "download", job_id, "--nir", "--out", str(tmp_path / "none"))
        assert missing.returncode == 3 and missing.stderr.count("\n") == 1
        assert f"job {job_id} has no artifact model.nir" in missing.stderr and "model.safetensors" in missing.stderr
        assert not (tmp_path / "none").exists()
        assert hm2bp(env, "download", job_id, "--out", str(tmp_path / "all")).returncode == 0
        export_nir(tmp_path / "all", job_folder / "model.nir")  # what the worker is to do for every job

    out = tmp_path / "nir"
    fetched = hm2bp(env, "download", job_id, "--nir", "--out", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.split() == [str(out / "model.nir")] and [p.name for p in out.iterdir()] == ["model.nir"]
    graph = nir.read(str(out / "model.nir"))
    assert isinstance(graph.nodes["layer00.2_lif"], nir.CubaLIF)
    assert graph.nodes["layer00.1_linear"].weight.shape == (40, 64)
    assert int(graph.metadata["time_steps"]) == 40
