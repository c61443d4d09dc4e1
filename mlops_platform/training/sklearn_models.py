"""The scikit-learn estimators of the `train_sklearn` job, each built as a Pipeline with its preprocessing.

Which models exist and which hyperparameters each takes is the table in config/sklearn_models.py (the
config validates against it); this module builds each entry of that table. Ensembles (stacking, voting)
pass each hyperparameter to every member that uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlops_platform.config.sklearn_models import (
    HYPERPARAMETERS,
    MODEL_NAMES,
    MODELS,
    ModelSpec,
    hyperparameters_of,
    model_spec,
    models_for,
    unsupported_hyperparameters,
)

# Re-exported: the table's readers import them from here too.
__all__ = [
    "BUILDERS",
    "HYPERPARAMETERS",
    "MODELS",
    "MODEL_NAMES",
    "ModelSpec",
    "build_pipeline",
    "hyperparameters_of",
    "model_spec",
    "models_for",
    "unsupported_hyperparameters",
]


def _set(hyperparameters: Mapping[str, Any], *names: str, rename: Mapping[str, str] | None = None) -> dict:
    """The set (non-None) hyperparameters among `names`, renamed to the estimator's own argument names."""
    rename = rename or {}
    return {
        rename.get(name, name): hyperparameters[name]
        for name in names
        if hyperparameters.get(name) is not None
    }


def _scaled(estimator: Any) -> Any:
    """Standardization fitted on the training rows only, saved with the model (distance and linear models)."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", estimator)])


def _bare(estimator: Any) -> Any:
    """Trees need no scaling; still a Pipeline, so every model has the same `model` step."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("model", estimator)])


# ------------------------------------------------------------------------------------ classification


def _baseline_classifier(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.dummy import DummyClassifier

    return _bare(DummyClassifier(strategy="most_frequent"))


def _logreg(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    kwargs = {"max_iter": 1000, **_set(hp, "c", "max_iter", "class_weight", rename={"c": "C"})}
    return _scaled(LogisticRegression(random_state=seed, **kwargs))


def _svc(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    # Calibrated (Platt) probabilities: log_loss, ROC AUC and the served predict_proba need them.
    # ensemble=False keeps one SVC fitted on all training rows, as SVC(probability=True) did before 1.9.
    kwargs = _set(hp, "c", "kernel", "gamma", "class_weight", rename={"c": "C"})
    svc = SVC(random_state=seed, **kwargs)
    return _scaled(CalibratedClassifierCV(svc, method="sigmoid", cv=3, ensemble=False))


def _knn_classifier(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return _scaled(KNeighborsClassifier(**_set(hp, "n_neighbors", "weights")))


def _forest_classifier(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    kwargs = _set(hp, "n_estimators", "max_depth", "min_samples_leaf", "class_weight")
    return _bare(RandomForestClassifier(random_state=seed, n_jobs=1, **kwargs))


def _hist_gb_classifier(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    kwargs = _set(hp, "learning_rate", "max_iter", "max_depth", "min_samples_leaf", "class_weight")
    return _bare(HistGradientBoostingClassifier(random_state=seed, **kwargs))


# Heterogeneous members: a kernel machine, a bagged forest, a neighbour vote and a linear model.
_CLASSIFIER_MEMBERS = {
    "svc": _svc,
    "random_forest": _forest_classifier,
    "knn": _knn_classifier,
    "logreg": _logreg,
}


def _stacking_classifier(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression

    members = [(name, build(hp, seed)) for name, build in _CLASSIFIER_MEMBERS.items()]
    meta = LogisticRegression(max_iter=1000, random_state=seed)
    return _bare(StackingClassifier(members, final_estimator=meta, cv=3, stack_method="predict_proba"))


def _voting_classifier(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.ensemble import VotingClassifier

    members = [(name, build(hp, seed)) for name, build in _CLASSIFIER_MEMBERS.items()]
    return _bare(VotingClassifier(members, voting="soft"))


# ---------------------------------------------------------------------------------------- regression


def _baseline_regressor(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.dummy import DummyRegressor

    return _bare(DummyRegressor(strategy="mean"))


def _ridge(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.linear_model import Ridge

    return _scaled(Ridge(**_set(hp, "alpha")))


def _forest_regressor(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    kwargs = _set(hp, "n_estimators", "max_depth", "min_samples_leaf")
    return _bare(RandomForestRegressor(random_state=seed, n_jobs=1, **kwargs))


def _hist_gb_regressor(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    kwargs = _set(hp, "learning_rate", "max_iter", "max_depth", "min_samples_leaf")
    return _bare(HistGradientBoostingRegressor(random_state=seed, **kwargs))


_REGRESSOR_MEMBERS = {"ridge": _ridge, "random_forest": _forest_regressor, "hist_gb": _hist_gb_regressor}


def _stacking_regressor(hp: Mapping[str, Any], seed: int) -> Any:
    from sklearn.ensemble import StackingRegressor
    from sklearn.linear_model import RidgeCV

    members = [(name, build(hp, seed)) for name, build in _REGRESSOR_MEMBERS.items()]
    return _bare(StackingRegressor(members, final_estimator=RidgeCV(), cv=3))


Builder = Callable[[Mapping[str, Any], int], Any]

# (task, model) -> how to build it; one entry per entry of the table (tests check they match).
BUILDERS: dict[tuple[str, str], Builder] = {
    ("classification", "baseline"): _baseline_classifier,
    ("classification", "logreg"): _logreg,
    ("classification", "svc"): _svc,
    ("classification", "knn"): _knn_classifier,
    ("classification", "random_forest"): _forest_classifier,
    ("classification", "hist_gb"): _hist_gb_classifier,
    ("classification", "stacking"): _stacking_classifier,
    ("classification", "voting"): _voting_classifier,
    ("regression", "baseline"): _baseline_regressor,
    ("regression", "ridge"): _ridge,
    ("regression", "random_forest"): _forest_regressor,
    ("regression", "hist_gb"): _hist_gb_regressor,
    ("regression", "stacking"): _stacking_regressor,
}


def build_pipeline(model: str, task: str, hyperparameters: Mapping[str, Any], seed: int) -> Any:
    """A fresh, unfitted Pipeline whose last step is named `model`."""
    spec = model_spec(model, task)  # KeyError naming the models of the task
    return BUILDERS[(spec.task, spec.name)](hyperparameters, seed)
