"""Builds a click command from a job's config class: one option per field, same name, same default."""

from __future__ import annotations

from typing import Any

import click

from mlops_platform.config.base import ConfigError, literal_choices, mlproject_default, scalar_type
from mlops_platform.entrypoints import EntryPoint
from mlops_platform.errors import UserError

_CLICK_TYPES = {bool: click.BOOL, int: click.INT, float: click.FLOAT, str: click.STRING}


class _OptionalScalar(click.ParamType):
    """A click type that also accepts "" (unset) and otherwise converts like `inner`."""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value if value in ("", None) else self.inner.convert(value, param, ctx)


def _option_for(name: str, field: Any, undeclared: bool = False) -> click.Option:
    choices = literal_choices(field.annotation)
    if choices is not None:
        # Literal fields: click checks the choice and names the bad value before any run exists.
        # An optional Literal also accepts "" (unset), as MLproject passes it.
        param_type: click.ParamType = click.Choice([*choices, ""] if field.default is None else choices)
    elif field.default is None:
        # Optional numbers: "" means unset (MLproject passes it for a None default), so click must let
        # it through; the config parses the rest and names a bad value.
        param_type = _OptionalScalar(_CLICK_TYPES[scalar_type(field.annotation)])
    else:
        param_type = _CLICK_TYPES[scalar_type(field.annotation)]
    default = mlproject_default(None) if field.default is None else field.default
    spellings = [f"--{name.replace('_', '-')}"]
    if undeclared and "_" in name:
        spellings.append(f"--{name}")  # how `mlflow run -P name=value` passes an undeclared parameter
    return click.Option(
        [*spellings, name],
        type=param_type,
        default=default,
        show_default=True,
        help=field.description or "",
    )


def _explain_on_mlflow_run(message: str, keep_existing: bool = False) -> None:
    """Under `mlflow run` the run exists before our parameters and data are checked: say on it why it
    failed (tracking/env_run.py); outside `mlflow run` nothing is written."""
    from mlops_platform.tracking.env_run import record_failure

    warning = record_failure(message, keep_existing)
    if warning:
        click.echo(warning, err=True)


def parse_passthrough(args: list[str]) -> dict[str, str]:
    """`--name value` / `--name=value` pairs (as `mlflow run` appends undeclared -P parameters) -> dict;
    dashes in names become underscores."""
    values: dict[str, str] = {}
    tokens = list(args)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"unexpected argument {token!r}: pass parameters as --name value")
        name, has_value, value = token[2:].partition("=")
        if not has_value:
            if not tokens:
                raise ConfigError(f"parameter --{name} has no value")
            value = tokens.pop(0)
        values[name.replace("-", "_")] = value
    return values


def job_command(entry: EntryPoint) -> click.Command:
    """The `mlops` subcommand of one entry point."""
    config_class = entry.load_config_class()
    declared = entry.declared_fields()

    def callback(**values: Any) -> None:
        try:
            if entry.passthrough:
                values[entry.passthrough] = parse_passthrough(click.get_current_context().args)
            config = config_class.parse(values)
        except ConfigError as error:
            _explain_on_mlflow_run(str(error))
            raise click.UsageError(str(error)) from None
        try:
            entry.load_job()(config)
        except UserError as error:
            # A data error (a missing file, a bad column) is found before the job opens its run; the
            # root command (cli/__init__.py) turns the error itself into a message and exit status.
            _explain_on_mlflow_run(str(error), keep_existing=True)
            raise

    return click.Command(
        entry.cli_path[-1],
        callback=callback,
        params=[
            _option_for(name, field, undeclared=name not in declared)
            for name, field in entry.parameter_fields().items()
        ],
        help=f"{entry.help}\n\nMLproject entry point: `mlflow run . -e {entry.name}`."
        + (f" Any other --name value goes to {entry.passthrough}." if entry.passthrough else ""),
        context_settings={
            "help_option_names": ["-h", "--help"],
            **({"ignore_unknown_options": True, "allow_extra_args": True} if entry.passthrough else {}),
        },
    )
