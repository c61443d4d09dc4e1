"""Runs with known metrics and real logged models, made quickly.

Each run is created with `MlflowClient.create_run` + one `log_batch` (metrics, params, tags); runs
that need a model get their own LoggedModel via `mlflow.sklearn.log_model` (a tiny fitted
LogisticRegression; explicit pip requirements skip the slow requirement inference, ~0.07 s a model).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager


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
