"""The loop every sweep process runs (`mlops sweep run` and each `mlops sweep worker`).

Each round takes the study's budget lock, fails stale trials (Optuna's heartbeat check; its retry
callback queues each once more) and checks the budget: a queued retry, or fewer trials than n_trials.
Then `study.optimize(n_trials=1)` asks for the trial (Optuna pops a queued retry first) and runs it
with Optuna's heartbeat thread, pruner and tell; the objective releases the lock first thing, so the
lock covers the count and the creation of the trial, never the training (see storage.py for why).
With nothing left to claim, a worker waits while other workers' trials run, because one of them may go
stale and come back as a retry; it leaves when no trial of the study is running.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass
from typing import Any

from mlops_platform.sweep.spec import SweepSpec
from mlops_platform.sweep.storage import budget_lock, open_storage
from mlops_platform.sweep.study import budget_trials, load_study
from mlops_platform.sweep.trial import RUN_ID_ATTR, TRIAL_STATE_TAG, run_trial
from mlops_platform.tracking.interface import Tracker
from mlops_platform.tracking.tags import STALE_TAG

log = logging.getLogger(__name__)
WORKER_ATTR = "worker"  # host:pid of the process that ran the trial
MAX_RETRY = 1
# A waiting worker looks this often (or every heartbeat, if more often): it notices the end of the sweep
# and stale trials without a long idle tail; each look is two small queries.
MAX_POLL_S = 1.0


@dataclass
class WorkResult:
    ran: int = 0  # trials this process ran
    states: dict[str, int] | None = None  # this process's trials by final state


def stale_handler(tracking_uri: str | None) -> Any:
    """Optuna's callback for a trial whose worker stopped beating: retry it once, and end its child run.

    The child run is left RUNNING by the dead worker: it is marked KILLED (tagged stale), after the
    journals dead processes left on this machine are delivered (a worker that died on another host
    has its journal delivered when that host next starts a run, or by `mlops sync` there).
    """
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 2.8
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def on_stale(study: Any, trial: Any) -> None:
        retry(study, trial)
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        log.warning("trial %d stopped beating: failed, retried once (run %s)", trial.number, run_id)
        if run_id:
            end_stale_run(run_id, tracking_uri)

    return on_stale


def end_stale_run(run_id: str, tracking_uri: str | None) -> None:
    from mlflow import MlflowClient

    from mlops_platform.settings import resolve_tracking_uri
    from mlops_platform.tracking.replay import sync_journals

    sync_journals(attempts=1)
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    client.set_tag(run_id, TRIAL_STATE_TAG, "FAIL")
    client.set_tag(run_id, STALE_TAG, "true")
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status="KILLED")


def open_study(storage_url: str, study_name: str, tracking_uri: str | None = None) -> tuple[Any, SweepSpec]:
    """The study on a storage with its heartbeat settings (read from the study's spec first)."""
    _, spec = load_study(open_storage(storage_url), study_name)
    storage = open_storage(
        storage_url, spec.heartbeat_interval, spec.grace_period, on_stale=stale_handler(tracking_uri)
    )
    return load_study(storage, study_name)


class Claim:
    """The budget lock, held from the budget check until Optuna has asked for the trial.

    Optuna's `ask` happens inside `study.optimize`, just before it calls the objective; the objective
    releases the claim first thing, so the lock spans exactly the count and the creation of the trial.
    """

    def __init__(self, storage_url: str, study_name: str) -> None:
        self._storage_url = storage_url
        self._study_name = study_name
        self._lock: Any = None
        self._held = False

    def acquire(self) -> None:
        self._lock = budget_lock(self._storage_url, self._study_name)
        self._lock.__enter__()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.__exit__(None, None, None)


def budget_left(study: Any, spec: SweepSpec, may_start: bool) -> bool:
    """Whether one more trial may be asked for: a queued retry, or room in the budget. Fails stale trials
    first (Optuna's heartbeat check; its retry callback queues each once more)."""
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if not may_start:
        return False
    trials = budget_trials(study.get_trials(deepcopy=False))
    waiting = any(trial.state == TrialState.WAITING for trial in trials)
    return waiting or len(trials) < spec.n_trials


def running(study: Any) -> bool:
    from optuna.trial import TrialState

    return any(trial.state == TrialState.RUNNING for trial in study.get_trials(deepcopy=False))


def tag_child_state(tracker: Tracker) -> Any:
    """Optuna callback after each trial: the child run says how Optuna ended the trial."""

    def callback(study: Any, trial: Any) -> None:
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if run_id:
            tracker_client(tracker).set_tag(run_id, TRIAL_STATE_TAG, trial.state.name)

    return callback


def tracker_client(tracker: Tracker) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracker.tracking_uri)


def work(
    study: Any,
    spec: SweepSpec,
    storage_url: str,
    tracker: Tracker | None = None,
    timeout: float | None = None,
    poll_interval: float | None = None,
) -> WorkResult:
    """Claim and run trials until the study's budget is spent and every trial has ended.

    Args:
        timeout: stop starting trials after this many seconds (running ones are waited for).
        poll_interval: seconds between looks while other workers' trials run; default the heartbeat
            interval, at most MAX_POLL_S.
    """
    if tracker is None:
        from mlops_platform.tracking import Tracker as ServerTracker

        tracker = ServerTracker()
    import optuna

    poll = poll_interval if poll_interval is not None else min(spec.heartbeat_interval, MAX_POLL_S)
    started = time.monotonic()
    result = WorkResult(states={})
    claim = Claim(storage_url, study.study_name)
    host = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: Any) -> float:
        claim.release()
        trial.set_user_attr(WORKER_ATTR, host)
        return run_trial(trial, spec, tracker)

    def count(study: Any, trial: Any) -> None:
        result.ran += 1
        result.states[trial.state.name] = result.states.get(trial.state.name, 0) + 1

    while True:
        claim.acquire()
        try:
            may_start = timeout is None or time.monotonic() - started < timeout
            if not budget_left(study, spec, may_start):
                claim.release()
                if not running(study):
                    return result
                time.sleep(poll)  # other workers' trials run; one may go stale and come back as a retry
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # catch: a failed trial is recorded FAIL (its child run FAILED) and the sweep goes on.
                study.optimize(
                    objective, n_trials=1, catch=(Exception,), callbacks=[tag_child_state(tracker), count]
                )
        finally:
            claim.release()
