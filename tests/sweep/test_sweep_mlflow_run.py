"""End to end: `mlflow run . -e sweep` for each trainer, against the real SQLite-backed test server.

The two sweeps are independent (each in its own experiment and MLOPS_HOME), so the module starts both at
once and each test asserts on its own: parent and children through `MlflowClient.search_runs`, the
study in its default storage (SQLite under MLOPS_HOME), and the best child's params against Optuna's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops_platform.tracking import params as param_rules

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600
N_TRIALS = 3
SWEEPS: dict[str, dict[str, str]] = {
    "torch": {
        "trainer": "torch", "sampler": "random", "dataset": "wine", "model": "mlp", "epochs": "3",
        "checkpoint_every": "0",
    },
    "sklearn": {
        "trainer": "sklearn", "metric": "cv_f1_macro_mean", "sampler": "tpe", "dataset": "wine",
        "model": "knn", "cv_folds": "3", "promote_to": f"sweep-e2e-knn-{uuid.uuid4().hex[:6]}",
    },
}  # fmt: skip

pytestmark = pytest.mark.slow


@dataclass
class SweepRun:
    params: dict[str, str]
    experiment_id: str
    home: Path
    returncode: int
    output: str


@pytest.fixture(scope="module")
def sweeps(sqlite_server, tmp_path_factory) -> dict[str, SweepRun]:
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_server.url)
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    started = {}
    for name, params in SWEEPS.items():
        experiment = f"sweep-e2e-{name}-{uuid.uuid4().hex[:8]}"
        experiment_id = client.create_experiment(experiment)
        home = tmp_path_factory.mktemp(f"home-{name}")
        command = [sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "sweep", "--env-manager", "local"]
        command += ["--experiment-name", experiment]
        for key, value in {**params, "n_trials": str(N_TRIALS)}.items():
            command += ["-P", f"{key}={value}"]
        env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": sqlite_server.url, "MLOPS_HOME": str(home)}
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        started[name] = (process, params, experiment_id, home)
    results = {}
    for name, (process, params, experiment_id, home) in started.items():
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        results[name] = SweepRun(params, experiment_id, home, process.returncode, output)
    return results


def check_parent_and_children(sweep: SweepRun, tracking_uri: str, metric: str):
    from mlflow import MlflowClient

    from mlops_platform.sweep.storage import STORAGE_FILE, open_storage
    from mlops_platform.sweep.study import load_study
    from mlops_platform.sweep.trial import RUN_ID_ATTR, TRIAL_NUMBER_TAG, TRIAL_STATE_TAG

    assert sweep.returncode == 0, sweep.output[-4000:]
    client = MlflowClient(tracking_uri)
    parents = client.search_runs([sweep.experiment_id], "tags.`mlops.role` = 'sweep'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [sweep.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == N_TRIALS
    assert sorted(int(child.data.tags[TRIAL_NUMBER_TAG]) for child in children) == list(range(N_TRIALS))
    assert {child.info.status for child in children} == {"FINISHED"}
    assert {child.data.tags[TRIAL_STATE_TAG] for child in children} == {"COMPLETE"}

    # The study, found through the parent run, points back at the children, and they at it.
    study_name = parent.data.tags["mlops.sweep.study"]
    storage = f"sqlite:///{sweep.home / STORAGE_FILE}"  # the default: under the run's MLOPS_HOME
    study, _ = load_study(open_storage(storage), study_name)
    assert parent.data.params["sweep.storage"] == storage and parent.data.params["sweep.study"] == study_name
    by_run = {trial.user_attrs[RUN_ID_ATTR]: trial for trial in study.trials}
    assert set(by_run) == {child.info.run_id for child in children}
    for child in children:
        assert by_run[child.info.run_id].number == int(child.data.tags[TRIAL_NUMBER_TAG])
    best = next(child for child in children if child.info.run_id == study.best_trial.user_attrs[RUN_ID_ATTR])
    for name, value in study.best_params.items():
        assert param_rules.same_param_value(best.data.params[name], value), name
    # A trial's value is its best epoch's, and the last epoch need not be the best: compare the history.
    history = [point.value for point in client.get_metric_history(best.info.run_id, metric)]
    best_epoch = max(history) if study.direction.name == "MAXIMIZE" else min(history)
    assert best_epoch == pytest.approx(study.best_value)
    assert parent.data.tags["mlops.sweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics[f"best_{metric}"] == pytest.approx(study.best_value)
    assert parent.data.metrics["trials_complete"] == N_TRIALS
    assert parent.data.metrics["best_test_f1_macro"] == best.data.metrics["test_f1_macro"]
    figures = {info.path for info in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/optimization_history.png", "sweep/parallel_coordinate.png", "sweep/space.yaml"} <= figures
    return parent, best


def test_torch_sweep_nests_one_child_run_per_trial(sweeps, sqlite_server):
    parent, best = check_parent_and_children(sweeps["torch"], sqlite_server.url, "val_f1_macro")
    assert parent.data.params["trainer_params.dataset"] == "wine"
    assert best.data.params["epochs"] == "3" and best.data.params["early_stopping_metric"] == "val_f1_macro"
    assert "space.lr" in parent.data.params


def test_sklearn_sweep_promotes_its_best_child(sweeps, sqlite_server):
    from mlflow import MlflowClient

    sweep = sweeps["sklearn"]
    parent, best = check_parent_and_children(sweep, sqlite_server.url, "cv_f1_macro_mean")
    version = MlflowClient(sqlite_server.url).get_model_version_by_alias(
        sweep.params["promote_to"], "champion"
    )
    assert version.run_id == best.info.run_id
    assert parent.data.tags["mlops.promote.promoted"] == "true"
