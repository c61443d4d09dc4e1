"""The sweep's config: trainer parameters, metric and search space are checked before anything runs."""

from __future__ import annotations

import pytest

from mlops_platform.config.base import ConfigError
from mlops_platform.config.sweep import SweepConfig
from mlops_platform.config.sweep_space import DEFAULT_SPACES, check_space, parse_space
from mlops_platform.config.train_sklearn import TrainSklearnConfig
from mlops_platform.config.train_torch import TorchTrainConfig


def parse(**values):
    return SweepConfig.parse(values)


def test_defaults_tune_the_default_cnn_and_fix_the_early_stopping_metric():
    config = parse()
    assert config.trainer == "torch" and config.direction == "max"
    assert set(config.search_space()) == {
        "lr",
        "batch_size",
        "dropout",
        "weight_decay",
        "optimizer",
        "channels",
    }
    assert config.fixed_trainer_params() == {"early_stopping_metric": "val_f1_macro"}
    assert parse(metric="val_loss").direction == "min"


@pytest.mark.parametrize(
    ("trainer", "model", "config_class", "fixed"),
    [
        ("torch", "mlp", TorchTrainConfig, {"dataset": "wine"}),
        ("torch", "cnn", TorchTrainConfig, {}),
        *[
            ("sklearn", model, TrainSklearnConfig, {"dataset": "diabetes" if model == "ridge" else "wine"})
            for trainer, model in DEFAULT_SPACES
            if trainer == "sklearn"
        ],
    ],
)
def test_every_default_space_gives_valid_trainer_configs(trainer, model, config_class, fixed):
    check_space(DEFAULT_SPACES[(trainer, model)], config_class, {**fixed, "model": model})


def test_trainer_params_pass_through_and_are_checked_by_the_trainer():
    config = parse(
        trainer="sklearn", metric="cv_f1_macro_mean", trainer_params={"model": "knn", "cv_folds": "3"}
    )
    assert set(config.search_space()) == {"n_neighbors", "weights"}
    with pytest.raises(ConfigError, match=r"trainer=torch parameters.*epochs="):
        parse(trainer_params={"epochs": "0"})
    with pytest.raises(ConfigError, match="nonsense"):
        parse(trainer_params={"nonsense": "1"})
    with pytest.raises(ConfigError, match="resume_from cannot be passed"):
        parse(trainer_params={"resume_from": "abc"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metric": "test_accuracy"}, "reports val_loss, val_accuracy, val_f1_macro"),
        ({"trainer": "sklearn", "metric": "test_f1_macro"}, "validation only"),
        ({"trainer": "sklearn", "metric": "val_f1_macro"}, "needs a validation split"),
        ({"trainer": "sklearn", "metric": "cv_f1_macro_mean", "pruner": "median"}, "use trainer=torch"),
        ({"trainer_params": {"early_stopping_metric": "val_loss"}}, "differs from metric"),
        ({"sampler": "grid"}, "sampler=grid needs categorical or int parameters; lr is log-float"),
        ({"storage": "mysql://x/y"}, "use sqlite"),
        ({"trainer_params": {"nproc_per_node": "2", "model": "mlp"}}, "instead of torchrun"),
        ({"trainer": "sklearn", "metric": "cv_f1_macro_mean", "trainer_params": {"model": "stacking"}},
         "no default search space for trainer=sklearn model='stacking'"),
    ],
)  # fmt: skip
def test_bad_sweep_values_are_named(values, message):
    with pytest.raises(ConfigError, match=message):
        parse(**values)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("width: {type: int, low: 1, high: 3}\n", "unknown parameter 'width'"),
        ("lr: {type: gaussian, mu: 0.1}\n", "does not match any of the expected tags.*'log-float'"),
        ("lr: {type: log-float, low: 0, high: 1}\n", "greater than 0"),
        ("lr: {type: float, low: 1, high: 0.1}\n", "low=1.0 must be <= high=0.1"),
        ("lr: {type: float, low: 0.1, high: 1, sigma: 2}\n", "sigma"),
        ("dropout: {type: float, low: 0.0, high: 1.0}\n", r"dropout=1.0 \(float\) is not a valid trainer"),
        ("dataset: {type: categorical, choices: [wine, digits]}\n", "fixed for every trial"),
        ("- lr\n", "must be a non-empty mapping"),
    ],
)  # fmt: skip
def test_space_files_are_validated(tmp_path, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    with pytest.raises(ConfigError, match=message):
        parse(space=str(path), trainer_params={"dataset": "wine", "model": "mlp"})


def test_a_valid_space_file_replaces_the_default(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "lr: {type: log-float, low: 0.001, high: 0.1}\nepochs: {type: int, low: 2, high: 6, step: 2}\n"
    )
    config = parse(space=str(path), trainer_params={"dataset": "wine", "model": "mlp"})
    assert config.space_params() == {"space.lr": "log-float[0.001, 0.1]", "space.epochs": "int[2, 6] step 2"}
    assert parse_space({"c": {"type": "categorical", "choices": ["a", 1]}}, "x")["c"].choices == ["a", 1]
