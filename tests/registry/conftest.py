"""Runs with known metrics and real logged models, made quickly.

Each run is created with `MlflowClient.create_run` + one `log_batch` (metrics, params, tags); runs
that need a model get their own LoggedModel via `mlflow.sklearn.log_model` (a tiny fitted
LogisticRegression; explicit pip requirements skip the slow requirement inference, ~0.07 s a model).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


@contextmanager
def _environment(**values: str):
    # mlflow.sklearn.log_model reads its server from MLFLOW_TRACKING_URI and files the LoggedModel
    # under MLFLOW_EXPERIMENT_ID (not under the run's experiment), so both are set around the call.
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_MODEL = None


def tiny_model():
    global _MODEL
    if _MODEL is None:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        features = np.random.default_rng(0).random((20, 3))
        _MODEL = LogisticRegression().fit(features, (features[:, 0] > 0.5).astype(int))
    return _MODEL


def make_run(
    tracking_uri: str,
    experiment_id: str,
    metrics: dict[str, float] | None = None,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    status: str = "FINISHED",
    with_model: bool = True,
    run_name: str | None = None,
) -> str:
    """One run with the given values and (by default) its own logged sklearn model; returns its id."""
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri)
    run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )
    if with_model:
        with _environment(MLFLOW_EXPERIMENT_ID=experiment_id, MLFLOW_TRACKING_URI=tracking_uri):
            mlflow.sklearn.log_model(
                tiny_model(),
                name="model",
                run_id=run_id,
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn"],
            )
    client.set_terminated(run_id, status)
    return run_id


@pytest.fixture
def run_factory(tracking_uri: str, experiment_id: str) -> Callable[..., str]:
    """make_run bound to this test's server and experiment."""

    def make(**kwargs) -> str:
        return make_run(tracking_uri, experiment_id, **kwargs)

    return make


@pytest.fixture
def model_name(request: pytest.FixtureRequest) -> str:
    import uuid

    return f"reg-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}".replace("[", "-").replace("]", "")


@dataclass(frozen=True)
class Population:
    """30 runs with known metrics in one experiment (shared and read-only: one per backend per session)."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str
    ranked: list[str]  # FINISHED runs with a model and val_acc, best val_acc first
    failed: list[str]
    no_metric: list[str]
    no_model: list[str]
    nan_metric: str
    values: dict[str, float]  # run_id -> val_acc of the ranked runs


@pytest.fixture(scope="session")
def population(tracking_server) -> Population:
    """20 good runs (val_acc 0.50..0.69, val_loss = 1 - val_acc; params model=lr|tree, tags team=a|b),
    3 FAILED runs that would win (0.99), 3 FINISHED runs without val_acc, 3 FINISHED runs without a
    model that would win (0.95), one run whose val_acc is NaN."""
    import uuid

    from mlflow import MlflowClient

    uri = tracking_server.url
    name = f"population-{uuid.uuid4().hex[:8]}"
    experiment_id = MlflowClient(uri).create_experiment(name)
    values = {}
    for i in range(20):
        value = round(0.50 + i * 0.01, 2)
        run_id = make_run(
            uri,
            experiment_id,
            metrics={"val_acc": value, "val_loss": round(1 - value, 2)},
            params={"model": "lr" if i % 2 else "tree", "index": i},
            tags={"team": "a" if i < 10 else "b"},
            run_name=f"good-{i}",
        )
        values[run_id] = value
    ranked = sorted(values, key=values.get, reverse=True)
    failed = [
        make_run(
            uri, experiment_id, {"val_acc": 0.99, "val_loss": 0.01}, status="FAILED", run_name=f"failed-{i}"
        )
        for i in range(3)
    ]
    no_metric = [make_run(uri, experiment_id, {"other": 1.0}, run_name=f"no-metric-{i}") for i in range(3)]
    no_model = [
        make_run(
            uri,
            experiment_id,
            {"val_acc": 0.95, "val_loss": 0.05},
            with_model=False,
            run_name=f"no-model-{i}",
        )
        for i in range(3)
    ]
    nan_metric = make_run(uri, experiment_id, {"val_acc": float("nan")}, run_name="nan")
    return Population(uri, name, experiment_id, ranked, failed, no_metric, no_model, nan_metric, values)
