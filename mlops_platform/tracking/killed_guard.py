"""Keeps a run that `mlflow run` launched KILLED when its job was stopped by SIGTERM/SIGINT.

Why a detached process: MLflow's launcher (`mlflow run`, `mlflow.projects.run`) waits for the job
process and then ends the run itself: FINISHED when the job exits 0, FAILED otherwise. It means to
leave a run the job already ended alone, but its check compares the status *string* it reads back with
RunStatus's *integer* constants (`_maybe_set_run_terminated` in mlflow/projects/__init__.py, MLflow 3),
so it overwrites every ending, KILLED included. Nothing the job does before exiting can stop that:
exiting 0 turns KILLED into FINISHED (worse: a stopped run would look complete and could be promoted),
exiting non-zero turns it into FAILED. So the job ends its run KILLED, exits 128+signal as any killed
process does, and leaves this small process behind: it watches the run until the launcher has written
its status (or is gone), and writes KILLED back, with the job's own end time.

    python -m mlops_platform.tracking.killed_guard RUN_ID END_TIME_MS LAUNCHER_PID|0
(the tracking URI and credentials come from the environment, as for every MLflow client)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlops_platform.tracking.tags import KILLED_REASSERTED_TAG

KILLED = "KILLED"
POLL_S = 0.25
# Upper bound on the watch: MLflow's launcher writes within a second or two of the job's exit.
WATCH_S = 60.0
# Set on the run when the guard had to restore KILLED, so the overwrite is visible, not silent.
REASSERTED_TAG = KILLED_REASSERTED_TAG


def find_launcher(pid: int | None = None) -> int | None:
    """The pid of the nearest ancestor running `mlflow run`, or None (e.g. `mlflow.projects.run` in a
    notebook, or no launcher at all)."""
    import psutil

    try:
        for parent in psutil.Process(pid or os.getpid()).parents():
            arguments = parent.cmdline()
            names = [Path(argument).name for argument in arguments]
            if "mlflow" in names and "run" in arguments[names.index("mlflow") + 1 :]:
                return parent.pid
    except psutil.Error:
        return None
    return None


def start_guard(run_id: str, end_time_ms: int, tracking_uri: str | None) -> None:
    """Leave the guard running detached (its own session: the terminal's next Ctrl-C does not reach it).
    Best effort: if it cannot start, the run is left as MLflow's launcher ends it."""
    launcher = find_launcher() or 0
    command = [sys.executable, "-m", __name__, run_id, str(end_time_ms), str(launcher)]
    environment = dict(os.environ)
    if tracking_uri:  # the environment, not argv: a URI may carry a user name, and argv is public
        environment["MLFLOW_TRACKING_URI"] = tracking_uri
    try:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env=environment,
        )
    except OSError as error:
        print(f"tracking: could not start the guard keeping run {run_id} KILLED: {error}", file=sys.stderr)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def guard(client, run_id: str, end_time_ms: int, launcher_pid: int, watch_s: float = WATCH_S) -> bool:
    """Watch `run_id` until its launcher has exited (or `watch_s` passed); whenever its status is not
    KILLED, make it KILLED again. True if it had to."""
    deadline = time.monotonic() + watch_s
    reasserted = False
    while True:
        launcher_gone = launcher_pid > 0 and not _alive(launcher_pid)
        try:
            status = client.get_run(run_id).info.status
            if status != KILLED:
                client.set_tag(run_id, REASSERTED_TAG, f"mlflow run's launcher had set {status}")
                client.set_terminated(run_id, status=KILLED, end_time=end_time_ms)
                reasserted = True
        except Exception:  # the server is away for a moment: look again
            pass
        if launcher_gone or time.monotonic() > deadline:
            return reasserted
        time.sleep(POLL_S)


def main(argv: list[str]) -> None:
    from mlflow import MlflowClient

    from mlops_platform.settings import resolve_tracking_uri

    run_id, end_time_ms, launcher_pid = argv[0], int(argv[1]), int(argv[2])
    client = MlflowClient(resolve_tracking_uri())
    guard(client, run_id, end_time_ms, launcher_pid)


if __name__ == "__main__":
    main(sys.argv[1:])
