"""Click options generated from a pydantic config: the config is the only source of names, defaults
and help (used by `mlops serve` and `mlops server start`; job commands have their own in jobs.py)."""

from __future__ import annotations

import click


def config_options(config_class: type, optional: set[str] = frozenset()) -> list[click.Option]:
    """One option per config field: same name, default and help; booleans are flags. Fields named in
    `optional` are not required by click (the command checks them itself); a field whose
    `json_schema_extra` names an `envvar` is also read from that environment variable."""
    from pydantic_core import PydanticUndefined

    from mlops_platform.config.base import literal_choices, scalar_type

    types = {bool: click.BOOL, int: click.INT, float: click.FLOAT, str: click.STRING}
    options = []
    for name, field in config_class.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        required = field.default is PydanticUndefined and name not in optional
        if scalar_type(field.annotation) is bool:
            options.append(
                click.Option([flag, name], is_flag=True, default=field.default, help=field.description)
            )
            continue
        choices = literal_choices(field.annotation)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        options.append(
            click.Option(
                [flag, name],
                envvar=extra.get("envvar"),
                type=click.Choice(choices) if choices else types[scalar_type(field.annotation)],
                required=required,
                default=None if field.default is PydanticUndefined else field.default,
                show_default=field.default not in (None, PydanticUndefined),
                help=field.description,
            )
        )
    return options
