"""What a logged model declares about itself: its signature and the packages it needs.

Column-based signatures (both trainers' models): the original column names and types, every column
required.

MLflow infers a column with missing values as optional (`required: false`), and an optional column may
be left out of a request altogether: a client that forgets it gets a confident answer computed from an
imputed value. Our models take missing VALUES (null) in the columns trained with an imputer, but every
COLUMN must be sent, so MLflow's schema enforcement and our server both refuse a request without it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import pandas as pd

# What a served scikit-learn pipeline needs (the flavor's loader included), pinned by `pinned`.
SKLEARN_SERVING_PACKAGES: tuple[str, ...] = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy")

# MLflow's hint that integer columns cannot hold missing values: our features are never integers.
_INTEGER_SCHEMA_HINT = ".*integer column"


def column_signature(example: pd.DataFrame, output: Any) -> Any:
    """The ModelSignature of a model taking `example`'s columns (all required) and answering `output`."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTEGER_SCHEMA_HINT, category=UserWarning)
        inferred = infer_signature(example, output)
    inputs = Schema([ColSpec(column.type, column.name, required=True) for column in inferred.inputs.inputs])
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def pinned(distributions: Iterable[str]) -> list[str]:
    """`name==version` of each installed distribution: stated requirements, so MLflow need not infer
    them by loading the model in a subprocess (seconds per model)."""
    from importlib import metadata

    return [f"{name}=={metadata.version(name)}" for name in distributions]
