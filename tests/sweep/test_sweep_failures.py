"""A trial whose training raises ends FAILED (child run) and FAIL (Optuna); the sweep goes on."""

from __future__ import annotations

import pytest

from mlops_platform.config.sweep import SweepConfig
from mlops_platform.sweep import job
from mlops_platform.sweep.storage import open_storage
from mlops_platform.sweep.study import load_study
from mlops_platform.sweep.trial import RUN_ID_ATTR, TRIAL_STATE_TAG

# k-NN with more neighbours than a cross-validation fold has rows raises inside scikit-learn: a value
# the config accepts (n_neighbors >= 1) that fails only when training.
SPACE = "n_neighbors: {type: categorical, choices: [5, 500]}\n"


@pytest.mark.slow
def test_a_failing_trial_is_failed_and_the_sweep_goes_on(tmp_path, sqlite_tracking_uri, fresh_experiment):
    from mlflow import MlflowClient

    experiment_name, _ = fresh_experiment(sqlite_tracking_uri)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = SweepConfig.parse(
        {
            "trainer": "sklearn",
            "metric": "cv_f1_macro_mean",
            "n_trials": 2,
            "sampler": "grid",
            "space": str(space),
            "storage": storage,
            "study": "failures",
            "experiment": experiment_name,
            "trainer_params": {"dataset": "wine", "model": "knn", "cv_folds": "3", "baseline": "false"},
        }
    )
    result = job.run(config)

    study, _ = load_study(open_storage(storage), "failures")
    by_value = {trial.params["n_neighbors"]: trial for trial in study.trials}
    assert by_value[5].state.name == "COMPLETE" and by_value[500].state.name == "FAIL"
    client = MlflowClient(sqlite_tracking_uri)
    failed = client.get_run(by_value[500].user_attrs[RUN_ID_ATTR])
    assert failed.info.status == "FAILED" and failed.data.tags[TRIAL_STATE_TAG] == "FAIL"
    assert "n_neighbors" in failed.data.tags["mlops.error"] or "n_samples" in failed.data.tags["mlops.error"]
    assert result.summary.counts["COMPLETE"] == 1 and result.summary.counts["FAIL"] == 1
    assert result.summary.best_params == {"n_neighbors": 5}


@pytest.mark.slow
def test_timeout_stops_starting_trials_and_leaves_nothing_running(
    tmp_path, sqlite_tracking_uri, fresh_experiment
):
    """`timeout` ends a sweep short of its budget: no trial starts after it, the running one finishes,
    and every trial that ran has its FINISHED child run (nothing left RUNNING)."""
    from mlflow import MlflowClient

    experiment_name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = SweepConfig.parse(
        {
            "trainer": "sklearn",
            "metric": "cv_f1_macro_mean",
            "n_trials": 50,
            "sampler": "random",
            "timeout": 0.5,  # shorter than one trial: the first trial runs, no second one starts
            "storage": storage,
            "study": "timeout",
            "experiment": experiment_name,
            "trainer_params": {"dataset": "wine", "model": "knn", "cv_folds": "3", "baseline": "false"},
        }
    )
    result = job.run(config)

    study, _ = load_study(open_storage(storage), "timeout")
    assert 1 <= len(study.trials) < 50
    assert {trial.state.name for trial in study.trials} == {"COMPLETE"}
    assert sum(result.summary.counts.values()) == len(study.trials)
    client = MlflowClient(sqlite_tracking_uri)
    runs = client.search_runs([experiment_id])
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert {run.info.run_id for run in children} == {t.user_attrs[RUN_ID_ATTR] for t in study.trials}
    assert {run.info.status for run in runs} == {"FINISHED"}
