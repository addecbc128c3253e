"""Bad requests get a JSON 4xx naming the problem, before anything is queued or stored."""

from __future__ import annotations

import copy
import io
import zipfile

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .harness import MAX_UPLOAD_BYTES, TINY_SPEC, npz_bytes


def job_count(client) -> int:
    return client.get("/v1/jobs").json()["total"]


def assert_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


@pytest.mark.parametrize("change, field", [
    ({"training": {"epochs": 0}}, "spec.training.epochs"),
    ({"training": {"epochs": 2, "learning_rate": 0.1}}, "spec.training.learning_rate"),
    ({"neuron": {"tau_m": -1}}, "spec.neuron.tau_m"),
])
def test_invalid_spec_is_422_naming_the_field(service, change, field):
    client = service.client()
    before = job_count(client)
    spec = copy.deepcopy(TINY_SPEC)
    for section, values in change.items():
        spec.setdefault(section, {}).update(values)
    body = assert_error(client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec}), 422, field)
    assert field in body["detail"]
    assert job_count(client) == before


def test_unknown_dataset_is_404(service):
    client = service.client()
    for ref in ("ds_doesnotexist", "builtin:nonesuch"):
        assert_error(client.post("/v1/jobs", json={"dataset": ref, "spec": TINY_SPEC}), 404)
        assert_error(client.get(f"/v1/datasets/{ref}"), 404)


def test_network_that_does_not_fit_the_dataset_is_422_before_queueing(service):
    client = service.client()
    before = job_count(client)
    wrong_shape = copy.deepcopy(TINY_SPEC)
    wrong_shape["network"]["input_shape"] = [28, 28]
    body = assert_error(client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": wrong_shape}), 422,
                        "spec.network.input_shape")
    assert "[8, 8]" in body["detail"]
    wrong_classes = copy.deepcopy(TINY_SPEC)
    wrong_classes["network"]["layers"][-1]["units"] = 5
    assert_error(client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": wrong_classes}), 422,
                 "spec.network.layers[-1].units")
    assert job_count(client) == before


def test_malformed_job_bodies_are_422(service):
    client = service.client()
    assert_error(client.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}), 422)
    assert_error(client.post("/v1/jobs", json={"spec": TINY_SPEC}), 422, "dataset")
    assert_error(client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC, "extra": 1}),
                 422, "extra")
    assert_error(client.get("/v1/jobs", params={"state": "sleeping"}), 422, "state")


def test_oversized_upload_is_413(service):
    client = service.client()
    big = b"\0" * (MAX_UPLOAD_BYTES + 1)
    assert_error(client.post("/v1/datasets", files={"file": ("big.npz", big)}), 413)

    def chunked():  # no Content-Length: the limit holds while streaming
        boundary = b"hm2bpboundary"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.npz"\r\n\r\n'
        for _ in range(MAX_UPLOAD_BYTES // 10_000 + 2):
            yield b"\0" * 10_000
        yield b"\r\n--" + boundary + b"--\r\n"

    response = client.post("/v1/datasets", content=chunked(),
                           headers={"Content-Type": "multipart/form-data; boundary=hm2bpboundary"})
    assert_error(response, 413)
    assert list((service.data_dir / "staging").iterdir()) == []


@pytest.mark.parametrize("member", ["../evil.npy", "/etc/evil.npy", "a/../../evil.npy", "a\\..\\evil.npy"])
def test_zip_slip_member_is_400(service, member):
    client = service.client()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x_train.npy", b"harmless")
        archive.writestr(member, b"payload")
    body = assert_error(client.post("/v1/datasets", files={"file": ("slip.npz", buffer.getvalue())}), 400, "file")
    assert "evil" in body["detail"]
    assert list((service.data_dir / "staging").iterdir()) == []
    assert not list(service.data_dir.rglob("evil*"))


def test_invalid_dataset_contents_are_422(service):
    client = service.client()
    rng = np.random.default_rng(0)
    labels_short = npz_bytes(x_train=rng.random((10, 4, 4)), y_train=np.zeros(9, dtype=np.int64),
                             x_test=rng.random((5, 4, 4)), y_test=np.arange(5))
    body = assert_error(client.post("/v1/datasets", files={"file": ("short.npz", labels_short)}), 422, "file")
    assert "label" in body["detail"] and "/staging/" not in body["detail"]
    missing = npz_bytes(x_train=rng.random((10, 4, 4)))
    assert "missing arrays" in assert_error(
        client.post("/v1/datasets", files={"file": ("missing.npz", missing)}), 422)["detail"]
    assert_error(client.post("/v1/datasets", files={"file": ("junk.npz", b"not a zip at all")}), 422)
    assert_error(client.post("/v1/datasets", content=b"raw", headers={"Content-Type": "application/octet-stream"}), 415)
    assert_error(client.post("/v1/datasets", files={"other": ("x", b"abc")}), 422, "file")


def test_no_token_is_401(service):
    anonymous = service.client(user=None)
    for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/job_x"),
                         ("POST", "/v1/jobs/job_x/cancel"), ("GET", "/v1/jobs/job_x/events"),
                         ("GET", "/v1/jobs/job_x/artifacts/model.safetensors"), ("GET", "/v1/datasets"),
                         ("POST", "/v1/datasets"), ("DELETE", "/v1/datasets/ds_x")]:
        response = anonymous.request(method, path)
        assert_error(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    assert_error(anonymous.get("/v1/jobs", headers={"Authorization": "Bearer hm2bp_not-a-real-token"}), 401)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{service.ws_url}/v1/jobs/job_x/stream", open_timeout=10)
    assert refused.value.response.status_code == 401
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert anonymous.get(path).status_code == 200


def test_another_users_job_and_dataset_are_404(service):
    alice, bob = service.client("alice"), service.client("bob")
    job = alice.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC}).json()
    rng = np.random.default_rng(1)
    alices = npz_bytes(x_train=rng.random((20, 4, 4)), y_train=np.arange(20) % 2,
                       x_test=rng.random((6, 4, 4)), y_test=np.arange(6) % 2)
    dataset = alice.post("/v1/datasets", files={"file": ("alices.npz", alices)}).json()
    for method, path in [("GET", f"/v1/jobs/{job['id']}"), ("POST", f"/v1/jobs/{job['id']}/cancel"),
                         ("GET", f"/v1/jobs/{job['id']}/metrics"), ("GET", f"/v1/jobs/{job['id']}/logs"),
                         ("GET", f"/v1/jobs/{job['id']}/events"), ("GET", f"/v1/jobs/{job['id']}/artifacts"),
                         ("GET", f"/v1/jobs/{job['id']}/artifacts/model.safetensors"),
                         ("GET", f"/v1/datasets/{dataset['id']}"), ("DELETE", f"/v1/datasets/{dataset['id']}")]:
        assert_error(bob.request(method, path), 404)
    assert_error(bob.post("/v1/jobs", json={"dataset": dataset["id"], "spec": TINY_SPEC}), 404)
    assert job["id"] not in [j["id"] for j in bob.get("/v1/jobs").json()["items"]]
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{service.ws_url}/v1/jobs/{job['id']}/stream",
                additional_headers={"Authorization": f"Bearer {service.tokens['bob']}"}, open_timeout=10)
    assert refused.value.response.status_code == 404
    assert alice.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_artifact_names_cannot_leave_the_job_folder(service):
    client = service.client()
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": TINY_SPEC}).json()
    for name in ("..%2F..%2Fhm2bp.db", "%2Fetc%2Fpasswd", "checkpoint%2Fstate.json", "%2E%2E%2Fspec.json",
                 "spec.json%00"):
        assert_error(client.get(f"/v1/jobs/{job['id']}/artifacts/{name}"), 404)
    client.post(f"/v1/jobs/{job['id']}/cancel")


def test_health_metrics_and_contract(service):
    anonymous = service.client(user=None)
    assert anonymous.get("/healthz").json()["status"] == "ok"
    ready = anonymous.get("/readyz").json()
    assert ready["checks"] == {"database": "ok", "redis": "ok"}
    metrics = anonymous.get("/metrics").text
    assert "hm2bp_http_requests_total" in metrics and "hm2bp_jobs" not in metrics  # job counts: admins only
    paths = anonymous.get("/openapi.json").json()["paths"]
    for path in ("/v1/datasets", "/v1/datasets/{dataset_id}", "/v1/jobs", "/v1/jobs/{job_id}",
                 "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/metrics", "/v1/jobs/{job_id}/logs",
                 "/v1/jobs/{job_id}/artifacts", "/v1/jobs/{job_id}/artifacts/{name}", "/v1/jobs/{job_id}/events"):
        assert path in paths, path
    builtins = {d["id"] for d in service.client().get("/v1/datasets").json()["items"]}
    assert {"builtin:digits", "builtin:mnist"} <= builtins


def test_every_builtin_of_the_core_is_listed_with_its_facts(service):
    """GET /v1/datasets lists the core's registry, whole, with the registry's facts; each says
    whether a job may use it now (the service tests' data folder holds no built-in's files)."""
    from hm2bp_core.data import BUILTINS

    items = {d["id"]: d for d in service.client().get("/v1/datasets").json()["items"]}
    for name, builtin in BUILTINS.items():
        listed, facts = items[f"builtin:{name}"], builtin.facts
        assert (listed["kind"], listed["input_shape"], listed["num_classes"]) == \
            (facts.kind, list(facts.input_shape), facts.num_classes)
        assert (listed["num_train"], listed["num_test"], listed["time_steps"]) == \
            (facts.num_train, facts.num_test, facts.time_steps)
        assert listed == service.client().get(f"/v1/datasets/builtin:{name}").json()
    assert items["builtin:digits"]["available"] and items["builtin:digits"]["note"] is None
    assert items["builtin:mnist"]["available"] and "downloads" in items["builtin:mnist"]["note"]
    assert not items["builtin:nmnist"]["available"] and "Train.zip" in items["builtin:nmnist"]["note"]


def test_a_builtin_that_is_absent_is_refused_at_submit_saying_how_to_provide_it(service):
    client = service.client()
    before = job_count(client)
    spec = {"network": {"layers": [{"type": "dense", "units": 10, "threshold": 5}]},
            "encoding": {"kind": "spikes", "time_steps": 540}, "training": {"epochs": 1, "device": "cpu"}}
    body = assert_error(client.post("/v1/jobs", json={"dataset": "builtin:nmnist", "spec": spec}), 422, "dataset")
    assert "builtin:nmnist is not on this service" in body["detail"]
    assert "Train.zip and Test.zip" in body["detail"] and str(service.data_dir / "builtin" / "nmnist") in body["detail"]
    assert job_count(client) == before
