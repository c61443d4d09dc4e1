"""Our extra backend-store indexes: idempotent, used by MLflow's own queries, and harmless to
`mlflow db upgrade` — on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlops_platform.server import LocalTrackingServer, upgrade_database
from mlops_platform.store_indexes import INDEXES, driver_uri, ensure_indexes, indexes_for

INDEX = INDEXES[0].name
METRIC_INDEX = "mlops_latest_metrics_key_value"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, migrated MLflow backend store of each kind (its own PostgreSQL database)."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:
        admin_url = request.getfixturevalue("postgres_database_uri")  # skips/fails without PostgreSQL
        name = f"mlops_idx_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(admin_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        uri = admin_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade_database(uri)
    yield uri
    if request.param == "postgresql":
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def index_names(uri: str) -> list[str]:
    engine = sa.create_engine(driver_uri(uri))
    try:
        inspector = sa.inspect(engine)
        return [
            index["name"] for table in ("runs", "latest_metrics") for index in inspector.get_indexes(table)
        ]
    finally:
        engine.dispose()


def dialect(uri: str) -> str:
    return sa.engine.make_url(driver_uri(uri)).get_backend_name()


def add_runs(uri: str, experiment_id: int, count: int) -> None:
    """Bulk rows in MLflow's runs and latest_metrics tables (what create_run and log_batch write, five
    metrics a run), for the planner to weigh."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlRun

    engine = sa.create_engine(driver_uri(uri))
    now = int(time.time() * 1000)
    rows = [
        dict(run_uuid=uuid.uuid4().hex, name=f"r{i}", source_type="LOCAL", source_name="",
             entry_point_name="",
             user_id="t", status="FINISHED", start_time=now + i, end_time=now + i, source_version="",
             lifecycle_stage="active", artifact_uri="", experiment_id=experiment_id)
        for i in range(count)
    ]  # fmt: skip
    metrics = [
        dict(key=key, value=(i * 7919 % count) / count, timestamp=now, step=0, is_nan=False,
             run_uuid=row["run_uuid"])
        for i, row in enumerate(rows)
        for key in ("val_acc", "val_loss", "m2", "m3", "m4")
    ]  # fmt: skip
    with engine.begin() as connection:
        connection.execute(sa.insert(SqlRun.__table__), rows)
        connection.execute(sa.insert(SqlLatestMetric.__table__), metrics)
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("ANALYZE runs"))
            connection.execute(sa.text("ANALYZE latest_metrics"))
    engine.dispose()


def mlflows_runs_query_plan(uri: str, experiment_id: str, filter_string: str = "", order_by=None) -> str:
    """EXPLAIN of the SQL MLflow itself issues for a search: by default the runs page's (first 100
    runs, newest first)."""
    from mlflow.entities import ViewType
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(driver_uri(uri), "/tmp/unused-artifacts")
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith("SELECT DISTINCT runs.run_uuid"):
            captured.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    store.search_runs([experiment_id], filter_string, ViewType.ACTIVE_ONLY, 100, order_by)
    sa.event.remove(store.engine, "before_cursor_execute", capture)
    assert captured, "MLflow's runs query was not seen: its SQL shape changed"
    statement, parameters = captured[0]
    prefix = "EXPLAIN QUERY PLAN " if store.engine.dialect.name == "sqlite" else "EXPLAIN "
    with store.engine.connect() as connection:
        plan = connection.exec_driver_sql(prefix + statement, parameters).all()
    store.engine.dispose()
    return "\n".join(" ".join(str(part) for part in row) for row in plan)


def test_idempotent_used_by_mlflows_queries_and_harmless_to_db_upgrade(fresh_store: str):
    ours = [index.name for index in indexes_for(dialect(fresh_store))]
    assert ours == ([INDEX, METRIC_INDEX] if dialect(fresh_store) == "postgresql" else [INDEX])
    assert not set(ours) & set(index_names(fresh_store))
    assert ensure_indexes(fresh_store) == ours
    assert ensure_indexes(fresh_store) == ours  # a second start: nothing to do, no error
    assert all(index_names(fresh_store).count(name) == 1 for name in ours)

    engine = sa.create_engine(driver_uri(fresh_store))
    with engine.begin() as connection:
        for experiment_id, name in ((1, "big"), (2, "small")):
            connection.execute(
                sa.text(
                    "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
                    "creation_time, last_update_time) VALUES (:id, :name, '', 'active', 0, 0)"
                ),
                {"id": experiment_id, "name": name},
            )
    engine.dispose()
    add_runs(fresh_store, 1, 3000)
    add_runs(fresh_store, 2, 5)
    plan = mlflows_runs_query_plan(fresh_store, "2")
    assert INDEX in plan, plan
    if METRIC_INDEX in ours:
        # promote_best's search for the runs that reach the champion (registry/promote.py).
        reaching = mlflows_runs_query_plan(
            fresh_store, "1", "attributes.status = 'FINISHED' AND metrics.`val_acc` >= 0.999",
            ["metrics.`val_acc` DESC", "attributes.start_time ASC"],
        )  # fmt: skip
        assert METRIC_INDEX in reaching, reaching

    # MLflow's own migrations run over it (as every `mlops server start` does first) without error.
    upgraded = subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", fresh_store], capture_output=True, text=True
    )
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    assert set(ours) <= set(index_names(fresh_store))
    assert ensure_indexes(fresh_store) == ours


def test_an_invalid_index_left_by_a_cut_off_build_is_rebuilt(postgres_database_uri: str):
    """CREATE INDEX CONCURRENTLY that fails leaves an invalid index behind, which IF NOT EXISTS would
    keep forever; the next start replaces it with a valid one."""
    name = f"mlops_idx_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        postgres_database_uri.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    uri = postgres_database_uri.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade_database(uri)
        engine = sa.create_engine(driver_uri(uri), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(f"CREATE INDEX {METRIC_INDEX} ON latest_metrics (key, value)")
            # What a failed concurrent build leaves: the index exists and is not valid.
            connection.exec_driver_sql(
                f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{METRIC_INDEX}'::regclass"
            )
            ensure_indexes(uri)
            valid = connection.exec_driver_sql(
                f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{METRIC_INDEX}'::regclass"
            ).scalar()
        engine.dispose()
        assert valid is True
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_server_start_creates_it(sqlite_server: LocalTrackingServer):
    assert INDEX in index_names(sqlite_server.config.resolved_backend_store_uri)


def test_stores_we_do_not_index_are_left_alone(tmp_path: Path):
    assert ensure_indexes(str(tmp_path / "mlruns")) == []
    assert ensure_indexes("mysql://user@localhost/mlflow") == []
