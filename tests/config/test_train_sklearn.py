"""The train_sklearn config and its model table: hyperparameters belong to their models."""

from __future__ import annotations

import typing

import pytest

from mlops_platform.config.base import ConfigError
from mlops_platform.config.sklearn_models import (
    HYPERPARAMETERS,
    MODEL_NAMES,
    hyperparameters_of,
    models_for,
)
from mlops_platform.config.train_sklearn import ModelName, TrainSklearnConfig


def test_config_model_choices_match_the_table():
    assert set(typing.get_args(ModelName)) == set(MODEL_NAMES)
    assert models_for("classification") == (
        "baseline", "logreg", "svc", "knn", "random_forest", "hist_gb", "stacking", "voting",
    )  # fmt: skip
    assert models_for("regression") == ("baseline", "ridge", "random_forest", "hist_gb", "stacking")


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
