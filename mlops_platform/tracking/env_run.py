"""The run `mlflow run` opened before our job started (MLFLOW_RUN_ID): where a job that fails before its
own tracking begins says why.

MLflow marks that run FAILED when the job exits non-zero; the error tag puts the reason where the UI and
searches show it, instead of leaving an empty failed run.
"""

from __future__ import annotations

import os

from mlops_platform.tracking.tags import ERROR_TAG

# The tag holds a message, not a log: MLflow caps tag values, and a reason is read at a glance.
MAX_REASON_CHARS = 5000


def env_run_id() -> str | None:
    """The run id `mlflow run` handed the job, or None outside `mlflow run`."""
    return os.environ.get("MLFLOW_RUN_ID") or None


def record_failure(message: str, keep_existing: bool = False, tracking_uri: str | None = None) -> str | None:
    """Tag the `mlflow run` run with `message` (nothing outside `mlflow run`).

    With `keep_existing`, a reason the tracker already recorded (the error came from inside the run, with
    its type and traceback) is left as it is. Returns a warning when the server refused the tag: the
    caller shows it, and the error being reported stays what the user must see.
    """
    run_id = env_run_id()
    if run_id is None:
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlops_platform.settings import resolve_tracking_uri

    try:
        client = MlflowClient(resolve_tracking_uri(tracking_uri))
        if keep_existing and ERROR_TAG in client.get_run(run_id).data.tags:
            return None
        client.set_tag(run_id, ERROR_TAG, message[:MAX_REASON_CHARS])
    except MlflowException as error:
        return f"warning: could not tag run {run_id} with the error: {error}"
    return None
