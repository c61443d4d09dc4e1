"""`mlops demo`: what `make demo` runs."""

from __future__ import annotations

import click

from mlops_platform.errors import UserError


@click.command()
def demo() -> None:
    """Start the local tracking server, then train -> promote -> serve -> predict, end to end."""
    from mlops_platform.demo import run_demo

    try:
        run_demo()
    except UserError as error:
        raise click.ClickException(str(error)) from None
