"""Reading a model version's served rows from a prediction log written by the server's own writer:
rotated files, other versions, shadow copies, tensor lines, --since and --window, and the summary of a
probability output."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from mlops_platform.errors import UserError
from mlops_platform.serving.prediction_log import PredictionLog
from mlops_platform.skew import DriftThresholds, build_profile
from mlops_platform.skew.report import render_html, summarize
from mlops_platform.skew.served import parse_since, read_served

NAME = "digits"


def _identity(version: str) -> dict:
    return {"model_name": NAME, "model_version": version}


def test_rows_of_one_version_across_rotated_files_with_shadow_copies_since_and_window(tmp_path):
    path = tmp_path / "predictions.jsonl"
    log = PredictionLog(str(path), max_bytes=2_000, backups=10)
    columns = ["a", "b"]
    for i in range(30):  # version 1 answers rows (i, -i); every tenth request version 2 answers
        version = "2" if i % 10 == 9 else "1"
        rows = np.array([[i, -i], [i + 0.5, np.nan]])
        log.record(f"r{i}", _identity(version), columns, rows, orjson.dumps([version, version]))
        log.flush()
    # A shadow line: version 3 answered, version 1 scored a copy off the response path.
    shadow = {
        "mode": "shadow",
        "role": "champion",
        "shadow": {"model_version": "1", "predictions": ["s", "s"]},
    }
    log.record("shadowed", _identity("3"), columns, np.array([[100.0, 1], [101, 1]]), b'["3","3"]', shadow)
    log.flush()
    assert log.rotations >= 2 and (tmp_path / "predictions.jsonl.2").exists()

    served = read_served(str(path), NAME, "1", columns)
    assert served.rows == 2 * 27 + 2 and served.lines == 28
    assert served.frame["a"].tolist()[:4] == [0, 0.5, 1, 1.5]  # oldest first, across the rotated files
    assert np.isnan(served.frame["b"][1]) and served.predictions[-2:] == ["s", "s"]
    assert served.skipped == {"answered by digits version 2": 3}

    last = read_served(str(path), NAME, "1", columns, window=5)
    assert last.frame["a"].tolist() == [27.5, 28, 28.5, 100, 101] and last.predictions == [
        "1",
        "1",
        "1",
        "s",
        "s",
    ]
    future = parse_since("2999-01-01T00:00")
    with pytest.raises(UserError, match="no request answered or shadowed by digits version 1 since"):
        read_served(str(path), NAME, "1", columns, since=future)
    with pytest.raises(
        UserError,
        match=r"it holds digits version 1: 27 lines; digits version 2: 3 lines; digits version 3: 1 lines",
    ):
        read_served(str(path), NAME, "4", columns)
    with pytest.raises(UserError, match="no prediction log at"):
        read_served(str(tmp_path / "nothing.jsonl"), NAME, "1", columns)


def test_tensor_lines_take_the_profile_names_and_probabilities_read_as_classes(tmp_path):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(0, 1, 2000), "y": rng.normal(5, 2, 2000)})
    profile = build_profile(train, labels=[0, 1] * 1000, validation_predictions=["0"] * 150 + ["1"] * 50)
    profile["output_classes"] = ["0", "1"]
    path = tmp_path / "tensor.jsonl"
    log = PredictionLog(str(path))
    for _ in range(10):  # a torch model: no column names, one probability per class
        rows = np.column_stack([rng.normal(0, 1, 100), rng.normal(5, 2, 100)])
        probabilities = np.where(rng.random((100, 1)) < 0.25, [[0.1, 0.9]], [[0.8, 0.2]])
        log.record(
            "t", _identity("1"), None, rows, orjson.dumps(probabilities, option=orjson.OPT_SERIALIZE_NUMPY)
        )
    log.flush()
    served = read_served(str(path), NAME, "1", list(profile["features"]))
    assert list(served.frame.columns) == ["x", "y"] and served.rows == 1000
    summary = summarize(profile, served, DriftThresholds(), {"model_name": NAME, "model_version": "1"})
    assert summary["drift"] is False and summary["prediction"]["drifted"] is False
    assert summary["prediction"]["served"]["1"] == pytest.approx(0.25, abs=0.05)
    assert "no feature drifted" in render_html(summary)
    with pytest.raises(UserError, match="rows of 2 values, but the model's profile has 3 features"):
        read_served(str(path), NAME, "1", ["x", "y", "z"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 1_000_000 - 90), ("30m", 1_000_000 - 1800), ("2h", 1_000_000 - 7200), ("1d", 1_000_000 - 86400),
     ("1700000000", 1_700_000_000), ("1970-01-02T00:00", 86400), ("1970-01-02T01:00+01:00", 86400)],
)  # fmt: skip
def test_since_accepts_durations_iso_times_and_epoch_seconds(text, expected):
    assert parse_since(text, now=1_000_000) == expected


def test_since_names_a_bad_value():
    with pytest.raises(UserError, match="--since 'yesterday'"):
        parse_since("yesterday")
