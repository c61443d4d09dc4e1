"""The `train_sklearn` job: load and split the data, cross-validate, fit, score, and log it all.

    MLproject entry point train_sklearn (-P dataset=digits -P model=svc)
    mlops train sklearn --dataset diabetes --model ridge

Order matters: everything a user can get wrong (the dataset, the target, the model for the task, a
hyperparameter the model does not take, too few rows per class for the folds) is checked by `prepare`
before the tracker creates a run. The first time an experiment sees a dataset, the baseline model is
trained and logged as a run of its own (tag mlops.role=baseline), so every experiment has a reference.
Logging goes through the tracker's run object only.
"""

from __future__ import annotations

import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_platform import evaluation
from mlops_platform.columns import COLUMN_ROLES_ARTIFACT
from mlops_platform.config.train_sklearn import TrainSklearnConfig
from mlops_platform.data import DataError, Dataset, Splits, load_dataset, split_dataset
from mlops_platform.errors import UserError
from mlops_platform.preprocessing import build_preprocessor, with_preprocessing
from mlops_platform.skew.profile import PROFILE_FILE, model_profile
from mlops_platform.tracking.interface import Run, Tracker
from mlops_platform.tracking.signatures import SKLEARN_SERVING_PACKAGES, column_signature, pinned
from mlops_platform.tracking.tags import (
    BASELINE_RUN_TAG,
    DATASET_DIGEST_TAG,
    DATASET_TAG,
    MODEL_TAG,
    ROLE_TAG,
    TASK_TAG,
    TEST_DIGEST_TAG,
)
from mlops_platform.training.sklearn_models import (
    build_pipeline,
    hyperparameters_of,
    models_for,
    unsupported_hyperparameters,
)

ENTRY_POINT = "train_sklearn"
BASELINE_MODEL = "baseline"
LATENCY_REPEATS = 3
# Models that take NaN in their input themselves, so impute=none can leave missing numbers as they are.
_TAKES_MISSING = ("hist_gb", BASELINE_MODEL)
# MLflow's hint that integer columns cannot hold missing values: our labels and counts never miss any.
_INTEGER_SCHEMA_HINT = ".*integer column"

# scikit-learn scorer per metric; "neg_" scorers are negated back so every metric reads naturally.
_CV_SCORERS = {
    "classification": {"accuracy": "accuracy", "f1_macro": "f1_macro", "log_loss": "neg_log_loss"},
    "regression": {"rmse": "neg_root_mean_squared_error", "mae": "neg_mean_absolute_error", "r2": "r2"},
}


@dataclass(frozen=True)
class PreparedData:
    """Validated data for one job: nothing here has touched the tracking server."""

    config: TrainSklearnConfig
    dataset: Dataset
    splits: Splits

    @property
    def task(self) -> str:
        return self.dataset.task


@dataclass
class TrainedModel:
    """A fitted pipeline with everything measured about it."""

    model: str
    pipeline: Any
    metrics: dict[str, float]
    test_predictions: np.ndarray
    test_probabilities: np.ndarray | None
    serialized: bytes = field(repr=False)


@dataclass(frozen=True)
class JobResult:
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    baseline_run_id: str | None
    model_uri: str | None


# Finds the run id of a FINISHED baseline run for (experiment_id, dataset digest, task), or None.
BaselineFinder = Callable[[str, str, str], "str | None"]


def prepare(config: TrainSklearnConfig) -> PreparedData:
    """Load, validate and split the data, and check the model against the resolved task.

    Raises:
        UserError (DataError): anything the user must fix; no run exists yet.
    """
    task = None if config.task == "auto" else config.task
    dataset = load_dataset(
        config.dataset,
        target=config.target,
        task=task,
        categorical=config.categorical_columns,
        drop=config.dropped_columns,
    )
    if config.model not in models_for(dataset.task):
        raise UserError(
            f"model={config.model!r} does not fit dataset {dataset.name!r}, a {dataset.task} task; "
            f"valid: {', '.join(models_for(dataset.task))}"
        )
    wrong = unsupported_hyperparameters(config.model, dataset.task, config.hyperparameters())
    if wrong:
        raise UserError(
            f"hyperparameter {', '.join(wrong)} does not apply to {dataset.task} model={config.model!r}; "
            f"valid: {', '.join(hyperparameters_of(config.model, dataset.task)) or 'none'}"
        )
    gaps = [name for name in dataset.roles.numeric if name in dataset.roles.with_missing]
    if config.impute == "none" and gaps and config.model not in _TAKES_MISSING:
        raise DataError(
            f"impute=none leaves missing numbers in {', '.join(gaps)}, which model={config.model!r} "
            f"cannot take; use impute=median|most_frequent or model={'|'.join(_TAKES_MISSING)}"
        )
    splits = split_dataset(dataset, config.seed, config.val_fraction, config.test_fraction)
    if dataset.task == "classification":
        counts = splits.train.target.value_counts()
        if counts.min() < config.cv_folds:
            raise DataError(
                f"class {counts.idxmin()!r} has {counts.min()} training rows, fewer than cv_folds="
                f"{config.cv_folds}; lower cv_folds or use more data"
            )
    elif len(splits.train) < 2 * config.cv_folds:
        raise DataError(f"{len(splits.train)} training rows are too few for cv_folds={config.cv_folds}")
    return PreparedData(config=config, dataset=dataset, splits=splits)


def cross_validate(pipeline: Any, prepared: PreparedData) -> dict[str, float]:
    """k-fold CV on the training split: `cv_<metric>_mean` and `cv_<metric>_std` per metric."""
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.model_selection import cross_validate as sklearn_cross_validate

    config, task = prepared.config, prepared.task
    splitter_class = StratifiedKFold if task == "classification" else KFold
    splitter = splitter_class(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
    scorers = dict(_CV_SCORERS[task])
    if task == "classification":
        scorers["roc_auc"] = "roc_auc" if prepared.dataset.n_classes == 2 else "roc_auc_ovr"
    train = prepared.splits.train
    scores = sklearn_cross_validate(
        pipeline, train.features, train.target, cv=splitter, scoring=scorers, n_jobs=1, error_score="raise"
    )
    result = {}
    for name, scorer in scorers.items():
        values = scores[f"test_{name}"] * (-1.0 if scorer.startswith("neg_") else 1.0)
        result[f"cv_{name}_mean"] = float(np.mean(values))
        result[f"cv_{name}_std"] = float(np.std(values))
    return result


def train_model(model: str, prepared: PreparedData) -> TrainedModel:
    """Cross-validate, fit on the training split, score on validation (when any) and test."""
    config = prepared.config
    hyperparameters = config.hyperparameters() if model == config.model else {}
    pipeline = build_pipeline(model, prepared.task, hyperparameters, config.seed)
    roles = prepared.dataset.roles
    if not roles.all_numeric_complete:
        # Scaling stays where it is: inside the pipelines of the models that need it.
        preprocessor = build_preprocessor(roles, scale=False, **config.preprocessing_options())
        pipeline = with_preprocessing(pipeline, preprocessor)
    metrics = cross_validate(pipeline, prepared)

    train, test = prepared.splits.train, prepared.splits.test
    started = time.perf_counter()
    pipeline.fit(train.features, train.target)
    metrics["fit_seconds"] = time.perf_counter() - started

    predictions, probabilities = _predict(pipeline, test.features, prepared.task)
    metrics.update(evaluation.prefixed(_score(prepared, test.target, predictions, probabilities), "test"))
    validation = prepared.splits.validation
    if len(validation):
        val_predictions, val_probabilities = _predict(pipeline, validation.features, prepared.task)
        scored = _score(prepared, validation.target, val_predictions, val_probabilities)
        metrics.update(evaluation.prefixed(scored, "val"))

    metrics["predict_latency_ms_per_row"] = _latency_ms_per_row(pipeline, test.features)
    serialized = _serialize(pipeline)
    metrics["model_size_bytes"] = float(len(serialized))
    return TrainedModel(model, pipeline, metrics, predictions, probabilities, serialized)


def _predict(pipeline: Any, features: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    predictions = np.asarray(pipeline.predict(features))
    probabilities = pipeline.predict_proba(features) if task == "classification" else None
    return predictions, probabilities


def _score(
    prepared: PreparedData, y_true: pd.Series, predictions: np.ndarray, probabilities: np.ndarray | None
) -> dict[str, float]:
    if prepared.task == "classification":
        labels = list(prepared.dataset.class_labels)
        return evaluation.classification_metrics(y_true, predictions, probabilities, labels=labels)
    return evaluation.regression_metrics(y_true, predictions)


def _latency_ms_per_row(pipeline: Any, features: pd.DataFrame) -> float:
    """Best of a few batch predictions over the test rows, per row: the cost of one served row."""
    best = float("inf")
    for _ in range(LATENCY_REPEATS):
        started = time.perf_counter()
        pipeline.predict(features)
        best = min(best, time.perf_counter() - started)
    return 1000.0 * best / max(len(features), 1)


def _serialize(pipeline: Any) -> bytes:
    """The pipeline as skops writes it for the MLflow sklearn flavor (so its size is the logged size)."""
    import skops.io

    try:
        return skops.io.dumps(pipeline)
    except (TypeError, NotImplementedError):
        # skops cannot write every estimator; pickle is then the format we log (see _log_model).
        return pickle.dumps(pipeline)


def feature_importances(pipeline: Any, feature_names: tuple[str, ...]) -> pd.DataFrame | None:
    """Impurity importances of tree models, or |coefficient| (mean over classes) of linear models on
    standardized features; None when the model has neither. With a preprocessing step, the names are
    its output columns (one per category)."""
    estimator = pipeline.named_steps["model"]
    if "preprocess" in pipeline.named_steps:
        encoded = pipeline.named_steps["preprocess"].get_feature_names_out()
        feature_names = tuple(str(name) for name in encoded)
    values = getattr(estimator, "feature_importances_", None)
    if values is None and hasattr(estimator, "coef_"):
        coefficients = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
        values = np.abs(coefficients).mean(axis=0)
    if values is None or len(values) != len(feature_names):
        return None
    return evaluation.feature_importances_table(feature_names, values)


def estimator_params(pipeline: Any) -> dict[str, Any]:
    """The pipeline's `get_params(deep=True)` as loggable scalars, keyed `estimator.<name>`; nested
    estimators are logged by class name."""
    params: dict[str, Any] = {}
    for name, value in pipeline.get_params(deep=True).items():
        if isinstance(value, bool | int | float | str) or value is None:
            params[f"estimator.{name}"] = "None" if value is None else value
        elif hasattr(value, "get_params"):
            params[f"estimator.{name}"] = type(value).__name__
    return params


# ------------------------------------------------------------------------------------------- logging


def _run_tags(prepared: PreparedData, model: str) -> dict[str, str]:
    dataset = prepared.dataset
    return {
        ROLE_TAG: "baseline" if model == BASELINE_MODEL else "candidate",
        MODEL_TAG: model,
        TASK_TAG: dataset.task,
        DATASET_TAG: dataset.name,
        DATASET_DIGEST_TAG: dataset.digest,
        TEST_DIGEST_TAG: prepared.splits.test.digest,
    }


def log_trained(run: Run, prepared: PreparedData, trained: TrainedModel, register: bool) -> str | None:
    """Params, metrics, datasets, figures, reports and the model itself; returns the model URI."""
    config, dataset, splits = prepared.config, prepared.dataset, prepared.splits
    config = config.for_model(trained.model)  # the baseline's params say it trained the baseline
    run.log_config(config.to_params(), params=config.logged_params(dataset.task))
    run.log_params(
        {
            "resolved.model": trained.model,
            "resolved.task": dataset.task,
            "data.n_features": len(dataset.feature_names),
            **column_role_params(dataset),
            "data.n_train": len(splits.train),
            "data.n_validation": len(splits.validation),
            "data.n_test": len(splits.test),
            "data.digest": dataset.digest,
            **{f"data.{context}_digest": digest for context, digest in splits.digests.items()},
            **estimator_params(trained.pipeline),
        }
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTEGER_SCHEMA_HINT, category=UserWarning)
        splits.log_to(run)
    run.log_metrics(trained.metrics)
    run.log_dict(dataset.roles.to_dict(), COLUMN_ROLES_ARTIFACT)
    _log_evaluation_artifacts(run, prepared, trained)
    model_info = _log_model(run, prepared, trained, config.registered_model_name if register else None)
    return getattr(model_info, "model_uri", None)


def column_role_params(dataset: Dataset) -> dict[str, Any]:
    """How many columns have each role, and which were dropped (the full roles are an artifact)."""
    return dataset.roles.params()


def _log_evaluation_artifacts(run: Run, prepared: PreparedData, trained: TrainedModel) -> None:
    dataset, test = prepared.dataset, prepared.splits.test
    title = f"{trained.model} on {dataset.name} (test)"
    if dataset.task == "classification":
        labels = list(dataset.class_labels)
        run.log_figure(
            evaluation.confusion_matrix_figure(test.target, trained.test_predictions, labels, title=title),
            "plots/confusion_matrix.png",
        )
        report = evaluation.classification_report_text(test.target, trained.test_predictions, labels)
        run.log_text(report, "reports/classification_report.txt")
        mistakes = evaluation.misclassified_table(
            test.features, test.target, trained.test_predictions, trained.test_probabilities
        )
        run.log_text(mistakes.to_csv(index=False), "reports/misclassified_test_samples.csv")
    else:
        run.log_figure(
            evaluation.residual_figure(test.target, trained.test_predictions, title=title),
            "plots/residuals.png",
        )
    importances = feature_importances(trained.pipeline, dataset.feature_names)
    if importances is not None:
        run.log_text(importances.to_csv(index=False), "reports/feature_importances.csv")
        run.log_figure(evaluation.feature_importances_figure(importances), "plots/feature_importances.png")


def _log_model(
    run: Run, prepared: PreparedData, trained: TrainedModel, registered_model_name: str | None
) -> Any:
    import skops.io

    example = prepared.splits.train.features.head(5)
    signature = column_signature(example, trained.pipeline.predict(example))
    try:
        # We built every type in this pipeline ourselves; listing them lets loaders accept them.
        flavor_kwargs: dict[str, Any] = {
            "skops_trusted_types": skops.io.get_untrusted_types(data=trained.serialized)
        }
        packages = [*SKLEARN_SERVING_PACKAGES, "skops"]
    except Exception:  # the bytes are a pickle: skops could not write this pipeline
        flavor_kwargs = {"serialization_format": "cloudpickle"}
        packages = [*SKLEARN_SERVING_PACKAGES, "cloudpickle"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTEGER_SCHEMA_HINT, category=UserWarning)
        return run.log_model(
            "sklearn",
            trained.pipeline,
            input_example=example,
            signature=signature,
            registered_model_name=registered_model_name,
            # Stated, not inferred: inference loads the model in a subprocess (seconds per model) and picks
            # up whatever the process imported (torch), which a scikit-learn model does not need.
            pip_requirements=pinned(packages),
            metadata={"column_roles": prepared.dataset.roles.to_dict()},
            model_files={PROFILE_FILE: skew_profile(prepared, trained)},
            **flavor_kwargs,
        )


def skew_profile(prepared: PreparedData, trained: TrainedModel) -> dict[str, Any]:
    """The training split's profile for `mlops skew`, with the predictions on validation (on test when
    the job keeps no validation split) as the reference for the served predictions."""
    train, validation = prepared.splits.train, prepared.splits.validation
    if len(validation):
        split, predictions = "validation", trained.pipeline.predict(validation.features)
    else:
        split, predictions = "test", trained.test_predictions
    roles = prepared.dataset.roles.to_dict()
    return model_profile(train.features, roles, train.target, predictions, predictions_split=split)


# ----------------------------------------------------------------------------------------------- job


def default_baseline_finder(tracker: Tracker) -> BaselineFinder:
    """Searches the tracker's server (read-only) for a FINISHED baseline run of the same data and task."""
    from mlops_platform.registry.search import find_baseline_run

    def find(experiment_id: str, dataset_digest: str, task: str) -> str | None:
        return find_baseline_run(experiment_id, dataset_digest, task, tracker.tracking_uri)

    return find


def run(
    config: TrainSklearnConfig, tracker: Tracker | None = None, find_baseline: BaselineFinder | None = None
) -> JobResult:
    """Train `config.model`, and the baseline first when the experiment has none for this data.

    Args:
        config: the parsed job config.
        tracker: a `mlops_platform.tracking.Tracker` (default) or `RecordingTracker` (tests).
        find_baseline: how to look for an existing baseline run; default searches the tracking server.
    """
    prepared = prepare(config)
    if tracker is None:
        from mlops_platform.tracking import Tracker as ServerTracker

        tracker = ServerTracker()
    find_baseline = find_baseline or default_baseline_finder(tracker)
    dataset = prepared.dataset
    tags = _run_tags(prepared, config.model)
    run_name = config.run_name or f"{config.model}-{dataset.name}"

    with tracker.run(
        experiment=config.experiment, run_name=run_name, tags=tags, entry_point=ENTRY_POINT
    ) as main_run:
        baseline_run_id = None
        if config.model != BASELINE_MODEL and config.baseline:
            baseline_run_id = find_baseline(main_run.experiment_id, dataset.digest, dataset.task)
            if baseline_run_id is None:
                baseline_run_id = _train_baseline_run(tracker, prepared, main_run.experiment_id)
        if baseline_run_id is not None:
            main_run.set_tags({BASELINE_RUN_TAG: baseline_run_id})
        trained = train_model(config.model, prepared)
        model_uri = log_trained(main_run, prepared, trained, register=True)
        main_run.flush()
        result = JobResult(
            main_run.run_id, main_run.experiment_id, trained.metrics, baseline_run_id, model_uri
        )
    _print_summary(result, prepared, tracker.tracking_uri)
    return result


def _train_baseline_run(tracker: Tracker, prepared: PreparedData, experiment_id: str) -> str:
    """The baseline as a run of its own (never the MLFLOW_RUN_ID run), in the candidate's experiment."""
    config = prepared.config
    with tracker.run(
        experiment=config.experiment,
        run_name=f"{BASELINE_MODEL}-{prepared.dataset.name}",
        tags=_run_tags(prepared, BASELINE_MODEL),
        entry_point=ENTRY_POINT,
        use_env_run=False,
    ) as baseline_run:
        if baseline_run.experiment_id != experiment_id:
            raise RuntimeError(
                f"baseline run landed in experiment {baseline_run.experiment_id}, not {experiment_id}"
            )
        trained = train_model(BASELINE_MODEL, prepared)
        # The baseline is a reference point, not a deployable candidate: never registered.
        log_trained(baseline_run, prepared, trained, register=False)
        baseline_run.flush()
        return baseline_run.run_id


def _print_summary(result: JobResult, prepared: PreparedData, tracking_uri: str | None) -> None:
    primary = (
        ("test_accuracy", "test_f1_macro") if prepared.task == "classification" else ("test_r2", "test_rmse")
    )
    shown = " ".join(f"{name}={result.metrics[name]:.4f}" for name in primary if name in result.metrics)
    lines = [f"run {result.run_id} (experiment {result.experiment_id}): {shown}"]
    if result.baseline_run_id:
        lines.append(f"baseline run: {result.baseline_run_id}")
    if result.model_uri:
        lines.append(f"model: {result.model_uri}")
    if tracking_uri and tracking_uri.startswith("http"):
        from mlops_platform.settings import experiment_ui_url

        lines.append(f"compare runs: {experiment_ui_url(tracking_uri, result.experiment_id)}")
    print("\n".join(lines))
