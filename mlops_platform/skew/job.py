"""`mlops skew`: the served inputs of a model version compared with the profile of its training split.

    mlops skew --model-uri models:/digits-classifier@champion --log /var/log/mlops/predictions.jsonl \
        --since 1d --window 10000 --fail-on-drift

Order: resolve the model URI to one registered version and fetch the profile stored in its folder
(`skew_profile.json`, written by both trainers), then read the log (only that version's lines), then
compare. Any of these failing is a UserError before a run exists. The report is then logged as a run
of experiment `skew-reports` (tags name the model and version, artifacts `skew/skew_report.json` and
`skew/skew_report.html`, metrics rows/drifted_features/max_psi/prediction_psi), and the model version
gets tags `mlops.skew.last_run_id` and `mlops.skew.drift`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from mlops_platform.errors import UserError
from mlops_platform.skew.compare import DriftThresholds
from mlops_platform.skew.profile import PROFILE_FILE, PROFILE_VERSION
from mlops_platform.tracking.tags import (
    SKEW_DRIFT_TAG,
    SKEW_LAST_RUN_TAG,
    SKEW_MODEL_NAME_TAG,
    SKEW_MODEL_VERSION_TAG,
)

REPORT_JSON = "skew/skew_report.json"
REPORT_HTML = "skew/skew_report.html"
DEFAULT_EXPERIMENT = "skew-reports"


@dataclass(frozen=True)
class SkewOptions:
    """What `mlops skew` was asked; the thresholds' defaults live in DriftThresholds."""

    model_uri: str
    log: str
    since: str | None = None
    window: int = 0
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    experiment: str = DEFAULT_EXPERIMENT
    output_dir: str | None = None
    log_to_mlflow: bool = True

    def check(self) -> None:
        if self.window < 0:
            raise UserError(f"--window {self.window}: must be 0 (every row) or a positive row count")
        t = self.thresholds
        if not 0 < t.alpha < 1:
            raise UserError(f"--alpha {t.alpha}: must be between 0 and 1")
        for name in ("psi_min", "missing_increase", "out_of_range_max"):
            if getattr(t, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} {getattr(t, name)}: must be >= 0")


def resolve_model(model_uri: str, tracking_uri: str) -> Any:
    """The registered version `model_uri` names now (`models:/NAME@alias` or `models:/NAME/VERSION`)."""
    from mlops_platform.serving.predictors import resolve_identity

    identity = resolve_identity(model_uri, tracking_uri)
    if identity.name is None or identity.version is None:
        raise UserError(
            f"--model-uri {model_uri!r}: name a registered version (models:/NAME@ALIAS or models:/NAME/N); "
            "the prediction log records which registered version answered"
        )
    return identity


def fetch_profile(identity: Any, tracking_uri: str) -> dict[str, Any]:
    """The profile stored with the model; a model logged without one is a UserError saying so."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{identity.artifact_uri.rstrip('/')}/{PROFILE_FILE}",
                dst_path=folder,
                tracking_uri=tracking_uri,
            )
            with open(path) as handle:
                profile = json.load(handle)
        except (MlflowException, OSError) as error:
            raise UserError(
                f"{identity.name} version {identity.version} has no training profile ({PROFILE_FILE} in "
                f"the model's folder): it was logged before profiles existed or not by our trainers; "
                f"retrain it to compare its served inputs ({str(error).splitlines()[0][:200]})"
            ) from None
    if profile.get("version") != PROFILE_VERSION:
        raise UserError(
            f"{identity.name} version {identity.version}: profile format {profile.get('version')!r}, this "
            f"mlops_platform reads format {PROFILE_VERSION}"
        )
    return profile


def run(options: SkewOptions, tracking_uri: str) -> dict[str, Any]:
    """Compare, write and log the report; returns the summary (with `mlflow_run_id` when logged)."""
    from mlops_platform.skew.report import render_html, summarize
    from mlops_platform.skew.served import parse_since, read_served

    options.check()
    since = parse_since(options.since)
    identity = resolve_model(options.model_uri, tracking_uri)
    profile = fetch_profile(identity, tracking_uri)
    served = read_served(
        options.log, identity.name, identity.version, list(profile["features"]), since, options.window
    )
    summary = summarize(
        profile,
        served,
        options.thresholds,
        {
            "model_name": identity.name,
            "model_version": identity.version,
            "model_uri": options.model_uri,
            "log": os.path.abspath(options.log),
            "since": since,
            "window": options.window,
        },
    )
    page = render_html(summary)
    if options.output_dir:
        os.makedirs(options.output_dir, exist_ok=True)
        for name, text in ((REPORT_JSON, json.dumps(summary, indent=2)), (REPORT_HTML, page)):
            with open(os.path.join(options.output_dir, os.path.basename(name)), "w") as handle:
                handle.write(text)
    if options.log_to_mlflow:
        summary["mlflow_run_id"] = log_report(summary, page, tracking_uri, options.experiment)
    return summary


def metrics_of(summary: dict[str, Any]) -> dict[str, float]:
    psis = [f["psi"] for f in summary["features"] if f.get("psi") is not None and math.isfinite(f["psi"])]
    metrics = {
        "rows": float(summary["rows"]),
        "drifted_features": float(len(summary["drifted_features"])),
        "max_psi": max(psis, default=0.0),
    }
    if summary.get("prediction", {}).get("psi") is not None:
        metrics["prediction_psi"] = float(summary["prediction"]["psi"])
    return metrics


def log_report(summary: dict[str, Any], page: str, tracking_uri: str, experiment: str) -> str:
    """A run holding the report, tagged with the model version; the version tagged with the verdict."""
    from mlflow import MlflowClient

    from mlops_platform.tracking import Tracker

    name, version = summary["model_name"], summary["model_version"]
    tracker = Tracker(tracking_uri, system_metrics_interval=0, replay_on_start=False)
    # MLflow prints the run's link when it ends; stdout holds only the JSON summary.
    with (
        contextlib.redirect_stdout(sys.stderr),
        tracker.run(
            experiment=experiment,
            run_name=f"skew-{name}-v{version}",
            tags={
                SKEW_MODEL_NAME_TAG: name,
                SKEW_MODEL_VERSION_TAG: version,
                SKEW_DRIFT_TAG: str(summary["drift"]).lower(),
            },
            use_env_run=False,
        ) as run,
    ):
        run.log_metrics(metrics_of(summary))
        run.log_dict(summary, REPORT_JSON)
        run.log_text(page, REPORT_HTML)
        run_id = run.run_id
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    client.set_model_version_tag(name, version, SKEW_LAST_RUN_TAG, run_id)
    client.set_model_version_tag(name, version, SKEW_DRIFT_TAG, str(summary["drift"]).lower())
    return run_id
