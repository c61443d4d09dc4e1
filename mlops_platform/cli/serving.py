"""`mlops serve` (the scoring server) and `mlops predict` (one prediction from the shell)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlops_platform.errors import UserError
from mlops_platform.serving.config import ServeConfig

_D = ServeConfig(model_uri="")


@click.command()
@click.option("--model-uri", required=True, help="What to serve, e.g. models:/digits@champion.")
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else the local server.")
@click.option(
    "--host", default=_D.host, show_default=True, help="Interface to bind (0.0.0.0 in a container)."
)
@click.option("--port", default=_D.port, show_default=True, type=int)
@click.option(
    "--workers", default=_D.workers, show_default=True, type=int, help="Processes, each with a copy."
)
@click.option(
    "--reload-interval",
    default=_D.reload_interval,
    show_default=True,
    type=float,
    help="Seconds between checks of the alias in --model-uri; a moved alias is swapped in. 0: off.",
)
@click.option(
    "--log-predictions", default=None, help="Append served inputs and outputs to this JSON-lines file."
)
@click.option(
    "--max-batch-size",
    default=_D.max_batch_size,
    show_default=True,
    type=int,
    help="Most rows in one micro-batched model call.",
)
@click.option(
    "--max-wait-ms",
    default=_D.max_wait_ms,
    show_default=True,
    type=float,
    help="Longest a request waits for others to share its batch.",
)
@click.option(
    "--max-body-bytes",
    default=_D.max_body_bytes,
    show_default=True,
    type=int,
    help="Larger request bodies are refused with 413.",
)
def serve(**options) -> None:
    """Serve a model over REST with MLflow's scoring protocol (POST /invocations, /ping, /version)."""
    from mlops_platform.serving.app import serve as run_server

    try:
        run_server(ServeConfig(**options))
    except UserError as error:
        raise click.ClickException(str(error)) from None


@click.command()
@click.option("--model-uri", required=True, help="e.g. models:/digits@champion or runs:/<run id>/model.")
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .json scoring request (dataframe_split, dataframe_records, instances or inputs) or a .csv table.",
)
@click.option("--tracking-uri", default=None, help="Default: $MLFLOW_TRACKING_URI, else the local server.")
def predict(model_uri: str, input_path: Path, tracking_uri: str | None) -> None:
    """Print the predictions a served model would answer for one request file."""
    try:
        _predict(model_uri, input_path, tracking_uri)
    except UserError as error:
        raise click.ClickException(str(error)) from None


def _predict(model_uri: str, input_path: Path, tracking_uri: str | None) -> None:
    import logging

    from mlops_platform.serving.errors import RequestError
    from mlops_platform.serving.parsing import CONTENT_TYPE_CSV, CONTENT_TYPE_JSON, parse_request
    from mlops_platform.serving.predictors import load_served_model
    from mlops_platform.settings import resolve_tracking_uri

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    content_type = CONTENT_TYPE_CSV if input_path.suffix.lower() == ".csv" else CONTENT_TYPE_JSON
    body = input_path.read_bytes()
    model = load_served_model(model_uri, resolve_tracking_uri(tracking_uri))
    try:
        if model.fast:
            parsed = parse_request(body, content_type)
            if parsed.params is None:
                array = model.validator.to_array(parsed)
                click.echo(
                    (b'{"predictions": ' + model.output_json(model.predict_array(array)) + b"}").decode()
                )
                return
        status, content = model.fallback_response(body, content_type)
        if status != 200:
            raise UserError(f"{input_path}: {content.decode()}")
        click.echo(content.decode())
    except RequestError as error:
        raise UserError(f"{input_path}: {error.message}") from None
    finally:
        model.close()
        sys.stdout.flush()
