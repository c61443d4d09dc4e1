"""The sklearn model table and the train_sklearn config: hyperparameters belong to their models."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from mlops_platform.config.base import ConfigError
from mlops_platform.config.sklearn_models import (
    HYPERPARAMETERS,
    MODEL_NAMES,
    MODELS,
    hyperparameters_of,
    models_for,
)
from mlops_platform.config.train_sklearn import ModelName, TrainSklearnConfig
from mlops_platform.data import load_dataset, split_dataset
from mlops_platform.training.sklearn_models import BUILDERS, build_pipeline


def test_config_model_choices_match_the_table():
    assert set(typing.get_args(ModelName)) == set(MODEL_NAMES)
    assert models_for("classification") == (
        "baseline", "logreg", "svc", "knn", "random_forest", "hist_gb", "stacking", "voting",
    )  # fmt: skip
    assert models_for("regression") == ("baseline", "ridge", "random_forest", "hist_gb", "stacking")


def test_every_model_of_the_table_has_a_builder_and_no_builder_is_left_over():
    assert set(BUILDERS) == set(MODELS)


def test_every_hyperparameter_is_a_config_field_defaulting_to_none():
    fields = TrainSklearnConfig.model_fields
    for name in HYPERPARAMETERS:
        assert name in fields, name
        assert fields[name].default is None, name
        assert fields[name].description, name


def test_config_rejects_a_hyperparameter_the_model_does_not_take():
    with pytest.raises(ConfigError) as error:
        TrainSklearnConfig.parse({"model": "svc", "n_neighbors": "7"})
    message = str(error.value)
    assert "n_neighbors=7" in message
    assert "valid for svc: c, kernel, gamma, class_weight" in message


def test_baseline_takes_no_hyperparameters():
    with pytest.raises(ConfigError, match="valid for baseline: none"):
        TrainSklearnConfig.parse({"model": "baseline", "alpha": 1.0})


def test_unset_hyperparameters_pass_as_empty_strings():
    config = TrainSklearnConfig.parse({"model": "knn", "n_neighbors": "3", "c": "", "alpha": ""})
    assert config.n_neighbors == 3
    assert config.c is None
    assert config.hyperparameters()["n_neighbors"] == 3


def test_config_rejects_model_for_explicit_task_and_bad_values():
    with pytest.raises(ConfigError, match="model='ridge' is not a classification model"):
        TrainSklearnConfig.parse({"model": "ridge", "task": "classification"})
    with pytest.raises(ConfigError, match="model='boosted_trees'"):
        TrainSklearnConfig.parse({"model": "boosted_trees"})
    with pytest.raises(ConfigError, match="cv_folds"):
        TrainSklearnConfig.parse({"cv_folds": 1})
    with pytest.raises(ConfigError, match="val_fraction"):
        TrainSklearnConfig.parse({"val_fraction": 0.5, "test_fraction": 0.5})


def test_ensembles_take_their_members_hyperparameters():
    assert set(hyperparameters_of("stacking", "classification")) >= {"c", "n_neighbors", "n_estimators"}
    assert set(hyperparameters_of("stacking", "regression")) >= {"alpha", "n_estimators", "learning_rate"}
    # class_weight exists for classifiers only.
    assert "class_weight" in hyperparameters_of("random_forest")
    assert "class_weight" not in hyperparameters_of("random_forest", "regression")


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
