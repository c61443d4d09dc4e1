"""What `make demo` runs: the whole platform end to end on the embedded default.

1. start the local tracking server (SQLite + artifact folder under MLOPS_HOME) unless it runs already;
2. train the main job through `mlflow run` (the PyTorch trainer on digits);
3. promote the best run to `models:/<model>@champion` through `mlflow run . -e promote`;
4. serve the champion over REST with `mlops serve`, send it one prediction, stop the model server;
5. print the UI link, the model URI and the prediction, and leave the tracking server running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from mlops_platform.config.train_torch import TorchTrainConfig
from mlops_platform.demo_config import DemoConfig
from mlops_platform.errors import UserError
from mlops_platform.redaction import redact
from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port, port_in_use, wait_for_health
from mlops_platform.settings import experiment_ui_url, mlops_home

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def _run(command: list[str], env: dict[str, str]) -> None:
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env)
    if result.returncode != 0:
        raise UserError(f"`{' '.join(command[:5])} ...` failed with exit code {result.returncode}")


def _start_tracking_server(config: DemoConfig) -> str:
    server = LocalTrackingServer(ServerConfig(home=mlops_home(), port=config.tracking_port))
    if server.is_running():
        print(f"tracking server already running at {server.url}")
        return server.url
    url = server.start()
    print(f"tracking server running at {url} (store: {redact(server.config.resolved_backend_store_uri)})")
    return url


def _demo_row(train: TorchTrainConfig) -> dict:
    """One row of the job's test split as MLflow's `dataframe_split` payload, with its true label."""
    from mlops_platform.data import load_dataset, split_dataset

    splits = split_dataset(
        load_dataset(train.dataset, target=train.target),
        seed=train.seed,
        val_fraction=train.val_fraction,
        test_fraction=train.test_fraction,
    )
    row = splits.test.features.iloc[:1]
    payload = {"dataframe_split": {"columns": list(row.columns), "data": row.to_numpy().tolist()}}
    return {"payload": payload, "label": splits.test.target.iloc[0]}


def _serve_and_predict(
    model_uri: str, port: int, env: dict[str, str], train: TorchTrainConfig
) -> tuple[object, object]:
    if port_in_use("127.0.0.1", port):
        port = free_port()
    command = [sys.executable, "-m", "mlops_platform", "serve", "--model-uri", model_uri, "--port", str(port)]
    print("$ " + " ".join(command[2:]), flush=True)
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_health(url, 120, process, path="/ping"):
            raise UserError(f"the model server did not answer /ping (exit code {process.poll()})")
        example = _demo_row(train)
        response = requests.post(f"{url}/invocations", json=example["payload"], timeout=30)
        response.raise_for_status()
        return response.json()["predictions"], example["label"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _describe(prediction: object) -> str:
    """The served model answers class probabilities: name the winning class and its probability."""
    row = prediction[0] if isinstance(prediction, list) and prediction else prediction
    if isinstance(row, list) and row and all(isinstance(p, int | float) for p in row):
        best = max(range(len(row)), key=row.__getitem__)
        return f"class {best} (p={row[best]:.3f}); response: {json.dumps(prediction)[:120]}"
    return json.dumps(prediction)


def run_demo(config: DemoConfig | None = None) -> None:
    config = config or DemoConfig()
    started = time.monotonic()
    _step("tracking server")
    url = _start_tracking_server(config)
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_EXPERIMENT_NAME": config.experiment}
    # MLproject commands say `python`: make it this interpreter, as an activated venv would.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    env.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    mlflow = [sys.executable, "-m", "mlflow", "run", ".", "--env-manager", "local"]

    train = config.train_config()
    _step(f"train: the main entry point (PyTorch {train.model.upper()} on {train.dataset})")
    _run([*mlflow, "-e", "main", "--experiment-name", config.experiment, "-P", f"epochs={train.epochs}"], env)

    model_uri = f"models:/{config.model_name}@{config.alias}"
    _step(f"promote: the best run by {config.metric} -> {model_uri}")
    _run(
        [
            *mlflow, "-e", "promote", "--experiment-name", config.experiment,
            "-P", f"experiment={config.experiment}", "-P", f"metric={config.metric}",
            "-P", f"model_name={config.model_name}", "-P", f"alias={config.alias}",
        ],
        env,
    )  # fmt: skip

    _step(f"serve the {config.alias} over REST and ask it one prediction")
    prediction, label = _serve_and_predict(model_uri, config.serve_port, env, train)

    from mlflow import MlflowClient

    experiment = MlflowClient(url).get_experiment_by_name(config.experiment)
    _step(f"done in {time.monotonic() - started:.0f} s")
    print(f"UI:          {experiment_ui_url(url, experiment.experiment_id)}")
    print(f"model URI:   {model_uri}")
    print(f"prediction:  {_describe(prediction)}  (true label: {label})")
    print(f"The tracking server keeps running at {url}; stop it with: .venv/bin/mlops server stop")
