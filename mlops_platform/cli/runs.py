"""`mlops runs ...`: commands over runs. Each command lives with the module it drives."""

from __future__ import annotations

import click

from mlops_platform.cli.export import export_command
from mlops_platform.cli.registry import search_command
from mlops_platform.cli.tracking import reap


@click.group()
def runs() -> None:
    """Search, inspect and clean up runs."""


runs.add_command(search_command)
runs.add_command(export_command)
runs.add_command(reap)
