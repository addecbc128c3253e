"""``hm2bp download JOB --nir`` against the real service: every succeeded job has a model.nir,
written by its worker; only that file is fetched; what the API serves
(``GET /v1/jobs/{id}/artifacts/model.nir``) reads back with ``nir.read``; and a job without it is a
one-line error (exit 3) that names the artifact and lists what the job has."""

from __future__ import annotations

import json

import nir
import pytest
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

    served = service.client().get(f"/v1/jobs/{job_id}/artifacts/model.nir")
    assert served.status_code == 200 and served.content[:8] == b"\x89HDF\r\n\x1a\n"  # NIR files are HDF5

    out = tmp_path / "nir"
    fetched = hm2bp(env, "download", job_id, "--nir", "--out", str(out))
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.split() == [str(out / "model.nir")] and [p.name for p in out.iterdir()] == ["model.nir"]
    graph = nir.read(str(out / "model.nir"))
    assert isinstance(graph.nodes["layer00.2_lif"], nir.CubaLIF)
    assert graph.nodes["layer00.1_linear"].weight.shape == (40, 64)
    assert int(graph.metadata["time_steps"]) == 40


@ON_SQLITE
def test_download_nir_of_a_job_without_it_is_one_line(service, tmp_path):
    env = alice(service)
    spec = dict(TINY_SPEC, training={**TINY_SPEC["training"], "epochs": 200})
    job = service.client().post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec}).json()
    service.client().post(f"/v1/jobs/{job['id']}/cancel")
    service.wait_for(job["id"], {"cancelled"})
    missing = hm2bp(env, "download", job["id"], "--nir", "--out", str(tmp_path / "none"))
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1
    assert f"job {job['id']} has no artifacts (it is cancelled" in missing.stderr  # none at all: it never trained
    assert not (tmp_path / "none").exists()
