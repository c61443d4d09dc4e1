"""One trial = one run of the trainer's own job, nested under the sweep's parent run.

The job gets a `ChildRunTracker`: the run it opens for itself (the one it would take from `mlflow run`)
is created instead as a new run tagged `mlflow.parentRunId`, with the study and trial number as tags,
and the run id goes back to the trial as a user attribute. Runs a job opens on the side
(`use_env_run=False`: the scikit-learn baseline, a reference for the whole experiment) stay as the job
makes them. A torch trial reports its validation metric to Optuna after every epoch; when the pruner
says stop, the run ends FINISHED with `mlops.sweep.trial_state=PRUNED` and no logged model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from mlops_platform.sweep.space import suggest
from mlops_platform.sweep.spec import SweepSpec
from mlops_platform.tracking.interface import Run, Tracker
from mlops_platform.tracking.tags import PARENT_TAG, PRUNED_TAG, STUDY_TAG, TRIAL_NUMBER_TAG, TRIAL_STATE_TAG

RUN_ID_ATTR = "mlflow_run_id"  # the trial's user attribute holding its child run id


class _ChildRun:
    """Context manager around the job's run: says where it started, and ends a pruned run cleanly."""

    def __init__(self, inner: AbstractContextManager[Run], on_start: Callable[[Run], None]) -> None:
        self.inner = inner
        self.on_start = on_start

    def __enter__(self) -> Run:
        run = self.run = self.inner.__enter__()
        try:
            self.on_start(run)
        except BaseException:
            self.inner.__exit__(*sys.exc_info())
            raise
        return run

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        import optuna

        if exc_type is not None and issubclass(exc_type, optuna.TrialPruned):
            # Not a failure: the sweep stopped it. The run ends FINISHED with the tag, and the exception
            # goes on so the job stops where it is (no evaluation, no model).
            self.run.set_tags({TRIAL_STATE_TAG: "PRUNED", PRUNED_TAG: str(exc)[:5000]})
            self.inner.__exit__(None, None, None)
            return False
        return self.inner.__exit__(exc_type, exc, tb)


class ChildRunTracker:
    """The tracker a trial's job gets; see the module docstring. Everything else is the real tracker's."""

    def __init__(self, tracker: Tracker, tags: dict[str, str], on_start: Callable[[Run], None]) -> None:
        self.tracker = tracker
        self.tags = tags
        self.on_start = on_start

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)

    @property
    def tracking_uri(self) -> str:
        return self.tracker.tracking_uri

    def run(
        self,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        resume_run_id: str | None = None,
        entry_point: str | None = None,
        use_env_run: bool = True,
    ) -> AbstractContextManager[Run]:
        where = {
            "experiment": experiment,
            "run_name": run_name,
            "resume_run_id": resume_run_id,
            "entry_point": entry_point,
        }
        if not use_env_run:
            return self.tracker.run(tags=tags, use_env_run=False, **where)
        merged = {**(tags or {}), **self.tags}
        return _ChildRun(self.tracker.run(tags=merged, use_env_run=False, **where), self.on_start)


def trial_params(spec: SweepSpec, study_name: str, number: int, values: dict[str, Any]) -> dict[str, Any]:
    """The trainer config of one trial: fixed params, the trial's values, the parent's experiment."""
    return {
        **spec.trainer_params,
        **values,
        "experiment": spec.experiment_name,
        "run_name": f"{study_name}-trial-{number}",
    }


def best_of(values: list[float], direction: str) -> float:
    """The best epoch's value (NaN epochs never win; all NaN gives NaN, which Optuna fails)."""
    finite = [value for value in values if value == value]
    if not finite:
        return float("nan")
    return max(finite) if direction == "max" else min(finite)


def run_trial(trial: Any, spec: SweepSpec, tracker: Tracker) -> float:
    """Train one model with the trial's values; returns the validation metric Optuna optimizes.

    Raises:
        optuna.TrialPruned: the pruner stopped it (torch).
        Exception: whatever the job raised; the child run ended FAILED with it.
    """
    import optuna

    study_name = trial.study.study_name
    values = suggest(trial, spec.distributions())
    params = trial_params(spec, study_name, trial.number, values)
    child_tracker = ChildRunTracker(
        tracker,
        tags={PARENT_TAG: spec.parent_run_id, STUDY_TAG: study_name, TRIAL_NUMBER_TAG: str(trial.number)},
        on_start=lambda run: trial.set_user_attr(RUN_ID_ATTR, run.run_id),
    )
    if spec.trainer == "torch":
        from mlops_platform.config.train_torch import TorchTrainConfig
        from mlops_platform.training import torch_job

        history: list[float] = []

        def report(epoch: int, metrics: dict[str, float]) -> None:
            value = metrics[spec.metric]
            history.append(value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}: {spec.metric}={value:.6g}")

        torch_job.run(TorchTrainConfig.parse(params), tracker=child_tracker, on_epoch_end=report)
        return best_of(history, spec.direction)

    from mlops_platform.config.train_sklearn import TrainSklearnConfig
    from mlops_platform.training import sklearn_job

    result = sklearn_job.run(TrainSklearnConfig.parse(params), tracker=child_tracker)
    if spec.metric not in result.metrics:
        raise KeyError(
            f"the trial's run has no metric {spec.metric!r}; it has {', '.join(sorted(result.metrics))}"
        )
    return float(result.metrics[spec.metric])
