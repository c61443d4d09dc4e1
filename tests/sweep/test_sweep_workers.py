"""Several worker processes on one PostgreSQL study, one of them SIGKILLed mid-trial.

Real processes (`mlops sweep run`, `mlops sweep worker`), a real tracking server, a throwaway PostgreSQL
database as the study storage. Short heartbeat and grace period, so the killed worker's trial is failed
by Optuna's heartbeat check within seconds, retried once, and its child run marked KILLED.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_platform.sweep.storage import open_storage
from mlops_platform.sweep.study import budget_trials, load_study
from mlops_platform.sweep.trial import PARENT_TAG, RUN_ID_ATTR, TRIAL_STATE_TAG
from mlops_platform.sweep.worker import STALE_TAG, WORKER_ATTR

pytestmark = pytest.mark.slow
# The same server the session's fixtures use (tests/conftest.py).
POSTGRES_ADMIN_URL = os.environ.get(
    "MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
N_TRIALS = 5
PASSWORD = "not-a-real-secret"  # trust auth ignores it; it must never show up in a run or in output
# Long enough (about 200 small epochs) that the kill lands mid-trial; the space has no epochs or batch size.
SPACE = "lr: {type: log-float, low: 0.001, high: 0.05}\ndropout: {type: float, low: 0.0, high: 0.3}\n"
TRAINER_ARGS = ["--dataset", "wine", "--model", "mlp", "--epochs", "200", "--batch-size", "8", "--patience",
                "0", "--checkpoint-every", "0", "--hidden-sizes", "16"]  # fmt: skip
WAIT_S = 600


@pytest.fixture
def study_storage() -> Iterator[str]:
    """A throwaway PostgreSQL database for the study (with a password in the URL, for redaction)."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as error:  # any connection failure means: no PostgreSQL here
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"mlops_sweep_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(
        database=name, drivername="postgresql", password=PASSWORD
    )
    yield url.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def mlops(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_platform", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, what: str, timeout: float = WAIT_S, every: float = 0.2):
    """Poll an observable condition (not a sleep standing in for one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def test_workers_finish_exactly_the_budget_and_a_killed_worker_is_accounted_for(
    tmp_path: Path, sqlite_tracking_uri: str, fresh_experiment, study_storage: str, _isolated_home: Path
):
    import optuna
    from mlflow import MlflowClient

    from mlops_platform.tracking.journal import journal_root

    experiment, experiment_id = fresh_experiment(sqlite_tracking_uri)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    study_name = f"workers-{uuid.uuid4().hex[:8]}"
    common = ["--study", study_name, "--storage", study_storage]
    driver = mlops(
        "sweep", "run", *common, "--n-trials", str(N_TRIALS), "--sampler", "random", "--space", str(space),
        "--heartbeat-interval", "1", "--grace-period", "3", "--experiment", experiment, *TRAINER_ARGS,
    )  # fmt: skip
    storage = open_storage(study_storage)
    wait_for(lambda: study_name in optuna.get_all_study_names(storage), "the study")
    victim = mlops("sweep", "worker", *common)
    helper = mlops("sweep", "worker", *common)
    client = MlflowClient(sqlite_tracking_uri)

    def victim_mid_trial():
        study, _ = load_study(storage, study_name)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            run_id = trial.user_attrs.get(RUN_ID_ATTR)
            mine = trial.user_attrs.get(WORKER_ATTR, "").endswith(f":{victim.pid}")
            if mine and run_id and client.get_metric_history(run_id, "val_f1_macro"):
                return trial.number, run_id
        return None

    victim_number, victim_run = wait_for(victim_mid_trial, "the victim worker to be mid-trial")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    study, _ = load_study(storage, study_name)
    assert study.trials[victim_number].state.name == "RUNNING", "the kill landed after the trial ended"
    epochs_seen = len(client.get_metric_history(victim_run, "val_f1_macro"))

    outputs = {}
    for name, process in (("driver", driver), ("helper", helper)):
        outputs[name], _ = process.communicate(timeout=WAIT_S)
        assert process.returncode == 0, outputs[name][-4000:]
    assert PASSWORD not in outputs["driver"] + outputs["helper"]

    study, _ = load_study(storage, study_name)
    trials = study.get_trials()
    counted = budget_trials(trials)
    # Exactly the budget: complete + pruned + failed = n_trials, the killed trial replaced by its retry.
    assert len(counted) == N_TRIALS and {trial.state.name for trial in counted} <= {
        "COMPLETE",
        "PRUNED",
        "FAIL",
    }
    assert len({trial.number for trial in trials}) == len(trials) == N_TRIALS + 1
    victim_trial = trials[victim_number]
    assert victim_trial.state.name == "FAIL" and victim_trial not in counted
    retries = [trial for trial in trials if trial.system_attrs.get("failed_trial") == victim_number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == victim_trial.params
    workers = {trial.user_attrs[WORKER_ATTR].rsplit(":", 1)[1] for trial in counted}
    assert workers == {str(driver.pid), str(helper.pid)}, workers

    # One child run per trial, none left RUNNING; the killed one KILLED with its journal delivered.
    parent_id = study.user_attrs["mlops.sweep"]["parent_run_id"]
    children = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'")
    assert sorted(child.info.run_id for child in children) == sorted(
        t.user_attrs[RUN_ID_ATTR] for t in trials
    )
    statuses = {child.info.run_id: child.info.status for child in children}
    assert statuses.pop(victim_run) == "KILLED" and set(statuses.values()) == {"FINISHED"}
    killed = client.get_run(victim_run)
    assert killed.data.tags[STALE_TAG] == "true" and killed.data.tags[TRIAL_STATE_TAG] == "FAIL"
    assert len(client.get_metric_history(victim_run, "val_f1_macro")) >= epochs_seen
    assert not (journal_root(_isolated_home) / victim_run).exists()

    parent = client.get_run(parent_id)
    assert parent.data.metrics["trials_complete"] + parent.data.metrics.get("trials_fail", 0) == N_TRIALS
    assert parent.data.metrics["trials_retried"] == 1
    logged = " ".join([*parent.data.params.values(), *parent.data.tags.values()])
    assert PASSWORD not in logged and "***" in parent.data.params["sweep.storage"]

    status = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "sweep", "status", *common],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert f"complete {N_TRIALS}" in status.stdout and parent_id in status.stdout
    assert PASSWORD not in status.stdout + status.stderr

    # `mlops promote --parent-run` picks among this sweep's children only.
    model_name = f"workers-{uuid.uuid4().hex[:6]}"
    promoted = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "promote", "--experiment", experiment, "--metric",
         "val_f1_macro", "--model-name", model_name, "--parent-run", parent_id],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    champion = client.get_model_version_by_alias(model_name, "champion")
    assert client.get_run(champion.run_id).data.tags[PARENT_TAG] == parent_id
