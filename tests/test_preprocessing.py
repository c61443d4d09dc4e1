"""The preprocessing fitted inside every model: imputation, encoding with unknown categories, scaling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io
from cellar import TARGET, wine_cellar

from mlops_platform.columns import infer_roles, typed_features
from mlops_platform.preprocessing import TRUSTED_TYPES, build_preprocessor


@pytest.fixture(scope="module")
def table() -> tuple:
    frame = wine_cellar().drop(columns=[TARGET])
    roles = infer_roles(frame)
    return roles, typed_features(frame, roles)


@pytest.mark.parametrize("impute", ["median", "most_frequent", "none"])
@pytest.mark.parametrize("encoding", ["onehot", "ordinal"])
@pytest.mark.parametrize("missing_indicator", [True, False])
def test_missing_values_in_any_spelling_and_unseen_categories_give_one_answer(
    table, impute, encoding, missing_indicator
):
    roles, features = table
    preprocessor = build_preprocessor(
        roles, impute=impute, encoding=encoding, missing_indicator=missing_indicator
    )
    matrix = preprocessor.fit_transform(features)
    assert matrix.dtype == np.float64 and len(matrix) == len(features)
    assert np.isnan(matrix).any() == (impute == "none")

    row = features.iloc[[0]].copy()
    row["alcohol"], row["region"] = np.nan, np.nan
    as_json_null = row.copy()
    as_json_null["region"] = pd.Series([None], dtype=object, index=row.index)  # what MLflow hands a model
    as_pandas_string = row.copy()
    as_pandas_string["region"] = row["region"].astype("str")
    first = preprocessor.transform(row)
    for other in (as_json_null, as_pandas_string):
        np.testing.assert_array_equal(preprocessor.transform(other), first)

    unseen = features.iloc[[0]].copy()
    unseen["region"] = "atlantis"
    encoded = preprocessor.transform(unseen)
    assert np.isfinite(encoded).all() or impute == "none"


def test_fitted_preprocessor_loads_with_our_trusted_types_only(table):
    roles, features = table
    preprocessor = build_preprocessor(roles).fit(features)
    data = skops.io.dumps(preprocessor)
    assert set(skops.io.get_untrusted_types(data=data)) <= set(TRUSTED_TYPES)
    loaded = skops.io.loads(data, trusted=list(TRUSTED_TYPES))
    np.testing.assert_array_equal(loaded.transform(features), preprocessor.transform(features))
