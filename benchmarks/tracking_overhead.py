"""Tracking overhead: our journaled tracker against plain MLflow, in one run against a real local server.

    .venv/bin/python benchmarks/tracking_overhead.py [--tracking-uri URI] [--metrics N] [--steps N]

Prints one table:
(a) metrics/s ACCEPTED by the logging call (what training waits for): `run.log_metrics` vs
    `mlflow.log_metric` (synchronous), `mlflow.log_metric(synchronous=False)` and raw
    `MlflowClient.log_batch` (1,000 metrics a request);
(b) metrics/s DELIVERED end to end (from the first call until the server holds everything);
(c) overhead of logging 5 metrics every step of a synthetic 10 ms training step (a sleep: the CPU
    waits on the device, GIL released), against the same loop without logging;
(d) latency of one `run.log_metrics` call (p50, p99, max) with the server up and with it unreachable:
    training must not wait on the server (the functional tests check delivery, these figures the wait;
    plain `mlflow.log_metric` against an unreachable server blocks for its HTTP retries, seconds).
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


def bench_call_latency(uri: str, experiment: str, calls: int, kill=None) -> tuple[float, float, float]:
    """p50, p99 and max seconds of one `run.log_metrics` call (3 metrics) against `uri`; `kill`, when
    given, is called once the run is open (the server dies: the records stay in the run's journal)."""
    from mlops_platform.tracking import Tracker

    tracker = Tracker(
        uri, system_metrics_interval=0, replay_on_start=False, send_interval=0.05, close_timeout=1.0
    )
    durations = []
    with tracker.run(experiment=experiment, run_name="call-latency", use_env_run=False) as run:
        if kill is not None:
            kill()
        for step in range(calls):
            started = time.perf_counter()
            run.log_metrics({"loss": 1 / (step + 1), "accuracy": step / calls, "lr": 0.01}, step=step)
            durations.append(time.perf_counter() - started)
            time.sleep(0.003)  # a step's worth of other work, so the sender runs in between
    durations.sort()
    return durations[len(durations) // 2], durations[int(len(durations) * 0.99)], durations[-1]


def bench_call_latency_outage(calls: int) -> tuple[float, float, float]:
    """The same calls to a run whose server is killed (SIGKILL) right after the run starts."""
    from pathlib import Path

    from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port

    with tempfile.TemporaryDirectory(prefix="mlops-outage-") as home:
        server = LocalTrackingServer(ServerConfig(home=Path(home), port=free_port()))
        server.start()
        try:
            return bench_call_latency(server.url, "outage", calls, kill=server.kill)
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--metrics", type=int, default=100_000, help="metrics for ours and raw log_batch")
    parser.add_argument("--sync-calls", type=int, default=100, help="mlflow.log_metric synchronous calls")
    parser.add_argument("--async-calls", type=int, default=1_000, help="synchronous=False calls")
    parser.add_argument("--steps", type=int, default=300, help="synthetic 10 ms steps per round")
    parser.add_argument("--latency-calls", type=int, default=2000, help="calls timed one by one in (d)")
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
        latency_up = bench_call_latency(uri, experiment, args.latency_calls)
    latency_down = bench_call_latency_outage(args.latency_calls)

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
    print()
    print(f"(d) one run.log_metrics call, {args.latency_calls} calls, 3 metrics each")
    print(f"  {'server':<12} {'p50 us':>9} {'p99 us':>9} {'max ms':>9}")
    for name, (p50, p99, worst) in (("up", latency_up), ("unreachable", latency_down)):
        print(f"  {name:<12} {p50 * 1e6:>9.1f} {p99 * 1e6:>9.1f} {worst * 1000:>9.2f}")
    print(f"  unreachable / up, p99: {latency_down[1] / latency_up[1]:.2f}x (target ~1: no waiting)")


if __name__ == "__main__":
    main()
