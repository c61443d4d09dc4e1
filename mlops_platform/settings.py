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


def local_server_url(home: Path | None = None) -> str | None:
    """The URL of the server `mlops server start` started under `home`, while that process lives.

    A state file left by a crashed server does not count: the server module checks the recorded pid
    is still the process it started.
    """
    from mlops_platform.server import LocalTrackingServer, ServerConfig

    state = LocalTrackingServer(ServerConfig(home=home or mlops_home())).state()
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
