"""The table parameters both trainers share: which columns to treat how, and how to fill what is missing.

A mixin of fields for the trainers' configs, so `categorical=`, `drop=`, `impute=`, `missing_indicator=`
and `encoding=` mean the same in both (see columns.py for the roles, preprocessing.py for what is fitted).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mlops_platform.columns import parse_names
from mlops_platform.config.base import JobConfig


class TableConfig(JobConfig):
    """Column roles and preprocessing of a feature table."""

    categorical: str | None = Field(
        None, description="Columns to treat as categorical (comma-separated), e.g. integer codes."
    )
    drop: str | None = Field(None, description="Columns not to use (comma-separated), e.g. ids.")
    impute: Literal["median", "most_frequent", "none"] = Field(
        "median",
        description="Missing numbers: median or most_frequent of the training split; none keeps NaN "
        "(hist_gb only).",
    )
    missing_indicator: bool = Field(
        True,
        description="Add a was-missing column per numeric column with gaps, and keep a missing category "
        "as a category of its own (false: impute it with the most frequent).",
    )
    encoding: Literal["onehot", "ordinal"] = Field(
        "onehot", description="Categorical encoding; unknown categories at serving time are handled."
    )

    @field_validator("categorical", "drop")
    @classmethod
    def _names(cls, value: str | None, info) -> str | None:
        if value is not None and not parse_names(value):
            raise ValueError(f"{info.field_name}={value!r} must be comma-separated column names")
        return value

    @property
    def categorical_columns(self) -> tuple[str, ...]:
        return parse_names(self.categorical)

    @property
    def dropped_columns(self) -> tuple[str, ...]:
        return parse_names(self.drop)

    def preprocessing_options(self) -> dict[str, object]:
        """The keyword arguments of `preprocessing.build_preprocessor` this config sets."""
        return {"impute": self.impute, "missing_indicator": self.missing_indicator, "encoding": self.encoding}
