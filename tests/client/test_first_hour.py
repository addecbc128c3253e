"""A new user's first hour (issue 16), against the real service: jobs that cannot run are refused
at submit naming the layer field; the kernels are ready before the worker says so and each job's
log names the kernel path; ``logs`` without ``-f`` shows state lines; ``download`` of a job with no
files fails loudly; ``token create`` outside the service's folder refuses; ``jobs``, ``datasets
rm``, ``--set``/``--tag``/``--webhook-url``; a duplicate upload says so; resume of a cancelled job
(same id, from its checkpoint); a running job's CPU and memory; the model file names its dataset;
the progress printer's bounded rate off a terminal."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time

import pytest
from service.harness import HM2BP, REPO, TINY_SPEC

from hm2bp_client import APIError, Client
from hm2bp_client.cli import PROGRESS_PERCENT, EventPrinter

from .test_cli import LONG_SPEC, ON_SQLITE, alice, cli_env, hm2bp, last_json

PAPER_CNN = {"layers": [
    {"type": "conv", "channels": 15, "kernel": 5, "threshold": 5},
    {"type": "pool", "size": 2, "threshold": 2},
    {"type": "conv", "channels": 40, "kernel": 5, "threshold": 12},
    {"type": "pool", "size": 2, "threshold": 4},
    {"type": "dense", "units": 300, "threshold": 10},
    {"type": "dense", "units": 10, "threshold": 10},
]}
DIVERGING = copy.deepcopy(TINY_SPEC)
DIVERGING["network"]["layers"][0]["init_range"] = 1e38  # NaN in the first batch: fails before any checkpoint


def until(check, seconds: float = 120, pause: float = 0.3, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(pause)
    return found


def write_spec(tmp_path, spec: dict) -> str:
    path = tmp_path / f"spec-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    return str(path)


# ---------------------------------------------------------------------- refused at submit
@ON_SQLITE
def test_the_paper_cnn_on_8x8_digits_is_refused_at_submit_naming_the_layer_field(service, tmp_path):
    spec = {**copy.deepcopy(TINY_SPEC), "network": PAPER_CNN}
    jobs_before = service.client("alice").get("/v1/jobs").json()["total"]
    answer = service.client("alice").post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec})
    assert answer.status_code == 422, answer.text
    error = answer.json()["errors"][0]
    # 8x8 -> conv 4x4 -> pool 2x2: the second 5x5 kernel is the first that does not fit
    assert error["field"] == "spec.network.layers[2].kernel"
    assert "2x2" in error["message"] and "smaller kernel" in error["message"]
    assert service.client("alice").get("/v1/jobs").json()["total"] == jobs_before  # nothing was queued
    # a pool window larger than what reaches it names the pool's field
    pooled = {**copy.deepcopy(TINY_SPEC), "network": {"layers": [
        {"type": "pool", "size": 9, "threshold": 1}, {"type": "dense", "units": 10, "threshold": 5}]}}
    answer = service.client("alice").post("/v1/jobs", json={"dataset": "builtin:digits", "spec": pooled})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "spec.network.layers[0].size"
    # a conv layer after a dense one (a flat input) names its type
    flat = {**copy.deepcopy(TINY_SPEC), "network": {"layers": [
        {"type": "dense", "units": 20, "threshold": 5}, {"type": "conv", "channels": 2, "kernel": 3, "threshold": 1},
        {"type": "dense", "units": 10, "threshold": 5}]}}
    answer = service.client("alice").post("/v1/jobs", json={"dataset": "builtin:digits", "spec": flat})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "spec.network.layers[1].type"

    # the local trainer refuses it the same way, before any training
    local = subprocess.run([HM2BP, "train", write_spec(tmp_path, spec), "--data", "builtin:digits",
                            "--out", str(tmp_path / "cnn")], capture_output=True, text=True, timeout=300)
    assert local.returncode == 1 and "network.layers[2].kernel is 5" in local.stderr, local.stderr
    assert not (tmp_path / "cnn" / "checkpoint").exists()


# ---------------------------------------------------------------------- kernels, logs, download
@ON_SQLITE
def test_kernels_ready_before_the_worker_is_and_each_job_logs_its_kernel_path(service, tmp_path):
    log = service.logs["worker"].read_text()
    assert "CPU kernels ready" in log and log.index("CPU kernels ready") < log.index("ready.\n"), log[-3000:]
    done = hm2bp(alice(service), "submit", write_spec(tmp_path, TINY_SPEC), "--data", "builtin:digits", "--wait")
    assert done.returncode == 0, done.stderr
    job_id = last_json(done.stdout)["id"]
    with Client(service.url, service.tokens["alice"]) as client:
        events = list(client.events(job_id))
    kinds = [(e["type"], e["data"].get("message", "")) for e in events]
    kernel = next(i for i, (kind, message) in enumerate(kinds) if message.startswith("kernels: "))
    first_progress = next(i for i, (kind, _) in enumerate(kinds) if kind == "progress")
    assert kernel < first_progress  # loaded before the first epoch's clock starts
    assert "compiled C++ CPU kernels" in kinds[kernel][1] and ".so" in kinds[kernel][1]
    # the test pass says what it is doing
    assert any(re.match(r"epoch 1/2: testing: 100 samples", message) for _, message in kinds)


@ON_SQLITE
def test_logs_without_follow_show_state_lines_and_download_of_no_files_fails(service, tmp_path):
    env = alice(service)
    failed = hm2bp(env, "submit", write_spec(tmp_path, DIVERGING), "--data", "builtin:digits", "--wait")
    assert failed.returncode == 1, failed.stderr
    job_id = last_json(failed.stdout)["id"]

    shown = hm2bp(env, "logs", job_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("state: queued") and any(line.startswith("state: running") for line in lines)
    failed_line = next(line for line in lines if line.startswith("state: failed"))
    assert "diverged" in failed_line.lower()  # the reason, as `logs -f` shows it
    assert lines.index(failed_line) > next(i for i, line in enumerate(lines) if line.startswith("kernels: "))

    out = tmp_path / "nothing"
    fetched = hm2bp(env, "download", job_id, "--out", str(out))
    assert fetched.returncode == 3 and "has no artifacts" in fetched.stderr and "failed" in fetched.stderr
    assert not out.exists()


def test_token_create_outside_the_service_folder_refuses_to_make_a_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HM2BP_")}
    made = subprocess.run([HM2BP, "token", "create", "--user", "alice"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 1, made.stdout
    assert str(tmp_path / ".hm2bp" / "hm2bp.db") in made.stderr and "--data-dir" in made.stderr
    assert not (tmp_path / ".hm2bp").exists() and "hm2bp_" not in made.stdout
    # naming the folder creates it, and says which database got the token
    named = subprocess.run([HM2BP, "token", "create", "--user", "alice", "--data-dir", str(tmp_path / "svc")],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert named.returncode == 0 and named.stdout.strip().startswith("hm2bp_"), named.stderr
    assert str(tmp_path / "svc" / "hm2bp.db") in named.stderr
    # and in the folder of a service (its ./.hm2bp exists), no option is needed
    again = subprocess.run([HM2BP, "token", "create", "--user", "bob", "--data-dir", ".hm2bp"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    found = subprocess.run([HM2BP, "token", "create", "--user", "carol"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0 and found.stdout.strip().startswith("hm2bp_"), found.stderr


# ---------------------------------------------------------------------- jobs, datasets, submit options
@ON_SQLITE
def test_jobs_list_set_tag_webhook_datasets_rm_duplicate_upload_and_client_reads(service, digits_npz, tmp_path):
    env = alice(service)
    copy_path = tmp_path / "renamed.npz"
    copy_path.write_bytes(digits_npz.read_bytes())
    first = hm2bp(env, "datasets", "upload", str(digits_npz), "--name", "first name")
    assert first.returncode == 0, first.stderr
    record = json.loads(first.stdout)
    again = hm2bp(env, "datasets", "upload", str(copy_path), "--name", "second name")
    assert again.returncode == 0, again.stderr
    duplicate = json.loads(again.stdout)
    assert duplicate["id"] == record["id"] and duplicate["duplicate"] is True and duplicate["name"] == record["name"]
    assert f"uploaded before as {record['id']}" in again.stderr and "datasets rm" in again.stderr

    submitted = hm2bp(env, "submit", write_spec(tmp_path, TINY_SPEC), "--data", record["id"], "--name", "listed",
                      "--set", "training.epochs=1", "--set", "network.layers[0].units=24",
                      "--set", "encoding.time_steps=30", "--tag", "first-hour", "--tag", "quick",
                      "--webhook-url", "http://127.0.0.1:9/hook", "--wait")
    assert submitted.returncode == 0, submitted.stderr
    job_id = last_json(submitted.stdout)["id"]
    job = json.loads(hm2bp(env, "status", job_id).stdout)
    assert job["spec"]["training"]["epochs"] == 1 and job["spec"]["network"]["layers"][0]["units"] == 24
    assert job["spec"]["encoding"]["time_steps"] == 30
    assert job["tags"] == ["first-hour", "quick"] and job["webhook_url"] == "http://127.0.0.1:9/hook"
    bad = hm2bp(env, "submit", write_spec(tmp_path, TINY_SPEC), "--data", "builtin:digits",
                "--set", "training.epoch=3")
    assert bad.returncode == 3 and "training.epoch" in bad.stderr

    listed = hm2bp(env, "jobs", "--state", "succeeded")
    assert listed.returncode == 0, listed.stderr
    row = next(line.split("\t") for line in listed.stdout.splitlines() if line.startswith(job_id))
    assert row[1] == "succeeded" and row[2].startswith("best ") and row[3] == record["id"]
    assert row[4] == "listed" and row[5] == "first-hour,quick"
    as_json = json.loads(hm2bp(env, "jobs", "--json", "--limit", "1").stdout)
    assert len(as_json) == 1 and as_json[0]["id"] == job_id  # newest first

    with Client(service.url, service.tokens["alice"]) as client:
        assert job_id in [j["id"] for j in client.jobs(state="succeeded")]
        assert client.jobs(limit=1)[0]["id"] == job_id
        metrics = client.metrics(job_id)
        assert [row["epoch"] for row in metrics["epochs"]] == [1]
        assert [t["to_state"] for t in metrics["transitions"]] == ["queued", "running", "succeeded"]
        assert record["id"] in [d["id"] for d in client.datasets()]

    model_dir = tmp_path / "model"
    assert hm2bp(env, "download", job_id, "--out", str(model_dir)).returncode == 0
    from hm2bp_core.checkpoint import model_dataset

    assert model_dataset(model_dir) == {"ref": record["id"], "name": record["name"], "sha256": record["sha256"],
                                        "input_shape": [8, 8]}

    other = tmp_path / "other.npz"
    import numpy as np

    with np.load(digits_npz) as arrays:
        np.savez(other, **{k: arrays[k][:150] if k.endswith("train") else arrays[k] for k in arrays.files})
    uploaded = json.loads(hm2bp(env, "datasets", "upload", str(other)).stdout)
    removed = hm2bp(env, "datasets", "rm", uploaded["id"])
    assert removed.returncode == 0 and f"deleted {uploaded['id']}" in removed.stdout, removed.stderr
    assert uploaded["id"] not in hm2bp(env, "datasets", "list").stdout
    gone = hm2bp(env, "datasets", "rm", uploaded["id"])
    assert gone.returncode == 3 and "not found" in gone.stderr


# ---------------------------------------------------------------------- resume and resources
@ON_SQLITE
def test_resume_a_cancelled_job_from_its_checkpoint_and_resources_while_it_runs(service, tmp_path):
    env = alice(service)
    spec = copy.deepcopy(LONG_SPEC)
    spec["training"].update(max_train_samples=96, max_test_samples=32, batch_size=16)
    with Client(service.url, service.tokens["alice"]) as client:
        job_id = client.submit(spec, "builtin:digits", name="resumable")["id"]
        sample = until(lambda: client.job(job_id).get("resources"), what="a resources sample")
        assert sample["rss_mib"] > 50 and sample["cpu_percent"] >= 0 and sample["sampled_at"]
        until(lambda: (client.job(job_id).get("metrics") or {}).get("epochs", 0) >= 1, what="a finished epoch")
        client.cancel(job_id)
        until(lambda: client.job(job_id)["state"] == "cancelled", what="the cancel")
        assert client.job(job_id)["resources"] is None

        resumed = hm2bp(env, "resume", job_id)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout) == {"id": job_id, "state": "queued"}
        until(lambda: any(line["message"].startswith("resumed after epoch") for line in client.logs(job_id)),
              what="the resumed run")
        assert client.job(job_id)["state"] in ("running", "cancelling", "cancelled")
        with pytest.raises(APIError) as refused:
            client.resume(job_id)  # running: not resumable
        assert refused.value.status_code == 409 and "running" in str(refused.value)
        client.cancel(job_id)
        until(lambda: client.job(job_id)["state"] == "cancelled", what="the second cancel")
        states = [t["to_state"] for t in client.metrics(job_id)["transitions"]]
        assert states[:4] == ["queued", "running", "cancelling", "cancelled"] and states[4] == "queued"

    finished = hm2bp(env, "submit", write_spec(tmp_path, TINY_SPEC), "--data", "builtin:digits", "--wait")
    done_id = last_json(finished.stdout)["id"]
    refused_cli = hm2bp(env, "resume", done_id)
    assert refused_cli.returncode == 3 and "succeeded" in refused_cli.stderr
    other = hm2bp(cli_env(service.url, service.tokens["bob"]), "resume", done_id)
    assert other.returncode == 3 and "not found" in other.stderr


# ---------------------------------------------------------------------- progress off a terminal
def _progress(epoch: int, step: int, epochs: int = 1, steps: int = 300) -> dict:
    return {"type": "progress", "id": step, "data": {"epoch": epoch, "epochs": epochs, "step": step, "steps": steps,
                                                     "loss": 1.0, "samples_per_sec": 10.0, "eta_seconds": 5.0}}


def test_progress_off_a_terminal_prints_at_a_bounded_rate(capsys):
    show = EventPrinter(err=True, interactive=False)
    for step in range(1, 301):  # a Slurm log of 300 steps: main printed 142 lines
        show(_progress(1, step))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) <= 100 / PROGRESS_PERCENT + 2
    assert lines[0].startswith("epoch 1/1 step 1/300") and lines[-1].startswith("epoch 1/1 step 300/300")
    show = EventPrinter(err=True, interactive=True)  # a terminal sees every event
    for step in range(1, 11):
        show(_progress(1, step))
    assert len(capsys.readouterr().err.splitlines()) == 10


# ---------------------------------------------------------------------- make run
def test_make_run_takes_a_port_and_hands_out_the_token_after_the_worker_is_up(tmp_path):
    from service.harness import free_port, stop

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HM2BP_", "MAKE"))}
    env["OMP_NUM_THREADS"] = "1"
    port = free_port()
    log = tmp_path / "run.log"
    data = tmp_path / "data"
    process = subprocess.Popen(["make", "-s", "run", f"PORT={port}", f"DATA_DIR={data}"], env=env, cwd=REPO,
                               stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        token = until(lambda: (re.search(r"token \([^)]*\): (hm2bp_\S+)", log.read_text()) or [None, None])[1],
                      seconds=300, what="the token")
        output = log.read_text()
        assert output.index("CPU kernels ready") < output.index("hm2bp service:")  # before it says it is ready
        assert output.index("ready.\n") < output.index(token)  # after the worker's start-up lines
        assert f"http://127.0.0.1:{port}" in output
        assert (data / "token").read_text().strip() == token and (data / "token").stat().st_mode & 0o077 == 0
        with Client(f"http://127.0.0.1:{port}", token) as client:
            until(lambda: _answers(client), seconds=60, what="the API")
    finally:
        stop(process, 30)


def _answers(client: Client) -> bool:
    try:
        client.jobs(limit=1)
        return True
    except Exception:
        return False
