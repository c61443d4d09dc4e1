"""`mlops demo`: what `make demo` runs."""

from __future__ import annotations

from dataclasses import replace

import click

from mlops_platform.demo_config import DemoConfig

_DEFAULTS = DemoConfig()


@click.command()
@click.option("--port", default=_DEFAULTS.tracking_port, show_default=True, help="Tracking server port.")
@click.option("--serve-port", default=_DEFAULTS.serve_port, show_default=True, help="Model server port.")
@click.option("--epochs", default=_DEFAULTS.epochs, show_default=True, help="Epochs of the main job.")
def demo(port: int, serve_port: int, epochs: int) -> None:
    """Start the local tracking server, then train -> promote -> serve -> predict, end to end."""
    from mlops_platform.demo import run_demo

    run_demo(replace(_DEFAULTS, tracking_port=port, serve_port=serve_port, epochs=epochs))
