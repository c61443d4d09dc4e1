"""RecordingTracker keeps what a run logged, with the same interface and status rules as Tracker."""

from __future__ import annotations

import pytest

from mlops_platform.tracking import RecordingTracker


def test_records_metrics_params_artifacts_and_status(tmp_path) -> None:
    tracker = RecordingTracker()
    (tmp_path / "notes.txt").write_text("hello")
    with tracker.run(experiment="unit", run_name="r") as run:
        run.log_config({"optimizer": {"lr": 0.1}, "seed": None})
        run.log_metrics({"loss": 0.5}, step=0)
        run.log_metrics({"loss": 0.25}, step=1)
        run.set_tags({"kind": "unit"})
        run.log_artifact(tmp_path / "notes.txt", "docs")
        info = run.log_model("sklearn", object(), input_example=[1])
        assert run.flush()
    assert run.status == "FINISHED"
    assert tracker.last_run is run
    assert run.params == {"optimizer.lr": "0.1", "seed": ""}
    assert run.config == {"optimizer": {"lr": 0.1}, "seed": None}
    assert run.history("loss") == [0.5, 0.25]
    assert run.artifacts["docs/notes.txt"] == b"hello"
    assert info.model_uri.startswith("models:/")


def test_failure_and_bad_metric_name() -> None:
    tracker = RecordingTracker()
    with pytest.raises(RuntimeError), tracker.run() as run:
        raise RuntimeError("boom")
    assert run.status == "FAILED"
    assert "RuntimeError: boom" in run.artifacts["error/traceback.txt"]
    with tracker.run() as run, pytest.raises(ValueError, match="invalid metric name"):
        run.log_metrics({"bad\nname": 1.0})
