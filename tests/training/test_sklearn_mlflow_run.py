"""End to end: `mlflow run . -e train_sklearn` against the real SQLite-backed test server.

One smoke run per model family, plus the digits and diabetes quality checks with their baseline runs.
The runs are independent (each in its own experiment), so the module starts them all at once, a few
at a time, and each test then asserts on its own run through MlflowClient: the suite pays for the
slowest batch, not for the sum of all runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARALLEL_RUNS = 4
RUN_TIMEOUT_S = 300

# family -> parameters; tiny settings (2 folds, few trees) keep each run to seconds. The kernel and linear
# runs train the baseline run first (each experiment is new) and are also checked against it.
FAMILY_RUNS: dict[str, dict[str, str]] = {
    "kernel": {"dataset": "digits", "model": "svc", "cv_folds": "3", "baseline": "true"},
    "linear": {"dataset": "diabetes", "model": "ridge", "cv_folds": "3", "baseline": "true", "alpha": "1.0"},
    "neighbors": {"dataset": "wine", "model": "knn", "n_neighbors": "7"},
    "bagging": {"dataset": "wine", "model": "random_forest", "n_estimators": "10"},
    "boosting": {"dataset": "breast_cancer", "model": "hist_gb", "max_iter": "20"},
    "stacking": {"dataset": "wine", "model": "stacking", "n_estimators": "10"},
    "voting": {
        "dataset": "breast_cancer", "model": "voting", "n_estimators": "10",
        "registered_model_name": "sklearn-e2e-voting",
    },
}  # fmt: skip
# Rejected while parsing the config, before the job touches the run `mlflow run` made for it.
INVALID_RUNS: dict[str, dict[str, str]] = {"invalid_hyperparameter": {"model": "svc", "n_neighbors": "3"}}


@dataclass
class MlflowRun:
    experiment_id: str
    experiment_name: str
    returncode: int
    output: str


def _env(tracking_uri: str, home: Path) -> dict[str, str]:
    # `mlflow run --env-manager local` runs `python`, which must be this venv's interpreter.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": tracking_uri, "MLOPS_HOME": str(home)}


def _mlflow_run(params: dict[str, str], experiment_name: str) -> list[str]:
    settings = {"cv_folds": "2", "baseline": "false", **params}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(ROOT),
        "-e",
        "train_sklearn",
        "--env-manager",
        "local",
    ]
    command += ["--experiment-name", experiment_name]
    for name, value in settings.items():
        command += ["-P", f"{name}={value}"]
    return command


@pytest.fixture(scope="module")
def mlflow_runs(sqlite_server, tmp_path_factory) -> Iterator[dict[str, MlflowRun]]:
    """Every run of this module, started PARALLEL_RUNS at a time; waits for all of them."""
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_server.url)
    home = tmp_path_factory.mktemp("sklearn-e2e-home")
    pending = [*FAMILY_RUNS.items(), *INVALID_RUNS.items()]
    running: dict[str, tuple[subprocess.Popen, str, str, float]] = {}
    finished: dict[str, MlflowRun] = {}
    while pending or running:
        while pending and len(running) < PARALLEL_RUNS:
            key, params = pending.pop(0)
            name = f"sklearn-e2e-{key}-{uuid.uuid4().hex[:8]}"
            experiment_id = client.create_experiment(name)
            process = subprocess.Popen(
                _mlflow_run(params, name),
                env=_env(sqlite_server.url, home),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            running[key] = (process, experiment_id, name, time.monotonic())
        time.sleep(0.5)
        for key, (process, experiment_id, name, started) in list(running.items()):
            if process.poll() is None and time.monotonic() - started < RUN_TIMEOUT_S:
                continue
            if process.poll() is None:
                process.kill()
            output = process.communicate()[0]
            finished[key] = MlflowRun(experiment_id, name, process.returncode, output)
            del running[key]
    yield finished


def _single_run(client, mlflow_run: MlflowRun, role: str = "candidate"):
    assert mlflow_run.returncode == 0, mlflow_run.output[-5000:]
    runs = client.search_runs([mlflow_run.experiment_id], filter_string=f"tags.`mlops.role` = '{role}'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


CLASSIFICATION_METRICS = ("test_accuracy", "test_f1_macro", "test_roc_auc", "test_log_loss")
REGRESSION_METRICS = ("test_rmse", "test_mae", "test_r2")
COMMON_METRICS = ("fit_seconds", "predict_latency_ms_per_row", "model_size_bytes")


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILY_RUNS))
def test_model_family_smoke(family: str, mlflow_runs, sqlite_tracking_uri):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_tracking_uri)
    params = FAMILY_RUNS[family]
    run = _single_run(client, mlflow_runs[family])
    # The job attached to the run `mlflow run` created; only a baseline run may stand beside it.
    expected_runs = 2 if params.get("baseline") == "true" else 1
    assert len(client.search_runs([mlflow_runs[family].experiment_id])) == expected_runs
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlops.model"] == params["model"]
    assert run.data.params["model"] == params["model"]

    regression = params["dataset"] == "diabetes"
    names = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    metrics = run.data.metrics
    for name in (*names, *COMMON_METRICS):
        assert name in metrics, name
    for name in names:
        base = name.removeprefix("test_")
        assert f"cv_{base}_mean" in metrics and f"cv_{base}_std" in metrics, base
    if regression:
        assert metrics["test_r2"] > 0.2
    else:
        assert metrics["test_accuracy"] > 0.85
        assert 0.5 < metrics["test_roc_auc"] <= 1.0
    assert metrics["model_size_bytes"] > 0 and metrics["predict_latency_ms_per_row"] > 0

    # Only the hyperparameters this model takes are params, even under `mlflow run` (MLproject leaves
    # them undeclared, so MLflow logs only those given).
    from mlops_platform.config.sklearn_models import HYPERPARAMETERS, hyperparameters_of

    task = "regression" if regression else "classification"
    assert set(run.data.params) & set(HYPERPARAMETERS) <= set(hyperparameters_of(params["model"], task))

    # Estimator get_params() are params; hyperparameters reach the estimator.
    estimator_params = {k: v for k, v in run.data.params.items() if k.startswith("estimator.")}
    assert estimator_params
    if "n_estimators" in params and family == "bagging":
        assert run.data.params["estimator.model__n_estimators"] == params["n_estimators"]

    artifacts = _artifact_paths(client, run.info.run_id)
    assert "config.json" in artifacts
    if regression:
        assert "plots/residuals.png" in artifacts
    else:
        assert {"plots/confusion_matrix.png", "reports/classification_report.txt"} <= artifacts
    has_importances = "reports/feature_importances.csv" in artifacts
    # Forests have impurity importances and linear models coefficients; the others have neither.
    assert has_importances == (family in ("bagging", "linear"))

    inputs = run.inputs.dataset_inputs
    contexts = {tag.value for d in inputs for tag in d.tags if tag.key == "mlflow.data.context"}
    assert contexts == {"train", "test"}
    assert {d.dataset.name for d in inputs} == {params["dataset"]}
    assert all(d.dataset.digest for d in inputs)

    (model_output,) = run.outputs.model_outputs
    logged = client.get_logged_model(model_output.model_id)
    assert logged.name == "model" and logged.source_run_id == run.info.run_id
    # The logged model loads as pyfunc (models:/ resolves on MLFLOW_TRACKING_URI, set by the fixture) and
    # predicts with the same preprocessing as in training.
    import mlflow.pyfunc

    from mlops_platform.data import load_dataset

    dataset = load_dataset(params["dataset"])
    loaded = mlflow.pyfunc.load_model(f"models:/{model_output.model_id}")
    assert loaded.metadata.get_input_schema().input_names() == list(dataset.feature_names)
    predictions = loaded.predict(dataset.features.head(20))
    assert len(predictions) == 20
    if not regression:
        assert set(predictions.tolist()) <= set(dataset.class_labels)
        assert (predictions == dataset.target.head(20).to_numpy()).mean() >= 0.8
    if "registered_model_name" in params:
        versions = client.search_model_versions(f"name = '{params['registered_model_name']}'")
        assert any(version.run_id == run.info.run_id for version in versions)


def _artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    paths = set()
    for info in client.list_artifacts(run_id, path):
        paths |= _artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return paths


@pytest.mark.slow
def test_digits_svc_reaches_098_and_beats_its_baseline_run(mlflow_runs, sqlite_server):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_server.url)
    mlflow_run = mlflow_runs["kernel"]
    run = _single_run(client, mlflow_run)
    baseline = _single_run(client, mlflow_run, role="baseline")
    assert run.data.metrics["test_accuracy"] >= 0.98
    assert baseline.info.status == "FINISHED"
    assert baseline.data.tags["mlops.model"] == "baseline"
    assert baseline.data.tags["mlops.dataset_digest"] == run.data.tags["mlops.dataset_digest"]
    assert run.data.tags["mlops.baseline_run_id"] == baseline.info.run_id
    assert baseline.data.metrics["test_accuracy"] < 0.2 < run.data.metrics["test_accuracy"]
    assert baseline.data.metrics["test_log_loss"] > run.data.metrics["test_log_loss"]


@pytest.mark.slow
def test_diabetes_ridge_beats_its_baseline_run(mlflow_runs, sqlite_server):
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_server.url)
    mlflow_run = mlflow_runs["linear"]
    run = _single_run(client, mlflow_run)
    baseline = _single_run(client, mlflow_run, role="baseline")
    assert run.data.metrics["test_r2"] > baseline.data.metrics["test_r2"]
    assert run.data.metrics["test_rmse"] < baseline.data.metrics["test_rmse"]
    assert abs(baseline.data.metrics["test_r2"]) < 0.1  # the mean predicts no variance
    assert 40 < run.data.metrics["test_rmse"] < 70  # diabetes targets span ~25..346


@pytest.mark.slow
def test_invalid_hyperparameter_fails_the_mlflow_run_naming_it(mlflow_runs, sqlite_server):
    from mlflow import MlflowClient

    mlflow_run = mlflow_runs["invalid_hyperparameter"]
    assert mlflow_run.returncode != 0
    assert (
        "n_neighbors=3" in mlflow_run.output
        and "valid for svc: c, kernel, gamma, class_weight" in mlflow_run.output
    )
    # Only the run `mlflow run` itself created exists, and it failed; the job made none.
    runs = MlflowClient(sqlite_server.url).search_runs([mlflow_run.experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]
    assert runs[0].data.metrics == {}
    # ... and it says why, for whoever finds it in the UI.
    assert "n_neighbors=3" in runs[0].data.tags["mlops.error"]
