"""The ``hm2bp`` command: the core's ``train`` and ``evaluate`` plus the service commands
``serve`` and ``token create|revoke``, registered here so the core stays free of service imports."""

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
) -> None:
    """Run the training service: API, one worker, SQLite, and an embedded Redis unless HM2BP_REDIS_URL is set."""
    from .embedded import serve as run_service

    run_service(host, port, data_dir)


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
