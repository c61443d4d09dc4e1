"""`mlops sweep worker` and `mlops sweep status` (`mlops sweep run` is the `sweep` job, from its config)."""

from __future__ import annotations

import click

_STORAGE_HELP = "Optuna storage URL (sqlite:///... or postgresql://...); empty: SQLite under MLOPS_HOME."


@click.command(help="Join a running study from any host: run its trials until its budget is spent.")
@click.option("--study", required=True, help="Name of the study (printed by `mlops sweep run`).")
@click.option("--storage", default="", show_default=True, help=_STORAGE_HELP)
def worker(study: str, storage: str) -> None:
    from mlops_platform.sweep.job import worker as run_worker

    run_worker(study, storage or None)


@click.command(help="Trials by state, the best so far, and the parent run's link.")
@click.option("--study", required=True, help="Name of the study.")
@click.option("--storage", default="", show_default=True, help=_STORAGE_HELP)
def status(study: str, storage: str) -> None:
    from mlops_platform.sweep.job import status as show_status

    show_status(study, storage or None)
