"""`mlops serve` (the scoring server) and `mlops predict` (one prediction from the shell)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlops_platform.cli.options import config_options
from mlops_platform.serving.config import ServeConfig


@click.pass_context
def _serve(ctx: click.Context, **options) -> None:
    if ctx.invoked_subcommand is not None:
        return  # `mlops serve report ...`: the subcommand does the work
    if not options.get("model_uri"):
        raise click.UsageError("Missing option '--model-uri'.")
    from mlops_platform.serving.app import serve as run_server

    run_server(ServeConfig.parse(options))


serve = click.Group(
    "serve",
    callback=_serve,
    params=config_options(ServeConfig, optional={"model_uri"}),
    invoke_without_command=True,
    help="Serve a model over REST with MLflow's scoring protocol (POST /invocations, /ping, /version, "
    "/health); with --challenger, shadow or canary a second model beside it.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@serve.command("report")
@click.option("--log", "log_path", default=None, help="The prediction log a server with --challenger wrote.")
@click.option(
    "--url",
    default=None,
    help="Or a running server (http://HOST:PORT): its /health counters, without the confusion matrix.",
)
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else the local server.")
@click.option(
    "--experiment", default="serving-reports", show_default=True, help="Experiment of the report run."
)
@click.option(
    "--no-mlflow", is_flag=True, default=False, help="Print the report only; log nothing to MLflow."
)
def report(
    log_path: str | None, url: str | None, tracking_uri: str | None, experiment: str, no_mlflow: bool
) -> None:
    """Agreement, latency p50/p99 and error rate per version (and the confusion between the two for
    classifiers) of a shadow or canary period, printed and logged to MLflow."""
    import json

    from mlops_platform.serving.report import (
        log_to_mlflow,
        read_health,
        read_lines,
        summarize,
        summarize_health,
    )

    if (log_path is None) == (url is None):
        raise click.UsageError("give one of --log PATH (the prediction log) or --url URL (a running server)")
    summary = summarize(read_lines(log_path)) if log_path else summarize_health(read_health(url), url)
    if not no_mlflow:
        from mlops_platform.settings import resolve_tracking_uri

        summary["mlflow_run_id"] = log_to_mlflow(summary, resolve_tracking_uri(tracking_uri), experiment)
    click.echo(json.dumps(summary, indent=2))


@click.command()
@click.option("--model-uri", required=True, help="e.g. models:/digits@champion or runs:/<run id>/model.")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .json scoring request (dataframe_split, dataframe_records, instances or inputs), a .csv or a "
    ".parquet table.",
)
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else the local server.")
@click.option(
    "--allow-unsafe-models",
    is_flag=True,
    default=False,
    help=ServeConfig.model_fields["allow_unsafe_models"].description,
)
def predict(model_uri: str, input_path: Path, tracking_uri: str | None, allow_unsafe_models: bool) -> None:
    """Print the predictions a served model would answer for one request file."""
    import logging

    from mlops_platform.serving.scoring import score_file
    from mlops_platform.settings import resolve_tracking_uri

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    click.echo(score_file(model_uri, input_path, resolve_tracking_uri(tracking_uri), allow_unsafe_models))
    sys.stdout.flush()
