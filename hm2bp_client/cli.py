"""Client commands of ``hm2bp``: ``submit``, ``jobs``, ``status``, ``logs``, ``cancel``, ``resume``,
``download``, ``datasets upload|list|rm``, ``sweep``, ``workers`` and ``webhook-secret``, registered
on the main app by ``register`` (called from ``api.cli``).

Every command takes ``--url`` and ``--token`` (else ``HM2BP_URL`` / ``HM2BP_TOKEN``, else
``~/.config/hm2bp/config.toml``). Results go to stdout as JSON, progress to stderr. Exit codes of
the commands that follow a job to its end (``submit --wait``, ``logs -f``): 0 succeeded, 1 failed,
2 cancelled; every command exits 3 on a client or network error, with the reason on stderr, and
130 on Ctrl-C.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from hm2bp_service.states import JobState

from .client import Client
from .errors import HM2BPError

EXIT_BY_STATE = {JobState.SUCCEEDED: 0, JobState.FAILED: 1, JobState.CANCELLED: 2, JobState.PRUNED: 2}
CLIENT_ERROR_EXIT = 3
INTERRUPTED_EXIT = 130  # Ctrl-C, as a shell reports SIGINT
NIR_ARTIFACT = "model.nir"  # a succeeded job's network in NIR (hm2bp_core.nir_export)
PROGRESS_PERCENT = 5.0  # off a terminal, a progress line each 5 % of the job...
PROGRESS_SECONDS = 30.0  # ...or each 30 s, whichever comes first

UrlOption = Annotated[str | None, typer.Option(
    "--url", help="service URL (default: HM2BP_URL, the config file, http://127.0.0.1:8000)", show_default=False)]
TokenOption = Annotated[str | None, typer.Option(
    "--token", help="API token (default: HM2BP_TOKEN or the config file)", show_default=False)]
JobArgument = Annotated[str, typer.Argument(help="job id (job_...)")]


@contextmanager
def _session(url: str | None, token: str | None) -> Iterator[Client]:
    """A client for one command; an ``HM2BPError`` ends the command with exit code 3."""
    try:
        with Client(url, token) as client:
            yield client
    except HM2BPError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(CLIENT_ERROR_EXIT) from None
    except KeyboardInterrupt:  # not click's exit code 1, which would read as "failed"
        raise typer.Exit(INTERRUPTED_EXIT) from None


def read_spec(path: Path) -> dict[str, Any]:
    """A spec file as a mapping: JSON, or YAML for any other suffix (YAML reads JSON too)."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise HM2BPError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise HM2BPError(f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise HM2BPError(f"{path}: a training spec must be a mapping (JSON object / YAML mapping)")
    return data


def format_event(event: dict[str, Any]) -> str | None:
    """One human line for an event, or None for events shown otherwise (``epoch`` rows are
    followed by a ``log`` line that says the same)."""
    data = event["data"]
    if event["type"] == "state":
        line = f"state: {data.get('state')}" + (f" ({data['reason']})" if data.get("reason") else "")
        error = data.get("error") or {}
        return line + "".join(f"\n  {tail}" for tail in error.get("log_tail", [])[-5:])
    if event["type"] == "progress":
        return (f"epoch {data.get('epoch')}/{data.get('epochs')} step {data.get('step')}/{data.get('steps')}: "
                f"loss {data.get('loss', float('nan')):.4g}, {data.get('samples_per_sec', 0):.0f} samples/s, "
                f"ETA {data.get('eta_seconds', 0):.0f} s")
    if event["type"] == "log":
        return str(data.get("message", ""))
    return None


class EventPrinter:
    """Prints a job's events as ``format_event`` lines. On a terminal every progress event is
    shown; elsewhere (a log file, a Slurm output, a pipe) at a bounded rate: the first, then one
    each PROGRESS_PERCENT of the whole job or PROGRESS_SECONDS, whichever comes first, and the
    last of each epoch. State and log lines are always printed."""

    def __init__(self, err: bool, interactive: bool | None = None):
        self.err = err
        stream = sys.stderr if err else sys.stdout
        self.interactive = stream.isatty() if interactive is None else interactive
        self._shown_at: float | None = None
        self._shown_fraction = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        if event["type"] == "progress" and not self.interactive and not self._due(event["data"]):
            return
        line = format_event(event)
        if line is not None:
            typer.echo(line, err=self.err)

    def _due(self, data: dict[str, Any]) -> bool:
        epochs, steps = max(int(data.get("epochs") or 1), 1), max(int(data.get("steps") or 1), 1)
        step = int(data.get("step") or 0)
        fraction = (int(data.get("epoch") or 1) - 1 + step / steps) / epochs
        now = time.monotonic()
        if (self._shown_at is not None and step < steps and fraction - self._shown_fraction < PROGRESS_PERCENT / 100
                and now - self._shown_at < PROGRESS_SECONDS):
            return False
        self._shown_at, self._shown_fraction = now, fraction
        return True


def _summary(job_id: str | None, job: dict[str, Any] | None, error: str | None = None) -> str:
    """The last line of ``submit --wait``: ``{"id", "state", "best_test_accuracy"}`` (+ ``error``)."""
    line = {"id": job_id, "state": job["state"] if job else None,
            "best_test_accuracy": ((job or {}).get("metrics") or {}).get("best_test_accuracy")}
    if error is not None:
        line["error"] = error
    return json.dumps(line)


def set_fields(spec: dict[str, Any], options: list[str]) -> dict[str, Any]:
    """``spec`` with each ``FIELD=VALUE`` of ``options`` set (``training.epochs=5``,
    ``network.layers[0].units=400``); values read as JSON where they are JSON, else as text.
    The service validates the result (a 422 names a field that does not exist)."""
    import copy

    result = copy.deepcopy(spec)
    for option in options:
        key, sep, text = option.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HM2BPError(f"--set {option!r}: expected FIELD=VALUE (e.g. training.epochs=5)")
        parts = [part for piece in key.replace("]", "").split(".") for part in piece.split("[")]
        target: Any = result
        for here, part in enumerate(parts):
            last = here == len(parts) - 1
            value = _grid_value(text.strip()) if last else None
            if isinstance(target, list):
                if not part.lstrip("-").isdigit() or not -len(target) <= int(part) < len(target):
                    raise HM2BPError(f"--set {key}: {part!r} is not an index of the {len(target)} items there")
                if last:
                    target[int(part)] = value
                else:
                    target = target[int(part)]
            elif isinstance(target, dict):
                if last:
                    target[part] = value
                else:
                    target = target.setdefault(part, [] if parts[here + 1].isdigit() else {})
            else:
                raise HM2BPError(f"--set {key}: {'.'.join(parts[:here])} is a value, not a section")
    return result


def _dataset_ref(client: Client, data: str) -> str:
    """``--data``: a local file is uploaded first (or found uploaded before); its id."""
    if data.startswith("builtin:") or not Path(data).is_file():
        return data
    record = client.upload_dataset(data)
    if record.get("duplicate"):
        typer.echo(f"{data} was uploaded before as {record['id']} ({record['name']!r}); using that", err=True)
    else:
        typer.echo(f"uploaded {data} as {record['id']}", err=True)
    return record["id"]


def submit(
    spec: Annotated[Path, typer.Argument(help="training spec file (JSON or YAML)")],
    data: Annotated[str, typer.Option(help="builtin:NAME, an uploaded dataset's id (ds_...), "
                                           "or a local file to upload")],
    wait: Annotated[bool, typer.Option("--wait", help="follow the job to its end; "
                                                      "exit 0/1/2 for succeeded/failed/cancelled")] = False,
    name: Annotated[str | None, typer.Option(help="job name")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="FIELD=VALUE over the spec file (repeat), "
                                                   "e.g. --set training.epochs=5 --set network.layers[0].units=400")]
    = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="a tag for the job (repeat for more)")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="POST a signed JSON message there when the job ends "
                                                    "(check it with hm2bp_client.verify_webhook)")] = None,
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up (exit 3) after this many seconds")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a training job; prints {"id", "state"}.

    With --wait it follows the job: progress on stderr, and the last line on stdout is
    {"id", "state", "best_test_accuracy"}; exit 0 succeeded, 1 failed, 2 cancelled (or pruned by its
    search), 3 client error.
    """
    job_id = None
    try:
        with Client(url, token) as client:
            body = set_fields(read_spec(spec), set_ or [])
            dataset = _dataset_ref(client, data)
            job = client.submit(body, dataset, name=name, tags=tag or None, webhook_url=webhook_url)
            job_id = job["id"]
            if not wait:
                typer.echo(json.dumps({"id": job_id, "state": job["state"]}))
                return
            typer.echo(f"submitted {job_id}", err=True)
            final = client.wait(job_id, timeout=timeout, on_event=EventPrinter(err=True))
    except HM2BPError as exc:
        typer.echo(f"error: {exc}", err=True)
        if wait:
            typer.echo(_summary(job_id, None, str(exc)))
        raise typer.Exit(CLIENT_ERROR_EXIT) from None
    except KeyboardInterrupt:  # the job goes on; not click's exit code 1, which would read as "failed"
        raise typer.Exit(INTERRUPTED_EXIT) from None
    typer.echo(_summary(job_id, final))
    raise typer.Exit(EXIT_BY_STATE[final["state"]])


def status(job: JobArgument, url: UrlOption = None, token: TokenOption = None) -> None:
    """Print the job's record (state, progress, metrics, error...) as JSON."""
    with _session(url, token) as client:
        typer.echo(json.dumps(client.job(job), indent=2))


def logs(
    job: JobArgument,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="follow progress and logs until the job ends; "
                                         "exit 0/1/2 for succeeded/failed/cancelled")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print the job's log; with -f, follow it to the end.

    -f prints state changes, progress and log lines as they happen and ends at the final state
    (exit 0 succeeded, 1 failed, 2 cancelled).
    """
    with _session(url, token) as client:
        if not follow:
            for line in history_lines(client, job):
                typer.echo(line)
            return
        show = EventPrinter(err=False)
        for event in client.events(job):
            show(event)
        state = client.job(job)["state"]
    raise typer.Exit(EXIT_BY_STATE[state])


def history_lines(client: Client, job_id: str) -> list[str]:
    """The job's log so far with its state changes among the lines, in time order, as ``logs -f``
    shows them (``state: failed (the reason)``), and a failed job's error message last."""
    transitions = client.metrics(job_id)["transitions"]
    entries = [(t["at"], 0, format_event({"type": "state", "data": {"state": t["to_state"], "reason": t["reason"]}}))
               for t in transitions]
    entries += [(line["at"], 1, line["message"]) for line in client.logs(job_id)]
    lines = [text for _, _, text in sorted(entries, key=lambda entry: (_instant(entry[0]), entry[1]))]
    error = client.job(job_id).get("error")
    if error and error.get("message") not in (transitions[-1]["reason"] if transitions else None,):
        lines.append(f"error ({error.get('reason')}): {error.get('message')}")
    return [line for line in lines if line is not None]


def _instant(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def cancel(job: JobArgument, url: UrlOption = None, token: TokenOption = None) -> None:
    """Cancel the job; prints {"id", "state"} (cancelling while the run stops)."""
    with _session(url, token) as client:
        record = client.cancel(job)
    typer.echo(json.dumps({"id": record["id"], "state": record["state"]}))


def download(
    job: JobArgument,
    out: Annotated[Path | None, typer.Option(help="folder to write into (default: ./JOB)")] = None,
    nir: Annotated[bool, typer.Option(
        "--nir", help="only the NIR export of the network, model.nir (docs/nir.md)")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Download the job's artifacts (model.safetensors, spec.json, metrics.json, ...); prints each path."""
    with _session(url, token) as client:
        for path in client.download(job, out or Path(job), names=[NIR_ARTIFACT] if nir else None):
            typer.echo(str(path))


def datasets_upload(
    file: Annotated[Path, typer.Argument(help=".npz (x_train, y_train, x_test, y_test) or a zip of IDX files")],
    name: Annotated[str | None, typer.Option(help="dataset name (default: the file name)")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Upload a dataset; prints its record (its id is what `submit --data` takes).

    The service keeps one record per file: uploading a file it already has (under any name)
    stores nothing and returns the earlier record, with its first name and "duplicate": true, and
    says so on stderr; `hm2bp datasets rm ID` first to upload it again under another name."""
    with _session(url, token) as client:
        record = client.upload_dataset(file, name=name)
        if record.get("duplicate"):
            typer.echo(f"note: {file} was uploaded before as {record['id']} ({record['name']!r}); nothing was "
                       f"stored again and that record is kept (to rename it: hm2bp datasets rm {record['id']}, "
                       "then upload again)", err=True)
        typer.echo(json.dumps(record, indent=2))


def datasets_rm(
    dataset: Annotated[list[str], typer.Argument(help="uploaded dataset id(s), ds_...")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete uploaded datasets (refused while a job that has not ended uses one); prints each id."""
    with _session(url, token) as client:
        for dataset_id in dataset:
            client.delete_dataset(dataset_id)
            typer.echo(f"deleted {dataset_id}")


def jobs(
    state: Annotated[str | None, typer.Option(help="only jobs in this state (queued, running, succeeded, ...)")]
    = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="the job records as a JSON list")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """List your jobs, newest first, one line each: id, state, progress or best test accuracy,
    dataset, name, tags, created."""
    if state is not None and state not in {s.value for s in JobState}:
        typer.echo(f"error: --state {state!r}: one of {', '.join(s.value for s in JobState)}", err=True)
        raise typer.Exit(CLIENT_ERROR_EXIT)
    with _session(url, token) as client:
        records = client.jobs(state=state, limit=limit)
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    for job in records:
        typer.echo("\t".join([job["id"], job["state"], _job_result(job), job["dataset"], job["name"],
                              ",".join(job.get("tags") or []) or "-", job["created_at"][:19]]))


def _job_result(job: dict[str, Any]) -> str:
    best = (job.get("metrics") or {}).get("best_test_accuracy")
    if best is not None:
        return f"best {best:.4f}"
    progress = job.get("progress") or {}
    if job["state"] in ("running", "cancelling") and progress:
        return f"epoch {progress.get('epoch')}/{progress.get('epochs')}"
    return "-"


def resume(
    job: JobArgument,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job to its end; "
                                                      "exit 0/1/2 for succeeded/failed/cancelled")] = False,
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up (exit 3) after this many seconds")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Queue a cancelled or failed job again (same id): it continues from its last checkpoint.
    Prints {"id", "state"}; with --wait it follows the job like `submit --wait`."""
    with _session(url, token) as client:
        # the end of its history so far (an ended job's stream ends there): --wait shows only what follows
        seen = max((event["id"] for event in client.events(job)), default=0) if wait else 0
        record = client.resume(job)
        if not wait:
            typer.echo(json.dumps({"id": record["id"], "state": record["state"]}))
            return
        typer.echo(f"resumed {job}", err=True)
        final = client.wait(job, timeout=timeout, on_event=EventPrinter(err=True), after=seen)
    typer.echo(_summary(job, final))
    raise typer.Exit(EXIT_BY_STATE[final["state"]])


def datasets_list(url: UrlOption = None, token: TokenOption = None) -> None:
    """List the datasets a job may name, one line each: id, kind, sample shape, classes, train/test
    sizes, and for a built-in not on the service yet, what its first job does or how to provide it."""
    with _session(url, token) as client:
        for item in client.datasets():
            shape = "x".join(map(str, item["input_shape"])) + (
                f" x {item['time_steps']} steps" if item.get("time_steps") else "")
            line = (f"{item['id']}\t{item['name']}\t{item['kind']} {shape}\t{item['num_classes']} classes\t"
                    f"{item['num_train']}/{item['num_test']}")
            typer.echo(line + (f"\t({item['note']})" if item.get("note") else ""))


def parse_grid(options: list[str]) -> dict[str, list[Any]]:
    """``["training.lr=1e-3,5e-4", "network.layers[0].units=[400, 800]"]`` -> the grid mapping.
    Each value is read as JSON where it is JSON (numbers, true, null, "text") and as text
    otherwise; a value list in brackets is read as one JSON list."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        key, sep, values = option.partition("=")
        key, values = key.strip(), values.strip()
        if not sep or not key or not values:
            raise HM2BPError(f"--grid {option!r}: expected FIELD=V1,V2,... (e.g. training.lr=1e-3,5e-4)")
        if values.startswith("["):
            try:
                parsed = json.loads(values)
            except ValueError as exc:
                raise HM2BPError(f"--grid {option!r}: the bracketed values are not a JSON list: {exc}") from None
            if not isinstance(parsed, list) or not parsed:
                raise HM2BPError(f"--grid {option!r}: expected a non-empty JSON list")
        else:
            parsed = [_grid_value(item.strip()) for item in values.split(",")]
        if key in grid:
            raise HM2BPError(f"--grid {key} is given twice")
        grid[key] = parsed
    if not grid:
        raise HM2BPError("give at least one --grid FIELD=V1,V2,...")
    return grid


def _grid_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_space(ranges: list[str], choices: list[str]) -> dict[str, dict[str, Any]]:
    """``--range FIELD=LOW:HIGH[:log][:int]`` and ``--choice FIELD=V1,V2,...`` as a search space."""
    space: dict[str, dict[str, Any]] = {}
    for option in ranges:
        key, _, text = option.partition("=")
        parts = text.split(":")
        flags = set(parts[2:])
        try:
            low, high = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise HM2BPError(f"--range {option!r}: expected FIELD=LOW:HIGH[:log][:int] (e.g. "
                             "training.lr=1e-4:1e-2:log)") from None
        if not key or flags - {"log", "int"}:
            raise HM2BPError(f"--range {option!r}: expected FIELD=LOW:HIGH[:log][:int]")
        space[key] = {"low": low, "high": high, "log": "log" in flags, "integer": "int" in flags}
    for option in choices:
        key, _, text = option.partition("=")
        if not key or not text:
            raise HM2BPError(f"--choice {option!r}: expected FIELD=V1,V2,...")
        space[key] = {"choices": [_grid_value(item.strip()) for item in text.split(",")]}
    return space


def _sweep_summary(record: dict[str, Any]) -> str:
    """The last line of ``sweep --wait``: ``{"id", "state", "counts", "best"}``."""
    return json.dumps({key: record.get(key) for key in ("id", "state", "counts", "best")})


def sweep(
    spec: Annotated[Path, typer.Argument(help="base training spec file (JSON or YAML)")],
    data: Annotated[str, typer.Option(help="builtin:NAME, an uploaded dataset's id (ds_...), "
                                           "or a local file to upload")],
    grid: Annotated[list[str] | None, typer.Option("--grid", help="FIELD=V1,V2,... (repeat for more fields; every "
                                                   "combination is one job), e.g. training.lr=1e-3,5e-4")] = None,
    method: Annotated[str, typer.Option(help="grid (--grid), or random or tpe (a search over --range/--choice "
                                        "with --budget trials)")] = "grid",
    range_: Annotated[list[str] | None, typer.Option("--range", help="search: FIELD=LOW:HIGH[:log][:int], e.g. "
                                                     "training.lr=1e-4:1e-2:log")] = None,
    choice: Annotated[list[str] | None, typer.Option("--choice", help="search: FIELD=V1,V2,...")] = None,
    budget: Annotated[int | None, typer.Option(help="search: trials in all")] = None,
    max_concurrent: Annotated[int, typer.Option(help="search: trials at once")] = 2,
    pruner: Annotated[str | None, typer.Option(help="none, median or halving: stop trials that fall behind "
                                               "after an epoch (default: median for a search)")] = None,
    objective: Annotated[str, typer.Option(help="test_accuracy or val_accuracy")] = "test_accuracy",
    prune_startup_trials: Annotated[int, typer.Option(help="median: finished trials before any is pruned")] = 2,
    seed: Annotated[int, typer.Option(help="search: the sampler's seed")] = 0,
    wait: Annotated[bool, typer.Option("--wait", help="wait for every job; exit 0 all succeeded, 1 one failed, "
                                       "2 one was cancelled")] = False,
    name: Annotated[str | None, typer.Option(help="sweep name")] = None,
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up (exit 3) after this many seconds")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a grid sweep (one job per combination of the --grid values over the base spec) or,
    with --method random|tpe, a search of --budget trials over --range and --choice fields whose
    bad trials are pruned after an epoch (state pruned).

    Prints the sweep record as JSON. With --wait it reports progress on stderr and ends with one
    JSON line {"id", "state", "counts", "best"} (best: the job with the best test accuracy);
    exit 0 when every job succeeded, 1 when one failed, 2 when one was cancelled, 3 client error.
    """
    with _session(url, token) as client:
        body = read_spec(spec)
        dataset = _dataset_ref(client, data)
        if method == "grid":
            record = client.submit_sweep(body, dataset, parse_grid(grid or []), name=name, pruner=pruner)
        else:
            if budget is None:
                raise HM2BPError(f"--method {method} needs --budget")
            record = client.submit_search(body, dataset, parse_space(range_ or [], choice or []), budget,
                                          method=method, max_concurrent=max_concurrent, objective=objective,
                                          pruner=pruner or "median", prune_startup_trials=prune_startup_trials,
                                          seed=seed, name=name)
        if not wait:
            typer.echo(json.dumps(record, indent=2))
            return
        typer.echo(f"submitted sweep {record['id']}: {len(record['jobs'])} jobs"
                   + (f" of {budget}" if method != "grid" else ""), err=True)

        def show(update: dict[str, Any]) -> None:
            typer.echo("jobs: " + ", ".join(f"{count} {state}" for state, count in sorted(update["counts"].items())),
                       err=True)

        final = client.wait_sweep(record["id"], timeout=timeout, on_change=show)
    typer.echo(_sweep_summary(final))
    counts = final["counts"]
    raise typer.Exit(1 if counts.get("failed") else 2 if counts.get("cancelled") else 0)


def workers(url: UrlOption = None, token: TokenOption = None) -> None:
    """List the live workers as JSON: name, host, queues, device and the jobs they run."""
    with _session(url, token) as client:
        typer.echo(json.dumps(client.workers(), indent=2))


def webhook_secret(
    rotate: Annotated[bool, typer.Option("--rotate", help="replace the secret with a new one")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Print the secret that signs your webhook deliveries (hm2bp_client.verify_webhook checks them)."""
    with _session(url, token) as client:
        typer.echo(client.rotate_webhook_secret() if rotate else client.webhook_secret())


def register(app: typer.Typer) -> None:
    """Add the client commands to ``app`` (the ``hm2bp`` command)."""
    for command in (submit, jobs, status, logs, cancel, resume, download, sweep, workers):
        app.command()(command)
    app.command("webhook-secret")(webhook_secret)
    datasets_app = typer.Typer(no_args_is_help=True, help="The service's datasets: list, upload, rm.")
    datasets_app.command("upload")(datasets_upload)
    datasets_app.command("list")(datasets_list)
    datasets_app.command("rm")(datasets_rm)
    app.add_typer(datasets_app, name="datasets")
