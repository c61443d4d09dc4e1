"""MLflow scoring protocol, input side: body bytes + content type -> (format, data).

JSON bodies are objects with exactly one of `dataframe_split`, `dataframe_records`, `instances`,
`inputs` (plus optional `params`); CSV bodies are a header line and rows; Parquet bodies (what
`mlflow models serve` also reads) are one table. Only the structure is checked here; `validation`
checks the data against the model signature.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from mlops_platform.serving.errors import RequestError, bad_request, invalid_input, quote

DF_SPLIT = "dataframe_split"
DF_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
PARAMS = "params"
CSV = "csv"
PARQUET = "parquet"

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPE_PARQUET = "application/vnd.apache.parquet"
# A request file's content type by its suffix (`mlops predict --input`); any other file is read as JSON.
FILE_CONTENT_TYPES = {".csv": CONTENT_TYPE_CSV, ".parquet": CONTENT_TYPE_PARQUET}
CONTENT_TYPES = (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV, CONTENT_TYPE_PARQUET)
# The literals Python's json module (MLflow's client) writes for NaN and infinities; orjson refuses them.
_NON_FINITE_LITERAL = re.compile(rb"(?<![\w\"])(?:NaN|-?Infinity)(?![\w\"])")


@dataclass(frozen=True)
class ParsedRequest:
    """A structurally valid request.

    Attributes:
        format: one of FORMATS, "csv" or "parquet".
        data: the value under the format key; for CSV a (header, rows-of-strings) pair; for Parquet a
            (column names, pandas DataFrame) pair.
        params: the `params` object, if sent.
        may_hold_bools: the body has a JSON true/false somewhere, so numeric data needs the careful
            type scan (numpy would silently turn a bool into 1.0).
    """

    format: str
    data: Any
    params: dict[str, Any] | None = None
    may_hold_bools: bool = False


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, checked for MLflow's allowed parameters (415 otherwise)."""
    if not content_type:
        raise RequestError(f"missing Content-Type header: send one of {', '.join(CONTENT_TYPES)}", 415)
    kind, *parameters = (part.strip() for part in content_type.split(";"))
    kind = kind.lower()
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset":
            raise RequestError(f"unsupported Content-Type parameter {quote(key.strip())}", 415)
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(f"unsupported charset {quote(value.strip())}: only utf-8", 415)
    if kind not in CONTENT_TYPES:
        raise RequestError(
            f"unsupported Content-Type {quote(kind)}: send one of {', '.join(CONTENT_TYPES)}", 415
        )
    return kind


def parse_request(body: bytes, content_type: str | None) -> ParsedRequest:
    """Parse a scoring request body; raises RequestError (400/415) naming what is wrong."""
    kind = media_type(content_type)
    if not body.strip():
        raise bad_request("empty request body")
    if kind == CONTENT_TYPE_CSV:
        return parse_csv(body)
    if kind == CONTENT_TYPE_PARQUET:
        return parse_parquet(body)
    return parse_json(body)


def parse_json(body: bytes) -> ParsedRequest:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if _NON_FINITE_LITERAL.search(body) and _parses_with_non_finite_literals(body):
            # MLflow's client writes a missing value as a bare NaN: say what is wrong with it.
            raise invalid_input(
                "missing values are not accepted: the request holds NaN or Infinity; send a number for "
                "every value"
            ) from None
        # orjson's message names the line and column, never the payload.
        raise bad_request(f"malformed JSON: {error}") from None
    if not isinstance(document, dict):
        raise bad_request(
            f"the JSON body must be an object with one of the keys {', '.join(FORMATS)}; "
            f"got a {type(document).__name__}"
        )
    keys = [key for key in document if key in FORMATS]
    unknown = [key for key in document if key not in FORMATS and key != PARAMS]
    if unknown:
        raise bad_request(
            f"unknown key(s) {', '.join(quote(key) for key in unknown)}: "
            f"expected exactly one of {', '.join(FORMATS)} (and optionally {PARAMS})"
        )
    if len(keys) != 1:
        found = ", ".join(keys) if keys else "none"
        raise bad_request(f"expected exactly one of {', '.join(FORMATS)}; found {found}")
    params = document.get(PARAMS)
    if params is not None and not isinstance(params, dict):
        raise bad_request(f"'{PARAMS}' must be a JSON object, got {type(params).__name__}")
    input_format = keys[0]
    data = document[input_format]
    _check_structure(input_format, data)
    return ParsedRequest(input_format, data, params, b"true" in body or b"false" in body)


def _check_structure(input_format: str, data: Any) -> None:
    if input_format == DF_SPLIT:
        if not isinstance(data, dict):
            raise bad_request(
                f"'{DF_SPLIT}' must be an object with 'columns' and 'data', got {type(data).__name__}"
            )
        extra = set(data) - {"columns", "data", "index"}
        if extra:
            raise bad_request(f"unknown key(s) in '{DF_SPLIT}': {', '.join(sorted(map(quote, extra)))}")
        if "data" not in data:
            raise bad_request(f"'{DF_SPLIT}' has no 'data'")
        if not isinstance(data["data"], list):
            raise bad_request(f"'{DF_SPLIT}.data' must be a list of rows, got {type(data['data']).__name__}")
        columns = data.get("columns")
        if columns is not None and (
            not isinstance(columns, list) or not all(isinstance(c, str | int) for c in columns)
        ):
            raise bad_request(f"'{DF_SPLIT}.columns' must be a list of column names")
    elif input_format == DF_RECORDS:
        if not isinstance(data, list):
            raise bad_request(f"'{DF_RECORDS}' must be a list of objects, got {type(data).__name__}")
    elif not isinstance(data, list | dict):
        raise bad_request(
            f"'{input_format}' must be a list or an object of columns, got {type(data).__name__}"
        )


def parse_csv(body: bytes) -> ParsedRequest:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise bad_request(f"the CSV body is not valid UTF-8 (byte {error.start})") from None
    try:
        table = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as error:
        raise bad_request(f"malformed CSV: {error}") from None
    table = [row for row in table if row]
    if not table:
        raise bad_request("the CSV body has no header line")
    header, rows = table[0], table[1:]
    return ParsedRequest(CSV, (header, rows))


def _parses_with_non_finite_literals(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def parse_parquet(body: bytes) -> ParsedRequest:
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(body))
    except Exception as error:  # pyarrow raises several types for a body that is not Parquet
        raise bad_request(f"malformed Parquet: {type(error).__name__}: {str(error)[:200]}") from None
    return ParsedRequest(PARQUET, ([str(name) for name in frame.columns], frame))
