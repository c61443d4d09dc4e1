"""One scoring request, start to finish: body -> parsed -> validated array -> model calls -> JSON.

Kept apart from the routes (app.py) as MLflow's scoring server keeps parsing and prediction apart from
its route wiring. A large body is parsed, validated and its answer encoded in a worker thread, and its
rows go to the model in calls of at most `max_batch_size` rows, so one big request cannot hold the
event loop (and every other client, /ping included) for the time it takes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

from mlops_platform.errors import UserError
from mlops_platform.serving.errors import RequestError, invalid_input
from mlops_platform.serving.parsing import (
    CONTENT_TYPE_JSON,
    FILE_CONTENT_TYPES,
    ParsedRequest,
    media_type,
    parse_request,
)
from mlops_platform.serving.predictors import ServedModel, load_served_model, run_fallback
from mlops_platform.serving.validation import missing_columns, missing_columns_message

logger = logging.getLogger("mlops_platform.serving")

# Bodies above this are handled in a worker thread: below it the thread hop costs more than the work.
OFFLOAD_BYTES = 64 * 1024
T = TypeVar("T")


@dataclass
class Answer:
    """A scored request.

    Attributes:
        body: the response body; `status` its HTTP status (MLflow's own non-200 answers pass through).
        inputs / output: the validated array the model saw and its raw output (output: fast path only;
            on the pyfunc path, inputs are the rows MLflow parsed, kept only when they will be logged).
        predictions: the predictions' JSON as sent, for the prediction log.
        params: the request's inference params, if any.
        columns: the names of the inputs' columns on the pyfunc path (the fast path's are its signature's).
    """

    body: bytes
    status: int = 200
    inputs: np.ndarray | None = None
    output: np.ndarray | None = None
    predictions: bytes | None = None
    params: dict[str, Any] | None = None
    columns: list[str] | None = None


async def score(
    model: ServedModel, body: bytes, content_type: str | None, keep_inputs: bool = False
) -> Answer:
    """Answer one request with `model`; raises RequestError for what the client must fix.

    `keep_inputs`: the answer will be logged, so the pyfunc path also returns the rows it scored (the
    fast path always has them: its validated array).
    """
    if model.table is not None:
        return await _score_table(model, body, content_type, keep_inputs)
    if not model.fast:
        return await _score_fallback(model, body, content_type, keep_inputs)
    offload = len(body) > OFFLOAD_BYTES
    parsed, array = await _maybe_in_thread(offload, validated_input, model, body, content_type)
    if parsed.params and model.takes_params:
        # Params the signature declares: only MLflow's code knows what they mean. The input was
        # validated above all the same, and the answer is logged like any other.
        status, content = await run_fallback(model, body, content_type)
        predictions = orjson.dumps(orjson.loads(content)["predictions"]) if status == 200 else None
        return Answer(content, status, array, None, predictions, parsed.params)
    # Params the signature does not declare are ignored, as MLflow's pyfunc ignores them.
    output = await predict(model, array)
    predictions = await _maybe_in_thread(offload, model.output_json, output)
    return Answer(b'{"predictions": ' + predictions + b"}", 200, array, output, predictions, parsed.params)


def score_file(model_uri: str, input_path: Path, tracking_uri: str, allow_unsafe: bool = False) -> str:
    """The predictions `mlops serve` would answer for one request file (`mlops predict`).

    The server's own path (fast or pyfunc, as `score` picks), so the shell answers exactly what the
    server would; a request the server would refuse is a UserError naming the file and the problem.
    """
    content_type = FILE_CONTENT_TYPES.get(input_path.suffix.lower(), CONTENT_TYPE_JSON)
    body = input_path.read_bytes()
    model = load_served_model(model_uri, tracking_uri, allow_unsafe=allow_unsafe)
    try:
        answer = asyncio.run(score(model, body, content_type))
    except RequestError as error:
        raise UserError(f"{input_path}: {error.message}") from None
    finally:
        model.close()
    if answer.status != 200:
        raise UserError(f"{input_path}: {answer.body.decode()}")
    return answer.body.decode()


async def _score_fallback(
    model: ServedModel, body: bytes, content_type: str | None, keep_inputs: bool, checked: bool = False
) -> Answer:
    """MLflow's own answer (pyfunc path); `checked`: the columns were checked already."""
    media_type(content_type)  # 415 for what MLflow would refuse too, before a thread hop
    if model.required_columns and not checked:
        await _maybe_in_thread(len(body) > OFFLOAD_BYTES, check_columns, model, body, content_type)
    status, content = await run_fallback(model, body, content_type)
    if status != 200:
        return Answer(content, status)
    return await _fallback_answer(model, body, content_type, content, keep_inputs)


async def _score_table(
    model: ServedModel, body: bytes, content_type: str | None, keep_inputs: bool
) -> Answer:
    """The table path (tables.py): requests it reads are batched through the model's preprocessing;
    the rest, and any request the model fails on, are answered by MLflow's own code, as they would be
    by `mlflow models serve` (its error message included)."""
    offload = len(body) > OFFLOAD_BYTES
    read = await _maybe_in_thread(offload, table_rows, model, body, content_type)
    if read is None:  # CSV and Parquet too: their missing columns are named by check_columns
        return await _score_fallback(model, body, content_type, keep_inputs)
    parsed, rows = read
    try:
        output = await model.predict_async(rows)
    except Exception as error:
        logger.info("table path failed on a %s-row request (%s): MLflow's code answers", len(rows), error)
        return await _score_fallback(model, body, content_type, keep_inputs, checked=True)
    predictions = await _maybe_in_thread(offload, model.output_json, output)
    body = b'{"predictions": ' + predictions + b"}"
    return Answer(body, 200, rows, output, predictions, parsed.params, columns=list(model.table.names))


def table_rows(model: ServedModel, body: bytes, content_type: str | None) -> tuple[ParsedRequest, Any] | None:
    """(parsed request, rows) for the table path; None for MLflow's code (what we do not parse, params
    the signature declares); raises RequestError: 415, and 422 naming the columns a request lacks."""
    media_type(content_type)
    try:
        parsed = parse_request(body, content_type)
    except RequestError:
        return None  # MLflow answers it as it always has (NaN literals, which it accepts, included)
    if parsed.params and model.takes_params:
        return None
    rows = model.table.reader.rows(parsed)
    return None if rows is None else (parsed, rows)


async def _fallback_answer(
    model: ServedModel, body: bytes, content_type: str, content: bytes, keep_inputs: bool
) -> Answer:
    """A pyfunc-path answer with its predictions (a shadow's agreement compares them) and, when it will
    be logged, the rows it scored: tables with strings and gaps are served here, and the prediction log
    and the skew report need their inputs as much as any other model's."""
    try:
        predictions = _predictions_of(content)
        scored = await asyncio.to_thread(model.fallback_inputs, body, content_type) if keep_inputs else None
    except Exception as error:  # logging must never turn an answered request into an error
        logger.warning("request answered but not logged: its input could not be re-read (%s)", error)
        return Answer(content, 200)
    if scored is None:
        return Answer(content, 200, predictions=predictions)
    columns, rows = scored
    return Answer(content, 200, rows, None, predictions, columns=columns)


def _predictions_of(content: bytes) -> bytes:
    """The predictions' JSON inside MLflow's answer `{"predictions": ...}`: cut out, not parsed again,
    unless it holds NaN or Infinity (valid for Python's json, not in a prediction-log line)."""
    head, tail = b'{"predictions": ', b"}"
    if content.startswith(head) and content.endswith(tail):
        inner = content[len(head) : -len(tail)]
        if b"NaN" not in inner and b"Infinity" not in inner:
            return inner
    return orjson.dumps(orjson.loads(content)["predictions"])


def check_columns(model: ServedModel, body: bytes, content_type: str | None) -> None:
    """422 naming the columns a request lacks, before MLflow's schema enforcement buries them in a long
    message; a body we cannot parse is left to MLflow, which answers it as it always has."""
    try:
        parsed = parse_request(body, content_type)
    except RequestError:
        return
    missing = missing_columns(parsed, model.required_columns)
    if missing:
        raise invalid_input(missing_columns_message(missing))


def validated_input(model: ServedModel, body: bytes, content_type: str | None) -> tuple[ParsedRequest, Any]:
    parsed = parse_request(body, content_type)
    return parsed, model.validator.to_array(parsed)


async def predict(model: ServedModel, array: np.ndarray) -> np.ndarray:
    """The model's output; a model that fails on this input is the client's 400, logged without data."""
    try:
        return await model.predict_async(array)
    except Exception as error:
        logger.warning(
            "model %s failed on a %s-row request: %s",
            model.identity.resolved_uri,
            len(array),
            type(error).__name__,
        )
        raise RequestError(
            f"the model could not evaluate this input: {type(error).__name__}: {str(error)[:200]}", 400
        ) from None


async def _maybe_in_thread(offload: bool, fn: Callable[..., T], *args: Any) -> T:
    if offload:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)
