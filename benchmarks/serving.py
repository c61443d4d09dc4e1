"""Serving benchmark: `mlops serve` against `mlflow models serve`, same machine, model, load and run.

    .venv/bin/python benchmarks/serving.py [--duration 6] [--connections 8] [--kinds sklearn,torch]
    .venv/bin/python benchmarks/serving.py --kinds torch_trained,torch_table,sklearn_table

Kinds `torch_trained` (the torch trainer's model of digits: our models-from-code pyfunc, served on the
native path), `torch_table` and `sklearn_table` (both trainers' models of the wine cellar table, with
strings, booleans and gaps: served through pyfunc) are made by the trainers themselves, in-process.

It starts its own tracking server (LocalTrackingServer in a temporary MLOPS_HOME), registers two models
the way our trainers log them (a StandardScaler + LogisticRegression Pipeline on digits, sklearn
flavor; a torch MLP with standardization inside and softmax out, pytorch flavor) with alias
`champion`, then for each model serves `models:/NAME@champion` with each server in turn (one at a time,
one uvicorn worker each) and drives it with the same closed-loop load: `--connections` keep-alive
HTTP/1.1 connections on loopback, each sending its next request as soon as the previous answer is in,
for `--duration` seconds after a short warm-up. Requests are `dataframe_split` JSON with 1 or 100 rows.
Every answer is checked (status 200, and the same predictions from both servers).

The load generator is a separate process (asyncio, raw sockets, 127.0.0.1 only): it bounds itself by
time and by `--max-requests`, and shares the machine's cores with the server under test, equally for
both servers.

Also measured, per model:
- /ping while one ~10 MiB request is being answered (`--stall`): the longest /ping wait, per server.
- shadow mode (`--shadow`, ours only): a second version registered as `@challenger` and served with
  `--challenger ... --mode shadow`. At a fixed open-loop rate of half the champion-only maximum, the
  champion's p99 with and without the shadow (latency from each request's scheduled send time, so a
  stall is not hidden); at saturation (closed loop), its throughput with the shadow against without,
  and how much shadow work was scored and shed. Both servers run side by side and their cells
  alternate (`--shadow-rounds` pairs, A B B A ...): the ratios are medians of per-pair ratios, each
  with a 90 % bootstrap interval (scipy.stats.bootstrap), so a target inside the machine's noise shows
  as such, and every cell is printed with the load average at its end, the CPU seconds of the
  server and of its shadow worker, and how busy the servers' CPUs were. The champion's own side of
  the shadow is printed as the serving process's CPU per rate cell against champion-only's (paired,
  the worker's apart): the same requests, so any difference is the copies' cost to the champion.
  The shadow cells pin the load generator to a CPU of its own and both servers, with their workers, to
  the others (`--no-shadow-pin` to share them all), and take the champion-only maximum there. Why: with
  the load generator, the server's two threads and the worker on the same two cores, a champion-only
  server's saturated throughput flips between ~3,600 and ~5,700 req/s from cell to cell, so an A/A
  control (`--shadow-control`: the second server champion-only too) read 0.88x [0.70-1.02] with
  identical servers, 12 pairs, torch; pinned, the same control reads p99 0.95x [0.90-1.09] and
  throughput 0.99x [0.97-1.00]. A client on a CPU of its own is also what a server sees in production
  (its clients are elsewhere); the worker then shares the champion's own CPU, the harder case for it.
  `--shadow-worker-cpus spare` puts the shadow worker on the CPUs the servers leave (`mlops serve
  --shadow-cpus`), as on a machine with a CPU to spare; on 2 CPUs that is the load generator's, which
  preempts the worker (SCHED_IDLE) and whose timing any interference counts against the shadow.
  Pinned, the maximum is taken again (2 cells) each time the servers restart, and the pairs that
  follow run at half of it: the machine's speed drifts from minute to minute.
  Both servers are started afresh every `--shadow-restart-every` pairs (default 2): two processes of
  the same server and model differ by a few per cent in throughput for their whole life (memory
  layout, where their threads landed), and at half the maximum rate the server's one CPU is 75-90 %
  busy, where a few per cent more work per request moves the p99 by tens of per cent; with one pair
  of processes for the whole measurement, that luck was in every pair's ratio alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_platform.server import LocalTrackingServer, ServerConfig, free_port

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 180


# Models, logged as the trainers log them.


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True)
    return digits.data, digits.target


def _register(tracking_uri: str, name: str, flavor: str, model, alias: str = "champion", **kwargs) -> None:
    from mlflow import MlflowClient

    from mlops_platform.tracking import Tracker

    tracker = Tracker(
        tracking_uri, home=Path(tempfile.mkdtemp()), system_metrics_interval=0, replay_on_start=False
    )
    with tracker.run(experiment="serving-benchmark", use_env_run=False) as run:
        info = run.log_model(flavor, model, registered_model_name=name, **kwargs)
    MlflowClient(tracking_uri).set_registered_model_alias(name, alias, info.registered_model_version)


def register_sklearn(tracking_uri: str, name: str, alias: str = "champion", c: float = 1.0) -> None:
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _digits()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=300)).fit(x, y)
    _register(
        tracking_uri,
        name,
        "sklearn",
        pipeline,
        alias=alias,
        signature=infer_signature(x, pipeline.predict(x)),
        input_example=x.iloc[:3],
    )


def register_torch(tracking_uri: str, name: str, alias: str = "champion", seed: int = 0) -> None:
    import numpy as np
    import torch

    x, y = _digits()
    features, labels = torch.tensor(x.to_numpy(np.float32)), torch.tensor(y.to_numpy())

    class Standardize(torch.nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, inputs):
            return (inputs - self.mean) / self.std

    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    scale = Standardize(features.mean(0), features.std(0) + 1e-3)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(head(scale(features)), labels).backward()
        optimizer.step()
    module = torch.nn.Sequential(scale, head, torch.nn.Softmax(dim=1)).eval()
    _register(tracking_uri, name, "pytorch", module, alias=alias, input_example=x.to_numpy(np.float32)[:3])


def register_trained(tracking_uri: str, name: str, kind: str, table: Path) -> None:
    """The trainers' own models: `torch_trained` on digits, `torch_table` / `sklearn_table` on `table`."""
    from mlflow import MlflowClient

    from mlops_platform.tracking import Tracker

    tracker = Tracker(
        tracking_uri, home=Path(tempfile.mkdtemp()), system_metrics_interval=0, replay_on_start=False
    )
    data = {"dataset": f"csv:{table}", "target": "cultivar"} if kind.endswith("_table") else {}
    if kind.startswith("torch"):
        from mlops_platform.config.train_torch import TorchTrainConfig
        from mlops_platform.training import torch_job

        config = {"dataset": "digits", "model": "mlp", "epochs": 3, **data, "registered_model_name": name}
        torch_job.run(TorchTrainConfig.parse(config), tracker=tracker)
    else:
        from mlops_platform.config.train_sklearn import TrainSklearnConfig
        from mlops_platform.training import sklearn_job

        config = {"model": "logreg", "cv_folds": 2, "baseline": False, **data, "registered_model_name": name}
        sklearn_job.run(TrainSklearnConfig.parse(config), tracker=tracker)
    MlflowClient(tracking_uri).set_registered_model_alias(name, "champion", "1")


def _table_rows(table: Path, rows: int):
    """`rows` rows of the table, the label left out, gaps included (cycled for more than it has)."""
    import pandas as pd

    frame = pd.read_csv(table).drop(columns=["cultivar"])
    return pd.concat([frame] * (rows // len(frame) + 1), ignore_index=True).iloc[:rows]


def _split_body(frame) -> bytes:
    records = frame.astype(object).where(frame.notna(), None)
    return json.dumps(
        {"dataframe_split": {"columns": list(frame.columns), "data": records.values.tolist()}}
    ).encode()


# Servers.


def start_server(
    kind: str,
    model_uri: str,
    tracking_uri: str,
    port: int,
    log_path: Path,
    *options: str,
    cpus: set[int] | None = None,
) -> subprocess.Popen:
    # `mlflow models serve` execs `uvicorn` by name: the venv's bin must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    if kind == "ours":
        command = [
            sys.executable,
            "-m",
            "mlops_platform",
            "serve",
            "--model-uri",
            model_uri,
            "--port",
            str(port),
            *options,
        ]
    else:
        mlflow = str(Path(sys.executable).with_name("mlflow"))
        command = [
            mlflow,
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-p",
            str(port),
            "-h",
            LOOPBACK,
            "-w",
            "1",
        ]
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds it for its life
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=_pinned_to(cpus),
    )
    import requests

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{kind} server exited:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"http://{LOOPBACK}:{port}/ping", timeout=1).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{kind} server did not start:\n{log_path.read_text()[-3000:]}")


def _pinned_to(cpus: set[int] | None):
    """A child's pre-exec hook that keeps it (and every thread and child it starts) on `cpus`."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def stop_server(process: subprocess.Popen) -> None:
    import signal

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# The load generator (runs in its own process: `serving.py --load ...`).


async def _connection(
    port: int,
    request: bytes,
    stop_at: float,
    warm_until: float,
    latencies: list,
    counters: dict,
    max_requests: int,
) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        while time.monotonic() < stop_at and counters["sent"] < max_requests:
            counters["sent"] += 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            elapsed = time.perf_counter() - start
            if status != 200:
                counters["errors"] += 1
                counters["last_error"] = body[:200].decode(errors="replace")
            elif time.monotonic() >= warm_until:
                latencies.append(elapsed)
    finally:
        writer.close()


async def _drive(
    port: int, body: bytes, connections: int, duration: float, warmup: float, max_requests: int
) -> dict:
    request = (
        f"POST /invocations HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    now = time.monotonic()
    latencies: list[float] = []
    counters = {"sent": 0, "errors": 0, "last_error": ""}
    await asyncio.gather(
        *(
            _connection(
                port, request, now + warmup + duration, now + warmup, latencies, counters, max_requests
            )
            for _ in range(connections)
        )
    )
    latencies.sort()
    measured = min(duration, time.monotonic() - now - warmup)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / measured if measured > 0 else 0.0,
        "p50_ms": 1e3 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else float("nan"),
        "errors": counters["errors"],
        "last_error": counters["last_error"],
    }


async def _drive_rate(
    port: int, body: bytes, rate: float, duration: float, warmup: float, connections: int
) -> dict:
    """Open loop: request i is due at start + i / rate, whatever the answers before it; its latency is
    counted from that due time, so a server that falls behind shows it (no coordinated omission)."""
    request = (
        f"POST /invocations HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    start = time.monotonic() + 0.05
    total = int(rate * (warmup + duration))
    state = {"next": 0, "errors": 0, "last_error": ""}
    latencies: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            while state["next"] < total:
                index = state["next"]
                state["next"] += 1
                due = start + index / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                answer = await reader.readexactly(length)
                if int(head[9:12]) != 200:
                    state["errors"] += 1
                    state["last_error"] = answer[:200].decode(errors="replace")
                elif due >= start + warmup:
                    latencies.append(time.monotonic() - due)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": rate,
        "p50_ms": 1e3 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else float("nan"),
        "errors": state["errors"],
        "last_error": state["last_error"],
        # Every latency (us), for the p99 over all of a server's cells (measure_shadow).
        "latencies_us": [round(1e6 * latency) for latency in latencies],
    }


def run_load(
    port: int, body: bytes, args: argparse.Namespace, rate: float | None = None, cpus: set[int] | None = None
) -> dict:
    """Drive the server from a separate process, so the client's own work is not in ours."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        handle.write(body)
    command = [
        sys.executable,
        __file__,
        "--load",
        str(port),
        handle.name,
        "--connections",
        str(args.connections),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--max-requests",
        str(args.max_requests),
        *(["--rate", str(rate)] if rate else []),
    ]
    try:
        output = subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            preexec_fn=_pinned_to(cpus),
        ).stdout
    finally:
        os.unlink(handle.name)
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before each cell")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=200_000, help="upper bound per cell")
    parser.add_argument("--kinds", default="sklearn,torch")
    parser.add_argument("--rows", default="1,100")
    parser.add_argument("--stall", action="store_true", help="also time /ping during a 10 MiB request")
    parser.add_argument("--shadow", action="store_true", help="also measure ours with a shadow challenger")
    parser.add_argument(
        "--shadow-rounds", type=int, default=3, help="alternating pairs of cells per shadow measurement"
    )
    parser.add_argument(
        "--shadow-max-busy", type=float, default=None, help="the shadow server's --shadow-max-busy"
    )
    parser.add_argument("--shadow-queue", type=int, default=None, help="the shadow server's --shadow-queue")
    parser.add_argument(
        "--shadow-control",
        action="store_true",
        help="A/A control: the second server runs champion-only too (the noise floor of the ratios)",
    )
    parser.add_argument(
        "--shadow-restart-every",
        type=int,
        default=2,
        help="start both servers afresh every N pairs (0: never), so no one process's luck sets the ratios",
    )
    parser.add_argument(
        "--shadow-worker-cpus",
        choices=("server", "spare"),
        default="server",
        help="pinned shadow cells: the shadow worker on the servers' CPUs (default: it shares the "
        "champion's) or on the CPUs the servers leave (`mlops serve --shadow-cpus`; on 2 CPUs, the load "
        "generator's)",
    )
    parser.add_argument(
        "--shadow-pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="shadow cells: the load generator on a CPU of its own, the servers (and their shadow "
        "workers) on the others, and the champion-only maximum measured there (default: on)",
    )
    parser.add_argument("--load", nargs=2, metavar=("PORT", "BODY_FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        body = Path(args.load[1]).read_bytes()
        if args.rate:
            # Enough connections that a slow answer never delays the next due request.
            driven = _drive_rate(int(args.load[0]), body, args.rate, args.duration, args.warmup, 64)
            print(json.dumps(asyncio.run(driven)))
            return
        print(
            json.dumps(
                asyncio.run(
                    _drive(
                        int(args.load[0]),
                        body,
                        args.connections,
                        args.duration,
                        args.warmup,
                        args.max_requests,
                    )
                )
            )
        )
        return

    import requests

    home = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    tracking = LocalTrackingServer(ServerConfig(home=home, port=free_port()))
    tracking_uri = tracking.start()
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    x, _ = _digits()
    results = []
    stalls: dict[tuple[str, str], dict] = {}
    shadows: list[dict] = []
    try:
        table = Path(__file__).resolve().parents[1] / "mlops_platform" / "datasets" / "wine_cellar.csv"
        for kind in args.kinds.split(","):
            name = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
            if kind in ("sklearn", "torch"):
                (register_sklearn if kind == "sklearn" else register_torch)(tracking_uri, name)
            else:
                register_trained(tracking_uri, name, kind, table)
            model_uri = f"models:/{name}@champion"
            bodies = {
                rows: _split_body(_table_rows(table, rows) if kind.endswith("_table") else x.iloc[:rows])
                for rows in map(int, args.rows.split(","))
            }
            answers = {}
            for server in ("mlflow", "ours"):
                port = free_port()
                process = start_server(server, model_uri, tracking_uri, port, home / f"{server}-{kind}.log")
                try:
                    for rows, body in bodies.items():
                        answer = requests.post(
                            f"http://{LOOPBACK}:{port}/invocations",
                            data=body,
                            headers={"Content-Type": "application/json"},
                            timeout=60,
                        )
                        answers[server, rows] = answer.json()["predictions"]
                        cell = run_load(port, body, args)
                        results.append({"model": kind, "rows": rows, "server": server, **cell})
                        print(
                            f"  {kind:8s} {rows:4d} rows  {server:7s} {cell['rps']:9.1f} req/s  "
                            f"p50 {cell['p50_ms']:7.2f} ms  p99 {cell['p99_ms']:7.2f} ms  "
                            f"errors {cell['errors']}",
                            flush=True,
                        )
                    if args.stall:
                        stalls[kind, server] = measure_stall(port, x)
                        print(
                            f"  {kind:8s} /ping during a 10 MiB request  {server:7s} {stalls[kind, server]}"
                        )
                finally:
                    stop_server(process)
            if args.shadow:
                rows = min(bodies)
                champion_max = next(
                    r["rps"] for r in results if (r["model"], r["rows"], r["server"]) == (kind, rows, "ours")
                )
                shadows.append(
                    measure_shadow(kind, name, tracking_uri, home, bodies[rows], champion_max, args)
                )
                print_shadow(shadows[-1:], args)
            import numpy as np

            for rows in bodies:
                ours, theirs = np.asarray(answers["ours", rows]), np.asarray(answers["mlflow", rows])
                if ours.dtype.kind in "fiu":  # probabilities: equal up to float rounding; labels: equal
                    assert np.allclose(ours, theirs, rtol=1e-5, atol=1e-7), (
                        f"{kind} {rows} rows: answers differ"
                    )
                else:
                    assert (ours == theirs).all(), f"{kind} {rows} rows: answers differ"
    finally:
        tracking.stop()
    print_table(results, args)
    if stalls:
        print("\n/ping while one ~10 MiB request is answered (longest /ping wait):")
        print("| model   | mlflow longest ping ms | ours longest ping ms | mlflow / ours big request s |")
        print("|---|---|---|---|")
        for kind in args.kinds.split(","):
            theirs, ours = stalls.get((kind, "mlflow")), stalls.get((kind, "ours"))
            if theirs and ours:
                print(
                    f"| {kind:7s} | {theirs['longest_ping_ms']:8.1f} | {ours['longest_ping_ms']:8.1f} | "
                    f"{theirs['request_s']:.2f} / {ours['request_s']:.2f} |"
                )
    if shadows:
        print_shadow(shadows, args)


def median_interval(ratios: list[float], confidence: float = 0.9) -> tuple[float, float]:
    """A bootstrap interval (scipy.stats, BCa) of the median of the per-pair ratios: whether a target such
    as 1.10x is resolved on this machine, or lies within its cell-to-cell noise."""
    import numpy as np
    from scipy.stats import bootstrap

    if len(ratios) < 3:
        return (float("nan"), float("nan"))
    result = bootstrap(
        (np.asarray(ratios),), np.median, confidence_level=confidence, n_resamples=2000, random_state=0
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def pooled_p99_ratio(pairs: list[tuple[list[int], list[int]]], confidence: float = 0.9) -> dict:
    """The p99 over every request of the shadow server's rate cells against the same over the
    champion-only server's, with a bootstrap interval that resamples whole pairs of cells.

    Why beside the median of per-pair ratios: a cell's p99 is its ~50 slowest requests, so one stall of
    the VM inside a 2 s cell sets that cell's p99 (cells of the same server read 4-30 ms), and a ratio
    of two such numbers is mostly noise; over all of a server's cells the same stall is a small share
    of the requests, and the p99 is what the server's clients saw, with and without the shadow."""
    import numpy as np
    from scipy.stats import bootstrap

    alone = [np.asarray(a, dtype=np.int64) for a, _ in pairs]
    shadow = [np.asarray(s, dtype=np.int64) for _, s in pairs]

    def ratio(indices) -> float:
        chosen = np.asarray(indices, dtype=np.int64)
        return float(
            np.percentile(np.concatenate([shadow[i] for i in chosen]), 99)
            / np.percentile(np.concatenate([alone[i] for i in chosen]), 99)
        )

    everything = np.arange(len(pairs))
    result = {
        "p99_pooled_alone_ms": float(np.percentile(np.concatenate(alone), 99)) / 1e3,
        "p99_pooled_shadow_ms": float(np.percentile(np.concatenate(shadow), 99)) / 1e3,
        "p99_pooled_ratio": ratio(everything),
        "p99_pooled_interval": (float("nan"), float("nan")),
    }
    if len(pairs) >= 3:
        interval = bootstrap(
            (everything,),
            ratio,
            vectorized=False,
            confidence_level=confidence,
            n_resamples=1000,
            method="percentile",
            random_state=0,
        ).confidence_interval
        result["p99_pooled_interval"] = (float(interval.low), float(interval.high))
    return result


def print_shadow(shadows: list[dict], args: argparse.Namespace) -> None:
    print(
        "\nShadow mode (ours, challenger = a second version, 1-row requests; medians of "
        f"{args.shadow_rounds} alternating pairs of cells, ratios taken within each pair; in brackets a 90 % "
        "bootstrap interval of each median ratio):"
    )
    print(
        "| model | rate req/s (half of max, median) | p99 ms champion only | p99 ms with shadow | p99 ratio "
        "| saturated req/s champion only | with shadow | throughput ratio | copies scored / shed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in shadows:
        print(
            f"| {r['model']} | {r['rate']:.0f} | {r['p99_alone_ms']:.2f} | {r['p99_shadow_ms']:.2f} | "
            f"{r['p99_ratio']:.2f}x [{r['p99_ratio_interval'][0]:.2f}-{r['p99_ratio_interval'][1]:.2f}] | "
            f"{r['max_alone']:.0f} | {r['max_shadow']:.0f} | {r['throughput_ratio']:.2f}x "
            f"[{r['throughput_ratio_interval'][0]:.2f}-{r['throughput_ratio_interval'][1]:.2f}] | "
            f"{r['scored']} / {r['shed']} |"
        )
    print("\nEvery cell (load average at its end):")
    print(
        "| model | load | pair | server | req/s | p50 ms | p99 ms | scored / shed | loadavg | "
        "CPU s server / worker | servers' CPUs busy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in shadows:
        for c in r["cells"]:
            print(
                f"| {r['model']} | {c['load']} | {c['pair']} | {c['server']} | {c['rps']:.0f} | "
                f"{c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['scored']} / {c['shed']} | {c['loadavg']:.1f} | "
                f"{c['cpu_server']:.2f} / {c['cpu_worker']:.2f} | {c['cpus_busy']:.0%} |"
            )
    for r in shadows:
        low, high = r["p99_pooled_interval"]
        print(
            f"{r['model']}: p99 over all rate cells of each server (every request pooled): "
            f"{r['p99_pooled_alone_ms']:.2f} ms champion only, {r['p99_pooled_shadow_ms']:.2f} ms with the "
            f"shadow, {r['p99_pooled_ratio']:.2f}x [{low:.2f}-{high:.2f}] (pairs resampled)"
        )
    for r in shadows:
        low, high = r["cpu_ratio_interval"]
        print(
            f"{r['model']}: the shadow server's own CPU per rate cell (its worker apart), against "
            f"champion-only's: {r['cpu_ratio']:.2f}x [{low:.2f}-{high:.2f}]"
        )
    for r in shadows:
        print(
            f"{r['model']}: at the fixed rate the shadow scored {r['scored_at_rate']} of "
            f"{r['copies_at_rate']} copies; {r['processes']} pairs of server processes in all; "
            f"last worker {r['worker']}"
        )


def measure_stall(port: int, x) -> dict:
    """The longest /ping wait while one ~10 MiB dataframe_split request is being answered."""
    import threading

    import requests

    limit = 10 * 1024 * 1024 - 64 * 1024  # just under `mlops serve`'s default 10 MiB body limit
    count = 40_000
    while True:
        frame = x.sample(count, replace=True, random_state=0)
        body = json.dumps({"dataframe_split": frame.to_dict(orient="split")}).encode()
        if len(body) <= limit:
            break
        count = int(count * limit / len(body) * 0.995)
    done = threading.Event()
    outcome: dict = {}

    def big() -> None:
        started = time.perf_counter()
        response = requests.post(
            f"http://{LOOPBACK}:{port}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=300,
        )
        outcome.update(status=response.status_code, request_s=time.perf_counter() - started)
        done.set()

    session = requests.Session()
    thread = threading.Thread(target=big)
    thread.start()
    longest = 0.0
    while not done.is_set():
        started = time.perf_counter()
        session.get(f"http://{LOOPBACK}:{port}/ping", timeout=300)
        longest = max(longest, time.perf_counter() - started)
        time.sleep(0.005)
    thread.join()
    return {"longest_ping_ms": 1e3 * longest, "bytes": len(body), **outcome}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by a server process and by its children (the shadow
    worker)."""
    import psutil

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return times.user + times.system

    server = psutil.Process(pid)
    return used(server), sum(used(child) for child in server.children(recursive=True))


def cpu_busy_seconds(cpus: set[int] | None) -> float:
    """Non-idle seconds of `cpus` (all when None) so far: over a cell, how busy the servers' CPUs were,
    the shadow worker's scoring and the kernel's work for the servers included."""
    import psutil

    def busy(times) -> float:
        # Linux counts guest time inside user time too; iowait is idle time.
        not_busy = ("idle", "iowait", "guest", "guest_nice")
        return sum(times) - sum(getattr(times, field, 0.0) for field in not_busy)

    per_cpu = psutil.cpu_times(percpu=True)
    return sum(busy(per_cpu[i]) for i in (range(len(per_cpu)) if cpus is None else sorted(cpus)))


def measure_shadow(
    kind: str, name: str, tracking_uri: str, home: Path, body: bytes, champion_max: float, args
) -> dict:
    """Champion p99 at half its max rate without and with a shadow challenger; saturated throughput.

    Both servers run side by side (an idle one costs nothing) and their cells alternate, A B B A A B
    ..., `--shadow-rounds` pairs of each kind: on a shared machine the load drifts from one minute to
    the next, and a ratio taken within each adjacent pair, then the median over the pairs, keeps that
    drift from passing for the shadow's cost (or hiding it)."""
    import statistics

    import requests

    (register_sklearn if kind == "sklearn" else register_torch)(
        tracking_uri, name, "challenger", **({"c": 0.5} if kind == "sklearn" else {"seed": 1})
    )
    rate = champion_max / 2
    shadow_options = (
        "--challenger", f"models:/{name}@challenger", "--mode", "shadow",
        *(("--shadow-max-busy", str(args.shadow_max_busy)) if args.shadow_max_busy else ()),
        *(("--shadow-queue", str(args.shadow_queue)) if args.shadow_queue else ()),
    )  # fmt: skip
    if args.shadow_control:
        shadow_options = ()
    server_cpus = client_cpus = None
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.shadow_pin and len(cpus) > 1
    if pinned:
        server_cpus, client_cpus = set(cpus[:-1]), {cpus[-1]}
        if args.shadow_worker_cpus == "spare" and not args.shadow_control:
            shadow_options += ("--shadow-cpus", ",".join(map(str, sorted(client_cpus))))
    servers: dict[str, tuple[int, subprocess.Popen]] = {}
    cells: list[dict] = []

    def restart_servers(generation: int) -> None:
        """Both servers as fresh processes (the order they start in alternates too)."""
        for _, process in servers.values():
            stop_server(process)
        servers.clear()
        labels = [("alone", ()), ("shadow", shadow_options)]
        for label, options in labels if generation % 2 == 0 else labels[::-1]:
            port = free_port()
            log = home / f"shadow-{label}-{kind}-{generation}.log"
            servers[label] = (
                port,
                start_server(
                    "ours", f"models:/{name}@champion", tracking_uri, port, log, *options, cpus=server_cpus
                ),
            )

    def shadow_counts() -> tuple[int, int]:
        health = requests.get(f"http://{LOOPBACK}:{servers['shadow'][0]}/health", timeout=10).json()
        shadow = health.get("shadow", {})
        return shadow.get("scored", 0), shadow.get("shed", 0)

    generation = 0
    try:
        restart_servers(generation)
        if pinned:  # the maximum on the servers' own CPUs
            maxima = [run_load(servers["alone"][0], body, args, cpus=client_cpus)["rps"] for _ in range(3)]
            rate = statistics.median(maxima) / 2
            print(f"  {kind:8s} champion-only maximum on CPUs {sorted(server_cpus)}: {maxima} req/s")
        rates = []
        for load, cell_rate in (("rate", rate), ("saturated", None)):
            for index in range(args.shadow_rounds):
                if index and args.shadow_restart_every and index % args.shadow_restart_every == 0:
                    generation += 1
                    restart_servers(generation)
                    if pinned and load == "rate":
                        # Half the maximum of the moment: this machine's speed drifts by a third from
                        # one minute to the next, and a rate taken once can overload a slower minute.
                        maxima = [
                            run_load(servers["alone"][0], body, args, cpus=client_cpus)["rps"]
                            for _ in range(2)
                        ]
                        cell_rate = statistics.median(maxima) / 2
                        print(f"  {kind:8s} champion-only maximum now: {maxima} req/s")
                if load == "rate":
                    rates.append(cell_rate)
                order = ("alone", "shadow") if index % 2 == 0 else ("shadow", "alone")
                for label in order:
                    before, cpu_before = shadow_counts(), cpu_seconds(servers[label][1].pid)
                    busy_before, started = cpu_busy_seconds(server_cpus), time.monotonic()
                    cell = run_load(servers[label][0], body, args, rate=cell_rate, cpus=client_cpus)
                    busy = (cpu_busy_seconds(server_cpus) - busy_before) / (time.monotonic() - started)
                    assert cell["errors"] == 0, cell["last_error"]
                    after, cpu_after = shadow_counts(), cpu_seconds(servers[label][1].pid)
                    cells.append(
                        {
                            "load": load,
                            "pair": index,
                            "server": label,
                            "processes": generation,
                            "rps": cell["rps"],
                            "p50_ms": cell["p50_ms"],
                            "p99_ms": cell["p99_ms"],
                            "scored": after[0] - before[0],
                            "shed": after[1] - before[1],
                            "loadavg": os.getloadavg()[0],
                            # CPU seconds over the cell (warm-up included): server, shadow worker
                            "cpu_server": cpu_after[0] - cpu_before[0],
                            "cpu_worker": cpu_after[1] - cpu_before[1],
                            # the servers' CPUs' busy share over the cell (per CPU, warm-up included)
                            "cpus_busy": busy / (len(server_cpus) if server_cpus else os.cpu_count()),
                            "latencies_us": cell.get("latencies_us"),
                        }
                    )
                    print(
                        f"  {kind:8s} shadow {load:9s} pair {index} {label:6s} {cell['rps']:8.0f} req/s  "
                        f"p50 {cell['p50_ms']:6.2f} ms  p99 {cell['p99_ms']:6.2f} ms  scored/shed "
                        f"{cells[-1]['scored']}/{cells[-1]['shed']}  load {cells[-1]['loadavg']:.1f}  "
                        f"cpu s server/worker {cells[-1]['cpu_server']:.2f}/{cells[-1]['cpu_worker']:.2f}  "
                        f"busy {cells[-1]['cpus_busy']:.0%}",
                        flush=True,
                    )
        worker = requests.get(f"http://{LOOPBACK}:{servers['shadow'][0]}/health", timeout=10).json()
    finally:
        for _, process in servers.values():
            stop_server(process)

    def pairs(load: str, field: str) -> list[tuple[float, float]]:
        of = {(c["pair"], c["server"]): c[field] for c in cells if c["load"] == load}
        return [(of[i, "alone"], of[i, "shadow"]) for i in range(args.shadow_rounds)]

    p99, rps = pairs("rate", "p99_ms"), pairs("saturated", "rps")
    p99_ratios, rps_ratios = [s / a for a, s in p99], [s / a for a, s in rps]
    # The champion's side of the shadow: the serving process's own CPU (its worker apart) for the same
    # requests at the fixed rate.
    cpu_ratios = [s / a for a, s in pairs("rate", "cpu_server")]
    pooled = pooled_p99_ratio(pairs("rate", "latencies_us"))
    for c in cells:
        c.pop("latencies_us")
    return {
        "model": kind,
        "rate": statistics.median(rates),
        "cells": cells,
        "p99_alone_ms": statistics.median(a for a, _ in p99),
        "p99_shadow_ms": statistics.median(s for _, s in p99),
        "p99_ratio": statistics.median(p99_ratios),
        "p99_ratio_interval": median_interval(p99_ratios),
        **pooled,
        "max_alone": statistics.median(a for a, _ in rps),
        "max_shadow": statistics.median(s for _, s in rps),
        "throughput_ratio": statistics.median(rps_ratios),
        "throughput_ratio_interval": median_interval(rps_ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
        "cpu_ratio_interval": median_interval(cpu_ratios),
        "scored": sum(c["scored"] for c in cells),
        "shed": sum(c["shed"] for c in cells),
        "scored_at_rate": sum(c["scored"] for c in cells if c["load"] == "rate"),
        "copies_at_rate": sum(c["scored"] + c["shed"] for c in cells if c["load"] == "rate"),
        "worker": worker.get("shadow", {}).get("worker"),
        "processes": generation + 1,
    }


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    print(
        f"\nServing benchmark: {args.connections} connections, {args.duration:g} s per cell, 1 worker each, "
        f"{os.cpu_count()} CPUs (shared with the load generator)"
    )
    header = (
        "| model   | rows | mlflow req/s | ours req/s | ratio | mlflow p50 / p99 ms | "
        "ours p50 / p99 ms | errors |"
    )
    print(header)
    print("|" + "|".join("-" * (len(part)) for part in header.split("|")[1:-1]) + "|")
    by_key = {(r["model"], r["rows"], r["server"]): r for r in results}
    for model, rows in dict.fromkeys((r["model"], r["rows"]) for r in results):
        theirs, ours = by_key[model, rows, "mlflow"], by_key[model, rows, "ours"]
        ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else float("inf")
        print(
            f"| {model:13s} | {rows:4d} | {theirs['rps']:12.1f} | {ours['rps']:10.1f} | {ratio:5.1f}x | "
            f"{theirs['p50_ms']:8.2f} / {theirs['p99_ms']:8.2f} | "
            f"{ours['p50_ms']:7.2f} / {ours['p99_ms']:7.2f} | "
            f"{theirs['errors'] + ours['errors']:6d} |"
        )


if __name__ == "__main__":
    main()
