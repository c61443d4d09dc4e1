"""`mlops server start|stop|status|logs`: the local tracking server."""

from __future__ import annotations

from pathlib import Path

import click

from mlops_platform.redaction import redact
from mlops_platform.server import LocalTrackingServer, ServerConfig
from mlops_platform.settings import mlops_home

_DEFAULTS = ServerConfig(home=Path("."))


@click.group()
def server() -> None:
    """The local tracking server (state, database and artifacts under $MLOPS_HOME, default ./.mlops)."""


@server.command()
# Options that can carry a password also come from the environment (MLflow's own variable names), so a
# password need not appear on a command line; S3 endpoint and keys are read by MLflow's S3 client from
# MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
@click.option(
    "--backend-store-uri",
    envvar="MLFLOW_BACKEND_STORE_URI",
    default=None,
    help="Default: sqlite:///$MLOPS_HOME/mlflow.db.",
)
@click.option(
    "--artifacts-destination",
    envvar="MLFLOW_ARTIFACTS_DESTINATION",
    default=None,
    help="Default: $MLOPS_HOME/artifacts; s3://bucket/prefix for S3 (MLFLOW_S3_ENDPOINT_URL for MinIO).",
)
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
    "--auth-database-uri",
    envvar="MLOPS_AUTH_DATABASE_URI",
    default=None,
    help="basic-auth's user store (default: SQLite in $MLOPS_HOME).",
)
@click.option(
    "--allowed-hosts",
    envvar="MLFLOW_SERVER_ALLOWED_HOSTS",
    default=None,
    help="Host names to accept besides localhost and private IPs, comma-separated; any port.",
)
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
    if foreground:
        LocalTrackingServer(config).run_in_foreground()
    url = LocalTrackingServer(config).start()
    click.echo(f"tracking server running at {url}")
    click.echo(f"  backend store: {redact(config.resolved_backend_store_uri)}")
    click.echo(f"  artifacts:     {redact(config.resolved_artifacts_destination)}")
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
    click.echo(f"  backend store: {redact(state['backend_store_uri'])}")
    click.echo(f"  artifacts:     {redact(state['artifacts_destination'])}")


@server.command()
@click.option("-n", "--lines", default=40, show_default=True, type=int)
def logs(lines: int) -> None:
    """Print the last lines of the server's log."""
    click.echo(LocalTrackingServer(ServerConfig(home=mlops_home())).log_tail(lines))


@server.command("add-user")
@click.argument("username")
@click.option(
    "--read-model",
    "read_models",
    multiple=True,
    help="Registered model to grant READ on (repeatable): a serving account needs only this.",
)
@click.option("--tracking-uri", default=None, help="Default: MLFLOW_TRACKING_URI.")
def add_user(username: str, read_models: tuple[str, ...], tracking_uri: str | None) -> None:
    """Create USERNAME on a basic-auth server (or reset its password), as the admin.

    The new password comes from MLOPS_NEW_USER_PASSWORD, never from the command line; the admin logs in
    with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD.
    """
    import os

    from mlops_platform.accounts import ensure_user, grant
    from mlops_platform.settings import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    password = os.environ.get("MLOPS_NEW_USER_PASSWORD", "")
    if not password:
        raise click.ClickException("set the new user's password in MLOPS_NEW_USER_PASSWORD")
    created = ensure_user(uri, username, password)
    for model in read_models:
        grant(uri, username, "registered_model", model, "READ")
    click.echo(f"user {username} {'created' if created else 'exists; password updated'} on {redact(uri)}")
    for model in read_models:
        click.echo(f"  READ on registered model {model}")
