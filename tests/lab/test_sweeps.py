"""Grid sweeps: every point validated before anything is queued (422 naming the grid key), a
3-point sweep from ``hm2bp sweep --wait`` runs to completion and reports the best job, and
``GET /v1/workers`` shows the test's worker, its device and the job it is running meanwhile."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from service.harness import HM2BP

SWEEP_SPEC = {"network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                                     {"type": "dense", "units": 10, "threshold": 5}]},
              "encoding": {"time_steps": 40},
              "training": {"epochs": 1, "batch_size": 32, "max_train_samples": 150, "max_test_samples": 60}}


def sweep_body(grid: dict, **extra) -> dict:
    return {"dataset": "builtin:digits", "spec": SWEEP_SPEC, "grid": grid, **extra}


@pytest.mark.parametrize("grid, field", [
    ({"training.lr": [1e-3, -1.0]}, "grid.training.lr"),                        # one bad point of two
    ({"training.lr": [1e-3], "training.epochs": [1, 0]}, "grid.training.epochs"),
    ({"training.lrr": [1e-3]}, "grid.training.lrr"),                           # no such field
    ({"network.layers[0].units": [40, "many"]}, "grid.network.layers[0].units"),
    ({"network.layers.0.threshold": [-5]}, "grid.network.layers.0.threshold"),  # dotted index, tagged union
    ({"network.layers[-1].units": [10, 7]}, "grid.network.layers[-1].units"),  # does not fit digits' 10 classes
    ({"network.layers[5].units": [10]}, "grid.network.layers[5].units"),       # no such layer
    ({"training..lr": [1e-3]}, "grid.training..lr"),
    ({"training.lr": list(range(1, 12)), "training.seed": list(range(10))}, "grid"),  # 110 points > 100
    ({}, "grid"),
])
def test_every_point_is_validated_first(lab, grid, field):
    alice = lab.service.client("alice")
    before = alice.get("/v1/jobs").json()["total"], alice.get("/v1/sweeps").json()["total"]
    refused = alice.post("/v1/sweeps", json=sweep_body(grid))
    assert refused.status_code == 422, refused.text
    assert field in [e["field"] for e in refused.json()["errors"]], refused.json()
    assert (alice.get("/v1/jobs").json()["total"], alice.get("/v1/sweeps").json()["total"]) == before


def test_unknown_dataset_and_other_users_sweep_are_404(lab):
    alice, bob = lab.service.client("alice"), lab.service.client("bob")
    unknown_dataset = {**sweep_body({"training.lr": [1e-3]}), "dataset": "ds_nope"}
    assert alice.post("/v1/sweeps", json=unknown_dataset).status_code == 404
    assert alice.get("/v1/sweeps/swp_nope").status_code == 404
    assert bob.post("/v1/sweeps/swp_nope/cancel").status_code == 404


def test_sweep_of_three_points_reports_the_best(lab, tmp_path):
    alice, bob = lab.service.client("alice"), lab.service.client("bob")
    worker = next(w for w in alice.get("/v1/workers").json()["items"] if w["name"].startswith("lab-worker@"))
    assert set(worker["queues"]) == {"gpu", "cpu"} and worker["concurrency"] == 1 and worker["pid"] > 0

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SWEEP_SPEC))
    env = {**os.environ, "HM2BP_URL": lab.service.url, "HM2BP_TOKEN": lab.service.tokens["alice"],
           "XDG_CONFIG_HOME": str(tmp_path)}
    cli = subprocess.Popen([HM2BP, "sweep", str(spec), "--data", "builtin:digits",
                            "--grid", "training.lr=1e-3,5e-4,2e-3",
                            "--wait", "--timeout", "150", "--name", "lr sweep"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # meanwhile: the worker shows its device and the sweep's job it runs (to alice; bob sees no id)
        deadline, seen = time.monotonic() + 90, None
        while seen is None and time.monotonic() < deadline and cli.poll() is None:
            for item in alice.get("/v1/workers").json()["items"]:
                if item["name"] == worker["name"] and item["jobs"] and item["device"]:
                    seen = item
            time.sleep(0.3)
        assert seen is not None, "the worker never showed a running job"
        device = seen["device"]
        if device["kind"] == "cpu":
            assert device["name"] and device["cores"] >= 1
        else:
            assert device["name"] and device["memory_bytes"] > 0 and device["count"] >= 1
        assert seen["jobs"][0]["id"].startswith("job_") and seen["jobs"][0]["state"] in ("running", "cancelling")
        assert [j["id"] for w in bob.get("/v1/workers").json()["items"] for j in w["jobs"]] in ([], [None])
        out, err = cli.communicate(timeout=180)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"id", "state", "counts", "best"}
    assert summary["state"] == "done" and summary["counts"] == {"succeeded": 3}
    assert "submitted sweep" in err and "3 succeeded" in err

    sweep = alice.get(f"/v1/sweeps/{summary['id']}").json()
    assert sweep["name"] == "lr sweep" and sweep["grid"] == {"training.lr": [1e-3, 5e-4, 2e-3]}
    assert [job["params"] for job in sweep["jobs"]] == [{"training.lr": lr} for lr in (1e-3, 5e-4, 2e-3)]
    accuracies = {job["id"]: job["best_test_accuracy"] for job in sweep["jobs"]}
    assert all(0 <= a <= 1 for a in accuracies.values())
    best = sweep["best"]
    assert best == summary["best"] and best["best_test_accuracy"] == max(accuracies.values())
    assert accuracies[best["job_id"]] == best["best_test_accuracy"]
    for job in sweep["jobs"]:
        record = alice.get(f"/v1/jobs/{job['id']}").json()
        assert record["sweep_id"] == sweep["id"] and record["sweep_params"] == job["params"]
        assert record["spec"]["training"]["lr"] == job["params"]["training.lr"]
    assert sweep["id"] in [s["id"] for s in alice.get("/v1/sweeps").json()["items"]]
    assert bob.get(f"/v1/sweeps/{sweep['id']}").status_code == 404
    assert sweep["id"] not in [s["id"] for s in bob.get("/v1/sweeps").json()["items"]]
    assert bob.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 404


def test_cancel_a_sweep(lab):
    alice = lab.service.client("alice")
    spec = {**SWEEP_SPEC, "training": {**SWEEP_SPEC["training"], "epochs": 50}}
    made = alice.post("/v1/sweeps", json={**sweep_body({"training.seed": [1, 2]}), "spec": spec})
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "active" and made.json()["best"] is None and sum(made.json()["counts"].values()) == 2
    cancelled = alice.post(f"/v1/sweeps/{made.json()['id']}/cancel").json()
    for job in cancelled["jobs"]:
        assert lab.service.wait_for(job["id"], {"cancelled", "failed", "succeeded"}, 60)["state"] == "cancelled"
    final = alice.get(f"/v1/sweeps/{made.json()['id']}").json()
    assert final["state"] == "done" and final["counts"] == {"cancelled": 2} and final["best"] is None


def test_worker_command_refuses_unknown_queues(lab):
    refused = subprocess.run([HM2BP, "worker", "--queue", "tpu"], env=lab.env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "unknown queue tpu" in refused.stderr
