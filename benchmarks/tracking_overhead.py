"""Tracking overhead: our journaled tracker against plain MLflow, in one run against a real local server.

    .venv/bin/python benchmarks/tracking_overhead.py [--tracking-uri URI] [--metrics N] [--steps N]

Prints one table:
(a) metrics/s ACCEPTED by the logging call (what training waits for): `run.log_metrics` vs
    `mlflow.log_metric` (synchronous), `mlflow.log_metric(synchronous=False)` and raw
    `MlflowClient.log_batch` (1,000 metrics a request);
(b) metrics/s DELIVERED end to end (from the first call until the server holds everything);
(c) overhead of logging 5 metrics every step of a synthetic 10 ms training step (a sleep: the CPU
    waits on the device, GIL released), against the same loop without logging.
Without --tracking-uri it starts its own SQLite-backed `mlflow server` in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from mlops_platform.server import throwaway_server_unless


def metric_dicts(count: int, width: int) -> list[dict[str, float]]:
    return [{f"m{k}": i * 0.001 + k for k in range(width)} for i in range(count // width)]


def bench_ours(uri: str, experiment: str, count: int, width: int) -> tuple[float, float]:
    """`width` metrics a call (5: a typical training step; 1: the worst case for per-call cost)."""
    from mlops_platform.tracking import Tracker

    tracker = Tracker(uri, system_metrics_interval=0, replay_on_start=False)
    steps = metric_dicts(count, width)
    with tracker.run(experiment=experiment, run_name=f"ours-{width}-a-call") as run:
        started = time.perf_counter()
        for step, values in enumerate(steps):
            run.log_metrics(values, step=step)
        accepted = time.perf_counter() - started
        if not run.flush(timeout=600):
            raise RuntimeError("delivery did not finish in 600 s")
        delivered = time.perf_counter() - started
    return count / accepted, count / delivered


def bench_fluent(experiment: str, count: int, synchronous: bool) -> tuple[float, float]:
    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"fluent-sync={synchronous}"):
        started = time.perf_counter()
        for i in range(count):
            mlflow.log_metric("m0", i * 0.001, step=i, synchronous=synchronous)
        accepted = time.perf_counter() - started
        if not synchronous:
            mlflow.flush_async_logging()
        delivered = time.perf_counter() - started
    return count / accepted, count / delivered


def bench_log_batch(uri: str, experiment_id: str, count: int) -> float:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id, run_name="raw-log-batch").info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(f"m{i % 5}", i * 0.001, now, i // 5) for i in range(count)]
    started = time.perf_counter()
    for start in range(0, count, 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    elapsed = time.perf_counter() - started
    client.set_terminated(run_id)
    return count / elapsed


def synthetic_step(seconds: float = 0.010) -> None:
    """A training step the CPU waits on (a GPU kernel, a data loader): the thread sleeps, GIL released."""
    time.sleep(seconds)


def bench_overhead(
    uri: str, experiment: str, steps: int, rounds: int = 5, send_interval: float = 1.0
) -> tuple[float, float, float]:
    """Per-step time without and with logging; `send_interval` 3600 defers delivery to the final flush."""
    from mlops_platform.tracking import Tracker

    tracker = Tracker(uri, system_metrics_interval=0, replay_on_start=False, send_interval=send_interval)

    def loop(run) -> float:
        started = time.perf_counter()
        for step in range(steps):
            synthetic_step()
            if run is not None:
                run.log_metrics(
                    {"loss": 1.0 / (step + 1), "acc": 0.5, "lr": 0.01, "grad": 1.0, "t": 2.0}, step
                )
        return (time.perf_counter() - started) / steps

    bare, logged = [], []
    with tracker.run(experiment=experiment, run_name="overhead") as run:
        loop(None)  # warm-up
        for _ in range(rounds):  # interleaved, so drift in machine load hits both alike
            bare.append(loop(None))
            logged.append(loop(run))
        run.flush(timeout=300)
    bare_step, logged_step = statistics.median(bare), statistics.median(logged)
    return bare_step, logged_step, (logged_step - bare_step) / bare_step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--metrics", type=int, default=100_000, help="metrics for ours and raw log_batch")
    parser.add_argument("--sync-calls", type=int, default=100, help="mlflow.log_metric synchronous calls")
    parser.add_argument("--async-calls", type=int, default=1_000, help="synchronous=False calls")
    parser.add_argument("--steps", type=int, default=300, help="synthetic 10 ms steps per round")
    args = parser.parse_args()
    os.environ.setdefault("MLOPS_HOME", tempfile.mkdtemp(prefix="mlops-bench-"))

    with throwaway_server_unless(args.tracking_uri) as uri:
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(uri)  # the plain-MLflow baselines use the fluent API, as users do
        experiment = f"tracking-overhead-{int(time.time())}"
        experiment_id = MlflowClient(uri).create_experiment(experiment)
        print(f"server {uri}; experiment {experiment}", flush=True)

        ours_accepted, ours_delivered = bench_ours(uri, experiment, args.metrics, width=5)
        single_accepted, single_delivered = bench_ours(uri, experiment, args.metrics // 2, width=1)
        sync_accepted, sync_delivered = bench_fluent(experiment, args.sync_calls, synchronous=True)
        async_accepted, async_delivered = bench_fluent(experiment, args.async_calls, synchronous=False)
        raw = bench_log_batch(uri, experiment_id, args.metrics)
        bare_step, logged_step, overhead = bench_overhead(uri, experiment, args.steps)
        deferred_bare, deferred_logged, deferred = bench_overhead(
            uri, experiment, args.steps, send_interval=3600
        )

    rows = [
        ("Tracker run.log_metrics (ours, 5 a call)", ours_accepted, ours_delivered),
        ("Tracker run.log_metrics (ours, 1 a call)", single_accepted, single_delivered),
        ("mlflow.log_metric (synchronous)", sync_accepted, sync_delivered),
        ("mlflow.log_metric(synchronous=False)", async_accepted, async_delivered),
        ("MlflowClient.log_batch (raw, 1000/request)", raw, raw),
    ]
    print()
    print(f"{'(a, b) way of logging':<44} {'accepted/s':>12} {'delivered/s':>12} {'ours/this accepted':>19}")
    for name, accepted, delivered in rows:
        print(f"{name:<44} {accepted:>12,.0f} {delivered:>12,.0f} {ours_accepted / accepted:>18,.1f}x")
    print(f"delivery, ours / raw log_batch: {ours_delivered / raw:.2f}x (target >= 1)")
    print()
    print("(c) synthetic 10 ms training step, 5 metrics logged per step (median of 5 interleaved rounds)")
    print(f"  step without logging: {bare_step * 1000:8.3f} ms")
    print(f"  step with ours:       {logged_step * 1000:8.3f} ms")
    print(f"  overhead of ours:     {overhead * 100:+8.2f} %  (target <= 1%)")
    print(
        f"  same, delivery deferred to the final flush (no server work during the loop): "
        f"{deferred * 100:+.2f} % ({deferred_bare * 1000:.3f} -> {deferred_logged * 1000:.3f} ms)"
    )
    sync_overhead = 5 / sync_accepted / bare_step
    print(f"  mlflow.log_metric sync, 5 calls a step (from (a)): {sync_overhead * 100:+,.0f} %")


if __name__ == "__main__":
    main()
