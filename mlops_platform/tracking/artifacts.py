"""Reading a run's artifacts back (the journal and sender write them; this fetches them)."""

from __future__ import annotations

from pathlib import Path


class ArtifactUnavailable(LookupError):
    """The run or the artifact does not exist, or the store could not be read; the message says which."""


def download_run_artifact(
    run_id: str, artifact_path: str, destination: str | Path, tracking_uri: str | None = None
) -> Path:
    """Download one artifact of `run_id` into `destination`; returns the local path.

    Raises:
        ArtifactUnavailable: with the first line of the store's own message.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlops_platform.settings import resolve_tracking_uri

    try:
        downloaded = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=artifact_path,
            dst_path=str(destination),
            tracking_uri=resolve_tracking_uri(tracking_uri),
        )
    except (MlflowException, OSError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise ArtifactUnavailable(first_line) from None
    return Path(downloaded)
