"""Every `mlops.*` tag name, in one place, and the standard tags every run gets (code version, package
versions, host and entry point)."""

from __future__ import annotations

import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HEARTBEAT_TAG = "mlops.heartbeat"  # epoch seconds (server clock) of the last sign of life of its process
HEARTBEAT_INTERVAL_TAG = "mlops.heartbeat_interval"  # seconds between beats of the process that owns it
ENTRY_POINT_TAG = "mlops.entry_point"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag: the UI shows it
GIT_DIRTY_TAG = "mlops.git.dirty"
HOST_TAG = "mlops.host"
VERSION_TAG_PREFIX = "mlops.version."
ERROR_TAG = "mlops.error"
# Set when a run `mlflow run`'s launcher had overwritten with FAILED is made KILLED again (killed_guard.py).
KILLED_REASSERTED_TAG = "mlops.killed_reasserted"
# On a promoted version: who created its run (MLflow's mlflow.user tag, else the run's user_id).
RUN_USER_TAG = "mlops.run_user"
MLFLOW_USER_TAG = "mlflow.user"  # MLflow's own tag: the user that created a run

# --- what a training run is -------------------------------------------------------------------------
ROLE_TAG = "mlops.role"  # baseline | candidate | sweep | promotion; promotion compares against baselines
MODEL_TAG = "mlops.model"
TASK_TAG = "mlops.task"
DATASET_TAG = "mlops.dataset"
DATASET_DIGEST_TAG = "mlops.dataset_digest"
TEST_DIGEST_TAG = "mlops.test_digest"
BASELINE_RUN_TAG = "mlops.baseline_run_id"  # on a candidate: the baseline run of its data

# --- how a torch run ran ----------------------------------------------------------------------------
DEVICE_TAG = "mlops.device"
AMP_TAG = "mlops.amp"
WORLD_SIZE_TAG = "mlops.world_size"
TORCHRUN_RESTARTS_TAG = "mlops.torchrun_restarts"
SANITY_CHECK_LOSS_TAG = "mlops.sanity_check_loss"
RESUMED_FROM_EPOCH_TAG = "mlops.resumed_from_epoch"
RESUMED_RUN_ID_TAG = "mlops.resumed_run_id"  # on the launcher's own run of a resume: the continued run

# --- runs ended by `mlops runs reap` ----------------------------------------------------------------
REAPED_TAG = "mlops.reaped"

# --- sweeps: on the parent run and on each trial's child run ----------------------------------------
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests children under it
STUDY_TAG = "mlops.sweep.study"
STORAGE_TAG = "mlops.sweep.storage"
BEST_RUN_TAG = "mlops.sweep.best_run_id"
TRIAL_NUMBER_TAG = "mlops.sweep.trial_number"
TRIAL_STATE_TAG = "mlops.sweep.trial_state"  # COMPLETE | PRUNED | FAIL, as Optuna ended the trial
PRUNED_TAG = "mlops.sweep.pruned"  # why the pruner stopped it
STALE_TAG = "mlops.sweep.stale"
# Not a tag: the Optuna study's user attribute holding the sweep's spec (same namespace, kept here).
SPEC_ATTR = "mlops.sweep"

# --- promotion: the decision, on the run of the promote job (or the sweep's parent run) --------------
PROMOTED_TAG = "mlops.promote.promoted"
PROMOTE_REASON_TAG = "mlops.promote.reason"
PROMOTE_VERSION_TAG = "mlops.promote.version"
# ... and on a model version when it is promoted (or restored by a rollback)
TAG_METRIC = "mlops.metric"
TAG_VALUE = "mlops.metric_value"
TAG_MODE = "mlops.mode"
TAG_RUN_ID = "mlops.run_id"
TAG_PROMOTED_AT = "mlops.promoted_at"
TAG_REASON = "mlops.reason"
# Set on a version that a rollback demoted: promote_best no longer picks its run's model, so a
# rollback holds until a better run arrives (or someone removes the tag / rolls back again).
TAG_ROLLED_BACK = "mlops.rolled_back_at"

# --- serving: the report run of `mlops serve report` ------------------------------------------------
REPORT_TAG_PREFIX = "mlops.serve_report."
CHAMPION_VERSION_TAG = f"{REPORT_TAG_PREFIX}champion_version"
CHALLENGER_VERSION_TAG = f"{REPORT_TAG_PREFIX}challenger_version"
MODEL_NAME_TAG = f"{REPORT_TAG_PREFIX}model_name"

# --- skew: the report run of `mlops skew`, and the model version it checked -------------------------
SKEW_MODEL_NAME_TAG = "mlops.skew.model_name"
SKEW_MODEL_VERSION_TAG = "mlops.skew.model_version"
SKEW_DRIFT_TAG = "mlops.skew.drift"  # on the report run and on the version
SKEW_LAST_RUN_TAG = "mlops.skew.last_run_id"  # on the version: its latest report run

# Not a tag: the MLmodel metadata key of a models-from-code model made by this package (the dotted name
# of the module of `mlops_platform` whose source file is the model's code file).
MODEL_CODE_KEY = "mlops.model_code"


def decision_tags(promoted: bool, reason: str, version: str | None) -> dict[str, str]:
    """The tags that record a promotion decision on a run (the reason cut to MLflow's tag limit)."""
    tags = {PROMOTED_TAG: str(promoted).lower(), PROMOTE_REASON_TAG: reason[:5000]}
    if version:
        tags[PROMOTE_VERSION_TAG] = version
    return tags


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
