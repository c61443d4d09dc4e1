"""The base of every job config, and the rules that turn its fields into CLI options and MLproject
parameters.

A job config is a frozen pydantic model that forbids unknown keys, so a typo fails at once and names
itself. Field names are the MLproject parameter names (`batch_size`); the CLI spells them
`--batch-size`. Optional fields take the empty string for "not set", because MLproject parameters
cannot have a null default.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from mlops_platform.errors import UserError
from mlops_platform.redaction import redact


class ConfigError(UserError, ValueError):
    """A config value is invalid; the message names the parameter and what is allowed."""


class JobConfig(BaseModel):
    """Base class: frozen, unknown keys rejected, "" means None for optional fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_string_means_unset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        cleaned = dict(values)
        for name, value in values.items():
            field = cls.model_fields.get(name)
            if field is not None and value == "" and _is_optional(field.annotation):
                cleaned[name] = None
        return cleaned

    @classmethod
    def parse(cls, values: dict[str, Any]) -> JobConfig:
        """Validate raw values (strings from a shell are fine) into a config, or raise ConfigError."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error)) from None

    def to_params(self) -> dict[str, Any]:
        """The resolved config as a flat dict, as it is stored in checkpoints and `config.json`."""
        return self.model_dump(mode="json")

    @classmethod
    def conditional_fields(cls) -> tuple[str, ...]:
        """Fields that apply to some choices only (a model's hyperparameters). MLproject does not declare
        them, because `mlflow run` logs every declared parameter, blank or not, as a param of the run:
        given as `-P name=value`, one reaches the command as `--name value` and is logged then only."""
        return ()

    def logged_params(self) -> dict[str, Any]:
        """The run params: the resolved config less the fields that mean nothing for this config (a CNN's
        channels on an MLP run); `config.json` keeps them all."""
        return self.to_params()


def registrable_model_name(value: str | None) -> str | None:
    """A field validator's body for a registered model name: refused before any run or version exists."""
    from mlops_platform.registry.names import model_name_problem

    problem = None if value is None else model_name_problem(value)
    if problem is not None:
        raise ValueError(f"{value!r} cannot be a registered model name: {problem}")
    return value


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad value: `<name>=<value>: <what is wrong>`, with any URI's password masked."""
    lines = []
    for detail in error.errors():
        name = ".".join(str(part) for part in detail["loc"]) or "config"
        value = detail.get("input")
        shown = f"={value!r}" if not isinstance(value, dict) else ""
        lines.append(f"invalid parameter {name}{shown}: {detail['msg']}")
    return redact("\n".join(lines))


def _is_optional(annotation: Any) -> bool:
    return _unwrap_optional(annotation) is not annotation


def _unwrap_optional(annotation: Any) -> Any:
    """`X | None` -> X; anything else is returned as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1 and len(typing.get_args(annotation)) == 2:
            return members[0]
    return annotation


def literal_choices(annotation: Any) -> tuple[str, ...] | None:
    """The allowed values of a Literal field (optional or not), as strings; None for other types."""
    inner = _unwrap_optional(annotation)
    if typing.get_origin(inner) is Literal:
        return tuple(str(arg) for arg in typing.get_args(inner))
    return None


def scalar_type(annotation: Any) -> type:
    """The Python scalar behind a field: bool, int, float or str (Literals and others are str)."""
    inner = _unwrap_optional(annotation)
    if inner in (bool, int, float):
        return inner
    return str


def mlproject_type(annotation: Any) -> str:
    """MLproject's parameter type for a field: numbers are `float`, everything else `string`."""
    return "float" if scalar_type(annotation) in (int, float) else "string"


def mlproject_default(value: Any) -> Any:
    """A field default as MLproject writes it: None -> "", booleans -> "true"/"false"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
