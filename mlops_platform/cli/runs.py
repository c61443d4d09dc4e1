"""`mlops runs ...`: commands over runs. Each command lives with the module it drives."""

from __future__ import annotations

import click


@click.group()
def runs() -> None:
    """Search, inspect and clean up runs."""
