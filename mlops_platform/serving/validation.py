"""Check a parsed request against the model signature and turn it into one numpy array.

Two kinds of signature take this fast path:
- column-based (a pandas DataFrame at training time): required numeric columns, matched BY NAME, in any
  order, and returned in the signature's order;
- one unnamed numeric tensor (a numpy array at training time), matched by shape.
Anything else (strings, optional columns, several tensors, no signature) is served by the pyfunc
fallback, which is MLflow's own code path.

Where MLflow is lax we are strict, because a silently "fixed" input is a wrong prediction nobody sees:
extra columns, booleans or nulls in numeric columns and empty inputs are refused with 422. Where MLflow
refuses what has one clear meaning, we serve it: CSV for a (-1, n) float32 tensor model is cast as JSON
input is.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_platform.serving.errors import invalid_input, quote
from mlops_platform.serving.parsing import CSV, DF_RECORDS, DF_SPLIT, PARQUET, ParsedRequest

# MLflow column types the fast path serves, as numpy dtypes.
_COLUMN_DTYPES = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32}
_TYPE_NAMES = {"f": "a number", "i": "an integer", "u": "an integer"}
# How many names an error message lists before it says "and N more".
_MAX_LISTED = 8


@dataclass(frozen=True)
class InputSpec:
    """What the model accepts, from its signature.

    Attributes:
        kind: "columns" or "tensor".
        names: column names in signature order (empty for a tensor).
        dtypes: one numpy dtype per column; for a tensor, its one dtype.
        shape: the tensor's shape with -1 for any size (None for columns).
    """

    kind: str
    names: tuple[str, ...]
    dtypes: tuple[np.dtype, ...]
    shape: tuple[int, ...] | None = None

    @classmethod
    def from_schema(cls, schema: Any) -> InputSpec | None:
        """The spec for an MLflow input Schema, or None when the fast path cannot serve it."""
        if schema is None:
            return None
        inputs = schema.inputs
        if schema.is_tensor_spec():
            if len(inputs) != 1 or inputs[0].name or inputs[0].type.kind not in "fiu":
                return None
            shape = tuple(inputs[0].shape)
            if not shape or shape[0] != -1 or any(size < 1 for size in shape[1:]):
                return None
            return cls("tensor", (), (inputs[0].type,), shape)
        names, dtypes = [], []
        for column in inputs:
            dtype = _COLUMN_DTYPES.get(getattr(column.type, "name", ""))
            if dtype is None or not column.required or not column.name:
                return None
            names.append(column.name)
            dtypes.append(np.dtype(dtype))
        if len(set(names)) != len(names):
            return None
        return cls("columns", tuple(names), tuple(dtypes))

    @property
    def width(self) -> int | None:
        """Values per row when rows are flat (columns, or a (-1, n) tensor); None otherwise."""
        if self.kind == "columns":
            return len(self.names)
        return self.shape[1] if self.shape is not None and len(self.shape) == 2 else None

    def describe(self) -> str:
        if self.kind == "tensor":
            return f"a {self.dtypes[0].name} tensor of shape {self.shape}"
        return f"{len(self.names)} columns ({_listing(self.names)})"


def _listing(names: Any) -> str:
    names = [str(name) for name in names]
    shown = ", ".join(quote(name) for name in names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


class Validator:
    """Turns parsed requests into arrays of `dtype` for one model's InputSpec.

    One reader per input format and signature kind (`_COLUMN_READERS`, `_TENSOR_READERS`); each returns
    a numeric array or raises RequestError naming the problem. `to_array` then applies the checks every
    format shares: no empty input, finite values, and values the signature's dtypes can hold.
    """

    def __init__(self, spec: InputSpec, dtype: np.dtype, order: str = "C"):
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.order = order
        self._bounds = _bounds(spec, self.dtype)
        if spec.kind == "columns":
            self._name_set = frozenset(spec.names)
            self._integer_columns = [i for i, d in enumerate(spec.dtypes) if d.kind in "iu"]
            getter = operator.itemgetter(*spec.names)
            self._row_of: Callable[[dict], Any] = (lambda r: (getter(r),)) if len(spec.names) == 1 else getter

    def to_array(self, request: ParsedRequest) -> np.ndarray:
        """The validated input as a contiguous array (in `order`); raises RequestError (400/422) naming the
        problem."""
        if self.spec.kind == "columns":
            array = _COLUMN_READERS[_reader_key(request)](self, request)
            if self._integer_columns:
                self._check_integers(array)
        else:
            array = _TENSOR_READERS[_reader_key(request)](self, request)
            self._check_shape(array)
        if array.shape[0] == 0:
            raise invalid_input("empty input: the request holds no rows")
        # Only CSV and Parquet can carry NaN or inf: orjson refuses NaN/Infinity literals and numbers
        # beyond double.
        if request.format in (CSV, PARQUET) and array.dtype.kind == "f" and not np.isfinite(array).all():
            row, column = np.argwhere(~np.isfinite(array))[0][:2]
            raise invalid_input(f"non-finite value at row {row}, {self._column_name(column)}")
        self._check_range(array)
        return np.asarray(array, dtype=self.dtype, order=self.order)

    # Column-based signatures: one reader per format.

    def _columns_from_csv(self, request: ParsedRequest) -> np.ndarray:
        columns, rows = request.data
        self._check_order(columns)
        return self._reorder(columns, self._csv_rows(rows, len(columns)))

    def _columns_from_parquet(self, request: ParsedRequest) -> np.ndarray:
        columns, frame = request.data
        self._check_order(columns)
        return self._reorder(columns, _frame_array(frame, self._column_name))

    def _columns_from_split(self, request: ParsedRequest) -> np.ndarray:
        data = request.data
        if data.get("columns") is None:
            raise invalid_input(f"'{DF_SPLIT}' has no 'columns': the model expects {self.spec.describe()}")
        columns = data["columns"]
        self._check_order(columns)
        return self._reorder(columns, self._rows(data["data"], len(columns), request.may_hold_bools))

    def _columns_from_dict(self, request: ParsedRequest) -> np.ndarray:
        """`inputs` / `instances` as {column: [values]}."""
        data = request.data
        self._check_names(list(data))
        columns = [data[name] for name in self.spec.names]
        for name, values in zip(self.spec.names, columns, strict=True):
            if not isinstance(values, list):
                raise invalid_input(f"column {quote(name)} must be a list of values, got {quote(values)}")
        lengths = {len(values) for values in columns}
        if len(lengths) > 1:
            raise invalid_input(f"columns have different lengths: {sorted(lengths)}")
        return self._rows(columns, None, request.may_hold_bools, transposed=True)

    def _columns_from_records(self, request: ParsedRequest) -> np.ndarray:
        """`dataframe_records`, or `inputs` / `instances` as a list of {column: value} records."""
        data = request.data
        if data and not isinstance(data[0], dict):
            what = (
                "a list of objects" if request.format == DF_RECORDS else "a list of {column: value} objects"
            )
            raise invalid_input(
                f"'{request.format}' must be {what} for this model, which expects {self.spec.describe()}; "
                f"got a list of {type(data[0]).__name__}"
            )
        names = self._name_set
        rows = []
        for i, record in enumerate(data):
            if not isinstance(record, dict):
                raise invalid_input(f"record {i} must be an object, got {quote(record)}")
            if record.keys() != names:
                self._check_names(list(record), where=f"record {i}")
            rows.append(self._row_of(record))
        return self._rows(rows, len(self.spec.names), request.may_hold_bools)

    def _check_names(self, names: list, where: str = "the input") -> None:
        # Linear in the number of names sent: a request may carry very many.
        sent = set(names)
        missing = [name for name in self.spec.names if name not in sent]
        extra = [name for name in names if name not in self._name_set]
        duplicated = sorted((name for name, n in Counter(names).items() if n > 1), key=str)
        problems = []
        if missing:
            problems.append(f"missing column(s) {_listing(missing)}")
        if extra:
            problems.append(f"unexpected column(s) {_listing(extra)}")
        if duplicated:
            problems.append(f"duplicated column(s) {_listing(duplicated)}")
        if problems:
            raise invalid_input(f"{where}: {'; '.join(problems)}; the model expects {self.spec.describe()}")

    def _check_order(self, columns: list) -> None:
        """Names first: a wrong column set is the clearer message, whatever the values hold."""
        if tuple(columns) != self.spec.names:
            self._check_names(list(columns))

    def _reorder(self, columns: list, array: np.ndarray) -> np.ndarray:
        if tuple(columns) == self.spec.names:
            return array
        order = [columns.index(name) for name in self.spec.names]
        return array[:, order]

    def _check_integers(self, array: np.ndarray) -> None:
        if array.dtype.kind in "iu":
            return
        for i in self._integer_columns:
            column = array[:, i]
            bad = np.flatnonzero(column != np.floor(column))
            if bad.size:
                raise invalid_input(
                    f"wrong type in column {quote(self.spec.names[i])}, row {bad[0]}: "
                    f"{column[bad[0]]!r} is not an integer"
                )

    def _check_range(self, array: np.ndarray) -> None:
        """Values the signature's dtype cannot hold are refused, not cast to inf or wrapped around."""
        if self._bounds is None or array.dtype.kind not in "iuf":
            return
        low, high = self._bounds
        flat = array.reshape(len(array), -1) if array.ndim != 2 else array
        outside = (flat < low) | (flat > high)
        if not outside.any():
            return
        row, column = np.argwhere(outside)[0]
        dtype = self.spec.dtypes[column] if self.spec.kind == "columns" else self.dtype
        raise invalid_input(
            f"value out of range at row {row}, {self._column_name(column)}: {flat[row, column]!r} does not "
            f"fit the signature's {dtype.name}"
        )

    def _column_name(self, column: int) -> str:
        if self.spec.kind == "columns":
            return f"column {quote(self.spec.names[column])}"
        return f"position {column}"

    # Tensor signatures: one reader per format.

    def _tensor_from_csv(self, request: ParsedRequest) -> np.ndarray:
        if self.spec.width is None:
            raise invalid_input(f"CSV cannot carry {self.spec.describe()}; send JSON 'inputs'")
        columns, rows = request.data
        return self._csv_rows(rows, len(columns))

    def _tensor_from_parquet(self, request: ParsedRequest) -> np.ndarray:
        if self.spec.width is None:
            raise invalid_input(f"Parquet cannot carry {self.spec.describe()}; send JSON 'inputs'")
        return _frame_array(request.data[1], self._column_name)

    def _tensor_from_split(self, request: ParsedRequest) -> np.ndarray:
        data = request.data
        return self._rows(data["data"], len(data.get("columns") or ()) or None, request.may_hold_bools)

    def _tensor_from_records(self, request: ParsedRequest) -> np.ndarray:
        # MLflow builds a DataFrame from records, whose column order is the first record's key order.
        data = request.data
        if not all(isinstance(record, dict) for record in data):
            raise invalid_input(f"every item of '{request.format}' must be an object")
        keys = list(data[0]) if data else []
        for i, record in enumerate(data):
            if list(record) != keys:
                raise invalid_input(f"record {i} has keys different from record 0")
        return self._rows([list(record.values()) for record in data], len(keys), request.may_hold_bools)

    def _tensor_from_dict(self, request: ParsedRequest) -> np.ndarray:
        raise invalid_input(
            f"this model expects {self.spec.describe()}: send '{request.format}' as a nested list, "
            "not an object of named inputs"
        )

    def _tensor_from_nested(self, request: ParsedRequest) -> np.ndarray:
        return self._nested(request.data, request.may_hold_bools)

    def _check_shape(self, array: np.ndarray) -> None:
        if array.size == 0:
            raise invalid_input("empty input: the request holds no rows")
        expected = self.spec.shape
        if array.ndim != len(expected) or any(
            e not in (-1, a) for e, a in zip(expected, array.shape, strict=False)
        ):
            raise invalid_input(f"wrong shape: got {array.shape}, the model expects {expected}")

    def _nested(self, data: list, may_hold_bools: bool) -> np.ndarray:
        try:
            array = np.array(data)
        except ValueError:
            raise invalid_input(
                f"ragged input: rows of different lengths; the model expects {self.spec.describe()}"
            ) from None
        if array.dtype.kind not in "iuf" or may_hold_bools:
            for i, value in enumerate(_flatten(data)):
                problem = _value_problem(value)
                if problem:
                    raise invalid_input(f"wrong type at flat position {i}: {problem}, expected a number")
            _require_numeric(array)
        return array

    # Shared row handling.

    def _rows(
        self, rows: list, width: int | None, may_hold_bools: bool, transposed: bool = False
    ) -> np.ndarray:
        """A 2-D numeric array from rows (or columns when `transposed`), refusing non-numbers."""
        if not rows:
            return np.empty((0, width or 0))
        try:
            array = np.array(rows)
        except ValueError:
            array = None
        if array is None or array.ndim != 2 or (width is not None and array.shape[1] != width):
            self._report_shape(rows, width, transposed, None if array is None else array.shape)
        if array.dtype.kind not in "iuf" or may_hold_bools:
            self._scan_rows(rows, transposed)
            _require_numeric(array)
        return array.T if transposed else array

    def _report_shape(self, rows: list, width: int | None, transposed: bool, shape: tuple | None) -> None:
        what = "column" if transposed else "row"
        for i, row in enumerate(rows):
            if not isinstance(row, list | tuple):
                raise invalid_input(f"{what} {i} must be a list of values, got {quote(row)}")
            if width is not None and len(row) != width:
                raise invalid_input(f"wrong shape: {what} {i} has {len(row)} values, expected {width}")
        lengths = sorted({len(row) for row in rows})
        if len(lengths) > 1:
            raise invalid_input(f"wrong shape: {what}s have different lengths {lengths[:_MAX_LISTED]}")
        raise invalid_input(
            f"wrong shape: got an array of shape {shape}; each {what} must be a flat list of numbers"
        )

    def _scan_rows(self, rows: list, transposed: bool) -> None:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                problem = _value_problem(value)
                if problem:
                    r, c = (j, i) if transposed else (i, j)
                    raise invalid_input(
                        f"wrong type at row {r}, {self._column_name(c)}: {problem}, expected a number"
                    )

    def _csv_rows(self, rows: list[list[str]], width: int) -> np.ndarray:
        if not rows:
            return np.empty((0, width))
        for i, row in enumerate(rows):
            if len(row) != width:
                raise invalid_input(f"wrong shape: CSV row {i + 1} has {len(row)} values, expected {width}")
        try:
            return np.array(rows, dtype=np.float64)
        except ValueError:
            pass
        for i, row in enumerate(rows):
            for j, text in enumerate(row):
                try:
                    float(text)
                except ValueError:
                    what = "an empty value" if not text.strip() else f"{quote(text)} is not a number"
                    raise invalid_input(f"wrong type in CSV row {i + 1}, column {j}: {what}") from None
        raise invalid_input("the CSV values must be numbers")


def _value_problem(value: Any) -> str | None:
    """Why one value is not an acceptable number, or None when it is."""
    if isinstance(value, bool):
        return f"got a boolean {quote(value)}"
    if value is None:
        return "got null (a missing value)"
    if isinstance(value, int | float):
        return None if not isinstance(value, float) or math.isfinite(value) else f"got {value!r}"
    return f"got {type(value).__name__} {quote(value)}"


def _require_numeric(array: np.ndarray) -> None:
    if array.dtype.kind not in "iuf":
        raise invalid_input("the input values must be numbers (integers beyond 64 bits are not)")


def _flatten(data: Any) -> list:
    if isinstance(data, list):
        return [item for sub in data for item in _flatten(sub)]
    return [data]


def _reader_key(request: ParsedRequest) -> str:
    """Which reader a request needs: its format, with `inputs`/`instances` told apart by shape."""
    if request.format in (CSV, PARQUET, DF_SPLIT, DF_RECORDS):
        return request.format
    if isinstance(request.data, dict):
        return "dict"
    return "records" if request.data and isinstance(request.data[0], dict) else "nested"


_COLUMN_READERS: dict[str, Callable[[Validator, ParsedRequest], np.ndarray]] = {
    CSV: Validator._columns_from_csv,
    PARQUET: Validator._columns_from_parquet,
    DF_SPLIT: Validator._columns_from_split,
    DF_RECORDS: Validator._columns_from_records,
    "records": Validator._columns_from_records,
    "nested": Validator._columns_from_records,  # refused there, naming the format the model needs
    "dict": Validator._columns_from_dict,
}
_TENSOR_READERS: dict[str, Callable[[Validator, ParsedRequest], np.ndarray]] = {
    CSV: Validator._tensor_from_csv,
    PARQUET: Validator._tensor_from_parquet,
    DF_SPLIT: Validator._tensor_from_split,
    DF_RECORDS: Validator._tensor_from_records,
    "records": Validator._tensor_from_records,
    "nested": Validator._tensor_from_nested,
    "dict": Validator._tensor_from_dict,
}


def _bounds(spec: InputSpec, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-column (low, high) limits of what the signature's dtypes (and the array's) can hold; None
    when every column is float64, whose range JSON numbers cannot exceed."""
    dtypes = spec.dtypes if spec.kind == "columns" else (spec.dtypes[0],)
    limits = [_limits(np.dtype(d), dtype) for d in dtypes]
    if all(limit == (-np.inf, np.inf) for limit in limits):
        return None
    low = np.array([limit[0] for limit in limits])
    high = np.array([limit[1] for limit in limits])
    return (low, high) if spec.kind == "columns" else (low[0], high[0])


def _limits(column: np.dtype, target: np.dtype) -> tuple[float, float]:
    low, high = -np.inf, np.inf
    for dtype in (column, target):
        info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype) if dtype.kind == "f" else None
        if info is not None and not (dtype.kind == "f" and dtype.itemsize >= 8):
            low, high = max(low, float(info.min)), min(high, float(info.max))
    return low, high


def _frame_array(frame: Any, column_name: Callable[[int], str]) -> np.ndarray:
    """The numeric values of a Parquet table; booleans, strings and missing values are refused."""
    for i, dtype in enumerate(frame.dtypes):
        if getattr(dtype, "kind", "O") not in "iuf":
            raise invalid_input(f"wrong type in {column_name(i)}: {dtype} values, expected numbers")
    array = frame.to_numpy()
    if array.dtype.kind == "f" and np.isnan(array).any():
        row, column = np.argwhere(np.isnan(array))[0]
        raise invalid_input(
            f"missing value at row {row}, {column_name(column)}: missing values are not accepted"
        )
    return array


def missing_columns(request: ParsedRequest, names: Any) -> list[str]:
    """The columns of `names` a request with named columns lacks; [] when it names none (an unnamed
    list, a tensor): the model's own checks then decide. For the pyfunc path, whose schema enforcement
    names a missing column only deep inside a long message."""
    key = _reader_key(request)
    data = request.data
    if key in (CSV, PARQUET):
        sent = set(data[0])
    elif key == DF_SPLIT:
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
            return []
        sent = set(data["columns"])
    elif key == "dict":
        sent = set(data)
    elif key in (DF_RECORDS, "records") and isinstance(data, list) and data:
        # A column absent from every record: the DataFrame MLflow builds from them has no such column.
        sent = set().union(*(record for record in data if isinstance(record, dict)))
    else:
        return []
    return [name for name in names if name not in sent]


def missing_columns_message(missing: list[str]) -> str:
    return f"missing column(s) {_listing(missing)}"
