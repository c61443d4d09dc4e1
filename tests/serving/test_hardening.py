"""The scoring server's promises under odd use: params validated and logged, large requests split into
bounded model calls, a rotating 0600 prediction log that samples large requests, failed reloads that
leave nothing behind and back off, overflow named, MLflow's /version, Parquet and NaN answered as
MLflow's clients expect. Real `mlops serve` processes over HTTP."""

from __future__ import annotations

import io
import json
import stat
import time
import uuid

import numpy as np
import pytest
import requests
from serving_helpers import ServerProcess, digits_frame, log_sklearn, set_champion
from test_formats import load_pyfunc, mlflow_answer

PARQUET = "application/vnd.apache.parquet"
MAX_BATCH = 50
WAIT_S = 60


def _parquet(frame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def test_version_is_mlflows_and_its_own_client_reads_it(sklearn_server, sklearn_model):
    import mlflow
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    client = ScoringServerClient("127.0.0.1", sklearn_server.port)
    assert client.get_version() == mlflow.__version__
    health = sklearn_server.get("/health").json()
    assert health["model_name"] == sklearn_model.name and health["model_version"] == sklearn_model.versions[0]


def test_parquet_is_answered_as_mlflow_answers_it(sklearn_server, sklearn_model, torch_server, torch_model):
    x, _ = digits_frame()
    rows = x.iloc[40:47]
    body = _parquet(rows)
    model = load_pyfunc(sklearn_model.champion_uri, sklearn_model.tracking_uri)
    response = sklearn_server.post(body, PARQUET)
    assert response.status_code == 200, response.text
    assert response.json() == mlflow_answer(model, body, PARQUET)
    # Reordered columns are matched by name; a missing value is named, not predicted.
    assert sklearn_server.post(_parquet(rows[rows.columns[::-1]]), PARQUET).json() == response.json()
    holed = rows.copy()
    holed.iloc[2, 5] = np.nan
    refused = sklearn_server.post(_parquet(holed), PARQUET)
    assert refused.status_code == 422 and "missing values are not accepted" in refused.json()["message"]
    assert sklearn_server.post(b"not parquet", PARQUET).status_code == 400
    torch_rows = rows.astype(np.float32)
    answer = torch_server.post(_parquet(torch_rows), PARQUET)
    assert answer.status_code == 200, answer.text
    expected = load_pyfunc(torch_model.champion_uri, torch_model.tracking_uri).predict(torch_rows.to_numpy())
    np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5, atol=1e-7)


def test_nan_from_mlflows_client_is_called_a_missing_value(sklearn_server):
    from mlflow.utils.proto_json_utils import dump_input_data

    x, _ = digits_frame()
    rows = x.iloc[:3].copy()
    rows.iloc[1, 4] = np.nan
    body = dump_input_data(rows)  # what ScoringServerClient.invoke sends: a bare NaN literal
    assert "NaN" in body
    response = sklearn_server.post(body)
    assert response.status_code == 422
    assert "missing values are not accepted" in response.json()["message"]


def test_a_value_overflowing_a_float32_tensor_is_named(torch_server):
    x, _ = digits_frame()
    rows = x.iloc[:2].to_numpy().tolist()
    rows[1][3] = 1e39  # beyond float32: MLflow's cast would make it inf
    response = torch_server.post({"inputs": rows})
    assert response.status_code == 422
    assert "row 1, position 3" in response.json()["message"] and "float32" in response.json()["message"]


@pytest.fixture(scope="module")
def hardened(sqlite_server, tmp_path_factory):
    """A float32-column model behind a server with small model calls, a small rotating sampled log and
    alias following, its downloads in a temp folder of its own."""
    sqlite_tracking_uri = sqlite_server.url
    name = f"serve-hard-{uuid.uuid4().hex[:6]}"
    version = log_sklearn(sqlite_tracking_uri, name, dtype="float32")
    set_champion(sqlite_tracking_uri, name, version)
    folder = tmp_path_factory.mktemp("hardened")
    (folder / "tmp").mkdir()
    server = ServerProcess(
        f"models:/{name}@champion",
        sqlite_tracking_uri,
        folder / "serve.log",
        "--max-batch-size",
        str(MAX_BATCH),
        "--log-predictions",
        str(folder / "predictions.jsonl"),
        "--log-max-bytes",
        "30000",
        "--log-backups",
        "2",
        "--log-sample-rows",
        "10",
        "--reload-interval",
        "0.2",
        env={"TMPDIR": str(folder / "tmp")},
    ).wait_ready()
    yield {"server": server, "name": name, "version": version, "folder": folder, "uri": sqlite_tracking_uri}
    server.stop()


def _flushed_lines(folder, at_least: int) -> list[dict]:
    deadline = time.monotonic() + WAIT_S
    while True:
        files = sorted(folder.glob("predictions.jsonl*"), key=lambda p: -len(p.suffixes))
        lines = [
            json.loads(line)
            for f in files
            if not f.name.endswith(".lock")
            for line in f.read_text().splitlines()
        ]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_large_requests_are_split_into_bounded_model_calls_and_logged_as_a_sample(hardened):
    server, folder = hardened["server"], hardened["folder"]
    x, _ = digits_frame()
    rows = x.iloc[:400].astype(np.float32)
    before = server.get("/health").json()
    response = server.post({"dataframe_split": rows.to_dict(orient="split")})
    assert response.status_code == 200, response.text
    expected = load_pyfunc(f"models:/{hardened['name']}@champion", hardened["uri"]).predict(rows)
    assert response.json()["predictions"] == expected.tolist()
    after = server.get("/health").json()
    assert after["batched_rows"] - before["batched_rows"] == 400
    assert after["batched_calls"] - before["batched_calls"] >= 400 // MAX_BATCH
    assert 0 < after["largest_model_call"] <= MAX_BATCH
    request_id = response.headers["X-Request-Id"]
    line = next(line for line in _flushed_lines(folder, 1) if line["request_id"] == request_id)
    assert line["rows_total"] == 400 and len(line["sampled_rows"]) == len(line["inputs"]) == 10
    assert line["predictions"] == [expected[i] for i in line["sampled_rows"]]
    assert line["inputs"] == rows.to_numpy()[line["sampled_rows"]].tolist()


def test_params_do_not_bypass_validation_or_the_log(hardened):
    server, folder = hardened["server"], hardened["folder"]
    x, _ = digits_frame()
    rows = x.iloc[:2].astype(np.float32)
    extra = rows.assign(intruder=1.0)
    refused = server.post({"dataframe_split": extra.to_dict(orient="split"), "params": {"any": 1}})
    assert refused.status_code == 422 and "unexpected column(s) 'intruder'" in refused.json()["message"]
    answered = server.post({"dataframe_split": rows.to_dict(orient="split"), "params": {"any": 1}})
    assert answered.status_code == 200
    request_id = answered.headers["X-Request-Id"]
    deadline = time.monotonic() + WAIT_S
    while not any(line["request_id"] == request_id for line in _flushed_lines(folder, 1)):
        assert time.monotonic() < deadline, "the request with params was not logged"
        time.sleep(0.2)
    line = next(line for line in _flushed_lines(folder, 1) if line["request_id"] == request_id)
    assert line["params"] == {"any": 1} and line["predictions"] == answered.json()["predictions"]


def test_a_float32_column_overflow_is_named(hardened):
    x, _ = digits_frame()
    rows = x.iloc[:2].astype(np.float32).to_dict(orient="split")
    rows["data"][0][7] = 3.5e38
    response = hardened["server"].post({"dataframe_split": rows})
    assert response.status_code == 422
    assert f"column '{x.columns[7]}'" in response.json()["message"]
    assert "float32" in response.json()["message"]


def test_the_prediction_log_rotates_and_is_private(hardened):
    server, folder = hardened["server"], hardened["folder"]
    x, _ = digits_frame()
    body = {"dataframe_split": x.iloc[:8].astype(np.float32).to_dict(orient="split")}
    session = requests.Session()
    deadline = time.monotonic() + WAIT_S
    while server.get("/health").json()["prediction_log"]["rotations"] < 2:
        assert time.monotonic() < deadline, "the prediction log never rotated"
        for _ in range(20):
            assert session.post(f"{server.url}/invocations", json=body, timeout=30).status_code == 200
    files = [folder / "predictions.jsonl", folder / "predictions.jsonl.1", folder / "predictions.jsonl.2"]
    assert all(f.exists() for f in files) and not (folder / "predictions.jsonl.3").exists()
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert all(json.loads(line)["model_name"] == hardened["name"] for line in f.read_text().splitlines())
    assert (folder / "predictions.jsonl.1").stat().st_size >= 30000


def test_a_failed_reload_leaves_no_download_behind_and_backs_off(hardened):
    """Runs last in this module: it moves the alias to a version the server refuses to load."""
    server, folder = hardened["server"], hardened["folder"]
    broken = log_sklearn(hardened["uri"], hardened["name"], serialization_format="cloudpickle")
    set_champion(hardened["uri"], hardened["name"], broken)
    deadline = time.monotonic() + WAIT_S
    while (server.get("/health").json()["reload"] or {}).get("failures", 0) < 3:
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        time.sleep(0.2)
    health = server.get("/health").json()
    assert health["model_version"] == hardened["version"]
    assert "cloudpickle" in health["reload"]["last_error"]
    assert health["reload"]["next_check_s"] >= 0.2 * 2**3  # doubled per consecutive failure
    downloads = list((folder / "tmp").glob("mlops-serve-*"))
    assert len(downloads) == 1, downloads  # the served model's, and no leftover per failed try
    x, _ = digits_frame()
    answer = server.post({"dataframe_split": x.iloc[:2].astype(np.float32).to_dict(orient="split")})
    assert answer.status_code == 200
