"""A job command (`mlops train sklearn`) against the real server: a bad value fails before any run, named."""

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
