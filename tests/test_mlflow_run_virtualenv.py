"""`mlflow run . --env-manager virtualenv` builds the environment python_env.yaml describes, and the job
runs in it against a real server. Slow: the first run creates the virtualenv (minutes); later runs
reuse it from MLflow's environment cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sklearn_job_runs_in_the_python_env_virtualenv(sqlite_tracking_uri: str, fresh_experiment):
    from mlflow import MlflowClient

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    command = [
        sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "train_sklearn",
        "--env-manager", "virtualenv", "--experiment-name", name,
        "-P", "dataset=wine", "-P", "model=logreg", "-P", "cv_folds=2", "-P", "baseline=false",
    ]  # fmt: skip
    # mlflow finds pyenv and virtualenv on PATH; the .venv's bin must come first for `virtualenv`.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]

    client = MlflowClient(sqlite_tracking_uri)
    runs = client.search_runs([experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "logreg"
    assert run.data.metrics["test_accuracy"] > 0.8
    # The job really ran in the virtualenv MLflow built, not in this interpreter's environment.
    assert "virtualenv" in result.stderr.lower() or "/envs/" in result.stderr
