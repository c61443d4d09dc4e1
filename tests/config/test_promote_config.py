"""PromoteConfig is the only home of the promotion defaults and bounds."""

from __future__ import annotations

import inspect

import pytest

from mlops_platform.config.base import ConfigError
from mlops_platform.config.promote import PromoteConfig
from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.demo_config import DemoConfig
from mlops_platform.registry import promote

REQUIRED = {"experiment": "e", "model_name": "m"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"min_delta": "-0.1"},
            "invalid parameter min_delta='-0.1': Input should be greater than or equal to 0",
        ),
        (
            {"max_model_size_mb": "0"},
            "invalid parameter max_model_size_mb='0': Input should be greater than 0",
        ),
    ],
)
def test_bounds_are_checked_by_the_config_naming_the_value(values, message) -> None:
    with pytest.raises(ConfigError) as error:
        PromoteConfig.parse({**REQUIRED, **values})
    assert str(error.value) == message


def test_the_bounds_admit_their_edge() -> None:
    config = PromoteConfig.parse({**REQUIRED, "min_delta": "0", "max_model_size_mb": "0.5"})
    assert (config.min_delta, config.max_model_size_mb) == (0.0, 0.5)


def test_library_and_demo_defaults_come_from_the_configs() -> None:
    fields = PromoteConfig.model_fields
    signature = inspect.signature(promote.promote_best).parameters
    assert signature["alias"].default == fields["alias"].default
    assert signature["min_delta"].default == fields["min_delta"].default
    assert inspect.signature(promote.rollback).parameters["alias"].default == fields["alias"].default
    demo = DemoConfig()
    assert (demo.metric, demo.alias) == (fields["metric"].default, fields["alias"].default)
    assert demo.epochs == TorchTrainConfig.model_fields["epochs"].default
