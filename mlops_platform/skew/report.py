"""The skew report of a served window: a JSON summary (drifted features first) and an HTML page.

The served predictions are compared with the model's predictions on its validation split (the
profile's `validation_predictions`) like one more feature: classes with chi-squared and PSI, numbers
with the binned KS test and PSI, under the same thresholds (alpha uncorrected: it is one test). A
probability output (the torch models) is read as the class of its arg-max column.
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict
from typing import Any

from mlops_platform.skew.compare import DriftThresholds, compare_window
from mlops_platform.skew.served import ServedWindow

PREDICTION = "prediction"


def summarize(
    profile: dict[str, Any], served: ServedWindow, thresholds: DriftThresholds, identity: dict[str, Any]
) -> dict[str, Any]:
    """The JSON-ready summary; `identity` names the model (model_name, model_version, model_uri, log)."""
    import pandas as pd

    features = compare_window(profile, served.frame, thresholds)
    drifted = [result.feature for result in features if result.drifted]
    summary: dict[str, Any] = {
        **identity,
        "drift": False,
        "drifted_features": drifted,
        "rows": served.rows,
        "lines": served.lines,
        "first_time": served.first_time,
        "last_time": served.last_time,
        "training_rows": profile.get("rows"),
        "thresholds": {**asdict(thresholds), "corrected_alpha": thresholds.alpha / max(len(features), 1)},
        "features": [_finite(result.as_dict()) for result in features],
        "skipped_lines": served.skipped,
        "unexpected_columns": served.extra_columns,
    }
    reference = profile.get("validation_predictions")
    labels = served_labels(served.predictions, profile)
    if reference is not None and labels is not None:
        frame = pd.DataFrame({PREDICTION: labels})
        [result] = compare_window({"features": {PREDICTION: reference}}, frame, thresholds)
        summary["prediction"] = {
            **_finite(result.as_dict()),
            "reference_split": profile.get("predictions_split", "validation"),
            "served": _distribution(labels, reference),
            "reference": reference.get("frequencies") or {"mean": reference.get("mean")},
        }
    summary["drift"] = bool(drifted) or bool(summary.get("prediction", {}).get("drifted"))
    return summary


def served_labels(predictions: list[Any], profile: dict[str, Any]) -> list[Any] | None:
    """The served predictions as the profile's reference holds them: classes as text (the arg-max
    column's class for a probability row), numbers as numbers; None when they cannot be read."""
    import numpy as np

    reference = profile.get("validation_predictions") or {}
    rows = [row for row in predictions if row is not None]
    if not rows:
        return None
    if isinstance(rows[0], dict):  # records output: one value per named output
        rows = [list(row.values()) for row in rows]
    try:
        array = np.asarray(rows)
    except ValueError:
        return None
    classes = profile.get("output_classes")
    if array.ndim == 2:
        if array.shape[1] == 1:
            array = array[:, 0]
        elif classes and array.shape[1] == len(classes):
            return [classes[index] for index in array.argmax(axis=1)]
        else:
            return None
    if reference.get("kind") == "numeric":
        return array.astype(float).tolist()
    return [str(value) for value in array.tolist()]


def _distribution(labels: list[Any], reference: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    if reference.get("kind") == "numeric":
        values = np.asarray(labels, dtype=float)
        return {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return {label: count / len(labels) for label, count in sorted(counts.items())}


def _finite(result: dict[str, Any]) -> dict[str, Any]:
    """JSON has no Infinity: an absent feature's PSI and statistic are written as null."""
    return {
        key: (None if isinstance(value, float) and not math.isfinite(value) else value)
        for key, value in result.items()
    }


def render_html(summary: dict[str, Any]) -> str:
    """A self-contained page: the verdict, the thresholds, the prediction check and one row per feature
    (drifted first)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            text = f"{value:.3g}"
        elif value is None:
            text = "-"
        else:
            text = str(value)
        return f"<td>{html.escape(text)}</td>"

    columns = ("feature", "kind", "test", "statistic", "p_value", "psi", "missing_rate",
               "training_missing_rate", "out_of_range")  # fmt: skip
    header = "".join(f"<th>{name}</th>" for name in (*columns, "reasons"))

    def row(result: dict[str, Any]) -> str:
        style = ' class="drift"' if result["drifted"] else ""
        reasons = html.escape("; ".join(result["reasons"]))
        return f"<tr{style}>{''.join(cell(result.get(c)) for c in columns)}<td>{reasons}</td></tr>"

    name, version = summary.get("model_name"), summary.get("model_version")
    drifted = summary["drifted_features"]
    verdict = (
        f"DRIFT in {len(drifted)} feature(s): {', '.join(drifted)}"
        if drifted
        else "no feature drifted past the thresholds"
    )
    prediction = summary.get("prediction")
    prediction_html = ""
    if prediction:
        state = "DRIFTED" if prediction["drifted"] else "in line"
        prediction_html = (
            f"<h2>Predictions vs the {html.escape(prediction['reference_split'])} predictions: {state}</h2>"
            f"<table><tr>{header}</tr>{row(prediction)}</table>"
            f"<p>served: {html.escape(str(prediction['served']))}<br>"
            f"reference: {html.escape(str(prediction['reference']))}</p>"
        )
    thresholds = ", ".join(f"{key}={value:.3g}" for key, value in summary["thresholds"].items())
    source = (
        f"{summary['rows']} served rows from {summary['lines']} logged requests in {summary.get('log')}, "
        f"compared with the profile of {summary.get('training_rows')} training rows. Thresholds: "
        f"{thresholds}. Skipped lines: {summary['skipped_lines'] or 'none'}."
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Skew report: {html.escape(f"{name} v{version}")}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}tr.drift{{background:#fdd}}</style></head>
<body><h1>Training-serving skew: {html.escape(f"{name} version {version}")}</h1>
<p><b>{html.escape(verdict)}</b></p>
<p>{html.escape(source)}</p>
{prediction_html}
<h2>Features</h2>
<table><tr>{header}</tr>{"".join(row(result) for result in summary["features"])}</table>
</body></html>
"""
