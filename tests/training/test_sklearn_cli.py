"""`mlops train sklearn` against the real server: bad values fail before any run; baselines are reused."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--model", "gradient_magic"], "gradient_magic"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--model", "svc", "--n-estimators", "50"], "n_estimators=50"),
        (["--dataset", "diabetes", "--model", "logreg"], "model='logreg' does not fit dataset 'diabetes'"),
    ],
)
def test_invalid_value_exits_non_zero_names_it_and_creates_no_run(
    arguments, named, sqlite_tracking_uri, fresh_experiment
):
    from mlflow import MlflowClient

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    command = [
        sys.executable,
        "-m",
        "mlops_platform",
        "train",
        "sklearn",
        "--experiment",
        name,
        *arguments,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert MlflowClient(sqlite_tracking_uri).search_runs([experiment_id]) == []


def test_second_job_in_an_experiment_reuses_its_baseline(sqlite_tracking_uri, fresh_experiment):
    from mlflow import MlflowClient

    from mlops_platform.config.train_sklearn import TrainSklearnConfig
    from mlops_platform.training import sklearn_job

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    common = {"dataset": "wine", "cv_folds": 2, "experiment": name}
    first = sklearn_job.run(TrainSklearnConfig.parse({**common, "model": "logreg"}))
    second = sklearn_job.run(TrainSklearnConfig.parse({**common, "model": "knn"}))

    client = MlflowClient(sqlite_tracking_uri)
    baselines = client.search_runs([experiment_id], filter_string="tags.`mlops.role` = 'baseline'")
    assert [run.info.run_id for run in baselines] == [first.baseline_run_id] == [second.baseline_run_id]
    candidates = client.search_runs([experiment_id], filter_string="tags.`mlops.role` = 'candidate'")
    assert {run.info.run_id for run in candidates} == {first.run_id, second.run_id}
    assert all(run.info.status == "FINISHED" for run in [*baselines, *candidates])
