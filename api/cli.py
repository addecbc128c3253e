"""The ``hm2bp`` command: the core's ``train``, ``evaluate`` and ``kernels build`` plus the service
commands ``serve``, ``worker``, ``migrate``, ``doctor`` and ``token create|revoke``, registered here so
the core stays free of service imports. This module is the one place that knows both the API and
the worker (it starts either); the ``worker`` command imports the workers' Celery app when it runs."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from hm2bp_core.cli import app

token_app = typer.Typer(no_args_is_help=True, help="Create and revoke API tokens.")
app.add_typer(token_app, name="token")


def _store(data_dir: str | None):
    """The service's store, found as the service finds it: HM2BP_DATABASE_URL, else the SQLite file
    of --data-dir / HM2BP_DATA_DIR, else of ./.hm2bp. Only a folder named that way (option or
    environment) gets a new database; with neither, a missing ./.hm2bp/hm2bp.db is refused: the
    command was run outside the folder where `hm2bp serve` runs (make run: the repository root),
    and a token minted into a new database would be refused by the running service."""
    from hm2bp_service.files import owner_only_files
    from hm2bp_service.settings import Settings
    from hm2bp_service.store import Store, migrate

    if data_dir is not None:
        os.environ["HM2BP_DATA_DIR"] = data_dir
    settings = Settings()
    named = data_dir is not None or "HM2BP_DATA_DIR" in os.environ or settings.database_url
    database = settings.sqlite_file
    if not named and not database.exists():
        typer.echo(f"error: no hm2bp database at {database.resolve()}. The service keeps it in its data folder "
                   "(HM2BP_DATA_DIR, default ./.hm2bp of the folder where `hm2bp serve` runs; `make run` runs "
                   "it in the repository root): run this command there, or pass --data-dir DIR (a new folder "
                   "gets a new database).", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"database: {settings.sqlalchemy_url.split('@')[-1]}", err=True)
    owner_only_files(settings)
    migrate(settings.sqlalchemy_url)
    return Store.from_url(settings.sqlalchemy_url)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    data_dir: Annotated[str | None, typer.Option(help="data folder (default: HM2BP_DATA_DIR or ./.hm2bp)")] = None,
    workers: Annotated[int, typer.Option(min=1, envvar="HM2BP_API_WORKERS",
                                         help="API processes (uvicorn workers) sharing the port")] = 1,
) -> None:
    """Run the training service: API, one worker, SQLite, and an embedded Redis unless HM2BP_REDIS_URL is set."""
    from .embedded import serve as run_service

    run_service(host, port, data_dir, api_workers=workers)


@app.command()
def worker(
    queue: Annotated[list[str] | None, typer.Option("--queue", "-Q", show_default="gpu",
                                                    help="queue to take jobs from: gpu (CUDA jobs) or cpu "
                                                    "(jobs whose spec asks for the CPU); repeat for both")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="jobs trained at once (one per GPU; keep 1 per worker)")] = 1,
    name: Annotated[str | None, typer.Option(help="node name, NAME@HOST (default: hm2bp-PID@HOST); "
                                                  "%h is the host")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Start a worker against the configured broker, database and artifact store (HM2BP_REDIS_URL,
    HM2BP_DATABASE_URL, HM2BP_ARTIFACTS_URL). It trains jobs from its queues, sweeps expired leases,
    sends webhooks, and announces itself and its device in GET /v1/workers. Stop it with SIGTERM:
    a job it was training is re-queued and resumes from its last checkpoint elsewhere."""
    from hm2bp_service.dispatch import QUEUES

    queues = sorted({q.strip() for option in (queue or ["gpu"]) for q in option.split(",") if q.strip()})
    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        typer.echo(f"error: unknown queue {', '.join(unknown) or '(none)'}; the queues are {', '.join(QUEUES)}",
                   err=True)
        raise typer.Exit(code=2)
    from hm2bp_service.settings import get_settings
    from hm2bp_service.store import migrate
    from worker.celery_app import app as celery_app  # builds the workers' app: only this command needs it

    migrate(get_settings().sqlalchemy_url)  # a no-op when the schema is current; a fresh database works at once
    celery_app.worker_main(["worker", "-Q", ",".join(queues), "--concurrency", str(concurrency),
                            "-n", name or f"hm2bp-{os.getpid()}@%h", "-l", loglevel,
                            "--without-gossip", "--without-mingle"])


@app.command()
def migrate() -> None:
    """Bring the configured database (HM2BP_DATABASE_URL, or the SQLite file of HM2BP_DATA_DIR) to the
    newest schema; a no-op when it is current. Deployments run this once before the API and workers."""
    from hm2bp_service.settings import get_settings
    from hm2bp_service.store import migrate as run_migrations

    url = get_settings().sqlalchemy_url
    run_migrations(url)
    typer.echo(f"database at the newest schema: {url.split('@')[-1]}")


@app.command()
def doctor(
    worker_name: Annotated[str | None, typer.Option("--worker", help="also check that the worker of this "
                                                       "node name (NAME@HOST) is live in GET /v1/workers")] = None,
) -> None:
    """Check this machine's set-up against the configured service, one line each: torch, the CPU
    kernels (built now if needed), the database and its schema, Redis, and optionally a worker's
    heartbeat. Exits 1 when a check fails (a container's health check, an image build)."""
    from hm2bp_service import doctor as checks

    failed = False
    for name, ok, detail in checks.run(worker_name):
        typer.echo(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        failed |= not ok
    if failed:
        raise typer.Exit(code=1)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="user name (created if new)")],
    data_dir: Annotated[str | None, typer.Option(help="data folder (default: HM2BP_DATA_DIR or ./.hm2bp)")] = None,
) -> None:
    """Mint an API token for USER; it is printed once, alone on the last line."""
    from .auth import create_token

    typer.echo(create_token(_store(data_dir), user))


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="the token to revoke")],
    data_dir: Annotated[str | None, typer.Option(help="data folder (default: HM2BP_DATA_DIR or ./.hm2bp)")] = None,
) -> None:
    """Revoke a token: requests made with it are refused (401) from now on."""
    from .auth import hash_token

    if not _store(data_dir).users.revoke_token(hash_token(token)):
        typer.echo("error: no such live token", err=True)
        raise typer.Exit(code=1)
    typer.echo("revoked")


from hm2bp_client.cli import register as _register_client  # noqa: E402

_register_client(app)
