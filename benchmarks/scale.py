"""Benchmark: one experiment of 100,000 runs (20 million metric rows), ours vs the plain-MLflow way.

    nice -n 10 .venv/bin/python benchmarks/scale.py --runs 100000 [--backends sqlite,postgresql]

Per backend: a fresh store migrated by `mlflow db upgrade`, a stock `mlflow server` over it
(LocalTrackingServer), the runs seeded straight into MLflow's tables (benchmarks/scale_seed.py; every
backend's store at once, one process each) plus five real runs with logged models through the
server; then, one backend after the other, first with MLflow's indexes only and then with ours added
(store_indexes.ensure_indexes, what `mlops server start` does):

- store size and the metrics table's index sizes;
- the UI's runs page until the newest run's name shows, in headless chromium (Playwright), and its
  runs/search request (the server's share of that);
- top-50 by val_acc with a param filter: MLflow's plain query (60 s cap) vs `top_runs`;
- promote_best into a fresh registered model, and again into a model whose champion nothing beats;
- export: `mlflow.search_runs(...)` to a DataFrame vs `export_runs` through the server, both on the
  same first `--plain-export-runs` runs (the plain way at 100,000 runs takes longer than this whole
  benchmark may), and `export_runs` of every run straight from the backend store (parquet, csv);
- find_best_run alone (promote_best's ranking query, the part that grows with the runs);
- tracker delivery (benchmarks/tracking_overhead.bench_ours) into the big store, vs raw log_batch
  (1,000 metrics a request) into the same store (SCALE_TRACKER_METRICS metrics, default 50,000).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_seed import SeedShape, seed

from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port

POSTGRES_ADMIN_URL = os.environ.get(
    "MLOPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "600")
CHROMIUM = "/usr/bin/chromium"
PLAIN_CAP_S = 60
TRACKER_METRICS = int(os.environ.get("SCALE_TRACKER_METRICS", "50000"))


def timed(function: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def sizes(db_uri: str) -> tuple[int, dict[str, int]]:
    """Store bytes, and bytes of each index on the metrics table."""
    import sqlalchemy as sa

    from mlops_platform.store_indexes import driver_uri

    engine = sa.create_engine(driver_uri(db_uri))
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            total = Path(db_uri.removeprefix("sqlite:///")).stat().st_size
            names = [
                row[0]
                for row in connection.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'metrics'"
                )
            ]
            indexes = {
                name: connection.exec_driver_sql(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name = ?", (name,)
                ).scalar()
                for name in names
            }
        else:
            total = connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
            indexes = dict(
                connection.exec_driver_sql(
                    "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                    "WHERE relname = 'metrics'"
                ).all()
            )
    engine.dispose()
    return total, indexes


def drop_our_indexes(db_uri: str) -> None:
    import sqlalchemy as sa

    from mlops_platform.store_indexes import INDEXES, driver_uri

    engine = sa.create_engine(driver_uri(db_uri), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for index in INDEXES:
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
    engine.dispose()


def ui_first_rows(url: str, text: str) -> tuple[float, float]:
    """Seconds from opening the runs page until `text` (the newest run's name) is visible, and the
    longest of the page's runs/search requests (the server's part; the rest is the browser's)."""
    from playwright.sync_api import sync_playwright

    from mlops_platform.settings import experiment_ui_url

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    experiment_id = url.rsplit("|", 1)[1]
    base = url.rsplit("|", 1)[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            searches: list[float] = []
            page.on(
                "requestfinished",
                lambda request: (
                    "runs/search" in request.url and searches.append(request.timing["responseEnd"] / 1000)
                ),
            )
            # Load the app once so its static files are cached: what is timed is the runs page.
            page.goto(base, wait_until="load", timeout=180_000)
            started = time.perf_counter()
            page.goto(experiment_ui_url(base, experiment_id), wait_until="domcontentloaded")
            page.get_by_text(text, exact=True).first.wait_for(timeout=180_000)
            shown = time.perf_counter() - started
            return shown, max(searches, default=float("nan"))
        finally:
            browser.close()


def plain_top50(url: str, experiment_id: str) -> float | None:
    """MLflow's plain top-50 by metric with a param filter over REST; None when over PLAIN_CAP_S."""
    import requests

    body = {"experiment_ids": [experiment_id], "filter": "params.model = 'cnn'",
            "order_by": ["metrics.val_acc DESC"], "max_results": 50}  # fmt: skip
    started = time.perf_counter()
    try:
        response = requests.post(f"{url}/api/2.0/mlflow/runs/search", json=body, timeout=PLAIN_CAP_S)
        response.raise_for_status()
    except requests.Timeout:
        return None
    return time.perf_counter() - started


@dataclass
class Store:
    """One backend's fresh store, its stock server, and the experiment the runs are seeded into."""

    backend: str
    home: Path
    db_uri: str
    database: str | None
    server: LocalTrackingServer
    experiment_id: str = ""


def open_store(backend: str) -> Store:
    import sqlalchemy as sa
    from mlflow import MlflowClient

    home = Path(tempfile.mkdtemp(prefix=f"scale-{backend}-"))
    database = None
    if backend == "postgresql":
        database = f"mlops_scale_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        db_uri = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    else:
        db_uri = f"sqlite:///{home / 'mlflow.db'}"
    server = LocalTrackingServer(ServerConfig(home=home, backend_store_uri=db_uri, port=free_port()))
    store = Store(backend, home, db_uri, database, server)
    server.start()  # migrates the store (`mlflow db upgrade`) first
    store.experiment_id = MlflowClient(server.url).create_experiment(f"scale-{backend}")
    return store


def close_store(store: Store) -> None:
    import shutil

    import sqlalchemy as sa

    store.server.stop()
    if store.database:
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{store.database}" WITH (FORCE)'))
        admin.dispose()
    shutil.rmtree(store.home, ignore_errors=True)


def seed_all(stores: list[Store], runs: int) -> tuple[dict[str, float], float]:
    """Seed every store at once, one process each (the SQLite seed is this process's CPU, the
    PostgreSQL one mostly the server's COPY and index builds, so they overlap well on 2 cores);
    returns each store's seconds and the wall time."""
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    with ProcessPoolExecutor(len(stores)) as pool:
        futures = {
            store.backend: pool.submit(seed, store.db_uri, store.experiment_id, SeedShape(runs))
            for store in stores
        }
        seconds = {backend: future.result() for backend, future in futures.items()}
    return seconds, time.perf_counter() - started


def bench_backend(
    store: Store, runs: int, plain_runs: int, ui: bool, seed_seconds: float
) -> list[tuple[str, str, str, str]]:
    import mlflow
    from mlflow import MlflowClient
    from search_promote import top_runs as real_runs
    from tracking_overhead import bench_log_batch, bench_ours

    from mlops_platform.registry import find_best_run, promote_best, top_runs
    from mlops_platform.registry.export import export_runs
    from mlops_platform.store_indexes import ensure_indexes

    backend, home, db_uri, server, experiment_id = (
        store.backend, store.home, store.db_uri, store.server, store.experiment_id
    )  # fmt: skip
    os.environ["MLOPS_HOME"] = str(home / "mlops-home")
    rows: list[tuple[str, str, str, str]] = []

    def row(what: str, ours: str, plain: str = "", note: str = "") -> None:
        rows.append((backend, what, ours, plain + (f" ({note})" if note else "")))
        print(f"[{backend}] {what}: {ours} | {plain} {note}", file=sys.stderr, flush=True)

    uri = server.url
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    shape = SeedShape(runs)
    seconds = seed_seconds
    labels = real_runs(uri, experiment_id)
    row("seed", f"{runs:,} runs, {shape.metric_rows:,} metric rows in {seconds:.0f} s")
    total, indexes = sizes(db_uri)
    row("store size", f"{total / 2**30:.2f} GiB")
    row(
        "metrics table indexes",
        ", ".join(f"{n} {b / 2**20:,.0f} MiB" for n, b in sorted(indexes.items())),
    )
    newest = "third"  # the last real run: the newest, first on the runs page

    # --- MLflow's indexes only: the plain ways --------------------------------------------------
    drop_our_indexes(db_uri)
    stock_ui = ui_first_rows(f"{uri}|{experiment_id}", newest) if ui else None
    plain_top = plain_top50(uri, experiment_id)
    if plain_top is None:  # the cut-off query still holds a worker and a core: restart the server
        server.stop()
        server.start()
    ensure_indexes(db_uri)

    # --- with our index ------------------------------------------------------------------------
    ours_ui = ui_first_rows(f"{uri}|{experiment_id}", newest) if ui else None
    if ui:
        row(
            "UI runs page, first rows (chromium); its runs/search request",
            f"{ours_ui[0]:.2f} s; {ours_ui[1]:.2f} s",
            f"{stock_ui[0]:.2f} s; {stock_ui[1]:.2f} s",
            "MLflow's indexes",
        )
    top_s, top = timed(
        lambda: top_runs(experiment_id, "val_acc", 50, "max", "params.model = 'cnn'", tracking_uri=uri), 3
    )
    plain_text = f"{plain_top:.2f} s" if plain_top else f"> {PLAIN_CAP_S} s (cut off)"
    row("top-50 by val_acc, param filter", f"{top_s:.2f} s ({len(top)} runs)", plain_text, "plain query")
    names = iter(f"scale-{backend}-{i}-{uuid.uuid4().hex[:6]}" for i in range(3))
    promote_s, decision = timed(
        lambda: promote_best(experiment_id, "val_acc", next(names), "max", tracking_uri=uri), 3
    )
    row("promote_best (registers, promotes)", f"{promote_s:.2f} s -> {labels.get(decision.run_id)}")
    # The everyday case: the model has a champion and nothing new beats it (one narrow search).
    kept_name = f"scale-{backend}-kept-{uuid.uuid4().hex[:6]}"
    promote_best(experiment_id, "val_acc", kept_name, "max", tracking_uri=uri)
    again_s, again = timed(
        lambda: promote_best(experiment_id, "val_acc", kept_name, "max", tracking_uri=uri), 3
    )
    row("promote_best again, champion in place", f"{again_s:.2f} s -> promoted={again.promoted}")
    # Its ranking query alone: the part that grows with the experiment (the rest is registry calls).
    best_s, best = timed(lambda: find_best_run(experiment_id, "val_acc", "max", tracking_uri=uri), 3)
    row("find_best_run (promote_best's ranking)", f"{best_s:.2f} s -> {labels.get(best.run_id)}")

    # The first `plain_runs` runs by start time: same subset for the plain way and ours via server.
    start_ms = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"], max_results=1)[
        0
    ].info.start_time
    subset = f"attributes.start_time < {start_ms + plain_runs * 10}"
    plain_s, frame = timed(lambda: mlflow.search_runs([experiment_id], subset))
    out = home / "export"
    server_s, _ = timed(
        lambda: export_runs(experiment_id, out / "server.parquet", filter_string=subset, tracking_uri=uri)
    )
    row(f"export {len(frame):,} runs through the server", f"{server_s:.1f} s",
        f"mlflow.search_runs {plain_s:.1f} s", f"{plain_s / server_s:.1f}x; "
        f"{runs:,} runs at this rate: ours {server_s * runs / len(frame):.0f} s, plain "
        f"{plain_s * runs / len(frame):.0f} s")  # fmt: skip
    del frame
    for fmt in ("parquet", "csv"):
        store_s, result = timed(
            lambda f=fmt: export_runs(
                experiment_id, out / f"all.{f}", tracking_uri=uri, backend_store_uri=db_uri
            )
        )
        size = (out / f"all.{fmt}").stat().st_size
        shape_text = f"{result.runs:,} runs x {len(result.columns)} columns, {size / 2**20:.0f} MiB"
        row(f"export all runs from the store, {fmt}", f"{store_s:.1f} s, {shape_text}")
    _accepted, delivered = bench_ours(uri, f"scale-tracker-{backend}", TRACKER_METRICS, width=5)
    raw = bench_log_batch(uri, experiment_id, TRACKER_METRICS)
    row("tracker, metrics delivered end to end", f"{delivered:,.0f} /s", f"raw log_batch {raw:,.0f} /s",
        f"{delivered / raw:.2f}x")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--plain-export-runs", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-ui", action="store_true", help="skip the chromium measurement")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    stores: list[Store] = []
    try:
        for backend in args.backends.split(","):
            stores.append(open_store(backend.strip()))
        seconds, seed_wall = seed_all(stores, args.runs)
        rows.append(("all", "seed, every store at once", f"{seed_wall:.0f} s wall", ""))
        for store in stores:
            rows += bench_backend(
                store, args.runs, min(args.plain_export_runs, args.runs), not args.no_ui,
                seconds[store.backend],
            )  # fmt: skip
    finally:
        for store in stores:
            close_store(store)
    print(f"\n{args.runs:,} runs per experiment; {time.perf_counter() - started:.0f} s in all; "
          f"load average {os.getloadavg()}\n")  # fmt: skip
    print("| backend | what | ours | the plain-MLflow way |\n|---|---|---|---|")
    for backend, what, ours, plain in rows:
        print(f"| {backend} | {what} | {ours} | {plain} |")


if __name__ == "__main__":
    main()
