"""`mlflow models serve -m models:/NAME@champion --env-manager local` keeps working for the models our
trainers log (sklearn Pipeline, torch module), and answers what `mlops serve` answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from serving_helpers import digits_frame

from mlops_platform.server import free_port

START_TIMEOUT_S = 120


def _mlflow_serve(model_uri: str, tracking_uri: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                mlflow,
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()[-3000:]
        try:
            if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise AssertionError(log_path.read_text()[-3000:])


def _stop(process: subprocess.Popen) -> None:
    import signal

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sklearn", "torch"])
def test_mlflow_models_serve_works_and_agrees_with_ours(kind, request, tmp_path):
    model = request.getfixturevalue(f"{kind}_model")
    ours = request.getfixturevalue(f"{kind}_server")
    process, url = _mlflow_serve(model.champion_uri, model.tracking_uri, tmp_path / "mlflow.log")
    try:
        x, _ = digits_frame()
        body = json.dumps({"dataframe_split": x.iloc[40:52].to_dict(orient="split")})
        theirs = requests.post(
            f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=60
        )
    finally:
        _stop(process)
    assert theirs.status_code == 200, theirs.text
    mine = ours.post(body)
    assert mine.status_code == 200
    if kind == "sklearn":
        assert mine.json() == theirs.json()
    else:
        np.testing.assert_allclose(
            mine.json()["predictions"], theirs.json()["predictions"], rtol=1e-5, atol=1e-7
        )
