"""``Client``: the hm2bp service's HTTP API (``/v1``, see ARCHITECTURE.md) from Python.

Records are returned as the server's JSON objects (dicts): a job is ``{id, name, state, dataset,
spec, progress, metrics, error, attempts, ...}``, an event ``{id, type, at, data}``. Every failure
raises an ``HM2BPError`` whose message is the server's own sentence where there is one.

Following a job (``events``, ``wait``) reads its server-sent events; a dropped or silent
connection is reopened with ``?after=`` the last event id, so no event is lost or repeated.
``wait`` falls back to polling the job when no event stream can be had.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import httpx_sse

from hm2bp_service.states import TERMINAL

from .config import resolve
from .errors import APIError, HM2BPError, ServiceUnreachable, StreamUnavailable, WaitTimeout

TERMINAL_STATES = TERMINAL  # the service's own set (hm2bp_service.states)
STREAM_IDLE_SECONDS = 45.0  # the server sends a keep-alive comment every 15 s; longer silence is a dead link
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # between attempts to reopen a stream; reset by each event
UPLOAD_TIMEOUT = httpx.Timeout(30.0, read=600.0, write=600.0)  # the server vets the whole file before answering
LOG_PAGE = 1000  # the server's largest page of log lines
JOB_PAGE = 500  # the server's largest page of jobs


def is_final(event: Mapping[str, Any]) -> bool:
    """The event is the job's last: a ``state`` event with a terminal state."""
    return event["type"] == "state" and event["data"].get("state") in TERMINAL_STATES


def _raise_for_status(response: httpx.Response) -> None:
    """Raise ``APIError`` carrying the server's error body for a 4xx/5xx answer."""
    if response.is_success:
        return
    response.read()
    try:
        body = response.json()
        detail, errors = str(body.get("detail")), body.get("errors")
    except (ValueError, AttributeError):  # not our JSON error body (a proxy's page, say)
        detail, errors = response.text.strip()[:300] or response.reason_phrase, None
    raise APIError(response.status_code, detail, errors if isinstance(errors, list) else None)


class Client:
    """One user's session with the service. URL and token: the arguments, else ``HM2BP_URL`` /
    ``HM2BP_TOKEN``, else ``~/.config/hm2bp/config.toml`` (see ``hm2bp_client.config``)."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        config = resolve(url, token)
        self.url = config.url
        self._http = httpx.Client(base_url=config.url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {config.token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _unreachable(self, exc: httpx.TransportError) -> ServiceUnreachable:
        return ServiceUnreachable(f"cannot reach the hm2bp service at {self.url}: {exc or type(exc).__name__}")

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _raise_for_status(response)
        return response

    @contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed answer, its status already checked."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                _raise_for_status(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    # -- datasets and jobs ----------------------------------------------------------------------

    def upload_dataset(self, path: str | Path, name: str | None = None, format: str | None = None) -> dict[str, Any]:
        """Upload a dataset file (``.npz``, or a zip of IDX files); returns its record. When the
        same file was uploaded before, that earlier record (with its first name) and ``duplicate:
        True``: one record per file. ``format`` is detected when omitted."""
        path = Path(path)
        fields = {key: value for key, value in (("name", name), ("format", format)) if value}
        try:
            with path.open("rb") as handle:
                return self._request("POST", "/v1/datasets", files={"file": (path.name, handle)}, data=fields,
                                     timeout=UPLOAD_TIMEOUT).json()
        except OSError as exc:
            raise HM2BPError(f"cannot read {path}: {exc.strerror or exc}") from None

    def datasets(self) -> list[dict[str, Any]]:
        """The built-ins (with ``available`` and, when not, a ``note`` on how to provide them),
        then your uploads: ``{id, name, kind, input_shape, num_classes, num_train, num_test, ...}``."""
        return self._request("GET", "/v1/datasets").json()["items"]

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete one of your uploads (refused while a job that has not ended uses it)."""
        self._request("DELETE", f"/v1/datasets/{quote(dataset_id, safe='')}")

    def jobs(self, state: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Your jobs, newest first (of one ``state`` when given; at most ``limit``, else all)."""
        found: list[dict[str, Any]] = []
        while limit is None or len(found) < limit:
            size = JOB_PAGE if limit is None else min(JOB_PAGE, limit - len(found))
            params: dict[str, Any] = {"limit": size, "offset": len(found)}
            if state:
                params["state"] = state
            page = self._request("GET", "/v1/jobs", params=params).json()
            found += page["items"]
            if len(page["items"]) < size or len(found) >= page["total"]:
                break
        return found

    def metrics(self, job_id: str) -> dict[str, Any]:
        """The job's metrics: ``{epochs: [per-epoch rows], final, transitions: [{from_state,
        to_state, reason, at}], reference}`` (reference: the authors' curves of a paper row, or None)."""
        return self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}/metrics").json()

    def submit(self, spec: Mapping[str, Any], dataset: str, name: str | None = None,
               idempotency_key: str | None = None, webhook_url: str | None = None,
               tags: list[str] | None = None) -> dict[str, Any]:
        """Queue a job training ``spec`` (a spec mapping, as in a spec file) on ``dataset``
        (``builtin:NAME`` or an uploaded dataset's id); returns the job record (state ``queued``).
        Submitting again with the same ``idempotency_key`` returns the first job."""
        body: dict[str, Any] = {"dataset": dataset, "spec": dict(spec)}
        for key, value in (("name", name), ("webhook_url", webhook_url), ("tags", tags)):
            if value:
                body[key] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._request("POST", "/v1/jobs", json=body, headers=headers).json()

    def job(self, job_id: str) -> dict[str, Any]:
        """The job record now."""
        return self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the job to stop; returns its record (``cancelled`` at once if it was queued,
        ``cancelling`` while a run stops, unchanged if it had ended)."""
        return self._request("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel").json()

    def resume(self, job_id: str) -> dict[str, Any]:
        """Queue a cancelled or failed job again (the same job): it continues from its last
        checkpoint; returns its record (state ``queued``). Any other state is an ``APIError`` (409)."""
        return self._request("POST", f"/v1/jobs/{quote(job_id, safe='')}/resume").json()

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        """All the job's log lines so far, oldest first: ``{id, at, message}``."""
        lines: list[dict[str, Any]] = []
        while True:
            page = self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}/logs",
                                 params={"after": lines[-1]["id"] if lines else 0, "limit": LOG_PAGE}).json()["items"]
            lines += page
            if len(page) < LOG_PAGE:
                return lines

    def download(self, job_id: str, out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
        """Write the job's artifacts (model.safetensors, spec.json, metrics.json, model.nir, ...), or
        only those in ``names``, into ``out_dir`` (created if needed); returns the paths written. A
        file appears only once whole. A name in ``names`` that the job does not have is an error."""
        out = Path(out_dir)
        job_path = f"/v1/jobs/{quote(job_id, safe='')}"
        listed = [item["name"] for item in self._request("GET", f"{job_path}/artifacts").json()["items"]]
        if not listed:
            raise HM2BPError(f"job {job_id} has no artifacts (it is {self.job(job_id)['state']}; a job's files "
                             "appear with its first epoch's checkpoint, the model once it has succeeded)")
        missing = [name for name in names or [] if name not in listed]
        if missing:
            raise HM2BPError(f"job {job_id} has no artifact {', '.join(missing)} "
                             f"(it has: {', '.join(listed) or 'none'})")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in listed if names is None else names:
            if name in ("", ".", "..") or Path(name).name != name:
                raise HM2BPError(f"the server listed an artifact with an unsafe name: {name!r}")
            target, partial = out / name, out / f"{name}.part"
            try:
                with self._stream("GET", f"{job_path}/artifacts/{quote(name, safe='')}") as response, \
                        partial.open("wb") as handle:
                    for block in response.iter_bytes(1 << 20):
                        handle.write(block)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(target)
            written.append(target)
        return written

    # -- sweeps, webhooks, workers ----------------------------------------------------------------

    def submit_sweep(self, spec: Mapping[str, Any], dataset: str, grid: Mapping[str, list[Any]],
                     name: str | None = None, webhook_url: str | None = None,
                     tags: list[str] | None = None, pruner: str | None = None) -> dict[str, Any]:
        """Queue one job per point of ``grid`` (field path -> values, e.g. ``{"training.lr": [1e-3,
        5e-4]}``) over the base ``spec`` (with ``pruner``, points that fall behind after an epoch end
        ``pruned``); returns the sweep record ``{id, state, counts, jobs, best, ...}``."""
        body: dict[str, Any] = {"dataset": dataset, "spec": dict(spec), "grid": {k: list(v) for k, v in grid.items()}}
        for key, value in (("name", name), ("webhook_url", webhook_url), ("tags", tags), ("pruner", pruner)):
            if value:
                body[key] = value
        return self._request("POST", "/v1/sweeps", json=body).json()

    def submit_search(self, spec: Mapping[str, Any], dataset: str, space: Mapping[str, Mapping[str, Any]],
                      budget: int, *, method: str = "tpe", max_concurrent: int = 2, objective: str = "test_accuracy",
                      pruner: str = "median", prune_startup_trials: int = 2, seed: int = 0, name: str | None = None,
                      webhook_url: str | None = None, tags: list[str] | None = None) -> dict[str, Any]:
        """Start a search of ``budget`` trials (``method`` ``random`` or ``tpe``, Optuna's samplers)
        over ``space`` (field path -> ``{"low", "high", "log"?, "integer"?}`` or ``{"choices": [...]}``),
        at most ``max_concurrent`` at once, maximizing ``objective``; with ``pruner`` ``median`` or
        ``halving`` a trial that falls behind after an epoch ends ``pruned``. The sweep record."""
        body: dict[str, Any] = {"dataset": dataset, "spec": dict(spec), "method": method,
                                "space": {k: dict(v) for k, v in space.items()}, "budget": budget,
                                "max_concurrent": max_concurrent, "objective": objective, "pruner": pruner,
                                "prune_startup_trials": prune_startup_trials, "seed": seed}
        for key, value in (("name", name), ("webhook_url", webhook_url), ("tags", tags)):
            if value:
                body[key] = value
        return self._request("POST", "/v1/sweeps", json=body).json()

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """The sweep now: its jobs' states and accuracies, and ``best`` once every job has ended."""
        return self._request("GET", f"/v1/sweeps/{quote(sweep_id, safe='')}").json()

    def sweeps(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """The caller's sweeps, newest first."""
        return self._request("GET", "/v1/sweeps", params={"limit": limit, "offset": offset}).json()["items"]

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        """Make no more trials and cancel every job of the sweep that has not ended; the sweep record."""
        return self._request("POST", f"/v1/sweeps/{quote(sweep_id, safe='')}/cancel").json()

    def wait_sweep(self, sweep_id: str, timeout: float | None = None, poll_seconds: float = 2.0,
                   on_change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until every job of the sweep has ended (a search: its budget used); the final record (with ``best``).
        ``on_change`` sees the record whenever its job counts change. ``WaitTimeout`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        while True:
            record = self.sweep(sweep_id)
            if on_change is not None and record["counts"] != seen:
                seen = record["counts"]
                on_change(record)
            if record["state"] == "done":
                return record
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"sweep {sweep_id} has not ended within the time allowed")
            time.sleep(poll_seconds if deadline is None else max(0.0, min(poll_seconds, deadline - time.monotonic())))

    def webhook_secret(self) -> str:
        """The secret that signs your webhook deliveries (check them with ``verify_webhook``)."""
        return self._request("GET", "/v1/webhook-secret").json()["secret"]

    def rotate_webhook_secret(self) -> str:
        """Replace the webhook secret; returns the new one."""
        return self._request("POST", "/v1/webhook-secret/rotate").json()["secret"]

    def webhook_deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The job's webhook deliveries: ``{id, event, url, state, attempts, last_status, ...}``."""
        return self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}/webhooks").json()["items"]

    def workers(self) -> list[dict[str, Any]]:
        """The live workers: ``{name, host, queues, device, jobs, last_seen, ...}``."""
        return self._request("GET", "/v1/workers").json()["items"]

    # -- following a job ------------------------------------------------------------------------

    def events(self, job_id: str, after: int | None = None) -> Iterator[dict[str, Any]]:
        """The job's events with id > ``after`` (all when None): history, then live, ending with
        the final ``state`` event (at once if that lies at or before ``after``). Reconnects with
        ``?after=`` on a dropped connection; ``StreamUnavailable`` when it cannot."""
        return self._follow(job_id, after or 0, deadline=None)

    def wait(self, job_id: str, timeout: float | None = None,
             on_event: Callable[[dict[str, Any]], None] | None = None, poll_seconds: float = 2.0,
             after: int = 0) -> dict[str, Any]:
        """Block until the job ends and return its final record; ``on_event`` sees each event
        with id > ``after`` (from the first by default; a resumed job's waiter passes the id of
        the last event before it resumed). ``WaitTimeout`` after ``timeout`` seconds. Without an
        event stream it polls the job every ``poll_seconds`` (``on_event`` then sees nothing)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for event in self._follow(job_id, after, deadline):
                if on_event is not None:
                    on_event(event)
                if is_final(event):
                    return self.job(job_id)
                self._check_deadline(job_id, deadline)
        except StreamUnavailable:
            pass
        while True:
            job = self.job(job_id)
            if job["state"] in TERMINAL_STATES:
                return job
            self._check_deadline(job_id, deadline)
            time.sleep(poll_seconds if deadline is None else max(0.0, min(poll_seconds, deadline - time.monotonic())))

    @staticmethod
    def _check_deadline(job_id: str, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"job {job_id} has not ended within the time allowed")

    def _follow(self, job_id: str, after: int, deadline: float | None) -> Iterator[dict[str, Any]]:
        failures = 0
        while True:
            received = 0
            try:
                for event in self._stream_once(job_id, after, deadline):
                    received += 1
                    failures = 0
                    after = event["id"]
                    yield event
                    if is_final(event):
                        return
                if not received and self.job(job_id)["state"] in TERMINAL_STATES:
                    return  # the final event lies at or before the cursor
                reason = "the server closed the stream before the final state"
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
            self._check_deadline(job_id, deadline)
            if failures == len(RECONNECT_DELAYS):
                raise StreamUnavailable(
                    f"lost the event stream of job {job_id} {failures + 1} times in a row: {reason}")
            pause = RECONNECT_DELAYS[failures]
            time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
            failures += 1

    def _stream_once(self, job_id: str, after: int, deadline: float | None) -> Iterator[dict[str, Any]]:
        """One connection to the job's SSE endpoint; yields its event envelopes."""
        idle = (STREAM_IDLE_SECONDS if deadline is None
                else min(STREAM_IDLE_SECONDS, max(deadline - time.monotonic(), 0.1)))
        timeout = httpx.Timeout(self._http.timeout.connect, read=idle)
        with httpx_sse.connect_sse(self._http, "GET", f"/v1/jobs/{quote(job_id, safe='')}/events",
                                   params={"after": after}, timeout=timeout) as source:
            _raise_for_status(source.response)
            try:
                for message in source.iter_sse():
                    if message.data:
                        yield json.loads(message.data)
            except httpx_sse.SSEError as exc:
                raise StreamUnavailable(f"{self.url} sent no event stream for job {job_id}: {exc}") from None
