"""export_runs / `mlops runs export` against the real servers (SQLite and PostgreSQL): every run exactly
once, a column per metric, param and tag, page tokens followed, both output formats, both sources."""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops_platform.registry.export import FIXED_COLUMNS, export_runs
from mlops_platform.registry.search import SearchError

RUNS = 200


@dataclass(frozen=True)
class Exported:
    tracking_uri: str
    backend_store_uri: str
    experiment_name: str
    expected: dict[str, dict]  # run_id -> {"status", "metrics", "params", "tags"}


@pytest.fixture(scope="module")
def exported(tracking_server) -> Exported:
    """200 runs in the server's database, in MLflow's own tables (the rows create_run, log_batch and
    set_terminated write; through REST or MLflow's store calls this takes minutes on a loaded machine):
    metrics at two steps (the latest counts), a sparse metric per group of runs, one NaN, params,
    tags, every tenth run FAILED."""
    import sqlalchemy as sa
    from mlflow import MlflowClient
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag

    from mlops_platform.store_indexes import driver_uri

    uri = tracking_server.url
    backend = tracking_server.config.resolved_backend_store_uri
    name = f"export-{uuid.uuid4().hex[:8]}"
    experiment_id = MlflowClient(uri).create_experiment(name)
    rows: dict[type, list[dict]] = {
        table: [] for table in (SqlRun, SqlMetric, SqlLatestMetric, SqlParam, SqlTag)
    }
    expected = {}
    for i in range(RUNS):
        run_id = uuid.uuid4().hex
        status = "FAILED" if i % 10 == 3 else "FINISHED"
        rows[SqlRun].append(
            dict(run_uuid=run_id, name=f"run-{i}", source_type="LOCAL", source_name="", entry_point_name="",
                 user_id="tester", status=status, start_time=1_000_000 + i, end_time=2_000_000 + i,
                 source_version="", lifecycle_stage="active", artifact_uri=f"mlflow-artifacts:/{run_id}",
                 experiment_id=int(experiment_id))
        )  # fmt: skip
        metrics = {"acc": i / 1000, f"group_{i % 5}": float(i)}
        if i % 2 == 0:
            metrics["loss"] = 1 - i / 1000
        if i == 7:
            metrics["acc"] = math.nan
        # An earlier step of acc: the export has the latest value.
        rows[SqlMetric].append(
            dict(key="acc", value=-1.0, timestamp=0, step=0, is_nan=False, run_uuid=run_id)
        )
        for key, value in metrics.items():
            nan = math.isnan(value)
            row = dict(key=key, value=0.0 if nan else value, timestamp=1, step=1, is_nan=nan, run_uuid=run_id)
            rows[SqlMetric].append(row)
            rows[SqlLatestMetric].append(row)
        params = {"lr": str(i % 3), "index": str(i)}
        tags = {"team": "ab"[i % 2], "mlflow.runName": f"run-{i}"}
        rows[SqlParam] += [dict(key=k, value=v, run_uuid=run_id) for k, v in params.items()]
        rows[SqlTag] += [dict(key=k, value=v, run_uuid=run_id) for k, v in tags.items()]
        expected[run_id] = {
            "status": status,
            "metrics": metrics,
            "params": params,
            "tags": tags,
            "name": f"run-{i}",
        }
    engine = sa.create_engine(driver_uri(backend))
    with engine.begin() as connection:
        for table, values in rows.items():
            connection.execute(sa.insert(table.__table__), values)
    engine.dispose()
    return Exported(uri, backend, name, expected)


def check_rows(frame, expected: dict[str, dict]) -> None:
    assert sorted(frame["run_id"]) == sorted(expected)  # every run, exactly once
    metric_keys = {k for e in expected.values() for k in e["metrics"]}
    param_keys = {k for e in expected.values() for k in e["params"]}
    columns = set(frame.columns)
    assert set(FIXED_COLUMNS) <= columns
    assert {f"metrics.{k}" for k in metric_keys} | {f"params.{k}" for k in param_keys} <= columns
    assert {c for c in columns if c.startswith("metrics.")} == {f"metrics.{k}" for k in metric_keys}
    for row in frame.to_dict("records"):
        want = expected[row["run_id"]]
        assert row["status"] == want["status"] and row["run_name"] == want["name"]
        for key in metric_keys:
            value, wanted = row[f"metrics.{key}"], want["metrics"].get(key)
            if wanted is None or math.isnan(wanted):
                assert value is None or math.isnan(value), (key, row["run_id"], value)
            else:
                assert value == pytest.approx(wanted), (key, row["run_id"])
        for key in param_keys:
            assert str(row[f"params.{key}"]) == want["params"][key]
        for key, value in want["tags"].items():
            assert row[f"tags.{key}"] == value


@pytest.mark.parametrize("output_format", ["parquet", "csv"])
def test_server_export_follows_page_tokens(exported: Exported, tmp_path: Path, output_format: str):
    import pandas as pd

    path = tmp_path / f"runs.{output_format}"
    result = export_runs(exported.experiment_name, path, tracking_uri=exported.tracking_uri, page_size=40)
    assert (result.source, result.format, result.runs) == ("server", output_format, RUNS)
    assert result.pages == math.ceil(RUNS / 40)  # 5 pages: 4 tokens followed
    frame = (
        pd.read_parquet(path)
        if output_format == "parquet"
        else pd.read_csv(path, dtype={"run_id": str, "params.lr": str, "params.index": str, "tags.team": str})
    )
    assert list(frame.columns) == result.columns
    check_rows(frame, exported.expected)
    assert not list(tmp_path.glob(".export-*"))  # the spilled pages are gone


def test_store_export_equals_the_server_export(exported: Exported, tmp_path: Path):
    import pandas as pd

    server = export_runs(
        exported.experiment_name, tmp_path / "server.parquet", tracking_uri=exported.tracking_uri
    )
    store = export_runs(
        exported.experiment_name,
        tmp_path / "store.parquet",
        tracking_uri=exported.tracking_uri,
        backend_store_uri=exported.backend_store_uri,
        page_size=50,
    )
    assert (store.source, store.runs, store.pages) == ("store", RUNS, math.ceil(RUNS / 50))
    assert store.columns == server.columns
    by_id = pd.read_parquet(tmp_path / "store.parquet").sort_values("run_id").reset_index(drop=True)
    check_rows(by_id, exported.expected)
    pd.testing.assert_frame_equal(
        by_id, pd.read_parquet(tmp_path / "server.parquet").sort_values("run_id").reset_index(drop=True)
    )


def test_status_and_filter(exported: Exported, tmp_path: Path):
    import pandas as pd

    finished = export_runs(
        exported.experiment_name,
        tmp_path / "f.parquet",
        status="FINISHED",
        tracking_uri=exported.tracking_uri,
    )
    want = {k for k, v in exported.expected.items() if v["status"] == "FINISHED"}
    assert finished.runs == len(want)
    assert set(pd.read_parquet(tmp_path / "f.parquet")["run_id"]) == want
    lr = export_runs(
        exported.experiment_name,
        tmp_path / "lr.csv",
        filter_string="params.lr = '1'",
        tracking_uri=exported.tracking_uri,
    )
    assert lr.runs == sum(v["params"]["lr"] == "1" for v in exported.expected.values())


def test_bad_requests_name_the_problem(exported: Exported, tmp_path: Path):
    with pytest.raises(SearchError, match="invalid export format 'xlsx'"):
        export_runs(exported.experiment_name, tmp_path / "runs.xlsx", tracking_uri=exported.tracking_uri)
    with pytest.raises(SearchError, match="unknown experiment 'no-such-experiment'"):
        export_runs("no-such-experiment", tmp_path / "r.csv", tracking_uri=exported.tracking_uri)
    with pytest.raises(SearchError, match="invalid export filter"):
        export_runs(
            exported.experiment_name, tmp_path / "r.csv", filter_string="params.lr ~ 1",
            tracking_uri=exported.tracking_uri,
        )  # fmt: skip
    with pytest.raises(SearchError, match="takes no filter"):
        export_runs(
            exported.experiment_name, tmp_path / "r.csv", filter_string="params.lr = '1'",
            tracking_uri=exported.tracking_uri, backend_store_uri=exported.backend_store_uri,
        )  # fmt: skip
    assert not (tmp_path / "r.csv").exists()


def test_cli(exported: Exported, tmp_path: Path):
    import pandas as pd

    done = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "runs", "export", "--experiment", exported.experiment_name,
         "--format", "csv", "--tracking-uri", exported.tracking_uri],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    path = tmp_path / f"runs-{exported.experiment_name}.csv"
    assert f"{RUNS} run(s)" in done.stdout and str(path.name) in done.stdout
    assert len(pd.read_csv(path)) == RUNS
    bad = subprocess.run(
        [sys.executable, "-m", "mlops_platform", "runs", "export", "--experiment", "no-such-experiment",
         "--tracking-uri", exported.tracking_uri],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 1 and "unknown experiment 'no-such-experiment'" in bad.stderr
