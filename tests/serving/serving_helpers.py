"""Serving test helpers: tiny models logged and registered on the real tracking server, and real
`mlops serve` processes in front of them.

Models are made here, not by the trainers, but the way the trainers log them: a scikit-learn Pipeline
with the sklearn flavor (DataFrame signature + input example), and a torch module that standardizes
inside and ends in softmax, logged with the pytorch flavor (float32 array signature + input example).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from mlops_platform.server import free_port

SERVER_START_TIMEOUT_S = 90


@dataclass
class Registered:
    """A registered model: name, its versions by number, the tracking URI, and the digits data."""

    name: str
    tracking_uri: str
    versions: list[str]

    @property
    def champion_uri(self) -> str:
        return f"models:/{self.name}@champion"


def digits_frame():
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True)
    return digits.data, digits.target


def log_sklearn(
    tracking_uri: str,
    name: str,
    c: float = 1.0,
    label_shift: int = 0,
    signed: bool = True,
    dtype: str = "float64",
    columns: int | None = None,
    **flavor_kwargs,
) -> str:
    """Log + register a StandardScaler/LogisticRegression Pipeline on digits; returns the version.

    `label_shift` trains on (label + shift) % 10, so two versions are told apart by their answers;
    `signed=False` logs it with neither signature nor input example; `dtype` is the signature's column
    type; `columns` keeps only the first columns (a model that then refuses every full-width request).
    """
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = digits_frame()
    x = x.astype(dtype).iloc[:, :columns]
    y = (y + label_shift) % 10
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300)).fit(x, y)
    if not signed:
        return _log(tracking_uri, name, "sklearn", pipeline, **flavor_kwargs)
    signature = infer_signature(x, pipeline.predict(x))
    return _log(
        tracking_uri,
        name,
        "sklearn",
        pipeline,
        signature=signature,
        input_example=x.iloc[:3],
        **flavor_kwargs,
    )


def make_torch_module(seed: int = 0):
    """Standardization layer (train statistics as buffers) + Linear + softmax, briefly fitted on digits."""
    import torch

    x, y = digits_frame()
    features = torch.tensor(x.to_numpy(np.float32))
    labels = torch.tensor(y.to_numpy())

    class Standardize(torch.nn.Module):
        def __init__(self, mean: torch.Tensor, std: torch.Tensor):
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return (inputs - self.mean) / self.std

    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    scale = Standardize(features.mean(0), features.std(0) + 1e-3)
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(scale(features)), labels)
        loss.backward()
        optimizer.step()
    return torch.nn.Sequential(scale, head, torch.nn.Softmax(dim=1)).eval()


def log_torch(tracking_uri: str, name: str, seed: int = 0, **flavor_kwargs) -> str:
    module = make_torch_module(seed)
    x, _ = digits_frame()
    return _log(
        tracking_uri, name, "pytorch", module, input_example=x.to_numpy(np.float32)[:3], **flavor_kwargs
    )


def _log(tracking_uri: str, name: str, flavor: str, model, **kwargs) -> str:
    """Log + register `model` in a fresh run through the platform's Tracker, as the trainers do."""
    import tempfile

    from mlops_platform.tracking import Tracker

    tracker = Tracker(
        tracking_uri,
        home=Path(tempfile.mkdtemp(prefix="serve-journal-")),
        system_metrics_interval=0,
        replay_on_start=False,
    )
    with tracker.run(experiment="serving-tests", use_env_run=False) as run:
        # Explicit requirements: inferring them re-imports the model in a subprocess, ~10 s per model.
        requirements = ["mlflow", {"sklearn": "scikit-learn", "pytorch": "torch"}.get(flavor, "cloudpickle")]
        info = run.log_model(
            flavor, model, registered_model_name=name, pip_requirements=requirements, **kwargs
        )
    return str(info.registered_model_version)


def set_champion(tracking_uri: str, name: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(
        name, "champion", version
    )


class ServerProcess:
    """A real `mlops serve` process on a free loopback port."""

    def __init__(
        self, model_uri: str, tracking_uri: str, log_path: Path, *options: str, env: dict | None = None
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "mlops_platform",
            "serve",
            "--model-uri",
            model_uri,
            "--tracking-uri",
            tracking_uri,
            "--port",
            str(self.port),
            *options,
        ]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**__import__("os").environ, **(env or {})},
        )
        self.session = requests.Session()

    def wait_ready(self) -> ServerProcess:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"mlops serve exited {self.process.returncode}:\n{self.log_text()}")
            try:
                if requests.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"mlops serve did not answer /ping:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, body, content_type: str = "application/json") -> requests.Response:
        data = body if isinstance(body, bytes | str) else __import__("json").dumps(body)
        return self.session.post(
            f"{self.url}/invocations", data=data, headers={"Content-Type": content_type}, timeout=30
        )

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.url}{path}", timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
