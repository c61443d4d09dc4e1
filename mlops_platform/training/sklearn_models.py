"""The scikit-learn estimators of the `train_sklearn` job, each built as a Pipeline with its preprocessing.

One table says which models exist for which task and which hyperparameters each takes; the config
validates against it before any run exists, and `build_pipeline` builds from it. A hyperparameter left
unset (None) keeps the estimator's own default. Ensembles (stacking, voting) take the hyperparameters of
their members and pass each one to every member that uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    """One model for one task: which hyperparameters it takes and how to build its pipeline."""

    name: str
    task: str
    hyperparameters: tuple[str, ...]
    build: Callable[[Mapping[str, Any], int], Any]
    description: str


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
        ModelSpec("baseline", "classification", (), _baseline_classifier, "majority class (DummyClassifier)"),
        ModelSpec(
            "logreg", "classification", _LOGREG, _logreg, "logistic regression on standardized features"
        ),
        ModelSpec("svc", "classification", _SVC, _svc, "support vector machine on standardized features"),
        ModelSpec(
            "knn", "classification", _KNN, _knn_classifier, "k nearest neighbours on standardized features"
        ),
        ModelSpec(
            "random_forest", "classification", (*_FOREST, "class_weight"), _forest_classifier, "random forest"
        ),
        ModelSpec("hist_gb", "classification", (*_HIST_GB, "class_weight"), _hist_gb_classifier, "boosting"),
        ModelSpec(
            "stacking",
            "classification",
            _CLASSIFIER_ENSEMBLE,
            _stacking_classifier,
            "svc + random_forest + knn + logreg, logistic-regression meta-learner",
        ),
        ModelSpec(
            "voting",
            "classification",
            _CLASSIFIER_ENSEMBLE,
            _voting_classifier,
            "soft vote of the stacking members",
        ),
        ModelSpec("baseline", "regression", (), _baseline_regressor, "training mean (DummyRegressor)"),
        ModelSpec("ridge", "regression", ("alpha",), _ridge, "ridge regression on standardized features"),
        ModelSpec("random_forest", "regression", _FOREST, _forest_regressor, "random forest"),
        ModelSpec("hist_gb", "regression", _HIST_GB, _hist_gb_regressor, "boosting"),
        ModelSpec(
            "stacking",
            "regression",
            _union(("alpha",), _FOREST, _HIST_GB),
            _stacking_regressor,
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


def build_pipeline(model: str, task: str, hyperparameters: Mapping[str, Any], seed: int) -> Any:
    """A fresh, unfitted Pipeline whose last step is named `model`."""
    return model_spec(model, task).build(hyperparameters, seed)
