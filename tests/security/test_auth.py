"""Every route the app serves (HTTP, SSE, websocket), enumerated from the app itself: 401
without a token and with a revoked one, 404 with another user's token on the owner's job,
dataset and artifact. Public routes are an explicit list; a new route is guarded or fails here."""

from __future__ import annotations

import copy
import hashlib
import sqlite3
import subprocess

import numpy as np
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from service.harness import HM2BP, REPO, TINY_SPEC, create_tokens, kill_tree, npz_bytes
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

# served to anyone: probes, the API description, and the dashboard page and its static files (it signs in with a token)
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
          "/", "/static", "/static/vendor/plotly.min.js"}
PUBLIC_CALLS = {("DELETE", "/v1/session")}  # signing out only clears the caller's own cookie


def flatten(routes, prefix: str = ""):
    """(full path, methods, route) of every route; newer FastAPI keeps each included router as a
    wrapper around the original one (whose routes carry the router's own prefix)."""
    for route in routes:
        if hasattr(route, "original_router"):
            extra = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            yield from flatten(route.original_router.routes, prefix + extra)
        else:
            yield prefix + getattr(route, "path", repr(route)), getattr(route, "methods", None) or (), route


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    """(kind, method, path template) of every route of an app built with this checkout's code."""
    from api.app import create_app
    from hm2bp_service.settings import Settings

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("routes"), redis_url="redis://127.0.0.1:1/0"))
    found = []
    for path, methods, route in flatten(app.routes):
        if isinstance(route, APIWebSocketRoute):
            found.append(("ws", "GET", path))
        elif isinstance(route, APIRoute):
            found.extend(("http", method, path) for method in sorted(set(methods) - {"HEAD", "OPTIONS"}))
        elif path not in PUBLIC:
            found.append(("other", "GET", path))
    app.state.services.close()
    return found


@pytest.fixture(scope="module")
def owned(secured):
    """Alice's finished job (with artifacts), uploaded dataset and a sweep; a worker runs the job, then goes."""
    client = secured.service.client("alice")
    rng = np.random.default_rng(3)
    data = npz_bytes(x_train=rng.random((20, 4, 4)), y_train=np.arange(20) % 2, x_test=rng.random((6, 4, 4)),
                     y_test=np.arange(6) % 2)
    dataset = client.post("/v1/datasets", files={"file": ("alices.npz", data)})
    assert dataset.status_code == 201, dataset.text
    worker = secured.add_worker("auth")
    spec = copy.deepcopy(TINY_SPEC)
    spec["training"]["epochs"] = 1
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec}).json()
    try:
        assert secured.service.wait_for(job["id"], {"succeeded", "failed", "cancelled"}, 120)["state"] == "succeeded"
    finally:
        kill_tree(worker)
    sweep = client.post("/v1/sweeps", json={"dataset": "builtin:digits", "spec": spec, "grid": {"training.seed": [1]}})
    assert sweep.status_code == 201, sweep.text  # no worker now: its job stays queued
    return {"job_id": job["id"], "dataset_id": dataset.json()["id"], "name": "model.safetensors",
            "sweep_id": sweep.json()["id"]}


def concrete(path: str, owned: dict) -> str:
    return path.format(**owned)


def ws_status(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with connect(url, additional_headers=headers, open_timeout=10):
            return 101
    except InvalidStatus as refused:
        assert refused.response.body and b"detail" in refused.response.body
        return refused.response.status_code


def status_of(secured, kind: str, method: str, path: str, token: str | None) -> int:
    if kind == "ws":
        return ws_status(secured.service.ws_url + path, token)
    client = secured.service.client(None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.request(method, path, headers=headers)
    if 400 <= response.status_code < 500:
        assert response.json()["detail"], response.text
    return response.status_code


def test_every_route_is_guarded(secured, routes, owned):
    assert not [r for r in routes if r[0] == "other"], "a route outside FastAPI's routing: guard it or list it"
    guarded = [r for r in routes if r[2] not in PUBLIC and (r[1], r[2]) not in PUBLIC_CALLS]
    assert {("ws", "GET", "/v1/jobs/{job_id}/stream"), ("http", "GET", "/v1/jobs/{job_id}/events"),
            ("http", "GET", "/v1/jobs/{job_id}/artifacts/{name}"), ("http", "POST", "/v1/datasets")} <= set(guarded)

    revoked = create_tokens(secured.env, ("carol",))["carol"]
    assert status_of(secured, "http", "GET", "/v1/jobs", revoked) == 200
    subprocess.run([HM2BP, "token", "revoke", revoked], env=secured.env, cwd=REPO, check=True, capture_output=True)
    alice, bob = secured.service.tokens["alice"], secured.service.tokens["bob"]

    wrong = []
    for kind, method, template in guarded:
        path = concrete(template, owned)
        for label, token in (("no token", None), ("revoked", revoked), ("not a token", "hm2bp_" + "x" * 43),
                             ("wrong scheme", None)):
            if label == "wrong scheme" and kind == "http":
                got = secured.service.client(None).request(method, path, headers={"Authorization": f"Basic {alice}"})
                got = got.status_code
            else:
                got = status_of(secured, kind, method, path, token)
            if got != 401:
                wrong.append((label, kind, method, path, got))
        if "{" in template:  # the owner's job, dataset or artifact, asked for by another user
            got = status_of(secured, kind, method, path, bob)
            if got != 404:
                wrong.append(("other user", kind, method, path, got))
    assert not wrong, wrong

    # and the owner gets them
    assert status_of(secured, "http", "GET", concrete("/v1/jobs/{job_id}/artifacts/{name}", owned), alice) == 200
    assert status_of(secured, "ws", "GET", concrete("/v1/jobs/{job_id}/stream", owned), alice) == 101
    bob_client = secured.service.client("bob")
    assert owned["job_id"] not in [j["id"] for j in bob_client.get("/v1/jobs").json()["items"]]
    assert owned["dataset_id"] not in [d["id"] for d in bob_client.get("/v1/datasets").json()["items"]]
    assert bob_client.post("/v1/jobs", json={"dataset": owned["dataset_id"], "spec": TINY_SPEC}).status_code == 404


def test_tokens_are_stored_hashed(secured):
    with sqlite3.connect(secured.root / "hm2bp.db") as db:
        stored = {row[0] for row in db.execute("select token_hash from tokens")}
        dump = "\n".join(db.iterdump())
    for token in secured.service.tokens.values():
        assert hashlib.sha256(token.encode()).hexdigest() in stored
        assert token not in dump and token[12:] not in dump
