"""Indexes we add to MLflow's backend store, after its own migrations (`mlops server start`).

MLflow's `runs` table has no index on `experiment_id`: every search of one experiment scans the whole
table and sorts it by start time, even for the first 100 rows the UI's runs page shows. On SQLite at
20,000 runs that query is a table scan plus a temporary B-tree (120 ms; linear in the store, ~0.6 s at
100,000 runs); with `(experiment_id, start_time)` it is an index search that stops after 101 rows
(0.6 ms). On PostgreSQL MLflow's `SELECT DISTINCT` sorts the experiment's runs either way; the index
still keeps an experiment's queries from scanning the other experiments' runs.

What we measured and rejected (benchmarks/scale.py, SQLite, 20,000 runs): `latest_metrics(key,
value)` and `params(key, value)` make SQLite's planner drive MLflow's metric-ordered searches from
those indexes, and find_best_run's query went from 0.35 s to 59 s; at 100,000 runs a covering
`latest_metrics(key, run_uuid, value, is_nan)` took the same query from 1.0 s to over 300 s. So only
the runs index is added.

Rules that keep MLflow's migrations working: our names start with `mlops_` (no MLflow migration
will create or drop them), creation is `IF NOT EXISTS` (idempotent, run at every start), and on
PostgreSQL it is CONCURRENTLY, so a start against a live team database does not block writers.
`mlflow db upgrade` runs before this and still succeeds afterwards (tests/test_store_indexes.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreIndex:
    name: str
    table: str
    columns: tuple[str, ...]


INDEXES = (StoreIndex("mlops_runs_experiment_id_start_time", "runs", ("experiment_id", "start_time")),)
SUPPORTED_DIALECTS = ("sqlite", "postgresql")


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
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")  # CONCURRENTLY needs autocommit
    try:
        with engine.connect() as connection:
            for index in INDEXES:
                table = sa.Table(index.table, sa.MetaData(), *(sa.Column(c) for c in index.columns))
                sa.Index(
                    index.name, *(table.c[c] for c in index.columns), postgresql_concurrently=True
                ).create(connection, checkfirst=True)
    finally:
        engine.dispose()
    return [index.name for index in INDEXES]


def driver_uri(uri: str) -> str:
    # MLflow takes postgresql:// to mean psycopg2; this project installs psycopg (3).
    return (
        uri.replace("postgresql://", "postgresql+psycopg://", 1) if uri.startswith("postgresql://") else uri
    )
