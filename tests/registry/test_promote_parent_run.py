"""`mlops promote --parent-run RUN_ID`: only that run's children (a sweep's trials) compete."""

from __future__ import annotations

from click.testing import CliRunner

from mlops_platform.cli import cli

from .helpers import make_run


def test_parent_run_limits_candidates_to_its_children(sqlite_tracking_uri, fresh_experiment) -> None:
    from mlflow import MlflowClient

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    parent = make_run(sqlite_tracking_uri, experiment_id, with_model=False, tags={"mlops.role": "sweep"})
    child = {"mlflow.parentRunId": parent}
    best_child = make_run(sqlite_tracking_uri, experiment_id, {"val_f1_macro": 0.8}, tags=child)
    make_run(sqlite_tracking_uri, experiment_id, {"val_f1_macro": 0.7}, tags=child)
    make_run(sqlite_tracking_uri, experiment_id, {"val_f1_macro": 0.95})  # better, but no child

    def promote(*extra: str):
        return CliRunner().invoke(
            cli,
            ["promote", "--experiment", name, "--metric", "val_f1_macro", "--model-name", f"{name}-m",
             "--tracking-uri", sqlite_tracking_uri, "--dry-run", "true", *extra],
        )  # fmt: skip

    limited = promote("--parent-run", parent)
    assert limited.exit_code == 0, limited.output
    assert best_child in limited.output and '"promoted": true' in limited.output
    bad = promote("--parent-run", "x' OR '1")
    assert bad.exit_code != 0 and "invalid parent run id" in bad.output
    assert MlflowClient(sqlite_tracking_uri).search_registered_models(f"name = '{name}-m'") == []
