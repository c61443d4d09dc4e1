"""`mlops skew` end to end: the sklearn trainer logs a digits model with its profile to a real tracking
server, a real `mlops serve --log-predictions` answers clean and then shifted traffic, and the CLI says
so with its exit code, its summary and the report run's artifacts; a log of another version and a
model without a profile are clear errors."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from mlflow import MlflowClient

from mlops_platform.cli import cli
from mlops_platform.cli.skew import DRIFT_EXIT_CODE
from mlops_platform.config.train_sklearn import TrainSklearnConfig
from mlops_platform.data import load_dataset
from mlops_platform.training import sklearn_job

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from serving_helpers import ServerProcess, log_sklearn

SHIFTED = "pixel_2_5"


def _send(server: ServerProcess, frame) -> None:
    session = requests.Session()
    for start in range(0, len(frame), 100):
        rows = frame.iloc[start : start + 100]
        response = session.post(
            f"{server.url}/invocations", json={"dataframe_split": rows.to_dict(orient="split")}, timeout=30
        )
        assert response.status_code == 200, response.text


def _wait_logged(path: Path, rows: int) -> None:
    """The server flushes its log every 0.5 s: wait until `rows` rows are in PATH and its rotations."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        files = [p for p in path.parent.glob(path.name + "*") if not p.name.endswith(".lock")]
        if sum(len(json.loads(line)["inputs"]) for p in files for line in p.read_text().splitlines()) >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"{rows} rows never reached {path}")


def _skew(*args: str):
    return CliRunner().invoke(cli, ["skew", *args], catch_exceptions=False)


@pytest.mark.slow
def test_skew_flags_a_shifted_feature_in_served_traffic_and_logs_the_report(sqlite_tracking_uri, tmp_path):
    uri = sqlite_tracking_uri
    name = f"skew-{uuid.uuid4().hex[:6]}"
    config = TrainSklearnConfig.parse(
        {"dataset": "digits", "model": "knn", "cv_folds": 2, "baseline": False, "registered_model_name": name,
         "experiment": f"skew-train-{name}"}
    )  # fmt: skip
    trained = sklearn_job.run(config)
    client = MlflowClient(uri, registry_uri=uri)
    registered = client.get_model_version(
        name, "1"
    )  # registered after the profile was uploaded, with its run
    assert registered.run_id == trained.run_id and registered.source == trained.model_uri
    client.set_registered_model_alias(name, "champion", "1")
    log_path = tmp_path / "predictions.jsonl"
    server = ServerProcess(
        f"models:/{name}@champion", uri, tmp_path / "serve.log", "--log-predictions", str(log_path),
        "--log-max-bytes", "200000", "--log-backups", "20",
    ).wait_ready()  # fmt: skip
    features = load_dataset("digits").features
    rng = np.random.default_rng(0)
    champion = f"models:/{name}@champion"
    try:
        # 1,000 served rows with one feature shifted by half its standard deviation: exit 3, named first.
        shifted = features.sample(1000, replace=True, random_state=rng.integers(2**31))
        shifted[SHIFTED] = shifted[SHIFTED] + 0.5 * features[SHIFTED].std()
        _send(server, shifted)
        _wait_logged(log_path, rows=1000)
        result = _skew("--model-uri", champion, "--log", str(log_path), "--fail-on-drift")
        assert result.exit_code == DRIFT_EXIT_CODE, result.output
        summary = json.loads(result.stdout)
        # Then 1,000 rows as the data came: exit 0 with --fail-on-drift, reading only what came since.
        since = time.time()
        _send(server, features.sample(1000, replace=True, random_state=rng.integers(2**31)))
        _wait_logged(log_path, rows=2000)
        assert server.get("/health").json()["prediction_log"]["rotations"] >= 1  # rotated files are read
    finally:
        server.stop()
    assert summary["drift"] is True and summary["drifted_features"][0] == SHIFTED
    assert summary["features"][0]["feature"] == SHIFTED and summary["rows"] == 1000
    assert summary["model_version"] == "1" and summary["prediction"]["reference_split"] == "test"
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["mlops.skew.model_version"] == "1" and run.data.tags["mlops.skew.drift"] == "true"
    assert run.data.metrics["drifted_features"] >= 1 and run.data.metrics["rows"] == 1000
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id, "skew")}
    assert artifacts == {"skew/skew_report.json", "skew/skew_report.html"}
    page = Path(
        client.download_artifacts(run.info.run_id, "skew/skew_report.html", str(tmp_path))
    ).read_text()
    assert SHIFTED in page and "DRIFT" in page
    assert client.get_model_version(name, "1").tags["mlops.skew.drift"] == "true"

    clean = _skew("--model-uri", champion, "--log", str(log_path), "--since", str(since), "--fail-on-drift",
                  "--output-dir", str(tmp_path / "clean"))  # fmt: skip
    assert clean.exit_code == 0, clean.output
    clean_summary = json.loads(clean.stdout)
    assert clean_summary["drifted_features"] == [] and clean_summary["rows"] == 1000
    assert clean_summary["prediction"]["drifted"] is False
    assert json.loads((tmp_path / "clean" / "skew_report.json").read_text())["rows"] == 1000
    # --window: the last 1,500 rows hold 500 shifted ones.
    window = _skew("--model-uri", champion, "--log", str(log_path), "--window", "1500", "--no-mlflow")
    assert json.loads(window.stdout)["rows"] == 1500

    # Another version's profile against this log, and a model with no profile: clear errors.
    import mlflow  # version 2: the same logged model (so it has a profile), registered again

    mlflow.register_model(client.get_model_version(name, "1").source, name)
    other = _skew("--model-uri", f"models:/{name}/2", "--log", str(log_path), "--no-mlflow")
    assert other.exit_code == 1
    assert f"no request answered or shadowed by {name} version 2" in other.output
    assert f"{name} version 1: " in other.output
    bare = f"{name}-bare"
    log_sklearn(uri, bare)
    missing = _skew("--model-uri", f"models:/{bare}/1", "--log", str(log_path), "--no-mlflow")
    assert missing.exit_code == 1 and "has no training profile" in missing.output
