"""Benchmark: finding and promoting the best run at 10,000 runs, ours vs the plain MLflow way.

    .venv/bin/python benchmarks/search_promote.py [--runs 10000] [--repeat 3] [--backends sqlite,postgresql]

For each backend it starts its own tracking server (LocalTrackingServer; PostgreSQL in a throwaway
database), fills one experiment, and times:

- plain DataFrame: `mlflow.search_runs(order_by=[metric DESC]).iloc[0]`, the common way;
- plain top-1: `MlflowClient.search_runs(order_by=[metric DESC], max_results=1)`;
- the query shapes a top-1 can take (status filter, metric filter, both), because on SQLite the
  shape decides whether ordering by a metric is quadratic;
- ours: `find_best_run`; `promote_best` into a fresh registered model (registers and promotes), and
  again into the same one (a no-op re-check).

The bulk of the runs (all but a handful) are written straight into the backend store with MLflow's
own ORM rows (runs, metrics, latest_metrics, params, tags: what create_run + log_batch + set_terminated
write), because over REST this shared 2-core machine created about 10 runs/s (30,000 requests, ~17
minutes a backend). The top runs, the ones that matter, are created through the server with
`log_batch` and get real logged models. The plain way picks a FAILED run or one without a model; the
table says which run each method picked.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port

POSTGRES_ADMIN_URL = os.environ.get(
    "MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
METRIC = "val_acc"
# Fail fast instead of retrying for minutes if a server goes away mid-benchmark.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")


def bulk_insert_runs(db_uri: str, experiment_id: str, count: int, seed: int = 0) -> None:
    """`count` runs with val_acc in [0, 0.9): 2% FAILED, 1% without the metric."""
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy.orm import Session

    rng = random.Random(seed)
    engine = sa.create_engine(db_uri.replace("postgresql://", "postgresql+psycopg://"))
    now = int(time.time() * 1000)
    with Session(engine) as session:
        for start in range(0, count, 1000):
            rows: list = []
            for i in range(start, min(count, start + 1000)):
                run_id = uuid.uuid4().hex
                status = "FAILED" if i % 50 == 7 else "FINISHED"
                rows.append(
                    SqlRun(
                        run_uuid=run_id, name=f"bulk-{i}", source_type="LOCAL", source_name="bench",
                        entry_point_name="", user_id="bench", status=status, start_time=now - count + i,
                        end_time=now, source_version="", lifecycle_stage="active",
                        artifact_uri=f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                        experiment_id=int(experiment_id),
                    )
                )  # fmt: skip
                if i % 100 != 3:  # 1% of runs never logged the metric
                    value = rng.uniform(0, 0.9)
                    for key, val in ((METRIC, value), ("val_loss", 1 - value)):
                        fields = dict(
                            key=key, value=val, timestamp=now, step=0, is_nan=False, run_uuid=run_id
                        )
                        rows += [SqlMetric(**fields), SqlLatestMetric(**fields)]
                rows += [
                    SqlParam(key="lr", value=str(rng.choice([0.1, 0.01, 0.001])), run_uuid=run_id),
                    SqlParam(key="model", value=rng.choice(["mlp", "cnn"]), run_uuid=run_id),
                    SqlTag(key="team", value=rng.choice(["a", "b"]), run_uuid=run_id),
                ]
            session.add_all(rows)
            session.commit()
    engine.dispose()


def top_runs(uri: str, experiment_id: str) -> dict[str, str]:
    """The runs that matter, through the server: a FAILED winner, a model-less winner, the true best."""
    import mlflow.sklearn
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from sklearn.linear_model import LogisticRegression

    features = np.random.default_rng(0).random((20, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0.5).astype(int))
    client = MlflowClient(uri)
    os.environ.update(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_ID=experiment_id)
    made = {}
    for label, value, status, with_model in (
        ("FAILED", 0.999, "FAILED", True),
        ("no model", 0.998, "FINISHED", False),
        ("best", 0.99, "FINISHED", True),
        ("second", 0.98, "FINISHED", True),
        ("third", 0.97, "FINISHED", True),
    ):
        run_id = client.create_run(experiment_id, run_name=label).info.run_id
        now = int(time.time() * 1000)
        client.log_batch(
            run_id, metrics=[Metric(METRIC, value, now, 0), Metric("val_loss", 1 - value, now, 0)]
        )
        if with_model:
            mlflow.sklearn.log_model(
                model,
                name="model",
                run_id=run_id,
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn"],
            )
        client.set_terminated(run_id, status)
        made[run_id] = label
    return made


def timed(function: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_backend(backend: str, runs: int, repeat: int) -> list[tuple[str, str, float, str]]:
    import mlflow
    import sqlalchemy as sa
    from mlflow import MlflowClient

    from mlops_platform.registry import find_best_run, promote_best
    from mlops_platform.registry.best import ranked_query
    from mlops_platform.registry.promote import best_baseline

    home = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-"))
    os.environ["MLOPS_HOME"] = str(home / "mlops-home")
    database = None
    if backend == "postgresql":
        database = f"mlops_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
        db_uri = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    else:
        db_uri = f"sqlite:///{home / 'mlflow.db'}"
    server = LocalTrackingServer(ServerConfig(home=home, backend_store_uri=db_uri, port=free_port()))
    server.start()
    rows = []
    try:
        uri = server.url
        client = MlflowClient(uri)
        # The plain way (mlflow.search_runs) and mlflow.sklearn.log_model read MLflow's global URI.
        mlflow.set_tracking_uri(uri)
        experiment_id = client.create_experiment(f"bench-{backend}")
        start = time.perf_counter()
        bulk_insert_runs(db_uri, experiment_id, runs - 5)
        labels = top_runs(uri, experiment_id)
        print(f"[{backend}] {runs} runs ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)

        def label(run_id: str) -> str:
            return labels.get(run_id, "other")

        key = f"metrics.{METRIC}"
        status = "attributes.status = 'FINISHED'"
        metric_filter = f"{key} >= 0"
        seconds, frame = timed(lambda: mlflow.search_runs([experiment_id], order_by=[f"{key} DESC"]), 1)
        rows.append((backend, "plain: mlflow.search_runs(...).iloc[0]", seconds, label(frame.iloc[0].run_id)))
        ours_filter, ours_order = ranked_query(METRIC, "max")
        for name, filter_string, order_by in (
            ("plain top-1: no filter", "", [f"{key} DESC"]),
            ("top-1 shape: status filter", status, [f"{key} DESC"]),
            ("top-1 shape: metric filter", metric_filter, [f"{key} DESC"]),
            ("top-1 shape: status + metric filter", f"{status} AND {metric_filter}", [f"{key} DESC"]),
            ("top-1 shape: ours (find_best_run's query)", ours_filter, ours_order),
        ):
            seconds, page = timed(
                lambda f=filter_string, o=order_by: client.search_runs(
                    [experiment_id], f, order_by=o, max_results=1
                ),
                repeat if "status" in name or "ours" in name else 1,
            )
            rows.append((backend, name, seconds, label(page[0].info.run_id)))
        seconds, baseline = timed(lambda: best_baseline(client, [experiment_id], METRIC, "max"), repeat)
        rows.append((backend, "shape: baseline query (status+metric+tag)", seconds, str(baseline)))
        seconds, best = timed(lambda: find_best_run(experiment_id, METRIC, "max", tracking_uri=uri), repeat)
        rows.append((backend, "ours: find_best_run", seconds, label(best.run_id)))
        names = iter(f"bench-{backend}-{i}-{uuid.uuid4().hex[:6]}" for i in range(repeat))
        # Each call promotes into a fresh registered model, so every one registers and moves the alias.
        seconds, decision = timed(
            lambda: promote_best(experiment_id, METRIC, next(names), "max", tracking_uri=uri), repeat
        )
        rows.append((backend, "ours: promote_best (registers, promotes)", seconds, label(decision.run_id)))
        model_name = decision.model_name
        seconds, decision = timed(
            lambda: promote_best(experiment_id, METRIC, model_name, "max", tracking_uri=uri), repeat
        )
        rows.append((backend, "ours: promote_best (no-op re-check)", seconds, label(decision.run_id)))
    finally:
        server.stop()
        if database:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="median of this many calls (fast methods)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        rows += bench_backend(backend.strip(), args.runs, args.repeat)
    print(f"\n{args.runs} runs per experiment; median of {args.repeat} for the fast methods\n")
    print(f"{'backend':<11} {'method':<42} {'seconds':>8} {'vs plain':>9}  picked")
    for backend, name, seconds, picked in rows:
        plain = next(s for b, n, s, _ in rows if b == backend and n.startswith("plain: "))
        print(f"{backend:<11} {name:<42} {seconds:8.3f} {plain / seconds:8.1f}x  {picked}")


if __name__ == "__main__":
    main()
