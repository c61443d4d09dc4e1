"""Column roles of a feature table: which columns are numeric, categorical, boolean, or dropped (and why).

The roles are inferred from the training table, can be overridden (`categorical=a,b`, `drop=c`), are
logged with every run and stored in every model, and are what the preprocessing (preprocessing.py) and
the training-data profile are built from, so all of them agree on what each column is.

    roles = infer_roles(features, categorical=("pclass",), drop=("ticket",))
    roles.numeric, roles.categorical, roles.boolean, roles.dropped   # dropped: {column: reason}
    ColumnRoles.from_dict(roles.to_dict()) == roles                   # the JSON form logged with models

Rules (a column the user named is never silently dropped: it is an error instead):
- bool columns, and columns whose values are only True/False, are boolean;
- numeric columns are numeric, unless named in `categorical` (a low-cardinality integer code);
- string (object) columns are categorical, unless they look like an identifier: more than
  MAX_CATEGORIES distinct values that are also more than half the non-missing rows;
- a column with no value at all is dropped;
- `drop` columns are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_platform.errors import UserError

# pandas is imported inside the functions that use it: config/table.py imports this module for
# parse_names, and `mlops --help` must not load pandas (tests/test_server.py).
if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

# A string column with more distinct values than this, that are also more than half its rows, is an id.
MAX_CATEGORIES = 50
ID_LIKE_SHARE = 0.5
ROLES: tuple[str, ...] = ("numeric", "categorical", "boolean")
# The run artifact both trainers log the roles to (`ColumnRoles.to_dict()`).
COLUMN_ROLES_ARTIFACT = "column_roles.json"


class ColumnError(UserError):
    """A column named in `categorical` or `drop` is missing or unusable; the message names it."""


@dataclass(frozen=True)
class ColumnRoles:
    """What each feature column is, in the table's column order.

    Attributes:
        numeric: numeric columns (float64 in the data the models see).
        categorical: categorical columns: strings, or numeric codes named in `categorical`.
        numeric_codes: the categorical columns whose values are numbers (float64 codes, not strings).
        boolean: True/False columns (float64 0/1 when they have missing values, bool otherwise).
        dropped: columns not used, each with the reason, in table order.
        with_missing: used columns that have missing values in the table the roles were inferred from.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric_codes: tuple[str, ...] = ()
    boolean: tuple[str, ...] = ()
    dropped: Mapping[str, str] = field(default_factory=dict)
    with_missing: tuple[str, ...] = ()
    # Every used column in table order: the model's input columns.
    used: tuple[str, ...] = ()

    def role_of(self, column: str) -> str:
        """ "numeric", "categorical", "boolean" or "dropped"."""
        for role in ROLES:
            if column in getattr(self, role):
                return role
        if column in self.dropped:
            return "dropped"
        raise KeyError(f"column {column!r} is not in this table")

    @property
    def all_numeric_complete(self) -> bool:
        """True when the table needs no encoding or imputation: numeric columns only, nothing missing."""
        return not self.categorical and not self.boolean and not self.with_missing

    def to_dict(self) -> dict[str, Any]:
        """The JSON form logged with runs and stored in models (`column_roles.json`)."""
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "numeric_codes": list(self.numeric_codes),
            "boolean": list(self.boolean),
            "dropped": dict(self.dropped),
            "with_missing": list(self.with_missing),
            "used": list(self.used),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnRoles:
        return cls(
            numeric=tuple(data.get("numeric", ())),
            categorical=tuple(data.get("categorical", ())),
            numeric_codes=tuple(data.get("numeric_codes", ())),
            boolean=tuple(data.get("boolean", ())),
            dropped=dict(data.get("dropped", {})),
            with_missing=tuple(data.get("with_missing", ())),
            used=tuple(data.get("used", ())),
        )

    def params(self) -> dict[str, Any]:
        """The run params both trainers log: how many columns have each role, and which were dropped."""
        return {
            "data.n_numeric": len(self.numeric),
            "data.n_categorical": len(self.categorical),
            "data.n_boolean": len(self.boolean),
            "data.dropped": ",".join(self.dropped) or "none",
        }

    def describe(self) -> str:
        """One line for logs: the roles and what was dropped, with why."""
        parts = [f"{role}: {', '.join(getattr(self, role)) or '-'}" for role in ROLES]
        if len(self.numeric) > 12:
            parts[0] = f"numeric: {len(self.numeric)} columns"
        dropped = "; ".join(f"{name} ({why})" for name, why in self.dropped.items())
        return " | ".join([*parts, f"dropped: {dropped or '-'}"])


def parse_names(text: str | None) -> tuple[str, ...]:
    """ "a, b" -> ("a", "b"); empty or None -> ()."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def is_boolean(series: pd.Series) -> bool:
    """bool dtype, or an object column whose non-missing values are all True/False."""
    import pandas as pd  # lazily: see the TYPE_CHECKING import

    if pd.api.types.is_bool_dtype(series.dtype):
        return True
    if series.dtype != object:
        return False
    values = series.dropna()
    return len(values) > 0 and all(isinstance(value, bool) for value in values.tolist())


def infer_roles(
    features: pd.DataFrame, categorical: Iterable[str] = (), drop: Iterable[str] = ()
) -> ColumnRoles:
    """Roles of every column of `features` (see the module docstring); warns naming each dropped column.

    Raises:
        ColumnError: a column named in `categorical` or `drop` is not in the table, is named in both,
            or is unusable (no values, or an identifier).
    """
    import pandas as pd  # lazily: see the TYPE_CHECKING import

    columns = [str(column) for column in features.columns]
    categorical, drop = tuple(categorical), tuple(drop)
    for what, names in (("categorical", categorical), ("drop", drop)):
        unknown = [name for name in names if name not in columns]
        if unknown:
            raise ColumnError(f"{what}={','.join(unknown)}: no such column; columns: {', '.join(columns)}")
    both = sorted(set(categorical) & set(drop))
    if both:
        raise ColumnError(f"column {', '.join(both)} is named in both categorical and drop")

    roles: dict[str, list[str]] = {role: [] for role in ROLES}
    dropped: dict[str, str] = {}
    for name in columns:
        if name in drop:
            dropped[name] = "drop parameter"
            continue
        series = features[name]
        reason = _unusable(series)
        if reason is not None:
            if name in categorical:
                raise ColumnError(f"categorical={name}: the column cannot be used: {reason}")
            dropped[name] = reason
            logger.warning("column %r dropped: %s (name it in drop= to silence this)", name, reason)
            continue
        if is_boolean(series):
            roles["boolean"].append(name)
        elif name in categorical or not pd.api.types.is_numeric_dtype(series.dtype):
            roles["categorical"].append(name)
        else:
            roles["numeric"].append(name)
    used = tuple(name for name in columns if name not in dropped)
    if not used:
        raise ColumnError(f"no usable feature column left; dropped: {dropped}")
    with_missing = tuple(name for name in used if features[name].isna().any())
    return ColumnRoles(
        numeric=tuple(roles["numeric"]),
        categorical=tuple(roles["categorical"]),
        numeric_codes=tuple(
            name for name in roles["categorical"] if pd.api.types.is_numeric_dtype(features[name].dtype)
        ),
        boolean=tuple(roles["boolean"]),
        dropped=dropped,
        with_missing=with_missing,
        used=used,
    )


def _unusable(series: pd.Series) -> str | None:
    """Why a column cannot be a feature, or None."""
    import pandas as pd  # lazily: see the TYPE_CHECKING import

    values = series.dropna()
    if len(values) == 0:
        return "no values (all missing)"
    if pd.api.types.is_numeric_dtype(series.dtype) or is_boolean(series):
        return None
    distinct = values.nunique()
    if distinct > MAX_CATEGORIES and distinct > ID_LIKE_SHARE * len(values):
        return f"looks like an identifier ({distinct} distinct strings in {len(values)} rows)"
    return None


def typed_features(features: pd.DataFrame, roles: ColumnRoles) -> pd.DataFrame:
    """The used columns with the dtypes models are trained and served with: numeric -> float64;
    categorical strings -> object (missing as NaN), numeric codes -> float64; boolean -> bool, or
    float64 0/1 with NaN when the column has missing values (a bool column cannot hold them)."""
    import pandas as pd  # lazily: see the TYPE_CHECKING import

    typed = {}
    for name in roles.used:
        series = features[name]
        if name in roles.boolean:
            if series.isna().any():
                typed[name] = series.map({True: 1.0, False: 0.0}).astype("float64")
            else:
                typed[name] = series.astype(bool)
        elif pd.api.types.is_numeric_dtype(series.dtype):
            typed[name] = series.astype("float64")
        else:
            # object dtype with NaN for every kind of missing (pandas' own, None, pd.NA): one missing value.
            text = series.astype(object)
            typed[name] = text.where(text.notna(), float("nan"))
    return pd.DataFrame(typed, index=features.index)
