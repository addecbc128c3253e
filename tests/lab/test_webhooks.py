"""Webhooks against a real receiver on 127.0.0.1: one signed delivery per terminal state
(succeeded, failed, cancelled), verified with ``hm2bp_client.verify_webhook``; a delivery the
receiver first answers with 500 is retried (same delivery id, fresh signature); a receiver that
is down never changes the job. Plus the secret's route and rotation, and URL validation."""

from __future__ import annotations

import copy
import json
import socket
import time

import pytest
from service.harness import TINY_SPEC

from hm2bp_client import WebhookVerificationError, sign_webhook, verify_webhook

from .conftest import WEBHOOK_MAX_ATTEMPTS

TERMINAL = {"succeeded", "failed", "cancelled"}
ONE_EPOCH = copy.deepcopy(TINY_SPEC)
ONE_EPOCH["training"].update(epochs=1, max_train_samples=150, max_test_samples=60)
DIVERGING = copy.deepcopy(ONE_EPOCH)
DIVERGING["network"]["layers"][0]["init_range"] = 1e38  # NaN at once: the job fails as "diverged"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def eventually(check, seconds: float = 30, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {seconds} s")
        time.sleep(0.2)


def test_secret_route_and_rotation(lab):
    alice, bob = lab.service.client("alice"), lab.service.client("bob")
    first = alice.get("/v1/webhook-secret").json()["secret"]
    assert first.startswith("whsec_") and len(first) > 40
    assert alice.get("/v1/webhook-secret").json()["secret"] == first  # stable until rotated
    assert bob.get("/v1/webhook-secret").json()["secret"] != first    # per user
    rotated = alice.post("/v1/webhook-secret/rotate").json()["secret"]
    assert rotated != first and alice.get("/v1/webhook-secret").json()["secret"] == rotated
    assert lab.service.client(None).get("/v1/webhook-secret").status_code == 401


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "file:///etc/passwd", "javascript:alert(1)", "not a url",
                                 "http://" + "a" * 2100 + ".org/"])
def test_webhook_url_must_be_http(lab, url):
    alice = lab.service.client("alice")
    for path, body in (("/v1/jobs", {"dataset": "builtin:digits", "spec": ONE_EPOCH, "webhook_url": url}),
                       ("/v1/sweeps", {"dataset": "builtin:digits", "spec": ONE_EPOCH, "webhook_url": url,
                                       "grid": {"training.lr": [1e-3]}})):
        refused = alice.post(path, json=body)
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["webhook_url"]


def test_verify_webhook_refuses_forgeries():
    secret, body, now = "whsec_test", b'{"id":"whd_1","type":"job.succeeded"}', 1_700_000_000
    headers = {"x-hm2bp-timestamp": str(now), "X-HM2BP-Signature": sign_webhook(secret, now, body)}
    assert verify_webhook(secret, headers, body, now=now + 10)["id"] == "whd_1"
    for bad_secret, bad_headers, bad_body, at in (
        ("whsec_other", headers, body, now),                                      # another secret
        (secret, headers, body.replace(b"succeeded", b"failed"), now),            # changed body
        (secret, headers, body, now + 301),                                       # too old: a replay
        (secret, {**headers, "x-hm2bp-timestamp": str(now + 1)}, body, now),     # timestamp not the signed one
        (secret, {"X-HM2BP-Signature": headers["X-HM2BP-Signature"]}, body, now),  # no timestamp
    ):
        with pytest.raises(WebhookVerificationError):
            verify_webhook(bad_secret, bad_headers, bad_body, now=at)


def test_one_signed_delivery_per_terminal_state_with_retry(lab, receiver):
    alice, bob = lab.service.client("alice"), lab.service.client("bob")
    secret = alice.get("/v1/webhook-secret").json()["secret"]
    receiver.fail_first["/succeeded"] = 1  # the first POST is answered 500: the sender must retry
    dead = f"http://127.0.0.1:{closed_port()}/nobody-listens"

    def submit(spec: dict, hook: str) -> str:
        made = alice.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec, "webhook_url": hook})
        assert made.status_code == 201, made.text
        assert made.json()["webhook_url"] == hook
        return made.json()["id"]

    succeeded = submit(ONE_EPOCH, receiver.url + "/succeeded")
    failed = submit(DIVERGING, receiver.url + "/failed")
    cancelled = submit(ONE_EPOCH, receiver.url + "/cancelled")
    unreachable = submit(ONE_EPOCH, dead)
    no_hook = alice.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": ONE_EPOCH}).json()["id"]
    for job_id in (cancelled, unreachable, no_hook):  # queued behind the others: cancelled at once
        assert alice.post(f"/v1/jobs/{job_id}/cancel").json()["state"] in ("cancelled", "cancelling")

    expected = {succeeded: ("/succeeded", "succeeded"), failed: ("/failed", "failed"),
                cancelled: ("/cancelled", "cancelled")}
    for job_id, (_, state) in expected.items():
        assert lab.service.wait_for(job_id, TERMINAL, 120)["state"] == state
    eventually(lambda: len(receiver.to("/succeeded")) == 2 and receiver.to("/failed") and receiver.to("/cancelled"),
               what="the deliveries")
    time.sleep(1.5)  # ten sender rounds: nothing more may arrive

    assert sorted({d.path for d in receiver.deliveries}) == ["/cancelled", "/failed", "/succeeded"]
    for job_id, (path, state) in expected.items():
        got = receiver.to(path)
        assert len(got) == (2 if path == "/succeeded" else 1), [(d.path, d.status) for d in receiver.deliveries]
        assert len({d.headers["X-HM2BP-Delivery"] for d in got}) == 1  # a retry is the same delivery
        for delivery in got:
            assert delivery.headers["Content-Type"] == "application/json"
            assert delivery.headers["X-HM2BP-Event"] == f"job.{state}"
            assert abs(int(delivery.headers["X-HM2BP-Timestamp"]) - time.time()) < 60
            payload = verify_webhook(secret, delivery.headers, delivery.body)
            assert payload["id"] == delivery.headers["X-HM2BP-Delivery"] and payload["type"] == f"job.{state}"
            assert (payload["job"]["id"], payload["job"]["state"]) == (job_id, state)
            with pytest.raises(WebhookVerificationError):
                verify_webhook(secret + "x", delivery.headers, delivery.body)
        assert got[-1].status == 200
    assert [d.status for d in receiver.to("/succeeded")] == [500, 200]
    assert receiver.to("/succeeded")[0].body == receiver.to("/succeeded")[1].body  # the same bytes, re-signed
    done = json.loads(receiver.to("/succeeded")[1].body)["job"]
    assert 0 <= done["metrics"]["best_test_accuracy"] <= 1 and done["finished_at"]
    assert json.loads(receiver.to("/failed")[0].body)["job"]["error"]["reason"] == "diverged"

    record = alice.get(f"/v1/jobs/{succeeded}/webhooks").json()["items"]
    assert [(r["event"], r["state"], r["attempts"], r["last_status"], r["last_error"]) for r in record] == \
        [("job.succeeded", "delivered", 2, 200, None)]
    assert alice.get(f"/v1/jobs/{no_hook}/webhooks").json()["items"] == []
    assert bob.get(f"/v1/jobs/{succeeded}/webhooks").status_code == 404

    # a receiver that is down: retried with backoff, then given up; the job is untouched
    gave_up = eventually(lambda: [r for r in alice.get(f"/v1/jobs/{unreachable}/webhooks").json()["items"]
                                  if r["state"] == "failed"], what="the unreachable delivery given up")
    assert gave_up[0]["attempts"] == WEBHOOK_MAX_ATTEMPTS and gave_up[0]["last_status"] is None
    assert gave_up[0]["last_error"] == "connection failed" and gave_up[0]["next_attempt_at"] is None
    assert alice.get(f"/v1/jobs/{unreachable}").json()["state"] == "cancelled"
