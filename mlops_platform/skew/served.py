"""The served inputs and predictions of one model version, read from the prediction log.

The log's format is documented in mlops_platform/serving/prediction_log.py; PATH and its rotated
copies (PATH.3 ... PATH.1, PATH) are read oldest first. A line counts for the version when that version
answered it (`model_name`/`model_version`), or when it was that request's shadow challenger and scored
it (`shadow.model_version`, with its own predictions). Lines of other versions are counted and left
out; a log with no line of the version is an error, since another version's traffic says nothing
about this version's profile. Requests the server refused, and those answered by MLflow's own code
(no validated input), are not in the log.
"""

from __future__ import annotations

import gc
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops_platform.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass
class ServedWindow:
    """What the log holds for one version: its input rows (a frame), their predictions, and counts."""

    frame: pd.DataFrame
    predictions: list[Any]
    lines: int
    first_time: float | None
    last_time: float | None
    skipped: dict[str, int] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.frame)


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """`--since`: a duration back from now (`30m`, `2h`, `1d`, `90s`), an ISO 8601 time (UTC when no zone
    is given) or seconds since the epoch; None for no limit. Raises UserError naming the value."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    now = time.time() if now is None else now
    duration = _DURATION.match(text)
    if duration:
        return now - float(duration.group(1)) * _SECONDS[duration.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"--since {text!r}: expected a duration (30m, 2h, 1d), an ISO time (2026-12-01T10:00) or epoch "
            "seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_served(
    path: str,
    model_name: str,
    model_version: str,
    feature_names: list[str],
    since: float | None = None,
    window: int = 0,
) -> ServedWindow:
    """The rows `model_name` version `model_version` saw, at or after `since`, the last `window` rows
    (0: all). `feature_names` (the profile's, in signature order) name the columns of a tensor model's
    lines, which carry no names.

    Raises:
        UserError: no log at `path`, no line of this version (the message lists the versions found), or
            lines whose width does not match the profile.
    """
    # Millions of small JSON objects stay alive until the frame is built, and each allocation burst
    # would set off the cyclic garbage collector over all of them (measured: 3x the parsing time).
    # JSON holds no cycles, so nothing is lost by pausing it.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _read_served(path, model_name, str(model_version), feature_names, since, window)
    finally:
        if enabled:
            gc.enable()


def _read_served(
    path: str, model_name: str, version: str, feature_names: list[str], since: float | None, window: int
) -> ServedWindow:
    import orjson

    from mlops_platform.serving.report import log_files

    blocks: list[tuple[tuple[str, ...], list[Any], list[Any]]] = []
    skipped: dict[str, int] = {}
    others: dict[str, int] = {}
    times: list[float] = []
    for file in log_files(path):
        with open(file, "rb") as handle:
            for raw in handle:
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:  # a torn last line of a crashed server
                    skipped["unreadable"] = skipped.get("unreadable", 0) + 1
                    continue
                if since is not None and line.get("time", 0) < since:
                    skipped["before --since"] = skipped.get("before --since", 0) + 1
                    continue
                predictions = _predictions_of(line, model_name, version)
                if predictions is None:
                    seen = f"{line.get('model_name')} version {line.get('model_version')}"
                    others[seen] = others.get(seen, 0) + 1
                    continue
                inputs = line.get("inputs")
                if not inputs:
                    skipped["without inputs"] = skipped.get("without inputs", 0) + 1
                    continue
                columns = tuple(line.get("columns") or feature_names)
                if len(inputs[0]) != len(columns):
                    raise UserError(
                        f"{file}: request {line.get('request_id')} has rows of {len(inputs[0])} values, but "
                        f"the model's profile has {len(columns)} features: the log was not written for "
                        f"{model_name} version {version}"
                    )
                blocks.append((columns, inputs, predictions))
                times.append(float(line.get("time", 0.0)))
    if not blocks:
        found = "; ".join(f"{name}: {count} lines" for name, count in sorted(others.items())) or "no lines"
        raise UserError(
            f"the prediction log {path} holds no request answered or shadowed by {model_name} version "
            f"{version}{' since the --since time' if since is not None else ''} (it holds {found}); a log "
            "written by another version cannot be compared with this version's training profile"
        )
    for name, count in others.items():
        skipped[f"answered by {name}"] = count
    frame, predictions = _assemble(blocks, window)
    extra = [str(column) for column in frame.columns if column not in set(feature_names)]
    return ServedWindow(frame, predictions, len(blocks), min(times), max(times), skipped, extra)


def _predictions_of(line: dict[str, Any], model_name: str, version: str) -> list[Any] | None:
    """This version's predictions for the line's rows, or None when it neither answered nor shadowed it."""
    if line.get("model_name") == model_name and str(line.get("model_version")) == version:
        return line.get("predictions") or []
    shadow = line.get("shadow") or {}
    if (
        line.get("model_name") == model_name
        and str(shadow.get("model_version")) == version
        and "predictions" in shadow
    ):
        return shadow["predictions"]
    return None


def _assemble(blocks: list[tuple[tuple[str, ...], list[Any], list[Any]]], window: int) -> tuple[Any, list]:
    """One frame of the last `window` rows (all when 0), columns by name; predictions row for row."""
    import numpy as np
    import pandas as pd

    if window > 0:  # keep only the newest lines that hold the window
        kept, rows = [], 0
        for block in reversed(blocks):
            kept.append(block)
            rows += len(block[1])
            if rows >= window:
                break
        blocks = kept[::-1]
    frames, predictions = [], []
    # Consecutive lines with the same columns become one array: one conversion per run of lines.
    start = 0
    while start < len(blocks):
        end = start
        while end < len(blocks) and blocks[end][0] == blocks[start][0]:
            end += 1
        rows = [row for block in blocks[start:end] for row in block[1]]
        try:
            values: Any = np.asarray(rows, dtype=float)  # numbers and nulls (NaN): the common case
        except (TypeError, ValueError):
            values = np.asarray(rows, dtype=object)  # strings or booleans in some columns
        frames.append(pd.DataFrame(values, columns=list(blocks[start][0])))
        for block in blocks[start:end]:
            block_predictions = list(block[2])
            if len(block_predictions) != len(block[1]):  # an output the log could not pair with rows
                block_predictions = [None] * len(block[1])
            predictions.extend(block_predictions)
        start = end
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if window > 0 and len(frame) > window:
        frame = frame.iloc[-window:].reset_index(drop=True)
        predictions = predictions[-window:]
    return frame, predictions
