"""`mlops serve` (the scoring server) and `mlops predict` (one prediction from the shell)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlops_platform.errors import UserError
from mlops_platform.serving.config import ServeConfig


def config_options(config_class: type) -> list[click.Option]:
    """One option per config field: same name, default and help; booleans are flags."""
    from pydantic_core import PydanticUndefined

    from mlops_platform.config.base import literal_choices, scalar_type

    types = {bool: click.BOOL, int: click.INT, float: click.FLOAT, str: click.STRING}
    options = []
    for name, field in config_class.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        required = field.default is PydanticUndefined
        if scalar_type(field.annotation) is bool:
            options.append(
                click.Option([flag, name], is_flag=True, default=field.default, help=field.description)
            )
            continue
        choices = literal_choices(field.annotation)
        options.append(
            click.Option(
                [flag, name],
                type=click.Choice(choices) if choices else types[scalar_type(field.annotation)],
                required=required,
                default=None if required else field.default,
                show_default=not required and field.default is not None,
                help=field.description,
            )
        )
    return options


def _serve(**options) -> None:
    from mlops_platform.serving.app import serve as run_server

    try:
        run_server(ServeConfig.parse(options))
    except UserError as error:
        raise click.ClickException(str(error)) from None


serve = click.Command(
    "serve",
    callback=_serve,
    params=config_options(ServeConfig),
    help="Serve a model over REST with MLflow's scoring protocol (POST /invocations, /ping, /version, "
    "/health).",
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
@click.option(
    "--allow-unsafe-models",
    is_flag=True,
    default=False,
    help=ServeConfig.model_fields["allow_unsafe_models"].description,
)
def predict(model_uri: str, input_path: Path, tracking_uri: str | None, allow_unsafe_models: bool) -> None:
    """Print the predictions a served model would answer for one request file."""
    try:
        _predict(model_uri, input_path, tracking_uri, allow_unsafe_models)
    except UserError as error:
        raise click.ClickException(str(error)) from None


def _predict(model_uri: str, input_path: Path, tracking_uri: str | None, allow_unsafe: bool) -> None:
    import logging

    from mlops_platform.serving.errors import RequestError
    from mlops_platform.serving.parsing import CONTENT_TYPE_CSV, CONTENT_TYPE_JSON, parse_request
    from mlops_platform.serving.predictors import load_served_model
    from mlops_platform.settings import resolve_tracking_uri

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    content_type = CONTENT_TYPE_CSV if input_path.suffix.lower() == ".csv" else CONTENT_TYPE_JSON
    body = input_path.read_bytes()
    model = load_served_model(model_uri, resolve_tracking_uri(tracking_uri), allow_unsafe=allow_unsafe)
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
