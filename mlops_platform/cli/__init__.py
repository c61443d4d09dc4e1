"""The `mlops` command. Thin: every subcommand lives in its own module and is imported only when used,
so `mlops --help` starts without torch or mlflow.

Jobs (`mlops train torch`, `mlops promote`, ...) are generated from mlops_platform/entrypoints.py; other
commands are listed in COMMANDS as "module:attribute" of a click command or group.
"""

from __future__ import annotations

import importlib

import click

from mlops_platform import __version__
from mlops_platform.cli.jobs import job_command
from mlops_platform.entrypoints import ENTRY_POINTS
from mlops_platform.errors import UserError
from mlops_platform.redaction import redact

# Subcommands that are not jobs: name -> "module:click object".
COMMANDS: dict[str, str] = {
    "server": "mlops_platform.cli.server:server",
    "runs": "mlops_platform.cli.runs:runs",
    "sync": "mlops_platform.cli.tracking:sync",
    "demo": "mlops_platform.cli.demo:demo",
    "registry": "mlops_platform.cli.registry:registry",
    "serve": "mlops_platform.cli.serving:serve",
    "predict": "mlops_platform.cli.serving:predict",
    "skew": "mlops_platform.cli.skew:skew",
}

# Commands inside a job group that are not jobs themselves: group word -> {name: "module:click object"}.
GROUP_COMMANDS: dict[str, dict[str, str]] = {
    "sweep": {
        "worker": "mlops_platform.cli.sweep:worker",
        "status": "mlops_platform.cli.sweep:status",
    },
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            module_name, _, attribute = self.lazy_commands[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module_name), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


class CommandLine(LazyGroup):
    """The root group: the one place where a UserError (bad input, a refused request; errors.py) becomes
    a one-line message (passwords in URIs masked) and exit status 1, for every subcommand."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise click.ClickException(redact(str(error))) from None


@click.group(
    cls=CommandLine, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="mlops")
def cli() -> None:
    """Train, track, promote and serve models on a self-hosted MLflow stack.

    The tracking server is MLFLOW_TRACKING_URI when set, else the one `mlops server start` runs.
    """


def _add_job_commands(root: click.Group) -> None:
    for entry in ENTRY_POINTS:
        group = root
        for word in entry.cli_path[:-1]:
            sub = group.commands.get(word)
            if sub is None:
                sub = LazyGroup(
                    word, help=f"{word.capitalize()} jobs.", lazy_commands=GROUP_COMMANDS.get(word)
                )
                group.add_command(sub)
            group = sub
        group.add_command(job_command(entry), entry.cli_path[-1])


_add_job_commands(cli)


def main() -> None:
    """Run the command; a login or permission the server refuses is one line and exit 1, no traceback."""
    from mlops_platform.errors import access_denied_status, describe_access_denied

    try:
        cli(prog_name="mlops")
    except Exception as error:
        status = access_denied_status(error)
        if status is None:
            raise
        from mlops_platform.redaction import redact
        from mlops_platform.settings import resolve_tracking_uri

        click.echo(f"Error: {redact(describe_access_denied(status, resolve_tracking_uri()))}", err=True)
        raise SystemExit(1) from None
