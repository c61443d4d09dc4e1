"""The param rules: flattening, meaning-equality with `mlflow run` strings, the overlong-value rule."""

from __future__ import annotations

import pytest

from mlops_platform.tracking.params import (
    MAX_PARAM_VALUE_LENGTH,
    OVERFLOW_MARKER,
    ParamOverflowWarning,
    flatten,
    prepare_params,
    same_param_value,
)


def test_flatten_nested_configs() -> None:
    assert flatten({"optimizer": {"lr": 0.1, "betas": {"b1": 0.9}}, "epochs": 3}) == {
        "optimizer.lr": 0.1,
        "optimizer.betas.b1": 0.9,
        "epochs": 3,
    }


@pytest.mark.parametrize(
    ("stored", "value"),
    [
        ("1e-3", 0.001),
        ("", None),
        ("None", None),
        ("10", 10),
        ("10", 10.0),
        ("true", True),
        ("adam", "adam"),
        # `mlflow run` logs values shell-quoted, as they stood on the command line.
        ("''", None),
        ("''", ""),
        ("'params.model = '\"'\"'cnn'\"'\"''", "params.model = 'cnn'"),
    ],
)
def test_same_meaning_is_not_a_conflict(stored: str, value) -> None:
    assert same_param_value(stored, value)


@pytest.mark.parametrize(
    ("stored", "value"),
    [("1e-3", 0.01), ("", 0), ("adam", "sgd"), ("true", False), ("''", "x"), ("'a b'", "a")],
)
def test_different_meaning_is_a_conflict(stored: str, value) -> None:
    assert not same_param_value(stored, value)


def test_overlong_value_is_cut_with_a_marker_and_kept_in_full() -> None:
    long = "x" * (MAX_PARAM_VALUE_LENGTH + 500)
    with pytest.warns(ParamOverflowWarning, match="params_overflow.json"):
        prepared, overflow = prepare_params({"model": {"spec": long}, "short": 1})
    assert len(prepared["model.spec"]) == MAX_PARAM_VALUE_LENGTH
    assert prepared["model.spec"].endswith(OVERFLOW_MARKER)
    assert overflow == {"model.spec": long}
    assert prepared["short"] == "1"


def test_overlong_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="MLflow allows 250"):
        prepare_params({"k" * 251: 1})
