"""Promotion of models the sklearn trainer really logged (Tracker.log_model), loaded back by alias."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_promote_real_trainer_runs_and_load_champion(sqlite_tracking_uri, fresh_experiment) -> None:
    import mlflow.pyfunc
    from mlflow import MlflowClient
    from sklearn.datasets import load_wine

    from mlops_platform.config.train_sklearn import TrainSklearnConfig
    from mlops_platform.registry import find_best_run, promote_best
    from mlops_platform.training import sklearn_job

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    common = {"dataset": "wine", "cv_folds": 2, "experiment": name}
    for model in ("logreg", "knn"):
        sklearn_job.run(TrainSklearnConfig.parse({**common, "model": model}))

    client = MlflowClient(sqlite_tracking_uri)
    candidates = client.search_runs([experiment_id], "tags.`mlops.role` = 'candidate'")
    expected = max(candidates, key=lambda run: run.data.metrics["cv_f1_macro_mean"])
    # mode omitted: the direction of cv_f1_macro_mean comes from mlops_platform.evaluation.METRIC_DIRECTIONS.
    assert find_best_run(name, "cv_f1_macro_mean").run_id == expected.info.run_id
    decision = promote_best(name, "cv_f1_macro_mean", f"wine-{experiment_id}")
    assert decision.promoted and decision.run_id == expected.info.run_id and decision.baseline_run_id

    champion = mlflow.pyfunc.load_model(f"models:/wine-{experiment_id}@champion")
    features = load_wine(as_frame=True).data.head(5)
    assert len(champion.predict(features)) == 5
