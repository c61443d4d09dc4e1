"""`mlops runs export`: every run of an experiment to Parquet or CSV (mlops_platform.registry.export)."""

from __future__ import annotations

from pathlib import Path

import click

from mlops_platform.cli.registry import _TRACKING_URI


@click.command("export")
@click.option("--experiment", "-e", required=True, help="Experiment name or id.")
@click.option(
    "--format", "output_format", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Output file (default: runs-<experiment>.<format> in the current folder).",
)  # fmt: skip
@click.option("--filter", "filter_string", default="", help="MLflow filter, e.g. \"params.model = 'cnn'\".")
@click.option("--status", default="ANY", show_default=True, help="Only runs with this status, or ANY.")
@click.option(
    "--backend-store-uri", default=None,
    help="Read straight from this backend store (read-only SQL; far faster than the server at scale).",
)  # fmt: skip
@click.option("--page-size", type=click.IntRange(min=1), default=None, help="Runs per page.")
@_TRACKING_URI
def export_command(
    experiment: str,
    output_format: str,
    output: Path | None,
    filter_string: str,
    status: str,
    backend_store_uri: str | None,
    page_size: int | None,
    tracking_uri: str | None,
) -> None:
    """Export every run of an experiment, a column per metric, param and tag (paged, bounded memory)."""
    from mlops_platform.registry.export import export_runs

    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in experiment)
    path = output or Path(f"runs-{safe}.{output_format}")
    result = export_runs(
        experiment, path, output_format,  # type: ignore[arg-type]
        filter_string=filter_string, status=status, tracking_uri=tracking_uri,
        backend_store_uri=backend_store_uri, page_size=page_size,
    )  # fmt: skip
    click.echo(
        f"{result.runs} run(s), {len(result.columns)} columns, {result.pages} page(s) from the "
        f"{result.source} in {result.seconds:.1f} s -> {result.path}"
    )
