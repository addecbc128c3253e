"""Service restarts during a run. The API: a stream client reconnects with its cursor and sees
every event once, in order. Redis (without persistence, so it comes back empty): the job still
finishes (or is re-queued by the sweeper), a job submitted while Redis is down runs once it is
back, and every event's history is served from the database."""

from __future__ import annotations

import copy
import json
import time

import httpx
import httpx_sse
import pytest
import redis
from service.harness import TINY_SPEC, Cluster
from service.test_training_jobs import stream_events
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from hm2bp_service.events import stream_key

from .conftest import FAULT_SPEC, LEASE_SECONDS, SWEEP_SECONDS, TERMINAL
from .test_worker_loss import wait_for_progress


def ws_connect(cluster, job_id: str, after: int, seconds: float = 30):
    """A websocket on the job's stream, retried while the API is (re)starting."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return connect(f"{cluster.service.ws_url}/v1/jobs/{job_id}/stream?after={after}", open_timeout=5,
                           additional_headers={"Authorization": f"Bearer {cluster.service.tokens['alice']}"})
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def assert_whole(events: list[dict], final: str = "succeeded") -> None:
    assert [e["id"] for e in events] == list(range(1, len(events) + 1)), [e["id"] for e in events]  # no gap, no repeat
    assert events[-1]["type"] == "state" and events[-1]["data"]["state"] == final


def test_api_restart_streams_resume_without_gap_or_duplicate(cluster):
    cluster.start_api()
    cluster.add_worker("only")
    client = cluster.service.client()
    spec = copy.deepcopy(FAULT_SPEC)
    spec["training"]["epochs"] = 3
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": spec}).json()

    ws_events: list[dict] = []
    sse_events: list[dict] = []
    sse_client = httpx.Client(base_url=cluster.service.url, timeout=30,
                              headers={"Authorization": f"Bearer {cluster.service.tokens['alice']}"})
    with ws_connect(cluster, job["id"], after=0) as ws, \
            httpx_sse.connect_sse(sse_client, "GET", f"/v1/jobs/{job['id']}/events") as source:
        while not any(e["type"] == "epoch" for e in ws_events):  # live until epoch 1 is done
            ws_events.append(json.loads(ws.recv(timeout=60)))
        sse_iter = source.iter_sse()
        sse_events.extend(next(sse_iter).json() for _ in range(3))
        cluster.kill_api()  # SIGKILL, in the middle of both streams
        with pytest.raises((ConnectionClosed, TimeoutError)):
            while True:
                ws_events.append(json.loads(ws.recv(timeout=10)))
        try:
            for sse in sse_iter:
                sse_events.append(sse.json())
            raise AssertionError("the event stream ended without an error")
        except (httpx.TransportError, json.JSONDecodeError):
            pass  # the connection broke (an event cut in half is dropped, as EventSource does)
    assert ws_events and sse_events
    cluster.start_api()  # the same port

    with ws_connect(cluster, job["id"], after=ws_events[-1]["id"]) as ws:
        for message in ws:
            ws_events.append(json.loads(message))
    with httpx_sse.connect_sse(sse_client, "GET", f"/v1/jobs/{job['id']}/events",
                               headers={"Last-Event-ID": str(sse_events[-1]["id"])}) as source:
        sse_events.extend(sse.json() for sse in source.iter_sse())
    sse_client.close()
    assert_whole(ws_events)
    assert_whole(sse_events)
    assert ws_events == sse_events
    assert client.get(f"/v1/jobs/{job['id']}").json()["attempts"] == 1  # the worker never noticed


def test_redis_restart_job_finishes_and_history_comes_from_the_database(cluster):
    cluster.start_api()
    cluster.add_worker("only")
    client = cluster.service.client()
    job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": FAULT_SPEC}).json()
    wait_for_progress(client, job["id"], epoch=2)

    cluster.redis.kill()  # everything in Redis is lost: queues, unacked messages, event streams
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
    with ws_connect(cluster, job["id"], after=0) as ws:  # history while Redis is down: from the database
        early = [json.loads(ws.recv(timeout=10)) for _ in range(4)]
    assert [e["id"] for e in early] == [1, 2, 3, 4]
    small = copy.deepcopy(TINY_SPEC)
    small["training"]["epochs"] = 1
    during = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": small})
    assert during.status_code == 201, during.text  # stored, sent by the sweeper once the broker is back
    time.sleep(2)
    cluster.redis.start()

    done = cluster.service.wait_for(job["id"], TERMINAL, seconds=120)
    later = cluster.service.wait_for(during.json()["id"], TERMINAL, seconds=120)
    history = [(t["to_state"], t["reason"]) for t in client.get(f"/v1/jobs/{job['id']}/metrics").json()["transitions"]]
    assert done["state"] == "succeeded", (history, cluster.worker_logs())
    assert done["attempts"] == 1, history  # the run went on through the broker's restart
    assert later["state"] == "succeeded" and later["attempts"] == 1, cluster.worker_logs()
    assert [row["epoch"] for row in client.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"]] == [1, 2, 3, 4]

    events = stream_events(cluster.service, job["id"])
    assert_whole(events)
    assert [e["data"]["epoch"] for e in events if e["type"] == "epoch"] == [1, 2, 3, 4]
    streamed = redis.Redis.from_url(cluster.redis.url).xrange(stream_key("hm2bp:", job["id"]))
    # the early events are gone from Redis: served by the database
    assert not streamed or int(streamed[0][1][b"seq"]) > 4


def test_job_whose_message_redis_lost_is_sent_again(tmp_path):
    """A job sent to the broker, whose message a Redis restart (without persistence) loses before
    any worker took it, is sent again once a worker sits idle (``redispatch_seconds``); before,
    it stayed ``queued`` for good, and held the queue's only dispatch slot."""
    cluster = Cluster(tmp_path, 300, lease_seconds=LEASE_SECONDS, sweep_seconds=SWEEP_SECONDS, redispatch_seconds="2")
    try:
        cluster.start_api()
        client = cluster.service.client()
        small = copy.deepcopy(TINY_SPEC)
        small["training"]["epochs"] = 1
        job = client.post("/v1/jobs", json={"dataset": "builtin:digits", "spec": small}).json()
        assert redis.Redis.from_url(cluster.redis.url).llen("cpu") == 1  # sent (a worker may be starting)
        cluster.redis.kill()
        cluster.redis.start()  # empty: the message is gone
        cluster.add_worker("only")
        done = cluster.service.wait_for(job["id"], TERMINAL, seconds=600)  # a bound for a loaded machine
        assert done["state"] == "succeeded" and done["attempts"] == 1, cluster.worker_logs()
    finally:
        cluster.close()
