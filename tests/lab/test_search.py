"""Searches (random and TPE, with Optuna) that prune trials falling behind: every range end and
choice validated first (422 naming ``space.FIELD``); ``hm2bp sweep --method random`` runs a
budget of trials one at a time and prunes the hopeless ones after their first epoch (state
``pruned`` with the reason); and a search goes on after its worker and the API were killed."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from service.harness import HM2BP, Cluster, kill_tree

pytestmark = pytest.mark.timeout(1200)  # a few training children, each slow to start on a loaded machine

# learns within an epoch with lr 0.02 (0.15 test accuracy after one on the tensor path the lab runs)
TWO_EPOCHS = {"network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                                     {"type": "dense", "units": 10, "threshold": 5}]},
              "encoding": {"time_steps": 150},
              "training": {"epochs": 2, "batch_size": 4, "max_train_samples": 300, "max_test_samples": 60}}
# threshold 500: the hidden layer never fires, the output is silent: every sample is called class 0
# (0.1 of these test samples)
SPACE = {"training.lr": {"choices": [0.02]}, "network.layers[0].threshold": {"choices": [5, 500]}}
RANGES = {"training.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
QUICK = {"network": {"layers": [{"type": "dense", "units": 40, "threshold": 5},
                                {"type": "dense", "units": 10, "threshold": 5}]},
         "encoding": {"time_steps": 40},
         "training": {"epochs": 2, "batch_size": 32, "max_train_samples": 150, "max_test_samples": 60}}


def search_body(**extra) -> dict:
    return {"dataset": "builtin:digits", "spec": TWO_EPOCHS, "method": "random", "space": SPACE, "budget": 3,
            **extra}


@pytest.mark.parametrize("change, field", [
    ({"space": {"training.lrr": {"low": 1e-4, "high": 1e-3}}}, "space.training.lrr"),
    ({"space": {"training.lr": {"low": -1.0, "high": 1e-3}}}, "space.training.lr"),  # the low end is invalid
    ({"space": {"training.lr": {"choices": [1e-3, 0]}}}, "space.training.lr"),
    ({"space": {"network.layers[0].threshold": {"choices": [5, -1]}}}, "space.network.layers[0].threshold"),
    ({"space": {"network.layers[-1].units": {"choices": [10, 7]}}}, "space.network.layers[-1].units"),  # misfit
    ({"space": {"training.lr": {"low": 1e-3, "high": 1e-4}}}, "space.training.lr"),  # low above high
    ({"space": {"training.lr": {"low": 0, "high": 1e-3, "log": True}}}, "space.training.lr"),
    ({"budget": None}, "budget"),
    ({"budget": 101}, "budget"),  # above max_sweep_points
    ({"objective": "val_accuracy"}, "objective"),  # the spec has no validation split
    ({"pruner": "sometimes"}, "pruner"),
])
def test_every_range_end_and_choice_is_validated_first(lab, change, field):
    alice = lab.service.client("alice")
    before = alice.get("/v1/jobs").json()["total"], alice.get("/v1/sweeps").json()["total"]
    body = {key: value for key, value in {**search_body(), **change}.items() if value is not None}
    refused = alice.post("/v1/sweeps", json=body)
    assert refused.status_code == 422, refused.text
    assert any(e["field"].startswith(field) for e in refused.json()["errors"]), refused.json()
    assert (alice.get("/v1/jobs").json()["total"], alice.get("/v1/sweeps").json()["total"]) == before


def _trial_seed() -> int:
    """A seed whose random search tries threshold 5 first, then 500 (the sampler is seeded per
    trial: the sweep's seed plus the trials made before; the random sampler ignores the history)."""
    from hm2bp_service.search import suggest

    search = {"method": "random", "space": SPACE}
    for seed in range(100):
        first, second = (suggest({**search, "seed": seed + k}, [], 1)[0] for k in range(2))
        if first["network.layers[0].threshold"] == 5 and second["network.layers[0].threshold"] == 500:
            return seed
    raise AssertionError("no seed found")


def test_random_search_prunes_a_hopeless_trial_after_one_epoch(lab, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TWO_EPOCHS))
    env = {**os.environ, "HM2BP_URL": lab.service.url, "HM2BP_TOKEN": lab.service.tokens["alice"],
           "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run(
        [HM2BP, "sweep", str(spec), "--data", "builtin:digits", "--method", "random", "--budget", "2",
         "--max-concurrent", "1", "--choice", "training.lr=0.02",
         "--choice", "network.layers[0].threshold=5,500", "--pruner", "median", "--prune-startup-trials", "1",
         "--seed", str(_trial_seed()),
         "--wait", "--timeout", "480", "--name", "pruned search"],
        env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr + lab.worker_logs()
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["state"] == "done" and summary["counts"] == {"succeeded": 1, "pruned": 1}, summary

    alice = lab.service.client("alice")
    sweep = alice.get(f"/v1/sweeps/{summary['id']}").json()
    assert sweep["search"]["method"] == "random" and sweep["search"]["budget"] == 2
    first, second = sweep["jobs"]
    assert first["state"] == "succeeded" and first["epochs"] == 2
    assert first["params"] == {"training.lr": 0.02, "network.layers[0].threshold": 5}
    # the silent network falls below the finished trial's accuracy after its first epoch, and stops there
    assert second["params"]["network.layers[0].threshold"] == 500
    assert second["state"] == "pruned" and second["epochs"] == 1, second
    assert "pruned after epoch 1" in second["reason"] and "below the median" in second["reason"]
    job = alice.get(f"/v1/jobs/{second['id']}").json()
    assert job["state"] == "pruned" and job["error"]["reason"] == "pruned" and job["finished_at"]
    assert job["spec"]["network"]["layers"][0]["threshold"] == 500
    assert sweep["best"]["job_id"] == first["id"] and sweep["best"]["objective"] == first["objective"]
    assert [f"[trial {k} (" in job["name"] for k, job in enumerate(sweep["jobs"], start=1)] == [True, True]


def test_tpe_search_through_the_python_client_and_cancel(lab):
    from hm2bp_client import Client

    client = Client(lab.service.url, lab.service.tokens["alice"])
    long = {**QUICK, "training": {**QUICK["training"], "epochs": 50}}
    record = client.submit_search(long, "builtin:digits", {**SPACE, **RANGES}, 10, method="tpe", max_concurrent=2)
    assert record["search"]["method"] == "tpe" and record["state"] == "active"
    assert len(record["jobs"]) == 2  # max_concurrent trials queued at once, the others made later
    cancelled = client.cancel_sweep(record["id"])
    for job in cancelled["jobs"]:
        assert lab.service.wait_for(job["id"], {"cancelled", "failed", "succeeded"}, 60)["state"] == "cancelled"
    time.sleep(2.5)  # two sweeper rounds: a cancelled search makes no more trials
    final = client.sweep(record["id"])
    assert final["state"] == "done" and final["counts"] == {"cancelled": 2}
    client.close()


def test_search_goes_on_after_its_worker_and_the_api_are_killed(tmp_path):
    cluster = Cluster(tmp_path, worker_heartbeat_seconds="1", lease_seconds="6", sweep_seconds="1",
                      no_extensions="1")
    try:
        cluster.start_api()
        cluster.add_worker("first")
        alice = cluster.service.client("alice")
        made = alice.post("/v1/sweeps", json=search_body(spec=QUICK, max_concurrent=1, pruner="none", space=RANGES))
        assert made.status_code == 201, made.text
        sweep_id, first = made.json()["id"], made.json()["jobs"][0]["id"]
        deadline = time.monotonic() + 120
        while alice.get(f"/v1/jobs/{first}").json()["state"] != "running":
            assert time.monotonic() < deadline, cluster.worker_logs()
            time.sleep(0.3)
        kill_tree(cluster.workers["first"])
        cluster.kill_api()
        cluster.start_api()
        cluster.add_worker("second")
        alice = cluster.service.client("alice")
        deadline = time.monotonic() + 240
        while (sweep := alice.get(f"/v1/sweeps/{sweep_id}").json())["state"] != "done":
            assert time.monotonic() < deadline, (sweep, cluster.worker_logs())
            time.sleep(1)
        assert sweep["counts"] == {"succeeded": 3}, sweep
        assert alice.get(f"/v1/jobs/{first}").json()["attempts"] == 2  # resumed by the second worker
    finally:
        cluster.close()
