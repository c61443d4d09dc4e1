"""tracking/env_run.py: a job that fails before its tracking begins says why on the `mlflow run` run."""

from __future__ import annotations

from mlflow import MlflowClient

from mlops_platform.tracking.env_run import env_run_id, record_failure
from mlops_platform.tracking.tags import ERROR_TAG


def test_the_reason_lands_on_the_env_run_once(sqlite_tracking_uri, fresh_experiment, monkeypatch) -> None:
    client = MlflowClient(sqlite_tracking_uri)
    _, experiment_id = fresh_experiment(sqlite_tracking_uri)
    run_id = client.create_run(experiment_id).info.run_id

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    assert env_run_id() is None
    assert record_failure("nothing to tag") is None  # outside `mlflow run`: nothing written

    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    assert env_run_id() == run_id
    assert record_failure("invalid parameter epochs='0'" + "x" * 6000) is None
    tag = client.get_run(run_id).data.tags[ERROR_TAG]
    assert tag.startswith("invalid parameter epochs='0'") and len(tag) == 5000
    # A reason the tracker already recorded from inside the run is kept.
    assert record_failure("a later, vaguer reason", keep_existing=True) is None
    assert client.get_run(run_id).data.tags[ERROR_TAG] == tag
    record_failure("replaced")
    assert client.get_run(run_id).data.tags[ERROR_TAG] == "replaced"


def test_a_refused_tag_is_a_warning_not_an_error(sqlite_tracking_uri, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)  # no such run
    warning = record_failure("bad value")
    assert warning is not None and warning.startswith(f"warning: could not tag run {'0' * 32} with the error")
