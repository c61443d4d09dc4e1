"""Metrics, the metric-direction table, figures and reports."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mlops_platform.evaluation import (
    METRIC_DIRECTIONS,
    classification_metrics,
    classification_report_text,
    confusion_matrix_figure,
    feature_importances_figure,
    feature_importances_table,
    is_better,
    learning_curves_figure,
    metric_direction,
    misclassified_table,
    prefixed,
    regression_metrics,
    residual_figure,
)


def test_binary_classification_metrics():
    y_true = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.35, 0.65], [0.2, 0.8]])
    y_pred = probabilities.argmax(axis=1)
    metrics = classification_metrics(y_true, y_pred, probabilities, labels=[0, 1])
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["roc_auc"] == pytest.approx(1.0)
    expected_log_loss = -np.mean(np.log([0.9, 0.4, 0.65, 0.8]))
    assert metrics["log_loss"] == pytest.approx(expected_log_loss)
    assert 0 < metrics["f1_macro"] < 1


def test_multiclass_roc_auc_is_one_vs_rest_and_string_labels_work():
    labels = ["a", "b", "c"]
    y_true = np.array(["a", "b", "c", "a", "b", "c"])
    perfect = np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.8 + 0.2 / 3
    metrics = classification_metrics(y_true, y_true, perfect, labels=labels)
    assert metrics["accuracy"] == 1.0
    assert metrics["f1_macro"] == 1.0
    assert metrics["roc_auc"] == pytest.approx(1.0)
    reversed_scores = perfect[:, ::-1]
    worse = classification_metrics(y_true, y_true, reversed_scores, labels=labels)
    assert worse["roc_auc"] < 1.0
    assert worse["log_loss"] > metrics["log_loss"]


def test_classification_metrics_without_probabilities_and_missing_class():
    metrics = classification_metrics([0, 1, 1], [0, 1, 0])
    assert set(metrics) == {"accuracy", "f1_macro"}
    # A split without class 2: roc_auc is scored over the classes present, log_loss over all labels.
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    with_proba = classification_metrics([0, 1, 1], [0, 1, 0], probabilities, labels=[0, 1, 2])
    assert set(with_proba) == {"accuracy", "f1_macro", "roc_auc", "log_loss"}


def test_probability_shape_is_checked():
    with pytest.raises(ValueError, match="probabilities must be"):
        classification_metrics([0, 1], [0, 1], np.ones((2, 3)) / 3, labels=[0, 1])


def test_regression_metrics():
    metrics = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    assert metrics["rmse"] == pytest.approx(1.0)
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["r2"] == pytest.approx(1 - 4 / 5)


def test_metric_directions_cover_logged_names():
    for name in (
        "test_accuracy",
        "val_f1_macro",
        "cv_accuracy_mean",
        "test_roc_auc",
        "test_r2",
        "val_accuracy",
    ):
        assert METRIC_DIRECTIONS[name] == "max", name
    for name in ("test_log_loss", "test_rmse", "test_mae", "val_loss", "test_loss", "fit_seconds"):
        assert METRIC_DIRECTIONS[name] == "min", name
    assert set(METRIC_DIRECTIONS.values()) == {"max", "min"}
    assert is_better(METRIC_DIRECTIONS["test_accuracy"], 0.9, 0.8)
    assert is_better(METRIC_DIRECTIONS["test_rmse"], 1.0, 2.0)
    assert not is_better(METRIC_DIRECTIONS["test_rmse"], 2.0, 1.0)
    assert not is_better("max", 0.8, 0.8)  # strictly
    assert is_better("min", 5.0, None) and is_better("max", 0.1, float("nan"))  # no reference yet
    assert not is_better("max", float("nan"), 0.1) and not is_better("max", float("nan"), None)


def test_unknown_metric_direction_names_it():
    with pytest.raises(KeyError, match="unknown metric 'test_acuracy'"):
        metric_direction("test_acuracy")


def test_prefixed():
    assert prefixed({"accuracy": 1.0}, "test") == {"test_accuracy": 1.0}


def test_classification_report_names_classes():
    text = classification_report_text(["x", "y", "y"], ["x", "y", "x"], labels=["x", "y"])
    assert "precision" in text and "x" in text and "y" in text and "macro avg" in text


def test_misclassified_table_orders_most_confident_first():
    features = pd.DataFrame({"f": [10.0, 20.0, 30.0, 40.0]})
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]])
    table = misclassified_table(features, [0, 0, 1, 1], [0, 1, 0, 1], probabilities)
    assert table["row"].tolist() == [1, 2]
    assert table["f"].tolist() == [20.0, 30.0]
    assert table["confidence"].tolist() == pytest.approx([0.7, 0.55])
    assert list(table.columns[:4]) == ["row", "label", "prediction", "confidence"]
    assert len(misclassified_table(features, [0, 0, 1, 1], [1, 1, 0, 0], limit=3)) == 3


def _png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def test_figures_render_without_pyplot_state():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figures = [
        confusion_matrix_figure([0, 1, 2, 2], [0, 2, 2, 2], labels=[0, 1, 2]),
        learning_curves_figure(
            {"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "val_accuracy": [0.5, 0.8]}
        ),
        residual_figure([1.0, 2.0, 3.0], [1.1, 1.9, 3.5]),
        feature_importances_figure(feature_importances_table(["a", "b", "c"], [0.1, 0.7, 0.2]), top=2),
    ]
    for figure in figures:
        assert isinstance(figure, Figure)
        assert _png_bytes(figure).startswith(b"\x89PNG")
    assert plt.get_fignums() == before


def test_learning_curves_group_train_and_val_series():
    figure = learning_curves_figure(
        {"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "val_accuracy": [0.5, 0.8]}
    )
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["loss", "accuracy"]
    assert len(figure.axes[0].lines) == 2


def test_confusion_matrix_annotates_counts():
    figure = confusion_matrix_figure(["a", "b", "b"], ["a", "a", "b"], labels=["a", "b"])
    texts = sorted(text.get_text() for text in figure.axes[0].texts)
    assert texts == ["0", "1", "1", "1"]


def test_feature_importances_table_sorted():
    table = feature_importances_table(["a", "b", "c"], [0.1, 0.7, 0.2])
    assert table["feature"].tolist() == ["b", "c", "a"]


def test_figures_are_made_without_pyplot():
    """pyplot keeps global figure state (and picks a GUI backend): making every figure of the module in
    a fresh interpreter must not import it."""
    code = (
        "import sys\n"
        "from mlops_platform import evaluation as e\n"
        "e.learning_curves_figure({'train_loss': [1.0, 0.5], 'val_loss': [1.1, 0.6]})\n"
        "e.confusion_matrix_figure(['a', 'b'], ['a', 'a'], labels=['a', 'b'])\n"
        "e.feature_importances_figure(e.feature_importances_table(['x', 'y'], [0.3, 0.7]))\n"
        "print('matplotlib.pyplot' in sys.modules, 'matplotlib.figure' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
