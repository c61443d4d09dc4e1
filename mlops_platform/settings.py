"""Where things live: MLOPS_HOME and the tracking URI, resolved from the environment on each call.

Nothing here runs at import time: no folder is created and no global MLflow state is touched, so a
test (or a notebook) can point MLOPS_HOME and MLFLOW_TRACKING_URI anywhere before calling in.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = ".mlops"
# The state file `mlops server start` writes (pid, start time, url, stores).
SERVER_STATE_FILE = "server.json"


def mlops_home() -> Path:
    """The folder for the local server's database, artifacts, pid file, logs and journals."""
    return Path(os.environ.get("MLOPS_HOME", DEFAULT_HOME)).expanduser().resolve()


def live_server_state(home: Path | None = None) -> dict | None:
    """The state `mlops server start` recorded under `home` (MLOPS_HOME), while that process lives.

    A state file left by a crashed server does not count: the recorded pid must still be the process
    that was started (pids are reused, so its start time must match too). Read here rather than in
    server.py so this module stays a leaf that every other module may import.
    """
    import json

    try:
        state = json.loads(((home or mlops_home()) / SERVER_STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if is_same_process(state.get("pid"), state.get("create_time")) else None


def is_same_process(pid: int | None, create_time: float | None) -> bool:
    """True when `pid` is alive and is the process started at `create_time` (pids are reused)."""
    import psutil

    if not pid or create_time is None:
        return False
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - create_time) < 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def local_server_url(home: Path | None = None) -> str | None:
    """The URL of the server `mlops server start` started under `home`, while that process lives."""
    state = live_server_state(home)
    return state["url"] if state else None


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The tracking URI, in MLflow's own order of precedence plus our local server.

    An explicit argument wins, then `MLFLOW_TRACKING_URI` (exactly as MLflow reads it), then the
    server `mlops server start` runs under MLOPS_HOME, then MLflow's own default store.
    """
    if explicit:
        return explicit
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    local = local_server_url()
    if local:
        return local
    import mlflow

    return mlflow.get_tracking_uri()


def experiment_ui_url(tracking_uri: str, experiment_id: str) -> str:
    """A link that opens the experiment in the UI's training view (not the GenAI default)."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
