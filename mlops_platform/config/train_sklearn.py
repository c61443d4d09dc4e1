"""Config of the `train_sklearn` job: the only source of its defaults (MLproject and CLI derive from it).

Hyperparameters default to None, meaning "the estimator's own default"; one that is set but does not
belong to the chosen model is rejected here, before any run exists, naming it and listing those that do.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mlops_platform.config.base import registrable_model_name
from mlops_platform.config.sklearn_models import (
    HYPERPARAMETERS,
    hyperparameters_of,
    models_for,
    unsupported_hyperparameters,
)
from mlops_platform.config.table import TableConfig

ModelName = Literal[
    "baseline", "logreg", "svc", "knn", "random_forest", "hist_gb", "stacking", "voting", "ridge"
]


class TrainSklearnConfig(TableConfig):
    """Train one scikit-learn model, cross-validate it, score it on the test split and log everything."""

    dataset: str = Field(
        "digits", description="digits | breast_cancer | wine | diabetes | csv:<path> | parquet:<path>"
    )
    target: str | None = Field(None, description="Label column of a csv:/parquet: dataset.")
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="Learning task; auto infers it from the target column."
    )
    model: ModelName = Field(
        "random_forest",
        description="classification: baseline, logreg, svc, knn, random_forest, hist_gb, stacking, voting; "
        "regression: baseline, ridge, random_forest, hist_gb, stacking.",
    )
    seed: int = Field(0, description="Seed of the split, the CV folds and the estimators.")
    val_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Validation share, scored as val_* metrics; 0 keeps those rows in train (CV validates).",
    )
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of rows held out for test metrics.")
    cv_folds: int = Field(5, ge=2, le=20, description="Folds of the cross-validation on the training split.")
    baseline: bool = Field(
        True, description="Train and log the baseline run when the experiment has none for this dataset."
    )
    experiment: str | None = Field(
        None, description="MLflow experiment; default MLFLOW_EXPERIMENT_NAME/ID, else Default."
    )
    run_name: str | None = Field(None, description="Run name; default <model>-<dataset>.")
    registered_model_name: str | None = Field(None, description="Register the logged model under this name.")

    # Hyperparameters: None keeps the estimator's default; each belongs to some models only.
    c: float | None = Field(None, gt=0.0, description="Inverse regularization strength C (logreg, svc).")
    kernel: Literal["rbf", "linear", "poly", "sigmoid"] | None = Field(None, description="SVC kernel (svc).")
    gamma: float | None = Field(None, gt=0.0, description="RBF kernel coefficient; default 'scale' (svc).")
    class_weight: Literal["balanced"] | None = Field(
        None, description="'balanced' reweights classes (logreg, svc, random_forest, hist_gb)."
    )
    max_iter: int | None = Field(None, ge=1, description="Iterations (logreg) or boosting rounds (hist_gb).")
    n_neighbors: int | None = Field(None, ge=1, description="Neighbours (knn).")
    weights: Literal["uniform", "distance"] | None = Field(None, description="Neighbour weighting (knn).")
    n_estimators: int | None = Field(None, ge=1, description="Trees (random_forest).")
    max_depth: int | None = Field(None, ge=1, description="Tree depth limit (random_forest, hist_gb).")
    min_samples_leaf: int | None = Field(None, ge=1, description="Samples per leaf (random_forest, hist_gb).")
    learning_rate: float | None = Field(None, gt=0.0, description="Shrinkage (hist_gb).")
    alpha: float | None = Field(None, ge=0.0, description="L2 penalty (ridge).")

    @field_validator("registered_model_name")
    @classmethod
    def _registrable(cls, value: str | None) -> str | None:
        return registrable_model_name(value)

    @model_validator(mode="after")
    def _hyperparameters_belong_to_model(self) -> TrainSklearnConfig:
        task = None if self.task == "auto" else self.task
        if task is not None and self.model not in models_for(task):
            raise ValueError(
                f"model={self.model!r} is not a {task} model; valid: {', '.join(models_for(task))}"
            )
        wrong = unsupported_hyperparameters(self.model, task, self.hyperparameters())
        if wrong:
            valid = hyperparameters_of(self.model, task)
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in wrong)
            raise ValueError(
                f"hyperparameter {shown} does not apply to model={self.model!r}; "
                f"valid for {self.model}: {', '.join(valid) or 'none'}"
            )
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1 to leave training rows")
        return self

    def hyperparameters(self) -> dict[str, object]:
        """The hyperparameter fields and their values (None = estimator default)."""
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    @classmethod
    def conditional_fields(cls) -> tuple[str, ...]:
        return HYPERPARAMETERS

    def logged_params(self, task: str | None = None) -> dict[str, object]:
        """The params less the hyperparameters `model` does not take for `task` (default: the config's)."""
        resolved = task or (None if self.task == "auto" else self.task)
        applicable = set(hyperparameters_of(self.model, resolved))
        return {
            name: value
            for name, value in self.to_params().items()
            if name not in HYPERPARAMETERS or name in applicable
        }

    def for_model(self, model: str) -> TrainSklearnConfig:
        """This job's config as the run that trains `model` (the baseline beside the candidate) has it:
        that model, none of the candidate's hyperparameters, no name or registration of its own."""
        if model == self.model:
            return self
        cleared: dict[str, object] = dict.fromkeys(HYPERPARAMETERS)
        return self.model_copy(
            update={**cleared, "model": model, "run_name": None, "registered_model_name": None}
        )
