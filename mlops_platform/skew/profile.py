"""A compact, frozen profile of a training split: what the skew report needs instead of the data.

Per feature: its kind, missing rate, and for numeric features the distinct quantile edges with the
training CDF at each edge (bins for PSI and the points of the binned KS test; a feature with few
distinct values, like the digits pixels, gets every value as an edge, which makes the test exact for
it); for categorical features the category frequencies. Plus the label distribution and, when given,
the distribution of the validation predictions. A few kilobytes of JSON for 64 features.

Kinds come from the pandas dtypes (`feature_kind`): numbers are numeric, everything else (strings,
booleans, pandas categoricals) categorical. When the data layer's column roles are available the
caller can pass them as `kinds` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

PROFILE_VERSION = 1
# The profile's file in a logged model's folder (beside MLmodel), where both trainers put it.
PROFILE_FILE = "skew_profile.json"
# Quantiles taken for the numeric edges (fewer when values repeat).
QUANTILES = 20
Kind = Literal["numeric", "categorical"]


def feature_kind(series: pd.Series) -> Kind:
    """numeric for int/float columns (not bool); categorical for everything else."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return "categorical"
    return "numeric"


def numeric_profile(values: Any) -> dict[str, Any]:
    import numpy as np

    x = np.asarray(values, dtype=float)
    present = x[~np.isnan(x)]
    profile: dict[str, Any] = {
        "kind": "numeric",
        "count": int(present.size),
        "missing_rate": float(1 - present.size / max(x.size, 1)),
    }
    if not present.size:
        return {**profile, "edges": [], "cdf": []}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, QUANTILES + 1)))
    cdf = np.searchsorted(np.sort(present), edges, side="right") / present.size
    return {
        **profile,
        "edges": edges.tolist(),
        "cdf": cdf.tolist(),  # P(x <= edge) on the training split
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
    }


def categorical_profile(values: Any) -> dict[str, Any]:
    import pandas as pd

    series = pd.Series(values, dtype="object")
    present = series.dropna().astype(str)
    frequencies = present.value_counts(normalize=True).sort_index()
    return {
        "kind": "categorical",
        "count": int(present.size),
        "missing_rate": float(1 - present.size / max(len(series), 1)),
        "frequencies": {str(k): float(v) for k, v in frequencies.items()},
    }


def build_profile(
    features: pd.DataFrame,
    labels: Any = None,
    validation_predictions: Any = None,
    kinds: dict[str, Kind] | None = None,
) -> dict[str, Any]:
    """The profile of a training split, as a JSON-ready dict.

    Args:
        features: the training split's features, one column per model input.
        labels: the training labels (their distribution is kept: class frequencies or a numeric profile).
        validation_predictions: the model's predictions on the validation split (classes or numbers),
            the reference for the served predictions.
        kinds: feature name -> "numeric" | "categorical", overriding the dtype rule.
    """
    kinds = kinds or {}
    profile: dict[str, Any] = {"version": PROFILE_VERSION, "rows": len(features), "features": {}}
    for name in features.columns:
        column = features[name]
        kind = kinds.get(str(name)) or feature_kind(column)
        profile["features"][str(name)] = (
            numeric_profile(column) if kind == "numeric" else categorical_profile(column)
        )
    for key, values in (("label", labels), ("validation_predictions", validation_predictions)):
        if values is not None:
            profile[key] = _target_profile(values)
    return profile


def kinds_from_roles(roles: Mapping[str, Any]) -> dict[str, Kind]:
    """Profile kinds from column roles (`ColumnRoles.to_dict()`): numeric columns are numeric; categorical
    ones (numeric codes included) and booleans are categorical, as the preprocessing treats them."""
    kinds: dict[str, Kind] = {name: "numeric" for name in roles.get("numeric", ())}
    for role in ("categorical", "boolean"):
        kinds.update({name: "categorical" for name in roles.get(role, ())})
    return kinds


def model_profile(
    features: pd.DataFrame,
    roles: Mapping[str, Any],
    labels: Any,
    predictions: Any,
    predictions_split: str = "validation",
    output_classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The profile a trainer stores with its model (as PROFILE_FILE, via the tracker's `model_files`).

    Args:
        features: the training split, the model's input columns (`roles["used"]`, in their order).
        roles: the column roles the preprocessing was built from (`ColumnRoles.to_dict()`).
        labels: the training labels.
        predictions: the model's predictions on `predictions_split` (classes, or numbers for regression),
            as the served predictions will be read (see `output_classes`).
        predictions_split: "validation", or "test" when the job kept no validation split.
        output_classes: when the served output is one probability per class, the class of each output
            column (the served prediction is then that of the arg-max column).
    """
    used = list(roles.get("used") or features.columns)
    profile = build_profile(features[used], labels, predictions, kinds_from_roles(roles))
    profile["predictions_split"] = predictions_split
    if output_classes is not None:
        profile["output_classes"] = [str(label) for label in output_classes]
    return profile


def _target_profile(values: Any) -> dict[str, Any]:
    """Classes (integers or strings) as frequencies; continuous values as a numeric profile."""
    import numpy as np
    import pandas as pd

    array = np.asarray(values)
    if array.dtype.kind in "f" and not np.all(np.mod(array[~np.isnan(array)], 1) == 0):
        return numeric_profile(array)
    return categorical_profile(pd.Series(array).astype(str))
