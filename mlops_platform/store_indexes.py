"""Indexes we add to MLflow's backend store, after its own migrations (`mlops server start`).

MLflow's `runs` table has no index on `experiment_id`: every search of one experiment scans the whole
table and sorts it by start time, even for the first 100 rows the UI's runs page shows. On SQLite at
20,000 runs that query is a table scan plus a temporary B-tree (120 ms; linear in the store, ~0.6 s at
100,000 runs); with `(experiment_id, start_time)` it is an index search that stops after 101 rows
(0.6 ms). On PostgreSQL MLflow's `SELECT DISTINCT` sorts the experiment's runs either way; the index
still keeps an experiment's queries from scanning the other experiments' runs.

On PostgreSQL only, `latest_metrics(key, value)`: promote_best's searches for the runs that reach
the champion's value (`metrics.m >= v`, registry/promote.py) find those few rows through it, where
without it PostgreSQL reads all of the metric's rows and sorts every run of the experiment first
(100,000 runs, load average 7 on the 2 cores: 2.2 s without, 0.14 s with; MLflow's full metric-ordered
query and the runs page's query keep their plans).

What we measured and rejected (benchmarks/scale.py, SQLite, 20,000 runs): `latest_metrics(key,
value)` and `params(key, value)` make SQLite's planner drive MLflow's metric-ordered searches from
those indexes, and find_best_run's query went from 0.35 s to 59 s; at 100,000 runs a covering
`latest_metrics(key, run_uuid, value, is_nan)` took the same query from 1.0 s to over 300 s. So
SQLite gets only the runs index. On PostgreSQL, an index with exactly the keys of the runs page's
`SELECT DISTINCT ... ORDER BY CASE ..., start_time DESC, run_uuid` query (every runs column) made that
query an index-only scan (0.22-0.30 s to 2 ms at 100,000 runs), but the page in chromium took the same
3.2-3.4 s with and without it (its ten concurrent requests, not this query, set the time), and
PostgreSQL refuses index entries over 2,704 bytes: a run with long multi-byte names could not have
been written while it existed. Refused: a run must never be lost to an index.

Rules that keep MLflow's migrations working: our names start with `mlops_` (no MLflow migration
will create or drop them), creation is `IF NOT EXISTS` (idempotent, run at every start), and on
PostgreSQL it is CONCURRENTLY, so a start against a live team database does not block writers.
`mlflow db upgrade` runs before this and still succeeds afterwards (tests/test_store_indexes.py).
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StoreIndex:
    name: str
    table: str
    columns: tuple[str, ...]  # column names or SQL key expressions
    dialects: tuple[str, ...] = SUPPORTED_DIALECTS


INDEXES = (
    StoreIndex("mlops_runs_experiment_id_start_time", "runs", ("experiment_id", "start_time")),
    StoreIndex("mlops_latest_metrics_key_value", "latest_metrics", ("key", "value"), ("postgresql",)),
)


def indexes_for(dialect: str) -> tuple[StoreIndex, ...]:
    return tuple(index for index in INDEXES if dialect in index.dialects)


def ensure_indexes(backend_store_uri: str) -> list[str]:
    """Create our indexes on a migrated MLflow store if they are missing; returns their names.

    Stores we do not index (file stores, MySQL, MSSQL) are left alone and return [].
    """
    import sqlalchemy as sa

    if "://" not in backend_store_uri:
        return []
    url = sa.engine.make_url(driver_uri(backend_store_uri))
    if url.get_backend_name() not in SUPPORTED_DIALECTS:
        return []
    wanted = indexes_for(url.get_backend_name())
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")  # CONCURRENTLY needs autocommit
    try:
        with engine.connect() as connection:
            for index in wanted:
                if url.get_backend_name() == "postgresql":
                    drop_if_invalid(connection, index.name)
                concurrently = " CONCURRENTLY" if url.get_backend_name() == "postgresql" else ""
                connection.exec_driver_sql(
                    f"CREATE INDEX{concurrently} IF NOT EXISTS {index.name} "
                    f"ON {index.table} ({', '.join(index.columns)})"
                )
    finally:
        engine.dispose()
    return [index.name for index in wanted]


def drop_if_invalid(connection, name: str) -> None:
    """Drop an index that a CREATE INDEX CONCURRENTLY left invalid (it failed or was cut off): it
    exists, so IF NOT EXISTS would skip it forever, yet the planner never uses it."""
    invalid = connection.exec_driver_sql(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = %(name)s AND c.relnamespace = current_schema()::regnamespace "
        "AND NOT i.indisvalid",
        {"name": name},
    ).first()
    if invalid:
        connection.exec_driver_sql(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


def driver_uri(uri: str) -> str:
    # MLflow takes postgresql:// to mean psycopg2; this project installs psycopg (3).
    return (
        uri.replace("postgresql://", "postgresql+psycopg://", 1) if uri.startswith("postgresql://") else uri
    )
