"""`mlops server start|stop|status|logs|add-user|backup|restore`: the local tracking server."""

from __future__ import annotations

from pathlib import Path

import click

from mlops_platform.cli.options import config_options
from mlops_platform.config.server import ServerStartConfig
from mlops_platform.redaction import redact
from mlops_platform.server import LocalTrackingServer, ServerConfig
from mlops_platform.settings import mlops_home


@click.group()
def server() -> None:
    """The local tracking server (state, database and artifacts under $MLOPS_HOME, default ./.mlops)."""


def _start(**values) -> None:
    options = ServerStartConfig.parse(values)
    config = ServerConfig(
        home=mlops_home(),
        **options.model_dump(exclude={"foreground"}),
    )
    if options.foreground:
        LocalTrackingServer(config).run_in_foreground()
    url = LocalTrackingServer(config).start()
    click.echo(f"tracking server running at {url}")
    click.echo(f"  backend store: {redact(config.resolved_backend_store_uri)}")
    click.echo(f"  artifacts:     {redact(config.resolved_artifacts_destination)}")
    click.echo(f"  log:           {config.home / 'server.log'}")
    click.echo(f"  use it:        export MLFLOW_TRACKING_URI={url}")


# Options generated from the config: names, defaults, help and environment variables live there.
start = click.Command(
    "start", callback=_start, params=config_options(ServerStartConfig), help=ServerStartConfig.__doc__
)
server.add_command(start)


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


# The stores' options of `mlops server start` (names, environment variables, help from its config).
_STORE_FIELDS = ("backend_store_uri", "artifacts_destination", "auth_database_uri")


def _store_options(command: click.Command) -> click.Command:
    command.params.extend(o for o in config_options(ServerStartConfig) if o.name in _STORE_FIELDS)
    return command


def _stores(backend_store_uri: str | None, artifacts_destination: str | None, auth_database_uri: str | None):
    from mlops_platform.backup import Stores

    config = ServerConfig(
        home=mlops_home(), backend_store_uri=backend_store_uri, artifacts_destination=artifacts_destination
    )
    auth = auth_database_uri or f"sqlite:///{config.home / 'basic_auth.db'}"
    return Stores(
        backend_store_uri=config.resolved_backend_store_uri,
        artifacts_destination=config.resolved_artifacts_destination,
        # Users kept in the backend store's own database are in its dump already.
        auth_database_uri=None if auth == config.resolved_backend_store_uri else auth,
    )


@_store_options
@server.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def backup(
    directory: Path,
    backend_store_uri: str | None,
    artifacts_destination: str | None,
    auth_database_uri: str | None,
) -> None:
    """Copy the server's stores into DIRECTORY (new or empty): the database with pg_dump or SQLite's
    backup API, the artifacts with boto3 or a file copy. The server may keep running.

    Passwords come from the store URIs (environment) or PGPASSWORD/~/.pgpass, never the command line.
    """
    from dataclasses import replace

    from mlops_platform.backup import backup as make_backup

    stores = _stores(backend_store_uri, artifacts_destination, auth_database_uri)
    if not auth_database_uri and stores.auth_database_uri:
        default_auth = Path(stores.auth_database_uri.removeprefix("sqlite:///"))
        if not default_auth.exists():  # no basic-auth on this server
            stores = replace(stores, auth_database_uri=None)
    manifest = make_backup(stores, directory)  # a BackupError is a UserError: one line, exit 1
    _echo_summary(f"backed up into {directory}", manifest)


@_store_options
@server.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def restore(
    directory: Path,
    backend_store_uri: str | None,
    artifacts_destination: str | None,
    auth_database_uri: str | None,
) -> None:
    """Restore the backup in DIRECTORY into an empty database and an empty artifact destination, then
    `mlops server start` on them. Refuses stores that already hold data."""
    from mlops_platform.backup import restore as restore_backup

    stores = _stores(backend_store_uri, artifacts_destination, auth_database_uri)
    manifest = restore_backup(directory, stores)
    _echo_summary(f"restored {directory}", manifest)
    click.echo(f"  into:          {redact(stores.backend_store_uri)}, {stores.artifacts_destination}")


def _echo_summary(headline: str, manifest: dict) -> None:
    click.echo(f"{headline} (taken {manifest['created_at']}, MLflow {manifest['mlflow_version']})")
    click.echo(f"  backend store: {manifest['store']['source']} -> {manifest['store']['file']}")
    if manifest.get("auth"):
        click.echo(f"  users:         {manifest['auth']['source']} -> {manifest['auth']['file']}")
    files = manifest["artifacts"]
    click.echo(f"  artifacts:     {files['source']}: {files['files']} files, {files['bytes']} bytes")
