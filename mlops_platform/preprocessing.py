"""The preprocessing both trainers fit on the training split and keep inside the logged model: one
scikit-learn ColumnTransformer built from the column roles (columns.py), so serving applies exactly what
training fitted.

    preprocessor = build_preprocessor(roles, impute="median", missing_indicator=True, encoding="onehot")
    matrix = preprocessor.fit_transform(train_frame)          # float64, dense, one row per row

Per role:
- numeric: SimpleImputer(impute) [+ missing indicators] -> StandardScaler (when `scale`);
- categorical strings: missing in any spelling (NaN from a file, None from a JSON null) -> one missing
  marker -> OneHotEncoder or OrdinalEncoder, both with unknown categories handled (one-hot: all zeros;
  ordinal: -1);
- numeric codes named categorical, and booleans with missing values (float 0/1): the encoder;
- booleans without missing values: the encoder (one column for one-hot).
A missing category is a category of its own (for an encoder that is exactly "imputed + indicator"),
unless `missing_indicator` is off: then it is imputed with the most frequent one. With impute="none"
nothing is imputed and a missing number stays NaN (for models that take NaN: hist_gb).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mlops_platform.columns import ColumnRoles

Impute = Literal["median", "most_frequent", "none"]
Encoding = Literal["onehot", "ordinal"]
IMPUTE_CHOICES: tuple[str, ...] = ("median", "most_frequent", "none")
ENCODING_CHOICES: tuple[str, ...] = ("onehot", "ordinal")
# What every missing category becomes before imputation: JSON nulls arrive as None, file gaps as NaN, and
# scikit-learn's imputers match one of the two only. An empty string carries no category either.
MISSING_CATEGORY = ""
# The types a fitted preprocessor is made of, as skops names them: what a loader may trust in a
# preprocessor we wrote (our list, never the one a model file carries).
TRUSTED_TYPES: tuple[str, ...] = (
    "builtins.slice",
    "numpy.dtype",
    "numpy.ndarray",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
)


def build_preprocessor(
    roles: ColumnRoles,
    impute: Impute = "median",
    missing_indicator: bool = True,
    encoding: Encoding = "onehot",
    scale: bool = True,
) -> Any:
    """An unfitted ColumnTransformer over `roles.used` (selected by name), dense float output."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    strings = [name for name in roles.categorical if name not in roles.numeric_codes]
    coded = [*roles.numeric_codes, *(name for name in roles.boolean if name in roles.with_missing)]
    flags = [name for name in roles.boolean if name not in roles.with_missing]
    # A missing category stays a category of its own when indicators are asked for (for an encoder
    # that is exactly "imputed value + indicator") or nothing is imputed; otherwise the most frequent.
    impute_categories = impute != "none" and not missing_indicator
    branches = []
    if roles.numeric:
        numeric_steps = []
        if impute != "none":
            imputer = SimpleImputer(strategy=impute, add_indicator=missing_indicator)
            numeric_steps.append(("impute", imputer))
        if scale:
            numeric_steps.append(("scale", StandardScaler()))
        branches.append(
            ("numeric", Pipeline(numeric_steps) if numeric_steps else "passthrough", list(roles.numeric))
        )
    if strings:
        steps = [("nan_as_missing", _constant(np.nan)), ("none_as_missing", _constant(None))]
        if impute_categories:
            steps.append(("impute", SimpleImputer(missing_values=MISSING_CATEGORY, strategy="most_frequent")))
        branches.append(("categorical", Pipeline([*steps, ("encode", _encoder(encoding))]), strings))
    if coded:
        steps = [("impute", SimpleImputer(strategy="most_frequent"))] if impute_categories else []
        branches.append(("coded", Pipeline([*steps, ("encode", _encoder(encoding))]), coded))
    if flags:
        branches.append(("boolean", _encoder(encoding, binary=True), flags))
    return ColumnTransformer(branches, remainder="drop", sparse_threshold=0.0)


def _constant(missing: Any) -> Any:
    from sklearn.impute import SimpleImputer

    return SimpleImputer(missing_values=missing, strategy="constant", fill_value=MISSING_CATEGORY)


def _encoder(encoding: Encoding, binary: bool = False) -> Any:
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if encoding == "ordinal":
        return OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2, dtype=np.float64
        )
    return OneHotEncoder(
        handle_unknown="ignore", sparse_output=False, drop="if_binary" if binary else None, dtype=np.float64
    )


def with_preprocessing(pipeline: Any, preprocessor: Any) -> Any:
    """`preprocessor` as the first step of a model Pipeline (whose last step stays `model`)."""
    from sklearn.pipeline import Pipeline

    return Pipeline([("preprocess", preprocessor), *pipeline.steps])
