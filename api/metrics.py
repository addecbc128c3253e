"""Prometheus metrics of the API: request counts and latency per route (a registry of their own,
``CollectorRegistry()``), and jobs per state (``job_registry``, shown to admins only)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from hm2bp_service.states import JobState
from hm2bp_service.store import Store


class JobStateCollector(Collector):
    """``hm2bp_jobs{state=...}``, counted in the database at scrape time."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("hm2bp_jobs", "jobs in the store, by state", labels=["state"])
        try:
            counts = self.store.jobs.count_by_state()
        except Exception:  # the database is down: /readyz says so; report nothing
            return
        for state in JobState:
            family.add_metric([state.value], counts.get(state, 0))
        yield family


class RequestMetrics:
    """ASGI middleware: ``hm2bp_http_requests_total`` and ``hm2bp_http_request_seconds``,
    labelled by route template (not the raw path, so ids do not explode the label set)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry):
        self.app = app
        self.requests = Counter("hm2bp_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("hm2bp_http_request_seconds", "HTTP request latency", ["method", "route"],
                                 registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def send_and_note(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.requests.labels(scope["method"], template, str(status[0])).inc()
            self.latency.labels(scope["method"], template).observe(time.perf_counter() - started)


def job_registry(store: Store) -> CollectorRegistry:
    """The job gauges, apart: ``GET /metrics`` shows them to admins only."""
    registry = CollectorRegistry()
    registry.register(JobStateCollector(store))
    return registry
