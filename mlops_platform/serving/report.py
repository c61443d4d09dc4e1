"""`mlops serve report --log PATH`: what a shadow or canary period showed, from the prediction log
(`--url URL`: from a running server's /health counters instead).

Per version: requests, errors and error rate, latency p50/p99 (from each line's `latency_ms`); in
shadow mode the agreement rate over compared rows, the shed count and, for classifiers, the confusion
between the champion's and the challenger's labels (rows: champion, columns: challenger). The summary
is printed as JSON and logged to MLflow as a run tagged with both versions (metrics, tags and
`serve_report.json`), and as `mlops.serve_report.*` tags on the challenger's model version.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from mlops_platform.errors import UserError
from mlops_platform.serving.challenger import CHALLENGER, CHAMPION, SHADOW, row_labels
from mlops_platform.tracking.tags import (
    CHALLENGER_VERSION_TAG,
    CHAMPION_VERSION_TAG,
    MODEL_NAME_TAG,
    REPORT_TAG_PREFIX,
)


def log_files(path: str) -> list[str]:
    """PATH and its rotated copies, oldest first (PATH.3, PATH.2, PATH.1, PATH)."""
    rotated = [p for p in glob.glob(glob.escape(path) + ".*") if p.rsplit(".", 1)[-1].isdigit()]
    files = sorted(rotated, key=lambda p: -int(p.rsplit(".", 1)[-1]))
    if os.path.exists(path):
        files.append(path)
    if not files:
        raise UserError(f"no prediction log at {path}")
    return files


def read_lines(path: str) -> list[dict[str, Any]]:
    lines = []
    for file in log_files(path):
        with open(file, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    lines.append(json.loads(raw))
                except ValueError:  # a torn last line of a crashed server: skip it, say so
                    print(f"warning: {file}:{number} is not a JSON line; skipped")
    return lines


def summarize(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of a challenger period; raises UserError when the log holds no challenger lines."""
    lines = [line for line in lines if line.get("mode")]
    if not lines:
        raise UserError("the prediction log holds no lines from a server run with --challenger")
    modes = {line["mode"] for line in lines}
    versions: dict[str, dict[str, Any]] = defaultdict(lambda: {"requests": 0, "errors": 0, "latencies": []})
    versions_of: dict[str, set] = defaultdict(set)
    agreement, compared, shed = 0, 0, 0
    confusion: Counter = Counter()
    for line in lines:
        role = line.get("role", CHAMPION)
        versions_of[role].add(line.get("model_version"))
        _count(versions[role], line.get("latency_ms"), error=False)
        if "canary_error" in line:
            versions_of[CHALLENGER].add(line["canary_error"].get("model_version"))
            _count(versions[CHALLENGER], None, error=True)
        shadow = line.get("shadow")
        if not shadow:
            continue
        versions_of[CHALLENGER].add(shadow.get("model_version"))
        if shadow.get("shed"):
            shed += 1
            continue
        _count(versions[CHALLENGER], shadow.get("latency_ms"), error="error" in shadow)
        if "predictions" in shadow:
            ours, theirs = row_labels(line["predictions"]), row_labels(shadow["predictions"])
            if ours.shape == theirs.shape:
                compared += len(ours)
                agreement += int((ours == theirs).sum())
                if _is_classification(ours, theirs):
                    confusion.update(zip(ours.tolist(), theirs.tolist(), strict=True))
    summary: dict[str, Any] = {
        "mode": "/".join(sorted(modes)),
        "model_name": next((line.get("model_name") for line in lines), None),
        "requests": len(lines),
        "versions": {
            role: {"model_version": _one(versions_of[role]), **_stats(versions[role])} for role in versions
        },
    }
    if SHADOW in modes:
        summary["agreement"] = {
            "rows": compared,
            "agreed": agreement,
            "rate": agreement / compared if compared else None,
        }
        summary["shed"] = shed
        if confusion:
            labels = sorted({label for pair in confusion for label in pair})
            summary["confusion"] = {
                "labels": labels,
                "rows_are": CHAMPION,
                "matrix": [[confusion[(a, b)] for b in labels] for a in labels],
            }
    return summary


def summarize_health(health: dict[str, Any], url: str) -> dict[str, Any]:
    """The report of a running server, from its /health counters since it started (or since the
    challenger last changed version): per version requests, errors, p50/p99 over its recent answers,
    agreement and shed work (shadow) or the guard (canary). No confusion matrix: /health keeps none;
    the prediction log has it. Raises UserError when the server serves no challenger."""
    if "mode" not in health or "versions" not in health:
        raise UserError(f"the server at {url} serves no challenger (it was started without --challenger)")
    summary: dict[str, Any] = {
        "mode": health["mode"],
        "source": url,
        "model_name": health.get("model_name"),
        "requests": health.get("served"),
        "versions": {
            role: {
                key: stats.get(key)
                for key in ("model_version", "requests", "errors", "error_rate", "p50_ms", "p99_ms")
            }
            for role, stats in health["versions"].items()
        },
    }
    if health["mode"] == SHADOW:
        summary["agreement"] = health.get("agreement")
        summary["shed"] = (health.get("shadow") or {}).get("shed", 0)
    else:
        summary["guard"] = health.get("guard")
    return summary


def read_health(url: str) -> dict[str, Any]:
    """GET URL/health; raises UserError naming the URL when nothing answers."""
    import requests

    try:
        response = requests.get(f"{url.rstrip('/')}/health", timeout=10)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as error:
        raise UserError(f"no mlops serve answered {url.rstrip('/')}/health: {error}") from None


def _count(bucket: dict[str, Any], latency_ms: float | None, error: bool) -> None:
    bucket["requests"] += 1
    bucket["errors"] += error
    if latency_ms is not None and not error:
        bucket["latencies"].append(latency_ms)


def _stats(bucket: dict[str, Any]) -> dict[str, Any]:
    latencies = np.asarray(bucket["latencies"], dtype=float)
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (None, None)
    return {
        "requests": bucket["requests"],
        "errors": bucket["errors"],
        "error_rate": bucket["errors"] / bucket["requests"] if bucket["requests"] else None,
        "p50_ms": None if p50 is None else round(float(p50), 3),
        "p99_ms": None if p99 is None else round(float(p99), 3),
    }


def _one(values: set) -> str | None:
    """The version a role had; several (an alias moved mid-period) are listed, latest last."""
    values = {v for v in values if v is not None}
    if not values:
        return None
    return ",".join(sorted(values, key=lambda v: int(v) if str(v).isdigit() else 0))


def _is_classification(ours: np.ndarray, theirs: np.ndarray) -> bool:
    both = np.concatenate([ours.ravel(), theirs.ravel()])
    return both.dtype.kind in "iub" or (both.dtype.kind == "f" and np.all(both == np.round(both)))


def metrics_of(summary: dict[str, Any]) -> dict[str, float]:
    metrics = {}
    for role, stats in summary["versions"].items():
        for key in ("requests", "errors", "error_rate", "p50_ms", "p99_ms"):
            if stats.get(key) is not None:
                metrics[f"{role}_{key}"] = float(stats[key])
    if summary.get("agreement", {}).get("rate") is not None:
        metrics["agreement_rate"] = float(summary["agreement"]["rate"])
        metrics["shadow_shed"] = float(summary["shed"])
    return metrics


def log_to_mlflow(summary: dict[str, Any], tracking_uri: str, experiment: str) -> str:
    """A run holding the report, tagged with both versions; the challenger version tagged with the
    headline figures. Returns the run id."""
    from mlflow import MlflowClient

    from mlops_platform.tracking import Tracker

    name = summary.get("model_name")
    champion = summary["versions"].get(CHAMPION, {}).get("model_version")
    challenger = summary["versions"].get(CHALLENGER, {}).get("model_version")
    tags = {MODEL_NAME_TAG: name, CHAMPION_VERSION_TAG: champion, CHALLENGER_VERSION_TAG: challenger}
    tracker = Tracker(tracking_uri, system_metrics_interval=0, replay_on_start=False)
    with tracker.run(
        experiment=experiment,
        run_name=f"serve-report-{name}-v{champion}-vs-v{challenger}",
        tags={k: v for k, v in tags.items() if v is not None},
        use_env_run=False,
    ) as run:
        run.log_metrics(metrics_of(summary))
        run.log_dict(summary, "serve_report.json")
        run_id = run.run_id
    if name and challenger and "," not in challenger:
        client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        version_tags = {"run_id": run_id, "mode": summary["mode"], **metrics_of(summary)}
        for key, value in version_tags.items():
            client.set_model_version_tag(name, challenger, f"{REPORT_TAG_PREFIX}{key}", str(value))
    return run_id
