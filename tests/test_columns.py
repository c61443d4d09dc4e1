"""Column roles: inferred from the table, overridden by parameters, unusable columns dropped or refused."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from cellar import wine_cellar

from mlops_platform.columns import ColumnError, ColumnRoles, infer_roles, typed_features


def test_roles_of_a_mixed_table_and_the_id_column_dropped_with_a_warning(caplog):
    frame = wine_cellar().drop(columns=["cultivar"])
    with caplog.at_level(logging.WARNING, logger="mlops_platform.columns"):
        roles = infer_roles(frame)
    assert roles.categorical == ("region",) and roles.boolean == ("organic",)
    assert "alcohol" in roles.numeric and "proline" in roles.numeric and len(roles.numeric) == 13
    assert set(roles.dropped) == {"bottle_id"} and "identifier" in roles.dropped["bottle_id"]
    assert "bottle_id" in caplog.text and "identifier" in caplog.text
    assert set(roles.with_missing) == {"alcohol", "magnesium", "region"}
    assert roles.used == tuple(column for column in frame.columns if column != "bottle_id")
    assert ColumnRoles.from_dict(roles.to_dict()) == roles
    assert roles.role_of("organic") == "boolean" and roles.role_of("bottle_id") == "dropped"


def test_parameters_override_roles():
    frame = pd.DataFrame({"grade": [1, 2, 3, 1] * 5, "x": np.arange(20.0), "note": ["a", "b"] * 10})
    roles = infer_roles(frame, categorical=["grade"], drop=["note"])
    assert roles.categorical == ("grade",) and roles.numeric_codes == ("grade",)
    assert roles.numeric == ("x",) and roles.dropped == {"note": "drop parameter"}


@pytest.mark.parametrize(
    ("categorical", "drop", "message"),
    [
        (["nope"], [], "categorical=nope: no such column"),
        ([], ["nope"], "drop=nope: no such column"),
        (["empty"], [], "categorical=empty: the column cannot be used: no values"),
        (["x"], ["x"], "named in both"),
    ],
)
def test_a_column_the_user_named_is_an_error_not_a_silent_drop(categorical, drop, message):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "empty": [np.nan] * 3})
    with pytest.raises(ColumnError, match=message):
        infer_roles(frame, categorical=categorical, drop=drop)


def test_typed_features_one_dtype_per_role_and_nan_for_every_missing_spelling():
    frame = pd.DataFrame(
        {
            "n": [1, 2, 3],
            "s": pd.Series(["a", None, np.nan], dtype=object),
            "b": [True, False, True],
            "bm": pd.Series([True, None, False], dtype=object),
        }
    )
    roles = infer_roles(frame)
    typed = typed_features(frame, roles)
    assert typed.dtypes.astype(str).to_dict() == {"n": "float64", "s": "object", "b": "bool", "bm": "float64"}
    assert typed["s"].iloc[1] != typed["s"].iloc[1]  # NaN, not None
    assert typed["bm"].tolist()[::2] == [1.0, 0.0]
