"""The table of jobs: each is an MLproject entry point and a `mlops` subcommand with the same parameters.

Both the CLI (mlops_platform/cli) and the MLproject renderer (mlops_platform/mlproject.py) read this
table, so a job's parameters, their defaults and their spelling come from its config class alone.
Entries name their modules as strings so that `mlops --help` imports neither torch nor mlflow.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EntryPoint:
    """One job.

    Attributes:
        name: the MLproject entry point name (`mlflow run . -e NAME`).
        cli_path: the words of its `mlops` subcommand, e.g. ("train", "torch").
        config: "module:Class" of its JobConfig.
        job: "module:function" that runs it; the function takes the config.
        help: one line for `--help`.
        passthrough: a dict field of the config that collects every parameter the entry point does not
            declare (`-P name=value` reaches the command as `--name value`), e.g. a sweep's trainer
            parameters; it is neither an MLproject parameter nor a CLI option.
    """

    name: str
    cli_path: tuple[str, ...]
    config: str
    job: str
    help: str
    passthrough: str | None = None

    def load_config_class(self) -> Any:
        return _load(self.config)

    def load_job(self) -> Any:
        return _load(self.job)

    def parameter_fields(self) -> dict[str, Any]:
        """The config fields that are CLI options, in declaration order."""
        fields = self.load_config_class().model_fields
        return {name: field for name, field in fields.items() if name != self.passthrough}

    def declared_fields(self) -> dict[str, Any]:
        """The fields MLproject declares: all options but the config's conditional fields (see
        JobConfig.conditional_fields), which `mlflow run -P` passes as `--name value` when given."""
        conditional = set(self.load_config_class().conditional_fields())
        return {name: field for name, field in self.parameter_fields().items() if name not in conditional}


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


# Add a job here, then regenerate MLproject: `python -m mlops_platform.mlproject > MLproject`.
ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint(
        name="promote",
        cli_path=("promote",),
        config="mlops_platform.config.promote:PromoteConfig",
        job="mlops_platform.registry.job:run",
        help="Promote the best FINISHED run's logged model to a registered model alias.",
    ),
    EntryPoint(
        name="sweep",
        cli_path=("sweep", "run"),
        config="mlops_platform.config.sweep:SweepConfig",
        job="mlops_platform.sweep.job:run",
        help="Tune a trainer's hyperparameters with Optuna: a parent run, one child run per trial.",
        passthrough="trainer_params",
    ),
    EntryPoint(
        name="train_sklearn",
        cli_path=("train", "sklearn"),
        config="mlops_platform.config.train_sklearn:TrainSklearnConfig",
        job="mlops_platform.training.sklearn_job:run",
        help="Train a scikit-learn model (baseline first), cross-validate it and log it to MLflow.",
    ),
    EntryPoint(
        name="train_torch",
        cli_path=("train", "torch"),
        config="mlops_platform.config.train_torch:TorchTrainConfig",
        job="mlops_platform.training.torch_job:run",
        help="Train a PyTorch MLP/CNN on CPU or GPU with checkpoints, exact resume and full tracking.",
    ),
)

# `mlflow run .` with no -e runs this job (the PyTorch trainer once it exists).
MAIN_ENTRY_POINT = "train_torch"


def entry_point(name: str) -> EntryPoint:
    for candidate in ENTRY_POINTS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no entry point named {name!r}; known: {[e.name for e in ENTRY_POINTS]}")
