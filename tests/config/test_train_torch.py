"""The train_torch config: bad values named, the documented defaults."""

from __future__ import annotations

import pytest

from mlops_platform.config import ConfigError
from mlops_platform.config.train_torch import TorchTrainConfig


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"model": "cnn", "dataset": "wine"}, "model=cnn needs image data"),
        ({"dataset": "iris"}, "dataset='iris'"),
        ({"hidden_sizes": "64,x"}, "hidden_sizes='64,x'"),
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
        ({"scheduler": "linear"}, "scheduler='linear'"),
        ({"dropout": 1.5}, "dropout=1.5"),
        ({"device": "cpu", "amp": "bf16"}, "amp=bf16 needs device=cuda"),
        ({"dataset": "csv:/tmp/x.csv", "model": "mlp"}, "needs target"),
        ({"val_fraction": 0}, "val_fraction=0"),
        ({"epochs": 0}, "epochs=0"),
        ({"resume_from": "../../etc"}, "resume_from='../../etc' must be a run id"),
    ],
)
def test_bad_config_values_are_named(values, named):
    with pytest.raises(ConfigError, match="invalid parameter") as error:
        TorchTrainConfig.parse(values)
    assert named in str(error.value)


def test_config_defaults_are_the_documented_digits_cnn_setup():
    config = TorchTrainConfig.parse({})
    assert (config.dataset, config.model, config.device, config.amp) == ("digits", "cnn", "auto", "auto")
    assert config.hidden_layer_sizes == (128, 64)
    # MLproject passes "" for unset optional values.
    assert TorchTrainConfig.parse({"grad_clip_norm": "", "resume_from": ""}).grad_clip_norm is None
