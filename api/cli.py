"""The ``hm2bp`` command: the core's ``train`` and ``evaluate`` plus the service commands
``serve``, ``worker`` and ``token create|revoke``, registered here so the core stays free of service imports."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from hm2bp_core.cli import app

token_app = typer.Typer(no_args_is_help=True, help="Create and revoke API tokens.")
app.add_typer(token_app, name="token")


def _store(data_dir: Optional[str]):
    from worker.settings import Settings
    from worker.store import JobStore, migrate

    if data_dir is not None:
        os.environ["HM2BP_DATA_DIR"] = data_dir
    settings = Settings()
    migrate(settings.sqlalchemy_url)
    return JobStore.from_url(settings.sqlalchemy_url)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    data_dir: Annotated[Optional[str], typer.Option(help="data folder (default: HM2BP_DATA_DIR or ./.hm2bp)")] = None,
    workers: Annotated[int, typer.Option(min=1, envvar="HM2BP_API_WORKERS",
                                         help="API processes (uvicorn workers) sharing the port")] = 1,
) -> None:
    """Run the training service: API, one worker, SQLite, and an embedded Redis unless HM2BP_REDIS_URL is set."""
    from .embedded import serve as run_service

    run_service(host, port, data_dir, api_workers=workers)


@app.command()
def worker(
    queue: Annotated[list[str], typer.Option("--queue", "-Q", help="queue to take jobs from: gpu (CUDA jobs) or cpu "
                                             "(jobs whose spec asks for the CPU); repeat for both")] = ["gpu"],
    concurrency: Annotated[int, typer.Option(min=1, help="jobs trained at once (one per GPU; keep 1 per worker)")] = 1,
    name: Annotated[Optional[str], typer.Option(help="node name, NAME@HOST (default: hm2bp-PID@HOST); %h is the host")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Start a worker against the configured broker, database and artifact store (HM2BP_REDIS_URL,
    HM2BP_DATABASE_URL, HM2BP_ARTIFACTS_URL). It trains jobs from its queues, sweeps expired leases,
    sends webhooks, and announces itself and its device in GET /v1/workers. Stop it with SIGTERM:
    a job it was training is re-queued and resumes from its last checkpoint elsewhere."""
    from worker.celery_app import QUEUES

    queues = sorted({q.strip() for option in queue for q in option.split(",") if q.strip()})
    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        typer.echo(f"error: unknown queue {', '.join(unknown) or '(none)'}; the queues are {', '.join(QUEUES)}", err=True)
        raise typer.Exit(code=2)
    from worker.celery_app import app as celery_app
    from worker.settings import get_settings
    from worker.store import migrate

    migrate(get_settings().sqlalchemy_url)  # a no-op when the schema is current; a fresh database works at once
    celery_app.worker_main(["worker", "-Q", ",".join(queues), "--concurrency", str(concurrency),
                            "-n", name or f"hm2bp-{os.getpid()}@%h", "-l", loglevel,
                            "--without-gossip", "--without-mingle"])


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="user name (created if new)")],
    data_dir: Annotated[Optional[str], typer.Option(help="data folder (default: HM2BP_DATA_DIR or ./.hm2bp)")] = None,
) -> None:
    """Mint an API token for USER; it is printed once, alone on the last line."""
    from .auth import create_token

    typer.echo(create_token(_store(data_dir), user))


@token_app.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(help="the token to revoke")],
    data_dir: Annotated[Optional[str], typer.Option(help="data folder (default: HM2BP_DATA_DIR or ./.hm2bp)")] = None,
) -> None:
    """Revoke a token: requests made with it are refused (401) from now on."""
    from .auth import hash_token

    if not _store(data_dir).revoke_token(hash_token(token)):
        typer.echo("error: no such live token", err=True)
        raise typer.Exit(code=1)
    typer.echo("revoked")


from hm2bp_client.cli import register as _register_client  # noqa: E402
_register_client(app)
