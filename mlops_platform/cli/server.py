"""`mlops server start|stop|status|logs`: the local tracking server."""

from __future__ import annotations

from pathlib import Path

import click

from mlops_platform.server import LocalTrackingServer, ServerConfig, ServerError
from mlops_platform.settings import mlops_home

_DEFAULTS = ServerConfig(home=Path("."))


@click.group()
def server() -> None:
    """The local tracking server (state, database and artifacts under $MLOPS_HOME, default ./.mlops)."""


@server.command()
@click.option("--backend-store-uri", default=None, help="Default: sqlite:///$MLOPS_HOME/mlflow.db.")
@click.option("--artifacts-destination", default=None, help="Default: $MLOPS_HOME/artifacts.")
@click.option("--host", default=_DEFAULTS.host, show_default=True)
@click.option("--port", default=_DEFAULTS.port, show_default=True, type=int)
@click.option("--workers", default=_DEFAULTS.workers, show_default=True, type=int)
@click.option(
    "--app-name",
    type=click.Choice(["basic-auth"]),
    default=None,
    help="basic-auth: require logins; the admin password comes from MLFLOW_AUTH_ADMIN_PASSWORD.",
)
@click.option(
    "--auth-database-uri", default=None, help="basic-auth's user store (default: SQLite in $MLOPS_HOME)."
)
@click.option("--allowed-hosts", default=None, help="Extra Host headers to accept, comma-separated.")
@click.option(
    "--foreground", is_flag=True, help="Run in the foreground (containers) instead of in the background."
)
def start(
    backend_store_uri: str | None,
    artifacts_destination: str | None,
    host: str,
    port: int,
    workers: int,
    app_name: str | None,
    auth_database_uri: str | None,
    allowed_hosts: str | None,
    foreground: bool,
):
    """Start `mlflow server` (migrations first) and wait until it is healthy."""
    config = ServerConfig(
        home=mlops_home(),
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        host=host,
        port=port,
        workers=workers,
        app_name=app_name,
        auth_database_uri=auth_database_uri,
        allowed_hosts=allowed_hosts,
    )
    try:
        if foreground:
            LocalTrackingServer(config).run_in_foreground()
        url = LocalTrackingServer(config).start()
    except ServerError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"tracking server running at {url}")
    click.echo(f"  backend store: {config.resolved_backend_store_uri}")
    click.echo(f"  artifacts:     {config.resolved_artifacts_destination}")
    click.echo(f"  log:           {config.home / 'server.log'}")
    click.echo(f"  use it:        export MLFLOW_TRACKING_URI={url}")


@server.command()
def stop() -> None:
    """Stop the server `mlops server start` started (and nothing else)."""
    if LocalTrackingServer(ServerConfig(home=mlops_home())).stop():
        click.echo("tracking server stopped")
    else:
        click.echo("no tracking server started from this MLOPS_HOME is running")


@server.command()
def status() -> None:
    """Say whether the server runs, where, and on which stores. Exit 1 when it does not run."""
    state = LocalTrackingServer(ServerConfig(home=mlops_home())).state()
    if state is None:
        click.echo("not running")
        raise SystemExit(1)
    click.echo(f"running at {state['url']} (pid {state['pid']})")
    click.echo(f"  backend store: {state['backend_store_uri']}")
    click.echo(f"  artifacts:     {state['artifacts_destination']}")


@server.command()
@click.option("-n", "--lines", default=40, show_default=True, type=int)
def logs(lines: int) -> None:
    """Print the last lines of the server's log."""
    click.echo(LocalTrackingServer(ServerConfig(home=mlops_home())).log_tail(lines))
