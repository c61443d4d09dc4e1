"""The run context against real servers (SQLite and PostgreSQL backends)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlops_platform.tracking import Tracker
from mlops_platform.tracking.params import OVERFLOW_MARKER, ParamOverflowWarning
from mlops_platform.tracking.tags import ENTRY_POINT_TAG, HEARTBEAT_TAG, HOST_TAG


def _artifact_json(client: MlflowClient, run_id: str, path: str, tmp_path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text())


def test_logs_everything_and_finishes(tracking_uri, experiment_name, mlflow_client, tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text("a")
    tracker = Tracker(system_metrics_interval=0.2)
    with tracker.run(
        experiment=experiment_name, run_name="everything", tags={"team": "t"}, entry_point="unit"
    ) as run:
        run.log_params({"optimizer": {"lr": 0.1, "name": "adam"}, "seed": None})
        with pytest.warns(ParamOverflowWarning):
            run.log_params({"long": "y" * 7000})
        # How long a call takes is measured by benchmarks/tracking_overhead.py, not asserted here.
        for step in range(300):
            run.log_metrics({"loss": 1 / (step + 1), "acc": step / 300}, step=step)
        run.set_tags({"phase": "done"})
        run.log_artifacts(tmp_path / "folder", "folder")
        figure, axis = plt.subplots()
        axis.plot([1, 2, 3])
        run.log_figure(figure, "plots/curve.png")
        run.log_text("hello", "notes/hello.txt")
        run.log_dataset(pd.DataFrame({"x": [1.0, 2.0], "target": [0, 1]}), name="tiny", targets="target")
        time.sleep(0.5)  # let the system-metrics sampler log a point
        assert run.flush(timeout=30)
    stored = mlflow_client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.info.experiment_id == mlflow_client.get_experiment_by_name(experiment_name).experiment_id
    params = stored.data.params
    assert params["optimizer.lr"] == "0.1" and params["optimizer.name"] == "adam" and params["seed"] == ""
    assert params["long"].endswith(OVERFLOW_MARKER)
    assert _artifact_json(mlflow_client, run.run_id, "params_overflow.json", tmp_path) == {"long": "y" * 7000}
    history = mlflow_client.get_metric_history(run.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(300))
    tags = stored.data.tags
    assert tags["team"] == "t" and tags["phase"] == "done" and tags[ENTRY_POINT_TAG] == "unit"
    assert HOST_TAG in tags and HEARTBEAT_TAG in tags and "mlops.version.mlflow" in tags
    assert "mlflow.source.git.commit" in tags and tags["mlops.git.dirty"] in ("true", "false")
    assert any(k.startswith("system/cpu_utilization") for k in stored.data.metrics)
    paths = {a.path for a in mlflow_client.list_artifacts(run.run_id)}
    assert {"folder", "plots", "notes"} <= paths
    assert [d.dataset.name for d in stored.inputs.dataset_inputs] == ["tiny"]
    assert os.listdir(tracker.home / "journal") == []  # delivered journals are removed


def test_attaches_to_mlflow_run_and_tolerates_raw_string_params(
    tracking_uri, experiment_id, mlflow_client, monkeypatch, tmp_path
) -> None:
    # What `mlflow run -P lr=1e-3 -P seed= -P layers=2` leaves before the job starts.
    created = mlflow_client.create_run(experiment_id)
    run_id = created.info.run_id
    for key, value in {"lr": "1e-3", "seed": "", "layers": "2"}.items():
        mlflow_client.log_param(run_id, key, value)
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    config = {"lr": 0.001, "seed": None, "layers": 2, "optimizer": {"name": "adam"}}
    with Tracker().run(experiment="ignored-under-mlflow-run") as run:
        assert run.run_id == run_id and run.experiment_id == experiment_id
        run.log_config(config)
        run.log_metrics({"loss": 0.5}, step=0)
    stored = mlflow_client.get_run(run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"lr": "1e-3", "seed": "", "layers": "2", "optimizer.name": "adam"}
    assert _artifact_json(mlflow_client, run_id, "config.json", tmp_path) == config
    assert len(mlflow_client.search_runs([experiment_id])) == 1
    # use_env_run=False makes a second run even under `mlflow run` (a baseline, say).
    with Tracker().run(
        use_env_run=False, experiment=mlflow_client.get_experiment(experiment_id).name
    ) as other:
        assert other.run_id != run_id


def test_exception_marks_failed_with_traceback(
    tracking_uri, experiment_name, mlflow_client, tmp_path
) -> None:
    with pytest.raises(ZeroDivisionError), Tracker().run(experiment=experiment_name) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        _ = 1 / 0
    stored = mlflow_client.get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags["mlops.error"].startswith("ZeroDivisionError")
    traceback_file = mlflow_client.download_artifacts(run.run_id, "error/traceback.txt", str(tmp_path))
    assert "ZeroDivisionError: division by zero" in Path(traceback_file).read_text()
    assert [m.step for m in mlflow_client.get_metric_history(run.run_id, "loss")] == [0]


def test_resume_sets_running_again_and_appends(tracking_uri, experiment_name, mlflow_client) -> None:
    tracker = Tracker()
    with tracker.run(experiment=experiment_name) as first:
        first.log_metrics({"loss": 1.0}, step=0)
    with tracker.run(resume_run_id=first.run_id) as resumed:
        assert mlflow_client.get_run(first.run_id).info.status == "RUNNING"
        resumed.log_metrics({"loss": 0.5}, step=1)
    assert mlflow_client.get_run(first.run_id).info.status == "FINISHED"
    assert [m.step for m in mlflow_client.get_metric_history(first.run_id, "loss")] == [0, 1]


def test_log_model_links_a_logged_model_and_leaves_no_global_state(
    sqlite_tracking_uri, fresh_experiment, monkeypatch
) -> None:
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")  # a different experiment must not capture the model
    features, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(features, target)
    uri_before = tracking_utils._tracking_uri
    with Tracker().run(experiment=name) as run:
        run.log_metrics({"accuracy": 0.9}, step=0)
        info = run.log_model(
            "sklearn", model, input_example=features.iloc[:2], pip_requirements=["scikit-learn"]
        )
    assert info.model_uri == f"models:/{info.model_id}"
    client = MlflowClient(sqlite_tracking_uri)
    logged = client.get_logged_model(info.model_id)
    assert logged.source_run_id == run.run_id and logged.experiment_id == experiment_id
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert mlflow.active_run() is None
    assert tracking_utils._tracking_uri == uri_before
    assert os.environ["MLFLOW_TRACKING_URI"] == sqlite_tracking_uri


def test_refused_param_is_kept_aside_and_the_rest_delivered(sqlite_tracking_uri, fresh_experiment) -> None:
    import math

    from mlops_platform.tracking.delivery import DeliveryRejected

    name, _ = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    with Tracker().run(experiment=name) as run:
        client.log_param(run.run_id, "q", "x")  # behind the tracker's back: it cannot know
        with pytest.warns(DeliveryRejected, match="Changing param values is not allowed"):
            run.log_params({"q": "y", "r": 2})
            run.log_metrics({"loss": math.nan, "acc": 0.5}, step=1)
            assert run.flush(timeout=30)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"q": "x", "r": "2"}
    assert math.isnan(stored.data.metrics["loss"]) and stored.data.metrics["acc"] == 0.5
    rejected = [json.loads(line) for line in (run.tracker.home / "rejected" / f"{run.run_id}.jsonl").open()]
    assert [(r["kind"], r["key"], r["value"]) for r in rejected] == [("params", "q", "y")]


def test_a_huge_tag_is_cut_kept_whole_as_an_artifact_and_blocks_nothing(
    sqlite_tracking_uri, fresh_experiment, tmp_path
) -> None:
    from mlops_platform.tracking.params import TAG_OVERFLOW_ARTIFACT, TAG_OVERFLOW_MARKER

    name, _ = fresh_experiment(sqlite_tracking_uri)
    client = MlflowClient(sqlite_tracking_uri)
    huge = "z" * (5 * 1024 * 1024)  # larger than the journal reader's window
    with Tracker(system_metrics_interval=0).run(experiment=name) as run:
        with pytest.warns(ParamOverflowWarning, match="tag 'notes'"):
            run.set_tags({"notes": huge})
        run.log_metrics({"loss": 0.5}, step=1)
        assert run.flush(timeout=60)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.tags["notes"].endswith(TAG_OVERFLOW_MARKER) and len(stored.data.tags["notes"]) == 8000
    assert stored.data.metrics["loss"] == 0.5
    assert _artifact_json(client, run.run_id, TAG_OVERFLOW_ARTIFACT, tmp_path) == {"notes": huge}


def test_a_run_whose_journal_cannot_open_is_not_left_running(
    sqlite_tracking_uri, fresh_experiment, tmp_path
) -> None:
    name, experiment_id = fresh_experiment(sqlite_tracking_uri)
    home = tmp_path / "home"
    home.mkdir()
    (home / "journal").write_text("a file where the journal folder should be")
    with pytest.raises(OSError), Tracker(home=home).run(experiment=name):
        pass
    client = MlflowClient(sqlite_tracking_uri)
    [run] = client.search_runs([experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["mlops.error"].startswith(("FileExistsError", "NotADirectoryError"))


def test_an_error_whose_message_cannot_be_printed_still_fails_the_run(
    sqlite_tracking_uri, fresh_experiment
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message")

    name, _ = fresh_experiment(sqlite_tracking_uri)
    with pytest.raises(Unprintable), Tracker(system_metrics_interval=0).run(experiment=name) as run:
        raise Unprintable()
    stored = MlflowClient(sqlite_tracking_uri).get_run(run.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.tags["mlops.error"] == "Unprintable: <message not printable>"
    assert not (run.tracker.home / "journal" / run.run_id).exists()
