"""The table path's request reader (serving/tables.py), on a cellar-like signature: which requests it
reads (and into which rows, in signature order), which it leaves to MLflow's own code, and the 422 for a
missing column. End to end against `mlflow models serve`: test_tables.py."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_platform.serving.errors import RequestError
from mlops_platform.serving.parsing import parse_request
from mlops_platform.serving.tables import TableReader, TableSpec

COLUMNS = ("alcohol", "region", "organic", "year")


@pytest.fixture(scope="module")
def reader() -> TableReader:
    from mlflow.types import ColSpec, Schema

    types = ("double", "string", "boolean", "long")
    schema = Schema([ColSpec(kind, name) for kind, name in zip(types, COLUMNS, strict=True)])
    spec = TableSpec.from_schema(schema)
    assert spec is not None and spec.names == COLUMNS
    return TableReader(spec)


def _split(data: str, extra: str = "") -> str:
    """A dataframe_split body with the signature's columns in order and `data` as its rows' JSON."""
    return (
        '{"dataframe_split": {"columns": ["alcohol", "region", "organic", "year"], '
        + extra
        + f'"data": {data}}}}}'
    )


def _rows(reader: TableReader, body: str) -> np.ndarray | None:
    return reader.rows(parse_request(body.encode(), "application/json"))


def test_split_and_records_are_read_by_name_with_gaps_and_extra_columns(reader):
    split = (
        '{"dataframe_split": {"columns": ["year", "organic", "region", "alcohol", "bottle_id"], '
        '"data": [[2001, true, "langhe", 13.2, "B1"], [2003, false, null, null, "B2"]]}}'
    )
    expected = [[13.2, "langhe", True, 2001], [None, None, False, 2003]]
    assert _rows(reader, split).tolist() == expected
    records = (
        '{"dataframe_records": [{"region": "langhe", "alcohol": 13.2, "organic": true, "year": 2001}, '
        '{"organic": false, "year": 2003, "alcohol": null, "region": null}]}'
    )
    assert _rows(reader, records).tolist() == expected


@pytest.mark.parametrize(
    "body",
    [
        # values of another type than the column's: MLflow decides what they mean
        _split('[[true, "a", true, 1]]'),
        _split("[[1.0, 5, true, 1]]"),
        _split('[[1.0, "a", null, 1]]'),
        _split('[[1.0, "a", true, 1.5]]'),
        # a ragged row, an index, no rows
        _split('[[1.0, "a", true]]'),
        _split('[[1.0, "a", true, 1]]', extra='"index": [7], '),
        _split("[]"),
        # a key absent from one record only (a NaN in MLflow's DataFrame, not a null)
        '{"dataframe_records": [{"alcohol": 1.0, "region": "a", "organic": true, "year": 1}, '
        '{"alcohol": 1.0, "region": "a", "organic": true, "year": 1, "extra": 2}]}',
        # formats the path does not read
        '{"inputs": {"alcohol": [1.0], "region": ["a"], "organic": [true], "year": [1]}}',
    ],
)
def test_what_the_path_does_not_read_is_left_to_mlflow(reader, body):
    assert _rows(reader, body) is None


def test_a_missing_column_is_a_422_naming_it(reader):
    for body in (
        '{"dataframe_split": {"columns": ["alcohol", "organic", "year"], "data": [[1.0, true, 1]]}}',
        '{"dataframe_records": [{"alcohol": 1.0, "organic": true, "year": 1}]}',
    ):
        with pytest.raises(RequestError) as refused:
            _rows(reader, body)
        assert refused.value.status == 422 and "'region'" in refused.value.message


def test_signatures_the_path_does_not_serve():
    from mlflow.types import ColSpec, Schema, TensorSpec

    assert TableSpec.from_schema(Schema([ColSpec("string", "a", required=False)])) is None
    assert TableSpec.from_schema(Schema([ColSpec("datetime", "a")])) is None
    assert TableSpec.from_schema(Schema([TensorSpec(np.dtype("float32"), (-1, 3))])) is None
