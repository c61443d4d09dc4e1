"""Fixtures of the registry tests: a shared population of 30 runs, a run factory, a model name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from .helpers import make_run


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
