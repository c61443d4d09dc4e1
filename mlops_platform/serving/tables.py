"""The native path for models of real tables: named columns with strings, booleans and gaps.

Both trainers' models of such tables hold their preprocessing (a fitted ColumnTransformer) inside: the
sklearn Pipeline's `preprocess` step, the torch pyfunc's `preprocessor.skops`. On one row that
ColumnTransformer costs most of a request (pandas and scikit-learn's per-call overhead), so this path
micro-batches concurrent requests through it and runs the rest of the model on each request's own rows:

    request -> rows (object array, signature order) ----------------------------.
    queued requests' rows -> one DataFrame, typed by MLflow's own code -> preprocess -> split
                                                      each request's features -> the rest of the model

Identical answers to `mlflow models serve`, by construction:
- the DataFrame is built and typed as MLflow's scoring server builds it (`pd.DataFrame(rows, columns)`,
  `cast_df_types_according_to_schema`, `_enforce_schema`): the same functions, so the same conversions;
- a request goes native only when every value has the JSON type its column's type expects (a number
  or null for numbers, an integer for integers, a string or null for strings, true/false for booleans),
  so rows batched together are typed alike whichever neighbours they get; anything else (other formats,
  NaN literals, an `index`, other value types, records with different keys) is answered by MLflow's own
  code, as is any request whose batch fails;
- the part after preprocessing (the estimator, the network) runs on exactly the request's rows, as in
  MLflow: a network's float sums depend on how many rows are multiplied together.
`load_table_model` checks all of it on the model's input example, batched and alone, bit for bit.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_platform.serving.errors import invalid_input
from mlops_platform.serving.output import predictions_json
from mlops_platform.serving.parsing import DF_RECORDS, DF_SPLIT, ParsedRequest

logger = logging.getLogger(__name__)

_NUMBER = frozenset({int, float, type(None)})
_INTEGER = frozenset({int})
_STRING = frozenset({str, type(None)})
_BOOLEAN = frozenset({bool})
# The JSON value types that go native, per MLflow column type (a `bool` is not an `int` here: type()
# is compared exactly). Null in an integer or boolean column is left to MLflow: it has no clean meaning.
_ACCEPTED = {
    "double": _NUMBER,
    "float": _NUMBER,
    "long": _INTEGER,
    "integer": _INTEGER,
    "string": _STRING,
    "boolean": _BOOLEAN,
}
_SKLEARN_PREDICT_FNS = ("predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba")


@dataclass(frozen=True)
class TableSpec:
    """A column signature this path serves: named, required columns of the types in `_ACCEPTED`."""

    names: tuple[str, ...]
    accepted: tuple[frozenset, ...]

    @classmethod
    def from_schema(cls, schema: Any) -> TableSpec | None:
        if schema is None or schema.is_tensor_spec():
            return None
        names, accepted = [], []
        for column in schema.inputs:
            types = _ACCEPTED.get(getattr(column.type, "name", ""))
            if types is None or not column.required or not column.name:
                return None
            names.append(column.name)
            accepted.append(types)
        if not names or len(set(names)) != len(names):
            return None
        return cls(tuple(names), tuple(accepted))


class TableReader:
    """Request -> rows in signature order (an object array of the JSON values), or None for MLflow."""

    def __init__(self, spec: TableSpec):
        self.spec = spec
        self._names = frozenset(spec.names)

    def rows(self, request: ParsedRequest) -> np.ndarray | None:
        """The request's rows, or None when MLflow's own code must answer it; raises RequestError (422)
        naming the columns a request lacks."""
        if request.format == DF_SPLIT:
            rows = self._from_split(request.data)
        elif request.format == DF_RECORDS:
            rows = self._from_records(request.data)
        else:
            return None
        if not rows or not self._typed_as_expected(rows):
            return None
        array = np.empty((len(rows), len(self.spec.names)), dtype=object)
        array[:] = rows
        return array

    def _missing(self, sent: Any) -> None:
        from mlops_platform.serving.validation import missing_columns_message

        missing = [name for name in self.spec.names if name not in sent]
        if missing:
            raise invalid_input(missing_columns_message(missing))

    def _from_split(self, data: dict) -> list | None:
        columns = data.get("columns")
        if not isinstance(columns, list) or "index" in data or len(set(columns)) != len(columns):
            return None
        self._missing(set(columns))
        width = len(columns)
        rows = data["data"]
        if not all(type(row) is list and len(row) == width for row in rows):
            return None
        getter = operator.itemgetter(*(columns.index(name) for name in self.spec.names))
        if len(self.spec.names) == 1:
            return [(getter(row),) for row in rows]
        return [getter(row) for row in rows]

    def _from_records(self, data: list) -> list | None:
        if not data or not all(type(record) is dict for record in data):
            return None
        keys = data[0].keys()
        # A key absent from some records is a NaN in MLflow's DataFrame, not a null: MLflow answers.
        if not all(record.keys() == keys for record in data):
            return None
        self._missing(keys)
        getter = operator.itemgetter(*self.spec.names)
        if len(self.spec.names) == 1:
            return [(getter(record),) for record in data]
        return [getter(record) for record in data]

    def _typed_as_expected(self, rows: list) -> bool:
        accepted = self.spec.accepted
        for row in rows:
            for value, types in zip(row, accepted, strict=True):
                if type(value) not in types:
                    return False
        return True


@dataclass
class TableModel:
    """A table model split where batching stops paying: `prepare` (typing + preprocessing) on a whole
    batch, `finish` (the estimator or network) on each request's rows."""

    reader: TableReader
    schema: Any
    preprocess: Callable[[Any], np.ndarray]
    finish: Callable[[np.ndarray], np.ndarray]

    @property
    def names(self) -> tuple[str, ...]:
        return self.reader.spec.names

    def frame(self, rows: np.ndarray) -> Any:
        """The DataFrame MLflow's scoring server would hand the model for these rows."""
        import pandas as pd
        from mlflow.models.utils import _enforce_schema
        from mlflow.utils.proto_json_utils import cast_df_types_according_to_schema

        frame = pd.DataFrame(rows.tolist(), columns=list(self.names))
        return _enforce_schema(cast_df_types_according_to_schema(frame, self.schema), self.schema)

    def predict_parts(self, parts: list[np.ndarray]) -> list[np.ndarray]:
        """Each part's output; the parts are typed and preprocessed together, finished one by one."""
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        features = self.preprocess(self.frame(joined))
        outputs, start = [], 0
        for part in parts:
            stop = start + len(part)
            outputs.append(np.asarray(self.finish(features[start:stop])))
            start = stop
        return outputs

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.predict_parts([rows])[0]


def table_model(pyfunc_model: Any) -> TableModel | None:
    """The table path for a loaded model, or None: a column signature of the accepted types, and one of
    our trainers' models with a preprocessor (sklearn Pipeline with a `preprocess` step, or the torch
    models-from-code pyfunc with `preprocessor.skops`)."""
    metadata = pyfunc_model.metadata
    schema = metadata.get_input_schema()
    spec = TableSpec.from_schema(schema)
    if spec is None or metadata.get_params_schema() is not None:
        return None
    parts = _sklearn_parts(pyfunc_model) if "sklearn" in metadata.flavors else _torch_parts(pyfunc_model)
    if parts is None:
        return None
    return TableModel(TableReader(spec), schema, *parts)


def _sklearn_parts(pyfunc_model: Any) -> tuple[Callable, Callable] | None:
    from sklearn.pipeline import Pipeline

    predict_fn = pyfunc_model.metadata.flavors["python_function"].get("predict_fn", "predict")
    if predict_fn not in _SKLEARN_PREDICT_FNS:
        return None
    pipeline = pyfunc_model.get_raw_model()
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2 or pipeline.steps[0][0] != "preprocess":
        return None
    # Pipeline.predict is its steps' transforms then the last step's predict: the same calls, split.
    rest = pipeline[1:]
    return pipeline.steps[0][1].transform, getattr(rest, predict_fn)


def _torch_parts(pyfunc_model: Any) -> tuple[Callable, Callable] | None:
    from mlops_platform.torch_pyfunc import TorchClassifier

    try:
        model = pyfunc_model.unwrap_python_model()
    except Exception:  # not a python_model at all
        return None
    if not isinstance(model, TorchClassifier) or model.preprocessor is None:
        return None
    names = list(model.feature_names)

    def preprocess(frame: Any) -> np.ndarray:
        # As TorchClassifier.predict: the training column order, then float32 network inputs.
        return np.asarray(model.preprocessor.transform(frame[names]), dtype=np.float32)

    return preprocess, model.predict_array


def check_against_pyfunc(table: TableModel, pyfunc_model: Any, example: Any) -> bool | None:
    """Whether the table path answers the input example bit for bit as pyfunc does: all rows as one
    request, and each row as its own request in one batch. None when the example cannot be read as a
    request (the path is then not used); raises when an answer differs."""
    import pandas as pd

    if not isinstance(example, pd.DataFrame) or example.empty:
        return None
    values = example.astype(object).where(example.notna(), None)
    request = ParsedRequest(
        DF_SPLIT, {"columns": [str(c) for c in example.columns], "data": values.to_numpy().tolist()}
    )
    try:
        rows = table.reader.rows(request)
    except Exception:
        return None
    if rows is None:
        return None
    whole = predictions_json(table.predict(rows))
    if whole != predictions_json(np.asarray(pyfunc_model.predict(example))):
        raise ValueError("the table path's answer differs from pyfunc's on the input example")
    alone = table.predict_parts([rows[i : i + 1] for i in range(len(rows))])
    for i, output in enumerate(alone):
        expected = predictions_json(np.asarray(pyfunc_model.predict(example.iloc[i : i + 1])))
        if predictions_json(output) != expected:
            raise ValueError(f"row {i} of the input example, batched, differs from pyfunc's answer alone")
    return True
