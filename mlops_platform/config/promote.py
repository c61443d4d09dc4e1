"""The config of the promotion job (`mlflow run . -e promote`, `mlops promote`): its only defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mlops_platform.config.base import JobConfig, registrable_model_name
from mlops_platform.redaction import has_password, redact


class PromoteConfig(JobConfig):
    """Promote the best FINISHED run's logged model to a registered model alias."""

    experiment: str = Field("", description="Experiment name or id whose runs compete (required).")
    metric: str = Field("val_f1_macro", description="Metric to rank runs by.")
    model_name: str = Field("", description="Registered model to promote into (created if missing).")
    mode: Literal["max", "min"] | None = Field(
        None, description="max: higher is better; min: lower is better. Empty: the metric's known direction."
    )
    alias: str = Field("champion", description="Alias to move to the best version.")
    min_delta: float = Field(
        0.0, ge=0, description="Promote only if the champion is beaten by more than this."
    )
    filter_string: str | None = Field(
        None, description="Extra MLflow filter on candidates, e.g. \"params.model = 'cnn'\"."
    )
    parent_run: str | None = Field(
        None, description="Only the child runs of this run compete (a sweep's trials: its parent run id)."
    )
    require_entry_point: Literal["train_torch", "train_sklearn"] | None = Field(
        None,
        description="Only runs this trainer of ours made compete (the entry point tag it sets); empty: all.",
    )
    max_model_size_mb: float | None = Field(
        None, gt=0, description="Refuse logged models larger than this (MB)."
    )
    dry_run: bool = Field(False, description="Decide and print, but register and move nothing.")
    tracking_uri: str | None = Field(None, description="Tracking server URL; empty: MLFLOW_TRACKING_URI.")
    lock_uri: str | None = Field(
        None,
        description="PostgreSQL URI for a cross-machine advisory lock (e.g. the backend store), without "
        "a password (PGPASSWORD or ~/.pgpass); empty: MLOPS_LOCK_URI from the environment.",
    )

    @field_validator("experiment", "model_name", "metric", "alias")
    @classmethod
    def _required(cls, value: str, info) -> str:
        if not value.strip():
            raise ValueError(f"{info.field_name} is required")
        return value.strip()

    @field_validator("model_name")
    @classmethod
    def _registrable(cls, value: str) -> str:
        return registrable_model_name(value)

    @field_validator("lock_uri")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        # A parameter is logged by `mlflow run` and shown in the UI: a password in it would leak.
        if has_password(value):
            raise ValueError(
                f"lock_uri={redact(value)!r} carries a password, which would be logged with the run's "
                "parameters; set MLOPS_LOCK_URI in the environment instead (or use PGPASSWORD / ~/.pgpass)"
            )
        return value
