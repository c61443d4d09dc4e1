"""Seed one experiment with many FINISHED runs straight into an MLflow backend store (for scale.py).

Rows are what create_run + log_batch + set_terminated write, in MLflow's own tables, with the column
lists taken from MLflow's table classes (SqlRun, SqlMetric, ...), so a schema change in MLflow shows up
here as an error rather than as rows the server cannot read. REST is far too slow for this (about 10
runs/s on the shared 2-core machine), and even MLflow's ORM objects manage only ~10,000 rows/s: 20
million metric rows go in with executemany on SQLite and COPY on PostgreSQL (keys and indexes rebuilt
afterwards) instead.

Run ids are generated in sorted order so every index that starts with run_uuid is appended to, not
split page by page (random uuid order makes the SQLite seed several times slower).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

# Metric and param names: the first two of each are the ones the benchmark searches by.
METRICS = ("val_acc", "val_loss", *(f"m{i:02d}" for i in range(2, 20)))
PARAMS = ("model", "lr", *(f"p{i:02d}" for i in range(2, 20)))
MODELS = ("mlp", "cnn", "svc", "tree")
BATCH_RUNS = 500


@dataclass(frozen=True)
class SeedShape:
    runs: int
    metrics: int = 20
    steps: int = 10
    params: int = 20

    @property
    def metric_rows(self) -> int:
        return self.runs * self.metrics * self.steps


def run_ids(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return sorted(uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(count))


def _rows(experiment_id: str, shape: SeedShape, seed: int, start_ms: int) -> Iterator[dict[str, list]]:
    """Batches of rows per table, as tuples in the order of `_columns`."""
    rng = random.Random(seed + 1)
    ids = run_ids(shape.runs, seed)
    metrics = METRICS[: shape.metrics]
    params = PARAMS[: shape.params]
    for start in range(0, shape.runs, BATCH_RUNS):
        batch: dict[str, list] = {"runs": [], "metrics": [], "latest_metrics": [], "params": [], "tags": []}
        for i in range(start, min(shape.runs, start + BATCH_RUNS)):
            run_id = ids[i]
            began = start_ms + i * 10  # distinct start times: the runs page's default order is stable
            batch["runs"].append(
                (run_id, f"seeded-{i}", "LOCAL", "scale.py", "", "bench", "FINISHED", began, began + 5000,
                 None, "", "active", f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                 int(experiment_id))
            )  # fmt: skip
            accuracy = rng.uniform(0, 0.9)
            for key in metrics:
                final = accuracy if key == "val_acc" else 1 - accuracy if key == "val_loss" else rng.random()
                for step in range(shape.steps):
                    value = final * (step + 1) / shape.steps
                    batch["metrics"].append((key, value, began + step, run_id, step, False))
                batch["latest_metrics"].append(
                    (key, value, began + shape.steps - 1, shape.steps - 1, False, run_id)
                )
            batch["params"] += [
                ("model", MODELS[i % len(MODELS)], run_id),
                ("lr", ("0.1", "0.01", "0.001")[i % 3], run_id),
                *((key, str(rng.randint(0, 999)), run_id) for key in params[2:]),
            ]
            batch["tags"] += [
                ("mlflow.runName", f"seeded-{i}", run_id),
                ("mlflow.user", "bench", run_id),
                ("mlflow.source.name", "scale.py", run_id),
                ("team", ("a", "b", "c")[i % 3], run_id),
            ]
        yield batch


def _columns() -> dict[str, tuple[str, ...]]:
    """Column lists from MLflow's table classes, in the order _rows writes them."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag

    columns = {
        "runs": ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
                 "start_time", "end_time", "deleted_time", "source_version", "lifecycle_stage",
                 "artifact_uri", "experiment_id"),
        "metrics": ("key", "value", "timestamp", "run_uuid", "step", "is_nan"),
        "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
        "params": ("key", "value", "run_uuid"),
        "tags": ("key", "value", "run_uuid"),
    }  # fmt: skip
    for table in (SqlRun, SqlMetric, SqlLatestMetric, SqlParam, SqlTag):
        name = table.__tablename__
        known = {column.name for column in table.__table__.columns}
        missing = set(columns[name]) - known
        if missing:
            raise RuntimeError(f"MLflow's {name} table has no column(s) {sorted(missing)}: update scale_seed")
    return columns


def seed(db_uri: str, experiment_id: str, shape: SeedShape, seed: int = 0) -> float:
    """Insert the runs; returns the seconds it took."""
    columns = _columns()
    start_ms = int(time.time() * 1000) - shape.runs * 10 - 60_000
    started = time.perf_counter()
    if db_uri.startswith("sqlite"):
        _seed_sqlite(db_uri, experiment_id, shape, seed, start_ms, columns)
    else:
        _seed_postgres(db_uri, experiment_id, shape, seed, start_ms, columns)
    return time.perf_counter() - started


def _seed_sqlite(
    db_uri: str, experiment_id: str, shape: SeedShape, seed: int, start_ms: int, columns
) -> None:
    import sqlite3

    connection = sqlite3.connect(db_uri.removeprefix("sqlite:///"))
    try:
        # Only this connection: no fsync per commit and a 2 GB page cache while seeding.
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA cache_size = -2000000")
        for batch in _rows(experiment_id, shape, seed, start_ms):
            for table, rows in batch.items():
                names = columns[table]
                connection.executemany(
                    f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", rows
                )
            connection.commit()
    finally:
        connection.close()


def _seed_postgres(
    db_uri: str, experiment_id: str, shape: SeedShape, seed: int, start_ms: int, columns
) -> None:
    """COPY with the child tables' keys, indexes and foreign-key checks off, then the same keys and
    indexes rebuilt under their own names (PostgreSQL's "Populating a Database" recipe): maintaining
    three metrics indexes and a foreign-key trigger per row made the seed ~3x slower (5,000 runs on
    the loaded 2-core machine: 44 s row by row, 15 s so)."""
    import psycopg

    with psycopg.connect(db_uri.replace("postgresql+psycopg://", "postgresql://")) as connection:
        connection.execute("SET synchronous_commit = off")
        connection.execute("SET maintenance_work_mem = '1GB'")
        # The rows reference their run by construction; replica mode skips the per-row FK trigger.
        connection.execute("SET session_replication_role = replica")
        rebuild = _drop_keys_and_indexes(connection, [t for t in columns if t != "runs"])
        connection.commit()
        for batch in _rows(experiment_id, shape, seed, start_ms):
            with connection.cursor() as cursor:
                for table, rows in batch.items():
                    with cursor.copy(f"COPY {table} ({', '.join(columns[table])}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            connection.commit()
        for statement in rebuild:
            connection.execute(statement)
        connection.commit()
        connection.execute("ANALYZE")


def _drop_keys_and_indexes(connection, tables: list[str]) -> list[str]:
    """Drop the tables' primary/unique keys and other indexes; returns the statements that recreate
    them exactly (names and definitions as MLflow's migrations made them)."""
    rebuild = []
    for table in tables:
        keys = connection.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('p', 'u')",
            (table,),
        ).fetchall()
        for name, definition in keys:
            rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        # Listed after the keys are gone: what is left are the plain indexes.
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = %s",
            (table,),
        ).fetchall()
        for name, definition in indexes:
            rebuild.append(definition)
            connection.execute(f'DROP INDEX "{name}"')
    return rebuild
