"""Standard tags every run gets: code version, package versions, host and entry point."""

from __future__ import annotations

import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HEARTBEAT_TAG = "mlops.heartbeat"  # epoch seconds of the last sign of life of the run's process
ENTRY_POINT_TAG = "mlops.entry_point"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag: the UI shows it
GIT_DIRTY_TAG = "mlops.git.dirty"
HOST_TAG = "mlops.host"
VERSION_TAG_PREFIX = "mlops.version."
ERROR_TAG = "mlops.error"

# distribution name -> tag suffix
_PACKAGES = {
    "mlops_platform": "mlops_platform",
    "mlflow": "mlflow",
    "torch": "torch",
    "scikit-learn": "sklearn",
}


def package_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (no import of torch or sklearn)."""
    versions = {}
    for distribution, name in _PACKAGES.items():
        try:
            versions[f"{VERSION_TAG_PREFIX}{name}"] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state(directory: Path | None = None) -> dict[str, str]:
    """Commit and dirty flag of the git checkout holding `directory` (cwd), or {} outside git."""
    cwd = str(directory or Path.cwd())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {}
    return {GIT_COMMIT_TAG: commit, GIT_DIRTY_TAG: str(bool(status.strip())).lower()}


def standard_tags(entry_point: str | None = None) -> dict[str, str]:
    tags = {HOST_TAG: socket.gethostname(), **package_versions(), **git_state()}
    tags[ENTRY_POINT_TAG] = entry_point or Path(sys.argv[0]).name or "python"
    return tags
