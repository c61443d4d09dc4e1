"""Search spaces of the `sweep` job: the default per trainer and model, and the YAML file that overrides it.

A space maps a trainer parameter to a distribution:

    lr: {type: log-float, low: 1.0e-4, high: 0.03}
    dropout: {type: float, low: 0.0, high: 0.5}
    batch_size: {type: categorical, choices: [32, 64, 128]}
    max_depth: {type: int, low: 2, high: 12}

Types: `float` (optional `step`), `log-float` (low > 0), `int` (optional `step`), `categorical`. A space is
checked before anything runs: every name must be a parameter of the trainer that a sweep may tune, and
every bound and choice must make a valid trainer config with the fixed parameters, so a trial can never
fail on a value the space itself allowed. This module is plain Python (no optuna): `sweep.space` turns
it into Optuna distributions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from mlops_platform.config.base import ConfigError, JobConfig, describe_validation_error

# Trainer parameters a trial never takes from a space: they say what is trained and where it is tracked,
# which the sweep fixes for every trial.
NOT_TUNABLE: frozenset[str] = frozenset(
    {
        "dataset",
        "target",
        "task",
        "model",
        "experiment",
        "run_name",
        "resume_from",
        "registered_model_name",
        "baseline",
        "device",
        "nproc_per_node",
        "nnodes",
        "node_rank",
        "rdzv_endpoint",
        "max_restarts",
    }
)


class _Distribution(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Distribution):
    type: Literal["float"]
    low: float
    high: float
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> FloatParam:
        if not self.low <= self.high:
            raise ValueError(f"low={self.low} must be <= high={self.high}")
        return self

    def bounds(self) -> list[Any]:
        return [self.low, self.high]


class LogFloatParam(_Distribution):
    type: Literal["log-float"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LogFloatParam:
        if not self.low <= self.high:
            raise ValueError(f"low={self.low} must be <= high={self.high}")
        return self

    def bounds(self) -> list[Any]:
        return [self.low, self.high]


class IntParam(_Distribution):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> IntParam:
        if not self.low <= self.high:
            raise ValueError(f"low={self.low} must be <= high={self.high}")
        return self

    def bounds(self) -> list[Any]:
        return [self.low, self.high]


class CategoricalParam(_Distribution):
    type: Literal["categorical"]
    choices: list[str | bool | int | float] = Field(min_length=1)

    def bounds(self) -> list[Any]:
        return list(self.choices)


Distribution = Annotated[
    FloatParam | LogFloatParam | IntParam | CategoricalParam, Field(discriminator="type")
]
DISTRIBUTION_TYPES: tuple[str, ...] = ("float", "log-float", "int", "categorical")
_SPACE = TypeAdapter(dict[str, Distribution])


def _log_float(low: float, high: float) -> LogFloatParam:
    return LogFloatParam(type="log-float", low=low, high=high)


def _float(low: float, high: float) -> FloatParam:
    return FloatParam(type="float", low=low, high=high)


def _int(low: int, high: int) -> IntParam:
    return IntParam(type="int", low=low, high=high)


def _choice(*choices: Any) -> CategoricalParam:
    return CategoricalParam(type="categorical", choices=list(choices))


# The default spaces: the main hyperparameters of each trainer and model, in ranges that train sensibly.
_TORCH_COMMON: dict[str, Any] = {
    "lr": _log_float(1e-4, 3e-2),
    "batch_size": _choice(32, 64, 128),
    "dropout": _float(0.0, 0.5),
    "weight_decay": _log_float(1e-6, 1e-2),
    "optimizer": _choice("adamw", "adam", "sgd"),
}
DEFAULT_SPACES: dict[tuple[str, str], dict[str, Any]] = {
    ("torch", "mlp"): {**_TORCH_COMMON, "hidden_sizes": _choice("64", "128,64", "256,128")},
    ("torch", "cnn"): {**_TORCH_COMMON, "channels": _choice("16,32", "32,64")},
    ("sklearn", "logreg"): {"c": _log_float(1e-3, 1e2), "class_weight": _choice("", "balanced")},
    ("sklearn", "svc"): {
        "c": _log_float(1e-2, 1e2),
        "gamma": _log_float(1e-4, 1.0),
        "kernel": _choice("rbf", "linear"),
    },
    ("sklearn", "knn"): {"n_neighbors": _int(1, 30), "weights": _choice("uniform", "distance")},
    ("sklearn", "random_forest"): {
        "n_estimators": _int(20, 200),
        "max_depth": _int(2, 16),
        "min_samples_leaf": _int(1, 8),
    },
    ("sklearn", "hist_gb"): {
        "learning_rate": _log_float(0.01, 0.3),
        "max_iter": _int(50, 300),
        "max_depth": _int(2, 10),
        "min_samples_leaf": _int(5, 40),
    },
    ("sklearn", "ridge"): {"alpha": _log_float(1e-3, 1e2)},
}


def parse_space(raw: Any, source: str) -> dict[str, Any]:
    """A mapping of name -> distribution, validated; ConfigError naming `source` and the bad entry."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"space {source}: must be a non-empty mapping of parameter -> distribution "
            f"({', '.join(DISTRIBUTION_TYPES)})"
        )
    try:
        return _SPACE.validate_python(raw)
    except ValidationError as error:
        raise ConfigError(f"space {source}:\n{describe_validation_error(error)}") from None


def load_space_file(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"space={path!r}: no such file")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"space={path!r} is not valid YAML: {error}") from None
    return parse_space(raw, repr(path))


def default_space(trainer: str, model: str) -> dict[str, Any]:
    try:
        return dict(DEFAULT_SPACES[(trainer, model)])
    except KeyError:
        raise ConfigError(
            f"no default search space for trainer={trainer} model={model!r}; give one with space=<file.yaml> "
            f"(defaults exist for: {', '.join(m for t, m in DEFAULT_SPACES if t == trainer)})"
        ) from None


def check_space(space: dict[str, Any], config_class: type[JobConfig], fixed: dict[str, Any]) -> None:
    """Every name is a tunable trainer parameter, and every bound or choice gives a valid trainer config.

    Raises:
        ConfigError: naming the parameter and the value that is wrong.
    """
    fields = config_class.model_fields
    for name, distribution in space.items():
        if name not in fields:
            tunable = sorted(set(fields) - NOT_TUNABLE)
            raise ConfigError(f"space: unknown parameter {name!r}; tunable: {', '.join(tunable)}")
        if name in NOT_TUNABLE:
            raise ConfigError(f"space: parameter {name!r} is fixed for every trial; it cannot be tuned")
        if name in fixed:
            raise ConfigError(f"space: parameter {name!r} is both fixed ({name}={fixed[name]!r}) and tuned")
        for value in distribution.bounds():
            try:
                config_class.parse({**fixed, name: value})
            except ConfigError as error:
                raise ConfigError(
                    f"space: {name}={value!r} ({distribution.type}) is not a valid trainer value:\n{error}"
                ) from None


def describe(distribution: Any) -> str:
    """One line per distribution, as the parent run logs it: `log-float[0.0001, 0.03]`."""
    if isinstance(distribution, CategoricalParam):
        return f"categorical{distribution.choices}"
    step = getattr(distribution, "step", None)
    suffix = f" step {step}" if step not in (None, 1) else ""
    return f"{distribution.type}[{distribution.low}, {distribution.high}]{suffix}"
