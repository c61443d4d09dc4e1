"""The scikit-learn models of the `train_sklearn` job: which exist for which task, and which
hyperparameters each takes.

The config validates against this table before any run exists; training/sklearn_models.py builds each
entry's pipeline. A hyperparameter left unset (None) keeps the estimator's own default. Ensembles
(stacking, voting) take the hyperparameters of their members and pass each one to every member that
uses it. Plain data, no scikit-learn import: `mlops --help` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Every tunable hyperparameter of the job, in the order `--help` and error messages list them.
HYPERPARAMETERS: tuple[str, ...] = (
    "c",
    "kernel",
    "gamma",
    "class_weight",
    "max_iter",
    "n_neighbors",
    "weights",
    "n_estimators",
    "max_depth",
    "min_samples_leaf",
    "learning_rate",
    "alpha",
)


@dataclass(frozen=True)
class ModelSpec:
    """One model for one task: the hyperparameters it takes and a line saying what it is."""

    name: str
    task: str
    hyperparameters: tuple[str, ...]
    description: str


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    names = {name for group in groups for name in group}
    return tuple(name for name in HYPERPARAMETERS if name in names)


_LOGREG = ("c", "max_iter", "class_weight")
_SVC = ("c", "kernel", "gamma", "class_weight")
_KNN = ("n_neighbors", "weights")
_FOREST = ("n_estimators", "max_depth", "min_samples_leaf")
_HIST_GB = ("learning_rate", "max_iter", "max_depth", "min_samples_leaf")
_CLASSIFIER_ENSEMBLE = _union(_SVC, (*_FOREST, "class_weight"), _KNN, _LOGREG)

MODELS: dict[tuple[str, str], ModelSpec] = {
    (spec.task, spec.name): spec
    for spec in (
        ModelSpec("baseline", "classification", (), "majority class (DummyClassifier)"),
        ModelSpec("logreg", "classification", _LOGREG, "logistic regression on standardized features"),
        ModelSpec("svc", "classification", _SVC, "support vector machine on standardized features"),
        ModelSpec("knn", "classification", _KNN, "k nearest neighbours on standardized features"),
        ModelSpec("random_forest", "classification", (*_FOREST, "class_weight"), "random forest"),
        ModelSpec("hist_gb", "classification", (*_HIST_GB, "class_weight"), "boosting"),
        ModelSpec(
            "stacking",
            "classification",
            _CLASSIFIER_ENSEMBLE,
            "svc + random_forest + knn + logreg, logistic-regression meta-learner",
        ),
        ModelSpec(
            "voting",
            "classification",
            _CLASSIFIER_ENSEMBLE,
            "soft vote of the stacking members",
        ),
        ModelSpec("baseline", "regression", (), "training mean (DummyRegressor)"),
        ModelSpec("ridge", "regression", ("alpha",), "ridge regression on standardized features"),
        ModelSpec("random_forest", "regression", _FOREST, "random forest"),
        ModelSpec("hist_gb", "regression", _HIST_GB, "boosting"),
        ModelSpec(
            "stacking",
            "regression",
            _union(("alpha",), _FOREST, _HIST_GB),
            "ridge + random_forest + hist_gb, RidgeCV meta-learner",
        ),
    )
}

MODEL_NAMES: tuple[str, ...] = tuple(dict.fromkeys(name for _, name in MODELS))


def models_for(task: str) -> tuple[str, ...]:
    return tuple(name for spec_task, name in MODELS if spec_task == task)


def hyperparameters_of(model: str, task: str | None = None) -> tuple[str, ...]:
    """The hyperparameters `model` takes for `task`; for task None, those it takes for any task."""
    groups = [spec.hyperparameters for (spec_task, name), spec in MODELS.items() if name == model]
    if task is not None:
        groups = [MODELS[(task, model)].hyperparameters] if (task, model) in MODELS else []
    return _union(*groups)


def model_spec(model: str, task: str) -> ModelSpec:
    """The spec of `model` for `task`; KeyError naming the models that exist for the task otherwise."""
    try:
        return MODELS[(task, model)]
    except KeyError:
        raise KeyError(
            f"model {model!r} is not available for {task}; valid: {', '.join(models_for(task))}"
        ) from None


def unsupported_hyperparameters(model: str, task: str | None, values: Mapping[str, Any]) -> list[str]:
    """Names of hyperparameters set (non-None) in `values` that `model` does not take."""
    allowed = set(hyperparameters_of(model, task))
    return [name for name in HYPERPARAMETERS if values.get(name) is not None and name not in allowed]
