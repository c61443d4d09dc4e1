"""ChildRunTracker (a trial's tracker) against RecordingTracker: nesting tags, the side runs, pruning."""

from __future__ import annotations

import optuna
import pytest

from mlops_platform.sweep.trial import ChildRunTracker
from mlops_platform.tracking import RecordingTracker
from mlops_platform.tracking.tags import PRUNED_TAG, TRIAL_STATE_TAG


def child_tracker(started: list) -> tuple[RecordingTracker, ChildRunTracker]:
    inner = RecordingTracker()
    return inner, ChildRunTracker(inner, {"mlflow.parentRunId": "parent"}, started.append)


def test_the_jobs_own_run_is_a_new_child_run_and_side_runs_stay_as_made() -> None:
    started: list = []
    inner, tracker = child_tracker(started)
    with tracker.run(experiment="e", run_name="trial-0", tags={"mlops.model": "knn"}, entry_point="j") as run:
        pass
    with tracker.run(run_name="baseline", tags={"mlops.role": "baseline"}, use_env_run=False):
        pass
    child, side = inner.runs
    assert run is child and started == [child]
    assert child.tags == {"mlops.model": "knn", "mlflow.parentRunId": "parent"}
    assert (child.experiment, child.run_name, child.options["use_env_run"]) == ("e", "trial-0", False)
    assert child.options["entry_point"] == "j"
    assert side.tags == {"mlops.role": "baseline"} and side.status == "FINISHED"
    assert tracker.tracking_uri == inner.tracking_uri


def test_a_pruned_trial_ends_finished_with_the_reason_and_the_exception_goes_on() -> None:
    inner, tracker = child_tracker([])
    with pytest.raises(optuna.TrialPruned), tracker.run():
        raise optuna.TrialPruned("pruned at epoch 2")
    assert inner.last_run.status == "FINISHED"
    assert inner.last_run.tags[TRIAL_STATE_TAG] == "PRUNED"
    assert inner.last_run.tags[PRUNED_TAG] == "pruned at epoch 2"
