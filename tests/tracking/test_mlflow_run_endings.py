"""Real `mlflow run` processes: a stopped job's run stays KILLED, and a data error is explained on it.

MLflow's launcher ends the run itself after the job exits (FAILED on a non-zero exit, whatever the job
recorded); tracking/killed_guard.py puts KILLED back. The three jobs run at once to keep the test short.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from mlops_platform.tracking.killed_guard import REASSERTED_TAG

REPO = Path(__file__).resolve().parents[2]
TRAIN_LONG = ["-P", "dataset=wine", "-P", "model=mlp", "-P", "epochs=100000", "-P", "patience=0"]


def _launch(uri: str, home: Path, experiment: str, params: list[str]) -> subprocess.Popen:
    # `mlflow run --env-manager local` runs `python`: it must be this interpreter. A session of its own,
    # as a terminal gives a foreground job: Ctrl-C is SIGINT to the whole process group.
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": uri,
        "MLOPS_HOME": str(home),
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO),
        "-e",
        "train_torch",
        "--env-manager",
        "local",
    ]
    return subprocess.Popen(
        [*command, "--experiment-name", experiment, *params],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _training_run(client: MlflowClient, experiment_id: str, launcher: subprocess.Popen):
    """The job's run once it has logged a training metric (its signal handlers are in place by then)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        runs = client.search_runs([experiment_id])
        if runs and "train_loss_step" in runs[0].data.metrics:
            return runs[0]
        assert launcher.poll() is None, launcher.stderr.read()[-3000:]
        time.sleep(1)
    raise AssertionError("the job never started training")


def _settled_status(client: MlflowClient, run_id: str, launcher: subprocess.Popen) -> tuple[str, dict]:
    """The run's status after the launcher has exited and the guard had its chance to correct it."""
    launcher.wait(timeout=120)
    deadline = time.monotonic() + 30
    while True:
        run = client.get_run(run_id)
        if (run.info.status == "KILLED" and REASSERTED_TAG in run.data.tags) or time.monotonic() > deadline:
            return run.info.status, run.data.tags
        time.sleep(0.5)


@pytest.mark.slow
def test_ctrl_c_and_sigterm_leave_the_run_killed_and_a_data_error_is_tagged(
    sqlite_tracking_uri, fresh_experiment, tmp_path
) -> None:
    client = MlflowClient(sqlite_tracking_uri)
    (ctrl_c, ctrl_c_id), (term, term_id), (bad_data, bad_data_id) = (
        fresh_experiment(sqlite_tracking_uri) for _ in range(3)
    )
    launchers = {
        "ctrl_c": _launch(sqlite_tracking_uri, tmp_path / "a", ctrl_c, TRAIN_LONG),
        "term": _launch(sqlite_tracking_uri, tmp_path / "b", term, TRAIN_LONG),
        "bad_data": _launch(
            sqlite_tracking_uri,
            tmp_path / "c",
            bad_data,
            ["-P", "dataset=csv:/nonexistent.csv", "-P", "target=y", "-P", "model=mlp"],
        ),
    }
    try:
        interrupted = _training_run(client, ctrl_c_id, launchers["ctrl_c"])
        terminated = _training_run(client, term_id, launchers["term"])
        # Ctrl-C: SIGINT to `mlflow run` and the job alike; the launcher then sends the job a SIGTERM too.
        os.killpg(launchers["ctrl_c"].pid, signal.SIGINT)
        # SIGTERM to the job alone (a scheduler stopping it): the job is the launcher's child.
        (job,) = [
            process
            for process in psutil.Process(launchers["term"].pid).children(recursive=True)
            if "mlops_platform" in process.cmdline()
        ]
        job.send_signal(signal.SIGTERM)

        for name, run in (("ctrl_c", interrupted), ("term", terminated)):
            status, tags = _settled_status(client, run.info.run_id, launchers[name])
            assert status == "KILLED", (name, tags)
            assert tags[REASSERTED_TAG] == "mlflow run's launcher had set FAILED"
        assert launchers["bad_data"].wait(timeout=120) != 0
        (failed,) = client.search_runs([bad_data_id])
        assert failed.info.status == "FAILED"
        assert "CSV file not found" in failed.data.tags["mlops.error"]
    finally:
        for launcher in launchers.values():
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
