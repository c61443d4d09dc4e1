"""`make demo`'s command end to end: server, `mlflow run` training, promotion, REST prediction."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mlops_platform.server import free_port


@pytest.mark.slow
def test_demo_trains_promotes_serves_and_predicts(tmp_path: Path):
    home = tmp_path / "demo-home"
    port, serve_port = free_port(), free_port()
    env = {**os.environ, "MLOPS_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable,
        "-m",
        "mlops_platform",
        "demo",
        "--port",
        str(port),
        "--serve-port",
        str(serve_port),
    ]
    try:
        result = subprocess.run(
            [*command, "--epochs", "3"], capture_output=True, text=True, env=env, timeout=600
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        output = result.stdout
        url = f"http://127.0.0.1:{port}"
        assert re.search(
            rf"UI:\s+{re.escape(url)}/#/experiments/\d+/runs\?workflowType=machine_learning", output
        )
        assert "model URI:   models:/digits-classifier@champion" in output
        predicted = re.search(r"prediction:\s+class (\d) \(p=[0-9.]+\).*\(true label: (\d)\)", output)
        assert predicted, output[-2000:]
        # The tracking server stays up for the user; the model server it started is gone.
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{serve_port}/ping", timeout=2)

        from mlflow import MlflowClient

        client = MlflowClient(url)
        version = client.get_model_version_by_alias("digits-classifier", "champion")
        run = client.get_run(version.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["model"] == "cnn"
        # A second demo reuses the running server and keeps a champion that is at least as good.
        again = subprocess.run(
            [*command, "--epochs", "1"], capture_output=True, text=True, env=env, timeout=600
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert "already running" in again.stdout
        champion = client.get_model_version_by_alias("digits-classifier", "champion")
        assert champion.version == version.version
    finally:
        subprocess.run(
            [sys.executable, "-m", "mlops_platform", "server", "stop"], env=env, capture_output=True
        )
