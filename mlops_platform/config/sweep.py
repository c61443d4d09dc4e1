"""The config of the sweep job (`mlflow run . -e sweep`, `mlops sweep run`): its only defaults.

Parameters the sweep does not declare (`-P dataset=wine -P model=mlp`, `--epochs 5`) are the trainer's
own fixed parameters: they reach every trial and are checked against the trainer's config here, with
the search space, so a bad value fails before a run or a study exists.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mlops_platform.config.base import ConfigError, JobConfig, registrable_model_name
from mlops_platform.config.sweep_space import check_space, default_space, describe, load_space_file

TRAINERS: tuple[str, ...] = ("torch", "sklearn")
# Trainer parameters a sweep sets itself, so they cannot be passed through.
SET_BY_SWEEP: dict[str, str] = {
    "resume_from": "trials start fresh",
    "registered_model_name": "trials register nothing; use promote_to",
    "experiment": "trials run in the parent run's experiment",
    "run_name": "trials are named after the study",
}


def trainer_config_class(trainer: str) -> type[JobConfig]:
    if trainer == "torch":
        from mlops_platform.config.train_torch import TorchTrainConfig

        return TorchTrainConfig
    from mlops_platform.config.train_sklearn import TrainSklearnConfig

    return TrainSklearnConfig


class SweepConfig(JobConfig):
    """Tune a trainer's hyperparameters with Optuna: one MLflow child run per trial under one parent run."""

    trainer: Literal["torch", "sklearn"] = Field("torch", description="Which trainer each trial runs.")
    n_trials: int = Field(
        20, ge=1, description="Trials in the study, over all workers (complete+pruned+failed)."
    )
    metric: str = Field(
        "val_f1_macro",
        description="Validation metric to optimize (torch: val_loss|val_accuracy|val_f1_macro; sklearn: "
        "val_<m> with val_fraction > 0, or cv_<m>_mean).",
    )
    mode: Literal["max", "min"] | None = Field(
        None, description="max or min; empty: the metric's known direction."
    )
    sampler: Literal["tpe", "random", "grid", "cmaes"] = Field("tpe", description="Optuna sampler.")
    sampler_seed: int | None = Field(
        None, description="Seed of this process's sampler (reproducible with one process); empty: random."
    )
    pruner: Literal["none", "median", "hyperband"] = Field(
        "none", description="Optuna pruner on the per-epoch validation metric (torch only)."
    )
    space: str | None = Field(
        None, description="YAML search space file; empty: the default space of the trainer and model."
    )
    study: str | None = Field(None, description="Optuna study name; empty: sweep-<parent run id>.")
    storage: str | None = Field(
        None,
        description="Optuna storage URL: sqlite:///... or postgresql://... (several hosts); "
        "empty: SQLite under MLOPS_HOME.",
    )
    timeout: float | None = Field(
        None, gt=0, description="Stop starting new trials after this many seconds; empty: no limit."
    )
    promote_to: str | None = Field(
        None, description="At the end, promote the sweep's best child to this registered model (usual gates)."
    )
    heartbeat_interval: int = Field(
        30, ge=1, description="Seconds between a running trial's heartbeats in the study storage."
    )
    grace_period: int = Field(
        120, ge=1, description="A trial without a heartbeat for this long is failed (and retried once)."
    )
    experiment: str | None = Field(
        None,
        description="Experiment of the parent and child runs; default MLFLOW_EXPERIMENT_NAME/ID or Default.",
    )
    run_name: str | None = Field(None, description="Name of the parent run; default: the study name.")
    # Not a declared parameter: every other `-P name=value` / `--name value`, for the trainer.
    trainer_params: dict[str, Any] = Field(
        default_factory=dict, description="The trainer's fixed parameters, passed through to every trial."
    )

    @field_validator("promote_to")
    @classmethod
    def _registrable(cls, value: str | None) -> str | None:
        return registrable_model_name(value)

    @field_validator("storage")
    @classmethod
    def _known_storage(cls, value: str | None) -> str | None:
        if value is not None and value.split(":", 1)[0].split("+", 1)[0] not in (
            "sqlite",
            "postgresql",
            "postgres",
        ):
            raise ValueError(f"storage={value!r}: use sqlite:///<path> or postgresql://user@host/db")
        return value

    @model_validator(mode="after")
    def _trainer_params_metric_and_space(self) -> SweepConfig:
        for name in self.trainer_params:
            if name in SET_BY_SWEEP:
                raise ValueError(f"{name} cannot be passed to a sweep: {SET_BY_SWEEP[name]}")
        if self.trainer == "torch":
            from mlops_platform.config.train_torch import MONITOR_METRICS

            if self.metric not in MONITOR_METRICS:
                raise ValueError(
                    f"metric={self.metric!r}: trainer=torch reports {', '.join(MONITOR_METRICS)} per epoch"
                )
        config_class = trainer_config_class(self.trainer)
        try:
            fixed = config_class.parse(self.fixed_trainer_params())
        except ConfigError as error:
            raise ValueError(f"trainer={self.trainer} parameters: {error}") from None
        if getattr(fixed, "launches_torchrun", False):
            raise ValueError(
                "a sweep's trials train inside its worker processes (the pruner follows each epoch there): "
                "start more `mlops sweep worker` processes instead of torchrun (nproc_per_node=1, nnodes=1)"
            )
        self._check_metric(fixed)
        if self.pruner != "none" and self.trainer != "torch":
            raise ValueError(f"pruner={self.pruner} needs per-epoch validation metrics: use trainer=torch")
        space = self.search_space()
        check_space(space, config_class, self.fixed_trainer_params())
        if self.sampler == "grid":
            for name, distribution in space.items():
                if distribution.type not in ("categorical", "int"):
                    raise ValueError(
                        f"sampler=grid needs categorical or int parameters; {name} is {distribution.type}"
                    )
        return self

    def _check_metric(self, fixed: Any) -> None:
        """torch's metric is checked before its parameters (its early-stopping metric is set from it)."""
        metric = self.metric
        if self.trainer == "torch":
            pass
        elif metric.startswith("val_"):
            if fixed.val_fraction <= 0:
                raise ValueError(
                    f"metric={metric!r} needs a validation split: pass val_fraction=0.2 (or similar)"
                )
        elif not (metric.startswith("cv_") and metric.endswith("_mean")):
            raise ValueError(
                f"metric={metric!r}: a sweep selects on validation only: val_<metric> or cv_<metric>_mean"
            )
        if self.mode is None:
            from mlops_platform.evaluation import METRIC_DIRECTIONS

            if metric not in METRIC_DIRECTIONS:
                raise ValueError(f"metric={metric!r} has no known direction: pass mode=max or mode=min")

    def fixed_trainer_params(self) -> dict[str, Any]:
        """The pass-through parameters; for torch the early-stopping metric is the sweep's metric, so the
        epoch whose weights are kept is the epoch the trial is judged by."""
        params = dict(self.trainer_params)
        if self.trainer == "torch":
            given = params.get("early_stopping_metric")
            if given not in (None, self.metric):
                raise ValueError(
                    f"early_stopping_metric={given!r} differs from metric={self.metric!r}: the kept "
                    "epoch must be the one the trial is judged by"
                )
            params["early_stopping_metric"] = self.metric
        return params

    def search_space(self) -> dict[str, Any]:
        if self.space:
            return load_space_file(self.space)
        model_field = trainer_config_class(self.trainer).model_fields["model"]
        return default_space(self.trainer, str(self.trainer_params.get("model", model_field.default)))

    @property
    def direction(self) -> str:
        from mlops_platform.evaluation import METRIC_DIRECTIONS

        return self.mode or METRIC_DIRECTIONS[self.metric]

    def space_params(self) -> dict[str, str]:
        return {f"space.{name}": describe(dist) for name, dist in self.search_space().items()}
