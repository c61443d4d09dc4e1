"""The sklearn model builders: one per model of the config's table; hyperparameters reach the estimators."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_platform.config.sklearn_models import (
    MODELS,
    hyperparameters_of,
)
from mlops_platform.data import load_dataset, split_dataset
from mlops_platform.training.sklearn_models import BUILDERS, build_pipeline


def test_every_model_of_the_table_has_a_builder_and_no_builder_is_left_over():
    assert set(BUILDERS) == set(MODELS)


def test_hyperparameters_reach_the_estimators():
    pipeline = build_pipeline("stacking", "classification", {"c": 3.0, "n_estimators": 7}, seed=1)
    params = pipeline.get_params()
    assert params["model__random_forest__model__n_estimators"] == 7
    assert params["model__svc__model__estimator__C"] == 3.0
    assert params["model__logreg__model__C"] == 3.0
    assert params["model__random_forest__model__random_state"] == 1
    # Unset hyperparameters keep scikit-learn's default.
    assert (
        build_pipeline("knn", "classification", {"n_neighbors": None}, 0).get_params()["model__n_neighbors"]
        == 5
    )


def test_scaling_is_inside_the_pipeline_for_distance_and_linear_models():
    assert "scale" in build_pipeline("svc", "classification", {}, 0).named_steps
    assert "scale" in build_pipeline("ridge", "regression", {}, 0).named_steps
    assert "scale" not in build_pipeline("random_forest", "regression", {}, 0).named_steps


@pytest.mark.parametrize(("task", "model"), list(MODELS))
def test_every_model_fits_and_predicts(task, model):
    dataset = load_dataset("wine" if task == "classification" else "diabetes")
    splits = split_dataset(dataset, seed=0, val_fraction=0.0, test_fraction=0.3)
    small = {"n_estimators": 10, "max_iter": 20} if model in ("random_forest", "stacking", "voting") else {}
    small = {name: value for name, value in small.items() if name in hyperparameters_of(model, task)}
    pipeline = build_pipeline(model, task, small, seed=0)
    pipeline.fit(splits.train.features, splits.train.target)
    predictions = pipeline.predict(splits.test.features)
    assert len(predictions) == len(splits.test)
    if task == "classification":
        probabilities = pipeline.predict_proba(splits.test.features)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
        assert list(pipeline.classes_) == list(dataset.class_labels)
