"""Metrics, figures and reports shared by both trainers, and the one table of metric directions.

Figures are `matplotlib.figure.Figure` objects drawn on the Agg canvas: no pyplot, so no global figure
registry that leaks memory across runs and no GUI backend on a headless machine. Log them with
`run.log_figure(fig, "plots/name.png")`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# Direction of each base metric: "max" when bigger is better, "min" when smaller is better.
_BASE_DIRECTIONS: dict[str, str] = {
    "accuracy": "max",
    "f1_macro": "max",
    "roc_auc": "max",
    "log_loss": "min",
    "loss": "min",
    "rmse": "min",
    "mae": "min",
    "r2": "max",
}
# Run-level measurements that are not tied to a split.
_RUN_DIRECTIONS: dict[str, str] = {
    "fit_seconds": "min",
    "predict_latency_ms_per_row": "min",
    "model_size_bytes": "min",
    "epoch_seconds": "min",
    "samples_per_sec": "max",
}
SPLIT_PREFIXES: tuple[str, ...] = ("train", "val", "test")

# Every metric name the trainers log, with its direction; promotion and search read this table.
METRIC_DIRECTIONS: dict[str, str] = {
    **_BASE_DIRECTIONS,
    **{
        f"{prefix}_{name}": direction
        for prefix in SPLIT_PREFIXES
        for name, direction in _BASE_DIRECTIONS.items()
    },
    **{f"cv_{name}_mean": direction for name, direction in _BASE_DIRECTIONS.items()},
    **_RUN_DIRECTIONS,
}

CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "f1_macro", "roc_auc", "log_loss")
REGRESSION_METRICS: tuple[str, ...] = ("rmse", "mae", "r2")


def metric_direction(name: str) -> str:
    """Direction ("max" or "min") of a metric; KeyError listing the known metrics if it is unknown."""
    try:
        return METRIC_DIRECTIONS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRIC_DIRECTIONS))}") from None


def improvement(direction: str, candidate: float, reference: float) -> float:
    """How much better `candidate` is than `reference` in `direction` ("max"/"min"); positive = better.

    The one "is better" rule: early stopping, checkpoint selection and promotion gates all use it.
    """
    return candidate - reference if direction == "max" else reference - candidate


def is_better(direction: str, candidate: float, reference: float | None) -> bool:
    """Whether `candidate` strictly beats `reference` in `direction`. No reference (None or NaN) is beaten
    by any number; a NaN candidate beats nothing."""
    if math.isnan(candidate):
        return False
    if reference is None or math.isnan(reference):
        return True
    return improvement(direction, candidate, reference) > 0


# --------------------------------------------------------------------------------------------- metrics


def classification_metrics(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    probabilities: np.ndarray | None = None,
    labels: Sequence[Any] | None = None,
) -> dict[str, float]:
    """accuracy and f1_macro; with class probabilities also roc_auc (binary, or one-vs-rest macro) and
    log_loss.

    Args:
        y_true, y_pred: labels.
        probabilities: (n_samples, n_classes), columns in the order of `labels`.
        labels: all class labels in column order (needed when a split lacks a class).
    """
    from sklearn import metrics

    y_true = np.asarray(y_true)
    result = {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "f1_macro": float(metrics.f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)),
    }
    if probabilities is None:
        return result
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = list(labels) if labels is not None else sorted(np.unique(y_true).tolist())
    if probabilities.ndim != 2 or probabilities.shape[1] != len(labels):
        raise ValueError(f"probabilities must be (n_samples, {len(labels)}); got {probabilities.shape}")
    result["log_loss"] = float(metrics.log_loss(y_true, probabilities, labels=labels))
    present = set(np.unique(y_true).tolist())
    # ROC AUC is undefined for a class with no positive sample: score the classes this split has.
    if len(labels) == 2:
        if len(present) == 2:
            result["roc_auc"] = float(metrics.roc_auc_score(y_true == labels[1], probabilities[:, 1]))
    else:
        columns = [position for position, label in enumerate(labels) if label in present]
        if len(columns) >= 2:
            onehot = np.stack([y_true == labels[column] for column in columns], axis=1)
            result["roc_auc"] = float(
                metrics.roc_auc_score(onehot, probabilities[:, columns], average="macro")
            )
    return result


def regression_metrics(
    y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """rmse, mae and r2."""
    from sklearn import metrics

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return {
        "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
        "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
        "r2": float(metrics.r2_score(y_true, y_pred)),
    }


def prefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    """{"accuracy": 1} -> {"test_accuracy": 1}."""
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def classification_report_text(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | None = None,
) -> str:
    """scikit-learn's per-class precision/recall/f1 table, as text for `run.log_text`."""
    from sklearn import metrics

    names = [str(label) for label in labels] if labels is not None else None
    return metrics.classification_report(
        y_true, y_pred, labels=labels, target_names=names, zero_division=0, digits=4
    )


def misclassified_table(
    features: pd.DataFrame,
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    probabilities: np.ndarray | None = None,
    limit: int | None = 200,
) -> pd.DataFrame:
    """Rows the model got wrong: `row` (position in the split), `label`, `prediction`, `confidence`
    (probability of the predicted class, when given), then the features; most confident mistakes first."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    table = pd.DataFrame({"row": wrong, "label": y_true[wrong], "prediction": y_pred[wrong]})
    if probabilities is not None:
        table["confidence"] = np.asarray(probabilities)[wrong].max(axis=1)
        table = table.sort_values("confidence", ascending=False, kind="stable")
    rows = features.iloc[table["row"].to_numpy()].reset_index(drop=True)
    table = pd.concat([table.reset_index(drop=True), rows], axis=1)
    return table if limit is None else table.head(limit)


# --------------------------------------------------------------------------------------------- figures


def _figure(width: float = 6.0, height: float = 5.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def confusion_matrix_figure(
    y_true: Sequence[Any] | np.ndarray,
    y_pred: Sequence[Any] | np.ndarray,
    labels: Sequence[Any],
    title: str = "Confusion matrix",
) -> Any:
    """Counts per (true, predicted) class, annotated; rows are the true labels."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=list(labels))
    size = max(4.0, 0.5 * len(labels) + 2.5)
    figure = _figure(size + 1.0, size)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = np.arange(len(labels))
    names = [str(label) for label in labels]
    axes.set_xticks(ticks, names, rotation=45 if max(map(len, names)) > 3 else 0)
    axes.set_yticks(ticks, names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=color, fontsize=8)
    return figure


def learning_curves_figure(history: Mapping[str, Sequence[float]], title: str = "Learning curves") -> Any:
    """One panel per metric, with the train_/val_ series of that metric on it, against the epoch.

    Args:
        history: metric name -> one value per epoch, e.g. {"train_loss": [...], "val_loss": [...],
            "val_accuracy": [...]}. Series are plotted against epochs 1..n.
    """
    panels: dict[str, list[str]] = {}
    for name in history:
        base = name.split("_", 1)[1] if name.split("_", 1)[0] in SPLIT_PREFIXES and "_" in name else name
        panels.setdefault(base, []).append(name)
    if not panels:
        raise ValueError("learning_curves_figure needs at least one metric series")
    figure = _figure(4.5 * len(panels), 3.8)
    for position, (base, names) in enumerate(panels.items(), start=1):
        axes = figure.add_subplot(1, len(panels), position)
        for name in names:
            values = list(history[name])
            axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=name)
        axes.set_xlabel("epoch")
        axes.set_title(base)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return figure


def residual_figure(
    y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray, title: str = "Residuals"
) -> Any:
    """Predicted vs true (with the identity line) and residuals vs predicted."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    figure = _figure(10.0, 4.5)
    left, right = figure.subplots(1, 2)
    left.scatter(y_true, y_pred, s=12, alpha=0.7)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    left.plot([low, high], [low, high], color="gray", linestyle="--")
    left.set_xlabel("true")
    left.set_ylabel("predicted")
    left.set_title("predicted vs true")
    right.scatter(y_pred, y_true - y_pred, s=12, alpha=0.7)
    right.axhline(0.0, color="gray", linestyle="--")
    right.set_xlabel("predicted")
    right.set_ylabel("true - predicted")
    right.set_title("residuals")
    figure.suptitle(title)
    return figure


def feature_importances_table(
    names: Sequence[str], importances: Sequence[float] | np.ndarray
) -> pd.DataFrame:
    """`feature`, `importance` sorted by importance, largest first."""
    table = pd.DataFrame(
        {"feature": [str(name) for name in names], "importance": np.asarray(importances, float)}
    )
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def feature_importances_figure(table: pd.DataFrame, top: int = 20, title: str = "Feature importances") -> Any:
    """Horizontal bars of the `top` most important features of a `feature_importances_table`."""
    shown = table.head(top).iloc[::-1]
    figure = _figure(7.0, max(3.0, 0.3 * len(shown) + 1.5))
    axes = figure.add_subplot()
    axes.barh(shown["feature"], shown["importance"])
    axes.set_xlabel("importance")
    axes.set_title(title)
    return figure
