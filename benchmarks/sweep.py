"""Sweeps: trials per hour with 1 and 2 workers on one study, and what pruning saves on the torch CNN.

    .venv/bin/python benchmarks/sweep.py [--tracking-uri URI] [--trials 6] [--cnn-trials 12] [--cnn-epochs 8]

Part 1 (throughput): the same budget of `--trials` MLP trials (wine, `--mlp-epochs` epochs), run by
`mlops sweep run` alone, then by `mlops sweep run` plus one `mlops sweep worker` on the same study. Wall
time runs from the first command's start to the last process's exit (start-up, imports, model logging
included). Ratio = trials/hour with 2 workers over 1 worker; on an idle machine with >= 2 free cores it
approaches 2, on a busy one it shows how much a second worker still buys.

Part 2 (pruning): the digits CNN (channels 8,16), `--cnn-trials` trials of up to `--cnn-epochs` epochs,
with no pruner, the median pruner and the hyperband pruner. All three use the random sampler with the
same seed, so they draw the same trials and differ only in what the pruner stops. Total epochs = epochs
trained over all trials; best = the best validation macro F1. Target: pruning trains >= 40 % fewer
epochs with a best score within 0.005 of the unpruned sweep. The three sweeps run at once (epochs and
scores do not depend on timing), each in its own process.

Without --tracking-uri a SQLite-backed server is started in a temporary folder; studies live in SQLite
files in a temporary folder.
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

MLP_ARGS = ["--trainer", "torch", "--sampler", "random", "--dataset", "wine", "--model", "mlp",
            "--checkpoint-every", "0"]  # fmt: skip
CNN_ARGS = ["--trainer", "torch", "--sampler", "random", "--sampler-seed", "0", "--dataset", "digits",
            "--model", "cnn", "--channels", "8,16", "--checkpoint-every", "0", "--patience", "0"]  # fmt: skip
CNN_SPACE = """\
lr: {type: log-float, low: 0.0001, high: 0.1}
dropout: {type: float, low: 0.0, high: 0.5}
batch_size: {type: categorical, choices: [32, 64, 128]}
optimizer: {type: categorical, choices: [adamw, sgd]}
"""
EPOCH_SAVING_GOAL = 0.40
SCORE_TOLERANCE = 0.005


def mlops(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_platform", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> None:
    _, errors = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{process.args} failed:\n{errors[-3000:]}")


def study_of(storage: str, name: str):
    from mlops_platform.sweep.storage import open_storage
    from mlops_platform.sweep.study import load_study

    return load_study(open_storage(storage), name)[0]


def wait_for_study(storage: str, name: str, driver: subprocess.Popen) -> None:
    import optuna

    from mlops_platform.sweep.storage import open_storage

    while name not in optuna.get_all_study_names(open_storage(storage)):
        if driver.poll() is not None:
            finish(driver)
        time.sleep(0.2)


def throughput(workers: int, trials: int, epochs: int, folder: Path, env: dict[str, str]) -> float:
    """Trials per hour for `workers` processes on one study of `trials` trials."""
    storage = f"sqlite:///{folder / f'throughput-{workers}.db'}"
    name = f"throughput-{workers}-{int(time.time())}"
    started = time.perf_counter()
    driver = mlops(
        "sweep", "run", "--study", name, "--storage", storage, "--n-trials", str(trials),
        "--heartbeat-interval", "2", "--grace-period", "30", "--epochs", str(epochs), *MLP_ARGS, env=env,
    )  # fmt: skip
    helpers = []
    if workers > 1:
        wait_for_study(storage, name, driver)
        helpers = [
            mlops("sweep", "worker", "--study", name, "--storage", storage, env=env)
            for _ in range(workers - 1)
        ]
    for process in (driver, *helpers):
        finish(process)
    wall = time.perf_counter() - started
    done = len(study_of(storage, name).trials)
    print(f"  {workers} worker(s): {done} trials in {wall:.1f} s = {3600 * done / wall:.0f} trials/hour")
    return 3600 * done / wall


def pruning(trials: int, epochs: int, folder: Path, env: dict[str, str]) -> dict[str, tuple[int, float, int]]:
    """pruner -> (total epochs, best val_f1_macro, pruned trials), the three sweeps run at once."""
    space = folder / "cnn_space.yaml"
    space.write_text(CNN_SPACE)
    processes = {}
    for pruner in ("none", "median", "hyperband"):
        storage = f"sqlite:///{folder / f'pruning-{pruner}.db'}"
        name = f"pruning-{pruner}-{int(time.time())}"
        command = ["sweep", "run", "--study", name, "--storage", storage, "--n-trials", str(trials),
                   "--pruner", pruner, "--space", str(space), "--epochs", str(epochs), *CNN_ARGS]  # fmt: skip
        processes[pruner] = (storage, name, mlops(*command, env=env))
    results = {}
    for pruner, (storage, name, process) in processes.items():
        finish(process)
        study = study_of(storage, name)
        total = sum(len(trial.intermediate_values) for trial in study.trials)
        pruned = sum(trial.state.name == "PRUNED" for trial in study.trials)
        results[pruner] = (total, study.best_value, pruned)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--trials", type=int, default=6, help="part 1: MLP trials per study")
    parser.add_argument("--mlp-epochs", type=int, default=20, help="part 1: epochs per MLP trial")
    parser.add_argument("--cnn-trials", type=int, default=12, help="part 2: CNN trials per study")
    parser.add_argument("--cnn-epochs", type=int, default=8, help="part 2: epochs per CNN trial")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-pruning", action="store_true")
    args = parser.parse_args()
    with throwaway_server_unless(args.tracking_uri) as uri, tempfile.TemporaryDirectory() as folder:
        from mlflow import MlflowClient

        experiment = f"sweep-benchmark-{int(time.time())}"
        MlflowClient(uri).create_experiment(experiment)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_EXPERIMENT_NAME": experiment,
            "MLOPS_HOME": str(Path(folder) / "home"),
        }
        print(f"tracking server: {uri}; experiment {experiment}; {os.cpu_count()} CPUs")
        if not args.skip_pruning:
            print(f"\npruning: {args.cnn_trials} CNN trials of up to {args.cnn_epochs} epochs, same draws")
            results = pruning(args.cnn_trials, args.cnn_epochs, Path(folder), env)
            base_epochs, base_best, _ = results["none"]
            header = ("pruner", "epochs", "saved", "pruned", "best val_f1", "vs none")
            print("  {:<10} {:>6} {:>6} {:>6} {:>11} {:>8}".format(*header))
            for pruner, (total, best, pruned) in results.items():
                saved = 1 - total / base_epochs
                gap = best - base_best
                print(f"  {pruner:<10} {total:>6d} {saved:>6.0%} {pruned:>6d} {best:>11.4f} {gap:>+8.4f}")
            for pruner in ("median", "hyperband"):
                total, best, _ = results[pruner]
                met = 1 - total / base_epochs >= EPOCH_SAVING_GOAL and base_best - best <= SCORE_TOLERANCE
                goal = f">= {EPOCH_SAVING_GOAL:.0%} fewer epochs, best within {SCORE_TOLERANCE}"
                print(f"  {pruner}: goal ({goal}) {'met' if met else 'NOT met'}")
        if not args.skip_throughput:
            print(f"\nthroughput: {args.trials} MLP trials of {args.mlp_epochs} epochs on one study")
            one = throughput(1, args.trials, args.mlp_epochs, Path(folder), env)
            two = throughput(2, args.trials, args.mlp_epochs, Path(folder), env)
            print(f"  2 workers / 1 worker: {two / one:.2f}x trials per hour")


if __name__ == "__main__":
    main()
