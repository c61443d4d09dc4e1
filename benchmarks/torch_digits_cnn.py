"""Digits with the default CNN: test accuracy and wall time of the flagship run, against a real server.

    .venv/bin/python benchmarks/torch_digits_cnn.py [--tracking-uri URI] [--seeds 0,1,2] [--no-mlflow-run]

Rows:
- `mlflow run .` : the `main` entry point with its defaults (digits, cnn), exactly as a user runs it
                   (`--env-manager local`); wall time from the command's start to its exit, so Python
                   start-up, imports, data, training, artifacts and model logging are all in it;
- job seed=N     : the same job in this process (`torch_job.run`) for further seeds, to show the
                   accuracy does not hinge on one lucky split or initialisation;
- mlp seed=0     : the MLP on the same split, for scale.
`train s` is the sum of the run's `epoch_seconds`. Goal: test_accuracy >= 0.985, wall < 120 s.
Without --tracking-uri a SQLite-backed server is started in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_platform.server import throwaway_server_unless

REPO = Path(__file__).resolve().parents[1]
ACCURACY_GOAL = 0.985
WALL_GOAL_SECONDS = 120.0


def summary(client, run_id: str) -> dict:
    run = client.get_run(run_id)
    train_seconds = sum(metric.value for metric in client.get_metric_history(run_id, "epoch_seconds"))
    return {
        "test_accuracy": run.data.metrics["test_accuracy"],
        "best_epoch": int(run.data.metrics["best_epoch"]),
        "epochs": len(client.get_metric_history(run_id, "val_loss")),
        "train_s": train_seconds,
    }


def mlflow_run_defaults(uri: str, experiment: str, home: Path) -> tuple[str, float]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": uri,
        "MLOPS_HOME": str(home),
    }
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(REPO),
            "--env-manager",
            "local",
            "--experiment-name",
            experiment,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"mlflow run failed:\n{result.stderr[-3000:]}")
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    [run] = client.search_runs([experiment_id], filter_string="tags.`mlflow.project.entryPoint` = 'main'")
    return run.info.run_id, wall


def in_process(uri: str, experiment: str, **values) -> tuple[str, float]:
    from mlops_platform.config.train_torch import TorchTrainConfig
    from mlops_platform.tracking import Tracker
    from mlops_platform.training import torch_job

    started = time.perf_counter()
    run_id = torch_job.run(TorchTrainConfig.parse({"experiment": experiment, **values}), tracker=Tracker(uri))
    return run_id, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--seeds", default="1,2", help="extra seeds run in this process")
    parser.add_argument("--no-mlflow-run", action="store_true", help="skip the `mlflow run .` row")
    args = parser.parse_args()
    with throwaway_server_unless(args.tracking_uri) as uri, tempfile.TemporaryDirectory() as home:
        os.environ["MLOPS_HOME"] = home
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        experiment = f"torch-digits-cnn-{int(time.time())}"
        client.create_experiment(experiment)
        print(f"tracking server: {uri}; experiment {experiment}; {os.cpu_count()} CPUs")
        rows = []
        if not args.no_mlflow_run:
            run_id, wall = mlflow_run_defaults(uri, experiment, Path(home))
            rows.append(("mlflow run . (defaults)", wall, summary(client, run_id)))
        for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
            run_id, wall = in_process(uri, experiment, seed=seed)
            rows.append((f"job cnn seed={seed}", wall, summary(client, run_id)))
        run_id, wall = in_process(uri, experiment, model="mlp", seed=0)
        rows.append(("job mlp seed=0", wall, summary(client, run_id)))
        print(f"\n{'run':<24} {'test_acc':>8} {'best_ep':>7} {'epochs':>6} {'train s':>8} {'wall s':>7}")
        for label, wall, s in rows:
            print(
                f"{label:<24} {s['test_accuracy']:>8.4f} {s['best_epoch']:>7d} {s['epochs']:>6d} "
                f"{s['train_s']:>8.1f} {wall:>7.1f}"
            )
        cnn = [(wall, s) for label, wall, s in rows if "cnn" in label or "defaults" in label]
        worst_accuracy = min(s["test_accuracy"] for _, s in cnn)
        slowest = max(wall for wall, _ in cnn)
        print(
            f"\ncnn: worst test_accuracy {worst_accuracy:.4f} (goal >= {ACCURACY_GOAL}: "
            f"{'met' if worst_accuracy >= ACCURACY_GOAL else 'NOT met'}); slowest wall {slowest:.1f}s "
            f"(goal < {WALL_GOAL_SECONDS:.0f}s: {'met' if slowest < WALL_GOAL_SECONDS else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
